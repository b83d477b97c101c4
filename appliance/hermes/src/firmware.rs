//! `hermes firmware status|install|mark-good`: the firmware slots on the EFI system partition
//! (see `hermes_svc_init::firmware`, which does the work, and docs/image.md).
//!
//! On the appliance the console runs these inside init (`hermes firmware ...` typed on the
//! serial console), which owns the ESP and the orderly reboot; this command is the same logic
//! for root on the box and for an ESP folder given with `--esp` (an image being prepared, tests).
//!
//! What it is not: a boot loader tool. systemd-boot counts the tries; this writes slots and
//! drops counters.
//!
//! Invariant: an install that would reboot checks that it can (PID 1 is this hermes) before
//! anything is written; a refused install writes nothing.

use anyhow::{Context, bail};
use hermes_svc_init::firmware::{self, InstallOptions, Running};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options every firmware command takes.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The mounted EFI system partition.
    #[arg(long, value_name = "DIR", default_value = firmware::ESP_MOUNT)]
    pub esp: PathBuf,
    /// The running version, instead of asking the boot loader's EFI variables (for an ESP
    /// that is not the one this machine booted from).
    #[arg(long, value_name = "VERSION")]
    pub running: Option<String>,
}

impl Target {
    fn running(&self) -> Running {
        match &self.running {
            Some(v) => Running { version: Some(v.clone()), ..Default::default() },
            None => Running::here(),
        }
    }

    fn esp(&self) -> anyhow::Result<&Path> {
        if !self.esp.join(firmware::SLOT_DIR).is_dir() {
            bail!(
                "{} has no {} folder: not a Hermes EFI system partition (or it is not mounted)",
                self.esp.display(),
                firmware::SLOT_DIR
            );
        }
        Ok(&self.esp)
    }
}

/// `hermes firmware ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FirmwareCommand {
    /// List the slots: version, tries left and done, good/trial/bad, which one runs.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Verify a signed bundle (a file or a block device) and install it as the new slot with 3
    /// tries; then reboot into it.
    Install {
        bundle: PathBuf,
        /// Allow a downgrade, or an install while the running slot is still on trial.
        #[arg(long)]
        force: bool,
        /// Do not reboot; the new slot boots at the next reboot.
        #[arg(long)]
        no_reboot: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Mark the running slot good by hand (init does it once the services are healthy).
    MarkGood {
        #[command(flatten)]
        target: Target,
    },
}

/// Whether PID 1 is this same executable (`hermes init` on the appliance).
fn pid1_is_hermes() -> bool {
    let (Ok(a), Ok(b)) = (std::fs::metadata("/proc/1/exe"), std::fs::metadata("/proc/self/exe")) else {
        return false;
    };
    a.dev() == b.dev() && a.ino() == b.ino()
}

pub fn run(cmd: FirmwareCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        FirmwareCommand::Status { json, target } => {
            let status = firmware::status(target.esp()?, &target.running())?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            } else {
                write!(out, "{}", firmware::render(&status))?;
            }
        }
        FirmwareCommand::Install { bundle, force, no_reboot, target } => {
            let esp = target.esp()?;
            if !no_reboot && !pid1_is_hermes() {
                bail!(
                    "not on the appliance (PID 1 is not hermes init), so it cannot reboot into the new slot: pass --no-reboot"
                );
            }
            let key = firmware::trusted_key()?;
            let bytes = firmware::read_bundle(&bundle)?;
            let done = firmware::install(esp, &bytes, &key, &target.running(), InstallOptions { force })
                .with_context(|| format!("{} refused", bundle.display()))?;
            for r in &done.removed {
                writeln!(out, "hermes: firmware: removed the old slot {r}")?;
            }
            if let Some(d) = &done.demoted {
                writeln!(out, "hermes: firmware: the running slot is kept as the fallback {d}")?;
            }
            writeln!(out, "hermes: firmware: installed {} as {} ({} tries)", done.version, done.file, firmware::TRIES)?;
            if !no_reboot {
                writeln!(out, "hermes: firmware: rebooting into it")?;
                out.flush()?;
                // Init turns SIGTERM into an orderly reboot (services stopped, disks synced).
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), nix::sys::signal::Signal::SIGTERM)
                    .context("cannot ask init to reboot")?;
            }
        }
        FirmwareCommand::MarkGood { target } => match firmware::mark_good(target.esp()?, &target.running())? {
            Some(name) => writeln!(out, "hermes: firmware: the running slot is now {name} (good)")?,
            None => writeln!(out, "hermes: firmware: the running slot is already good")?,
        },
    }
    Ok(ExitCode::SUCCESS)
}
