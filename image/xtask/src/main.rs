//! `cargo xtask image`: builds the appliance image into `target/image/`.
//!
//! ```text
//! cargo xtask image [--profile release|dev] [--skip-build]
//! ```
//!
//! Steps: check the manifest (structure and privilege rules), build `hermes` with cargo, fetch
//! Debian's kernel, systemd-boot and the manifest's tools into `target/image-cache` (apt-get
//! download + dpkg-deb -x), assemble the initramfs, the unified kernel image and the disk image
//! (hermes-image), and write
//!
//! ```text
//! target/image/hermes.img              the flashable disk image (GPT, ESP, systemd-boot, slot A)
//! target/image/hermes.efi              the UKI of slot A (what an update bundle carries)
//! target/image/vmlinuz                 the kernel (direct -kernel boot)
//! target/image/initramfs.cpio.zst      the initramfs (-initrd)
//! target/image/cmdline                 the kernel command line (direct boot and the UKI's)
//! target/image/build.json              what went in: versions, sizes, modules, libraries
//! ```
//!
//! What it is not: a CI driver. It builds; tests live in `cargo test` and `qemu/`.
//!
//! Invariant: running it twice on the same inputs gives identical files.

mod bundle;

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The kernel command line for direct boot: the serial console (QEMU's `-serial`), quiet
/// kernel messages (the console is for people and for the harness's line matching), and a
/// panic reboot so a broken boot never hangs a test.
pub const CMDLINE: &str = "console=ttyS0,115200 quiet loglevel=4 panic=5";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage: cargo xtask image [--profile release|dev] [--skip-build] | cargo xtask bundle --version V [--cmdline-extra S] [--out FILE]"
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((cmd, rest)) = args.split_first() else { bail!("{}", usage()) };
    if cmd == "bundle" {
        return bundle::command(&workspace_root()?, rest);
    }
    if cmd != "image" {
        bail!("unknown command `{cmd}`; {}", usage());
    }
    let mut profile = "release".to_string();
    let mut skip_build = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--profile" => profile = it.next().context("--profile needs a value")?.clone(),
            "--skip-build" => skip_build = true,
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown option `{other}`; {}", usage()),
        }
    }
    let root = workspace_root()?;
    image(&root, &profile, skip_build)
}

/// The workspace root: two levels above this crate's manifest (image/xtask).
fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(Path::to_path_buf).context("cannot find the workspace root")
}

