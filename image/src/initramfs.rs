//! Assembles the initramfs, the appliance's read-only root (design §3: "the root is the
//! initramfs"):
//!
//! ```text
//! init -> bin/hermes                the kernel runs /init as PID 1: `hermes init`
//! bin/hermes                        the multi-call binary (debug info stripped)
//! sbin/mdadm, sbin/mke2fs, ...      the manifest's tools, from Debian packages
//! lib/..., lib64/...                the shared libraries `hermes` and the tools need (from the
//!                                   build host)
//! lib/modules/VERSION/...           the manifest's modules, their dependencies, modules.dep
//! etc/hermes/manifest.toml          the manifest init reads
//! etc/hermes/modules                the modules to load at boot, in manifest order
//! etc/passwd, etc/group             generated from the manifest (one user per service)
//! etc/hostname, etc/os-release      what the image is
//! etc/resolv.conf -> /run/resolv.conf  written by init from DHCP or network.toml
//! dev/console                       so PID 1 has a console before devtmpfs is mounted
//! proc sys run tmp data             mount points
//! ```
//!
//! What it is not: a distribution. No shell, no package manager, no libc tools.
//!
//! Invariants: every entry is owned by root with a fixed mtime; the archive is sorted; the
//! compressed output is a pure function of the inputs (single-threaded zstd at a fixed level).

use crate::cpio::Archive;
use crate::modules::{self, Module};
use anyhow::{Context, bail};
use hermes_core::manifest::{MANIFEST_PATH, Manifest};
use std::path::{Path, PathBuf};
use std::process::Command;

/// zstd level: 19 makes the image about 10% smaller than the default 3 for a few seconds more
/// per build; the kernel decompresses any level equally fast.
pub const ZSTD_LEVEL: i32 = 19;

/// What goes into the initramfs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub manifest: &'a Manifest,
    /// The manifest file's text, embedded verbatim.
    pub manifest_text: &'a str,
    /// The `hermes` executable to ship.
    pub hermes: &'a Path,
    /// `lib/modules/VERSION` of the unpacked kernel.
    pub moddir: &'a Path,
    pub kernel_version: &'a str,
    /// Stamped on every entry.
    pub mtime: u32,
    /// Text for `etc/os-release` (`VERSION_ID` etc.).
    pub version: &'a str,
    /// The manifest's `[image] tools`, unpacked ([`crate::kernel::fetch_tools`]).
    pub tools: &'a [crate::kernel::ToolFile],
}

/// What was built, for the build log.
#[derive(Debug, Clone)]
pub struct Built {
    pub cpio_bytes: usize,
    pub compressed: Vec<u8>,
    pub modules: Vec<Module>,
    pub libraries: Vec<PathBuf>,
    pub entries: usize,
}

/// The shared libraries (and the dynamic loader) `exe` needs, from `ldd`. Empty for a static
/// executable.
pub fn shared_libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(exe).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => libs.push(PathBuf::from(p)),
            Some("not") => bail!("{}: a library is missing: {line}", exe.display()),
            _ => {} // linux-vdso.so.1 has no file
        }
    }
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// `exe` without debug sections (a copy; `strip` from binutils), or unchanged when `strip` is
/// unavailable.
pub fn stripped(exe: &Path, scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let out = scratch.join("hermes.stripped");
    let status = Command::new("strip").arg("--strip-debug").arg("-o").arg(&out).arg(exe).status();
    match status {
        Ok(s) if s.success() => Ok(std::fs::read(&out)?),
        _ => Ok(std::fs::read(exe).with_context(|| format!("cannot read {}", exe.display()))?),
    }
}

