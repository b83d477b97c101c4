//! Debian's kernel (and systemd-boot) for the image: downloaded with `apt-get download` into a
//! cache under `target/`, unpacked with `dpkg-deb -x`. No root needed beyond what apt itself
//! needs to read its lists; nothing is installed on the host.
//!
//! What it is not: a package resolver. `linux-image-amd64` is a metapackage whose one
//! dependency (`linux-image-6.x-amd64`) carries the kernel; that name comes from
//! `apt-cache depends`.
//!
//! Invariant: a cache that already holds the unpacked packages is reused as it is, so a rebuild
//! offline gives the same kernel; delete `target/image-cache` to take a newer one.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage naming the current Debian kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// systemd-boot (bootloader) and its UKI stub.
pub const BOOT_PACKAGE: &str = "systemd-boot-efi";

/// An unpacked kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `6.1.0-56-amd64`.
    pub version: String,
    /// The unpacked package root (holds `boot/` and `lib/modules/VERSION`).
    pub root: PathBuf,
    pub vmlinuz: PathBuf,
    pub moddir: PathBuf,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned kernel package `linux-image-amd64` depends on.
pub fn kernel_package() -> anyhow::Result<String> {
    let out = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains('<'))
        .map(|p| p.trim().to_string())
        .with_context(|| format!("apt-cache depends {KERNEL_METAPACKAGE} names no kernel (run apt-get update?)"))
}

/// Downloads `package` into `debs` unless a `.deb` of it is there; returns the file.
fn download(debs: &Path, package: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(debs)?;
    let existing = |debs: &Path| -> anyhow::Result<Option<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        Ok(found.pop())
    };
    if let Some(p) = existing(debs)? {
        return Ok(p);
    }
    run(Command::new("apt-get").arg("download").arg(package).current_dir(debs))?;
    existing(debs)?.with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))
}

fn unpack(deb: &Path, root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    Ok(())
}

/// Fetches (or reuses) the kernel and systemd-boot in `cache` (`target/image-cache`).
pub fn fetch(cache: &Path) -> anyhow::Result<Kernel> {
    let root = cache.join("root");
    let stamp = cache.join("root.unpacked");
    if !stamp.exists() {
        let debs = cache.join("debs");
        let kernel_pkg = match kernel_package() {
            Ok(p) => p,
            // Offline with debs already downloaded: take the versioned kernel .deb present.
            Err(e) => std::fs::read_dir(&debs)
                .ok()
                .and_then(|d| {
                    d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .find(|n| n.starts_with("linux-image-6") || n.starts_with("linux-image-5"))
                })
                .and_then(|n| n.split('_').next().map(str::to_string))
                .ok_or(e)?,
        };
        let kernel_deb = download(&debs, &kernel_pkg)?;
        let boot_deb = download(&debs, BOOT_PACKAGE)?;
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        unpack(&kernel_deb, &root)?;
        unpack(&boot_deb, &root)?;
        std::fs::write(&stamp, format!("{}\n{}\n", kernel_deb.display(), boot_deb.display()))?;
    }
    let (version, moddir) = crate::modules::find_moddir(&root)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.exists() {
        bail!("{} is missing", vmlinuz.display());
    }
    Ok(Kernel { version, root, vmlinuz, moddir })
}

/// One tool file from an unpacked package: where it goes in the image and where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFile {
    /// The package it came from.
    pub package: String,
    /// Its path in the package and in the image (`sbin/mdadm`).
    pub path: String,
    /// The unpacked file in the cache.
    pub source: PathBuf,
}

/// Fetches (or reuses) the packages of the manifest's `[image] tools` into `cache`
/// (`target/image-cache/debs`, unpacked under `target/image-cache/tools/PACKAGE`) and returns
/// each tool's unpacked file. A path the package does not hold is an error.
pub fn fetch_tools(cache: &Path, tools: &[hermes_core::manifest::Tool]) -> anyhow::Result<Vec<ToolFile>> {
    let debs = cache.join("debs");
    let mut out = Vec::new();
    for t in tools {
        let root = cache.join("tools").join(&t.package);
        let stamp = cache.join("tools").join(format!("{}.unpacked", t.package));
        if !stamp.exists() {
            let deb = download(&debs, &t.package)?;
            if root.exists() {
                std::fs::remove_dir_all(&root)?;
            }
            unpack(&deb, &root)?;
            std::fs::write(&stamp, format!("{}\n", deb.display()))?;
        }
        let source = root.join(&t.path);
        // A symlink in the package (sbin/mkfs.ext4 -> mke2fs) is followed: the image gets the file.
        if !source.is_file() {
            bail!("package {} has no file {} (looked in {})", t.package, t.path, root.display());
        }
        out.push(ToolFile { package: t.package.clone(), path: t.path.clone(), source });
    }
    Ok(out)
}
