//! `cargo xtask image`: builds the appliance image into `target/image/`.
//!
//! ```text
//! cargo xtask image [--profile release|dev] [--skip-build]
//! ```
//!
//! Steps: check the manifest (structure and privilege rules), build `hermes` with cargo, fetch
//! Debian's kernel into `target/image-cache` (apt-get download + dpkg-deb -x), assemble the
//! initramfs (hermes-image), and write
//!
//! ```text
//! target/image/vmlinuz                 the kernel (direct -kernel boot)
//! target/image/initramfs.cpio.zst      the initramfs (-initrd)
//! target/image/cmdline                 the kernel command line for direct boot
//! target/image/build.json              what went in: versions, sizes, modules, libraries
//! ```
//!
//! What it is not: a CI driver. It builds; tests live in `cargo test` and `qemu/`.
//!
//! Invariant: running it twice on the same inputs gives identical files.

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
    "usage: cargo xtask image [--profile release|dev] [--skip-build]"
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((cmd, rest)) = args.split_first() else { bail!("{}", usage()) };
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
    if !skip_build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("xtask: building hermes ({profile})");
        let status = Command::new(cargo)
            .args(["build", "-p", "hermes", "--profile", profile])
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
    let kernel = hermes_image::kernel::fetch(&target.join("image-cache"))?;
    let out = target.join("image");
    std::fs::create_dir_all(&out)?;
    let scratch = out.join("scratch");
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
        },
        &scratch,
    )?;
    write_if_changed(&out.join("initramfs.cpio.zst"), &built.compressed)?;
    write_if_changed(&out.join("vmlinuz"), &std::fs::read(&kernel.vmlinuz)?)?;
    write_if_changed(&out.join("cmdline"), format!("{CMDLINE}\n").as_bytes())?;
    let info = format!(
        "{{\n  \"version\": \"{version}\",\n  \"kernel\": \"{}\",\n  \"initramfs_bytes\": {},\n  \"cpio_bytes\": {},\n  \"entries\": {},\n  \"modules\": [{}],\n  \"libraries\": [{}]\n}}\n",
        kernel.version,
        built.compressed.len(),
        built.cpio_bytes,
        built.entries,
        built.modules.iter().map(|m| format!("\"{}\"", m.name)).collect::<Vec<_>>().join(", "),
        built.libraries.iter().map(|l| format!("\"{}\"", l.display())).collect::<Vec<_>>().join(", "),
    );
    write_if_changed(&out.join("build.json"), info.as_bytes())?;
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "xtask: wrote {} (kernel {}, initramfs {:.1} MiB, {} modules)",
        out.display(),
        kernel.version,
        built.compressed.len() as f64 / 1048576.0,
        built.modules.len()
    );
    Ok(())
}

/// Writes `data` unless the file already holds it (keeps mtimes stable for make-like users).
fn write_if_changed(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
