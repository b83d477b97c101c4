//! The update-bundle steps of the xtask: the signing key, the public key built into `hermes`,
//! `target/image/hermes-VERSION.bundle`, and `cargo xtask bundle` for bundles of other versions
//! (the QEMU update and rollback tests).
//!
//! ```text
//! cargo xtask bundle --version V [--cmdline-extra "hermes.test_fail=store"] [--out FILE]
//! ```
//!
//! The signing key is never in git: `HERMES_SIGNING_KEY` names a file holding its 32-byte seed
//! in hex; without it a development key is generated once into `target/image-keys/` (0600)
//! and reused. The public key goes into the image's `hermes` as `HERMES_UPDATE_PUBKEY` at
//! compile time (hermes_svc_init::firmware::BUILT_IN_KEY).
//!
//! Invariant: a bundle is only written for a `hermes` binary that carries the same public key
//! (so an image never ships a binary that would refuse its own updates).

use anyhow::{Context, bail};
use hermes_image::bundle::{self, SigningKey};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable the public key reaches `hermes`'s build through.
pub const PUBKEY_ENV: &str = "HERMES_UPDATE_PUBKEY";
/// A file with the signing key's seed (64 hex digits).
pub const SIGNING_KEY_ENV: &str = "HERMES_SIGNING_KEY";

/// The signing key: `HERMES_SIGNING_KEY`'s file, else the development key in
/// `target/image-keys/signing.key` (generated on first use).
pub fn signing_key(target: &Path) -> anyhow::Result<SigningKey> {
    if let Some(path) = std::env::var_os(SIGNING_KEY_ENV) {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let key = SigningKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        eprintln!("xtask: signing with {} (key {})", path.display(), key.public().id());
        return Ok(key);
    }
    let dir = target.join("image-keys");
    let path = dir.join("signing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = SigningKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        eprintln!("xtask: signing with the development key {} (key {})", path.display(), key.public().id());
        return Ok(key);
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read /dev/urandom")?;
    let key = SigningKey::from_seed(seed);
    let tmp = dir.join("signing.key.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        writeln!(f, "{}", key.to_hex())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::write(dir.join("signing.pub"), format!("{}\n", key.public().to_hex()))?;
    eprintln!(
        "xtask: generated a development signing key in {} (key {}); set {SIGNING_KEY_ENV}=FILE to sign with a release key",
        path.display(),
        key.public().id()
    );
    Ok(key)
}

/// Writes `out/hermes-VERSION.bundle` around `uki`, after checking that `hermes` (the binary
/// inside the UKI's initramfs) carries `key`'s public key. A binary without it (built outside
/// the xtask, then `--skip-build`) makes an image that refuses every update: said loudly, and
/// no bundle is written (`Ok(None)`).
pub fn write(
    out: &Path,
    key: &SigningKey,
    version: &str,
    uki: &[u8],
    hermes: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let public = key.public().to_hex();
    let exe = std::fs::read(hermes).with_context(|| format!("cannot read {}", hermes.display()))?;
    let path = out.join(format!("hermes-{version}.bundle"));
    if !exe.windows(public.len()).any(|w| w == public.as_bytes()) {
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "xtask: WARNING: {} was not built with this signing key's public key ({PUBKEY_ENV}): this image refuses every update bundle, and no bundle was written; build without --skip-build",
            hermes.display()
        );
        return Ok(None);
    }
    let built = bundle::create(key, version, u64::from(hermes_image::source_date_epoch()), uki)?;
    let tmp = path.with_extension("bundle.tmp");
    std::fs::write(&tmp, &built).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "xtask: wrote {} ({:.1} MiB, version {version}, key {})",
        path.display(),
        built.len() as f64 / 1048576.0,
        key.public().id()
    );
    Ok(Some(path))
}

/// `cargo xtask bundle --version V [--cmdline-extra S] [--out FILE]`: a bundle of another
/// version from the last `cargo xtask image` (its kernel, initramfs and command line).
pub fn command(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let usage = "usage: cargo xtask bundle --version V [--cmdline-extra S] [--out FILE]";
    let (mut version, mut extra, mut out) = (None, String::new(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--version" => version = Some(it.next().context("--version needs a value")?.clone()),
            "--cmdline-extra" => extra = it.next().context("--cmdline-extra needs a value")?.clone(),
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a value")?)),
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            other => bail!("unknown option `{other}`; {usage}"),
        }
    }
    let Some(version) = version else { bail!("{usage}") };
    let target = root.join("target");
    let image = target.join("image");
    let read = |name: &str| {
        std::fs::read(image.join(name))
            .with_context(|| format!("cannot read target/image/{name}: run `cargo xtask image` first"))
    };
    let linux = read("vmlinuz")?;
    let initrd = read("initramfs.cpio.zst")?;
    let cmdline = String::from_utf8_lossy(&read("cmdline")?).trim().to_string();
    let cmdline = format!("{cmdline} {}", extra.trim()).trim().to_string();
    let kernel = hermes_image::kernel::fetch(&target.join("image-cache"))?;
    let stub_path = kernel.root.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    let stub = std::fs::read(&stub_path).with_context(|| format!("cannot read {}", stub_path.display()))?;
    let uki = hermes_image::uki::build(&hermes_image::uki::UkiInputs {
        stub: &stub,
        version: &version,
        cmdline: &cmdline,
        uname: &kernel.version,
        linux: &linux,
        initrd: &initrd,
    })
    .context("unified kernel image")?;
    let key = signing_key(&target)?;
    let built = bundle::create(&key, &version, u64::from(hermes_image::source_date_epoch()), &uki)?;
    let path = out.unwrap_or_else(|| image.join(format!("hermes-{version}.bundle")));
    std::fs::write(&path, &built).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "xtask: wrote {} (version {version}, command line `{cmdline}`, {:.1} MiB, key {})",
        path.display(),
        built.len() as f64 / 1048576.0,
        key.public().id()
    );
    Ok(())
}
