//! The appliance image builder (host side; nothing in the firmware links this crate).
//!
//! - [`bundle`]: signed update bundles (written here, verified by the appliance, which links
//!   this module for it).
//! - [`cpio`]: a reproducible newc cpio writer (the initramfs format).
//! - [`gpt`]: a reproducible GUID partition table writer (for the flashable disk image).
//! - [`fat`]: a reproducible FAT32 writer with long file names (the EFI system partition).
//! - [`uki`]: unified kernel images: systemd's stub with the kernel, initramfs, command line and
//!   os-release appended as PE sections.
//! - [`disk`]: the disk image: GPT, the ESP with systemd-boot, `loader.conf` and slot A.
//! - [`modules`]: the closure of the kernel modules the manifest names, and its `modules.dep`.
//! - [`kernel`]: fetching Debian's kernel, systemd-boot and the manifest's tools with apt into a
//!   cache.
//! - [`initramfs`]: assembling the initramfs: `hermes`, its shared libraries, the modules,
//!   `/etc` generated from the manifest, device nodes; zstd-compressed.
//!
//! `cargo xtask image` (image/xtask) drives them; `docs/image.md` describes the result.
//!
//! Invariants: building needs no root and no loop devices (archives are written byte by byte);
//! the same inputs (binary, kernel package, manifest, [`SOURCE_DATE_EPOCH`]) give the same bytes;
//! an image is never built from a manifest that fails its privilege check.

pub mod bundle;
pub mod cpio;
pub mod disk;
pub mod fat;
pub mod gpt;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod uki;

/// The fixed mtime of every file in the image unless `SOURCE_DATE_EPOCH` says otherwise
/// (reproducible-builds.org): 2024-01-01T00:00:00Z, a date before any build.
pub const SOURCE_DATE_EPOCH: u32 = 1_704_067_200;

/// The mtime to stamp: `SOURCE_DATE_EPOCH` from the environment when it is a valid number.
pub fn source_date_epoch() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()).unwrap_or(SOURCE_DATE_EPOCH)
}

/// Loads `image/manifest.toml` and refuses it unless it passes the structure and privilege
/// checks.
pub fn load_manifest(path: &std::path::Path) -> anyhow::Result<hermes_core::manifest::Manifest> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest = hermes_core::manifest::Manifest::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} is invalid: {e}", path.display()))?;
    let violations = manifest.check_privileges();
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
        anyhow::bail!("{} breaks the privilege rules of docs/SECURITY.md: {}", path.display(), list.join("; "));
    }
    Ok(manifest)
}