/// `/etc/passwd` and `/etc/group` for the manifest's services (no passwords, no shells).
pub fn passwd_and_group(manifest: &Manifest) -> (String, String) {
    let mut passwd = String::from("root:x:0:0:root:/root:/nonexistent\n");
    let mut users: Vec<_> = manifest.services.iter().collect();
    users.sort_by_key(|s| s.uid);
    for s in users {
        passwd.push_str(&format!("{}:x:{}:{}:hermes {}:/nonexistent:/nonexistent\n", s.user, s.uid, s.gid, s.name));
    }
    let mut group = String::from("root:x:0:\n");
    for (name, gid, members) in manifest.groups() {
        group.push_str(&format!("{name}:x:{gid}:{}\n", members.join(",")));
    }
    (passwd, group)
}

/// Builds the archive and compresses it.
pub fn build(inputs: &Inputs<'_>, scratch: &Path) -> anyhow::Result<Built> {
    let mut a = Archive::new();
    for dir in ["proc", "sys", "run", "tmp", "data", "root", "dev", "etc", "bin"] {
        let perm = match dir {
            "tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        a.dir(dir, perm)?;
    }
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;
    a.file("bin/hermes", 0o755, stripped(inputs.hermes, scratch)?)?;
    a.symlink("init", "bin/hermes")?;

    let mut libraries = shared_libraries(inputs.hermes)?;
    for tool in inputs.tools {
        let data = std::fs::read(&tool.source).with_context(|| format!("cannot read {}", tool.source.display()))?;
        let elf = data.starts_with(b"\x7fELF");
        a.file(&tool.path, if elf { 0o755 } else { 0o644 }, data)?;
        if elf {
            libraries.extend(shared_libraries(&tool.source)?);
        }
    }
    libraries.sort();
    libraries.dedup();
    for lib in &libraries {
        let data = std::fs::read(lib).with_context(|| format!("cannot read {}", lib.display()))?;
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        a.file(&rel, 0o755, data)?;
    }

    let builtin = modules::builtin(inputs.moddir)?;
    let mut wanted = inputs.manifest.image.modules.clone();
    wanted.extend(inputs.manifest.image.optional_modules.iter().cloned());
    let closure = modules::closure(inputs.moddir, &wanted, &builtin)?;
    let mod_base = format!("lib/modules/{}", inputs.kernel_version);
    for m in &closure {
        let data = std::fs::read(inputs.moddir.join(&m.rel_path))?;
        a.file(&format!("{mod_base}/{}", m.rel_path), 0o644, data)?;
    }
    a.file(&format!("{mod_base}/modules.dep"), 0o644, modules::modules_dep(&closure).into_bytes())?;
    let builtin_text = std::fs::read(inputs.moddir.join("modules.builtin"))?;
    a.file(&format!("{mod_base}/modules.builtin"), 0o644, builtin_text)?;
    let load_list: String = inputs
        .manifest
        .image
        .modules
        .iter()
        .filter(|m| !builtin.contains(&m.replace('-', "_")))
        .map(|m| format!("{m}\n"))
        .collect();
    a.file("etc/hermes/modules", 0o644, load_list.into_bytes())?;

    a.file(MANIFEST_PATH.trim_start_matches('/'), 0o644, inputs.manifest_text.as_bytes().to_vec())?;
    let (passwd, group) = passwd_and_group(inputs.manifest);
    a.file("etc/passwd", 0o644, passwd.into_bytes())?;
    a.file("etc/group", 0o644, group.into_bytes())?;
    // Resolvers come from DHCP or network.toml at boot; the root itself stays as built.
    a.symlink("etc/resolv.conf", "/run/resolv.conf")?;
    a.file("etc/hostname", 0o644, format!("{}\n", inputs.manifest.image.hostname).into_bytes())?;
    a.file(
        "etc/os-release",
        0o644,
        format!(
            "NAME=Hermes\nID=hermes\nPRETTY_NAME=\"Hermes mail appliance {v}\"\nVERSION_ID={v}\n",
            v = inputs.version
        )
        .into_bytes(),
    )?;

    let raw = a.to_bytes(inputs.mtime);
    let compressed = zstd::bulk::compress(&raw, ZSTD_LEVEL).context("zstd")?;
    Ok(Built { cpio_bytes: raw.len(), compressed, modules: closure, libraries, entries: a.len() })
}