fn image(root: &Path, profile: &str, skip_build: bool) -> anyhow::Result<()> {
    let manifest_path = root.join("image/manifest.toml");
    let manifest = hermes_image::load_manifest(&manifest_path)?;
    let manifest_text = std::fs::read_to_string(&manifest_path)?;
    eprintln!("xtask: manifest ok: {} services", manifest.services.len());

    let target = root.join("target");
    // The update key: its public half is built into hermes, the bundle step signs with it.
    let signing = bundle::signing_key(&target)?;
    if !skip_build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("xtask: building hermes ({profile})");
        let status = Command::new(cargo)
            .args(["build", "-p", "hermes", "--profile", profile])
            .env(bundle::PUBKEY_ENV, signing.public().to_hex())
            .current_dir(root)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo build -p hermes failed");
        }
    }
    let dir = if profile == "dev" { "debug" } else { profile };
    let hermes = target.join(dir).join("hermes");
    if !hermes.exists() {
        bail!("{} is missing", hermes.display());
    }

    eprintln!("xtask: kernel from Debian (cache target/image-cache)");
    let cache = target.join("image-cache");
    let kernel = hermes_image::kernel::fetch(&cache)?;
    let tool_specs = hermes_core_tools(&manifest_text)?;
    let tools = hermes_image::kernel::fetch_tools(&cache, &tool_specs)?;
    let out = target.join("image");
    std::fs::create_dir_all(&out)?;
    // Per process: two builds at once must not remove each other's scratch files.
    let scratch = out.join(format!("scratch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let version = env!("CARGO_PKG_VERSION");
    let built = hermes_image::initramfs::build(
        &hermes_image::initramfs::Inputs {
            manifest: &manifest,
            manifest_text: &manifest_text,
            hermes: &hermes,
            moddir: &kernel.moddir,
            kernel_version: &kernel.version,
            mtime: hermes_image::source_date_epoch(),
            version,
            tools: &tools,
        },
        &scratch,
    )?;
    let vmlinuz = std::fs::read(&kernel.vmlinuz)?;
    let boot_dir = kernel.root.join("usr/lib/systemd/boot/efi");
    let stub = read(&boot_dir.join("linuxx64.efi.stub"))?;
    let systemd_boot = read(&boot_dir.join("systemd-bootx64.efi"))?;
    let uki = hermes_image::uki::build(&hermes_image::uki::UkiInputs {
        stub: &stub,
        version,
        cmdline: CMDLINE,
        uname: &kernel.version,
        linux: &vmlinuz,
        initrd: &built.compressed,
    })
    .context("unified kernel image")?;
    let mtime = hermes_image::source_date_epoch();
    let disk = hermes_image::disk::build(&hermes_image::disk::DiskInputs {
        systemd_boot: &systemd_boot,
        uki: &uki,
        version,
        mtime,
    })
    .context("disk image")?;
    write_if_changed(&out.join("hermes.efi"), &uki)?;
    write_if_changed(&out.join("hermes.img"), &disk)?;
    write_if_changed(&out.join("initramfs.cpio.zst"), &built.compressed)?;
    write_if_changed(&out.join("vmlinuz"), &vmlinuz)?;
    write_if_changed(&out.join("cmdline"), format!("{CMDLINE}\n").as_bytes())?;
    let info = format!(
        "{{\n  \"version\": \"{version}\",\n  \"kernel\": \"{}\",\n  \"disk_bytes\": {},\n  \"esp_bytes\": {},\n  \"uki_bytes\": {},\n  \"kernel_bytes\": {},\n  \"initramfs_bytes\": {},\n  \"cpio_bytes\": {},\n  \"entries\": {},\n  \"tools\": [{}],\n  \"modules\": [{}],\n  \"libraries\": [{}]\n}}\n",
        kernel.version,
        disk.len(),
        hermes_image::disk::ESP_BYTES,
        uki.len(),
        vmlinuz.len(),
        built.compressed.len(),
        built.cpio_bytes,
        built.entries,
        tools.iter().map(|t| format!("\"{}:{}\"", t.package, t.path)).collect::<Vec<_>>().join(", "),
        built.modules.iter().map(|m| format!("\"{}\"", m.name)).collect::<Vec<_>>().join(", "),
        built.libraries.iter().map(|l| format!("\"{}\"", l.display())).collect::<Vec<_>>().join(", "),
    );
    write_if_changed(&out.join("build.json"), info.as_bytes())?;
    let _ = std::fs::remove_dir_all(&scratch);
    let mib = |n: usize| n as f64 / 1048576.0;
    eprintln!(
        "xtask: wrote {} (kernel {}: {:.1} MiB; initramfs {:.1} MiB, {} modules; UKI {:.1} MiB; hermes.img {:.1} MiB, ESP {:.1} MiB free after slot A)",
        out.display(),
        kernel.version,
        mib(vmlinuz.len()),
        mib(built.compressed.len()),
        built.modules.len(),
        mib(uki.len()),
        mib(disk.len()),
        mib(hermes_image::disk::ESP_BYTES as usize - uki.len() - 2 * systemd_boot.len()),
    );
    bundle::write(&out, &signing, version, &uki, &hermes)?;
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The manifest's `[image] tools`.
fn hermes_core_tools(text: &str) -> anyhow::Result<Vec<hermes_core::manifest::Tool>> {
    hermes_core::manifest::image_tools(text).map_err(|e| anyhow::anyhow!("image/manifest.toml: {e}"))
}

/// Writes `data` unless the file already holds it (keeps mtimes stable for make-like users).
fn write_if_changed(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
