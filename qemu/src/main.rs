//! `hermes-qemu boot`: boots the appliance image (`cargo xtask image`) under QEMU, by direct
//! kernel boot or (`--uefi`) the disk image `target/image/hermes.img` under OVMF, with its
//! console on this terminal's standard output, the mail ports forwarded to free local ports
//! (printed), and a QMP socket. Lines typed on standard input go to the serial console
//! (`status`, `hermes domain add example.org`, `poweroff`). Ctrl-C kills QEMU.
//!
//! ```text
//! cargo run -p hermes-qemu -- boot [--uefi] [--keep DISK] [--attach FILE] [--attach-ro FILE]
//!                                   [--disks] [--image DIR] [--run DIR] [--memory MB]
//! ```
//!
//! `--keep DISK` keeps the UEFI boot disk (and its variables) in DISK across runs, like a box
//! that reboots; `--attach`/`--attach-ro` add a raw disk file on virtio-blk.

use hermes_qemu::{Boot, BootConfig, Machine};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hermes-qemu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: hermes-qemu boot [--uefi] [--keep DISK] [--attach FILE] [--attach-ro FILE] [--disks] [--image DIR] [--run DIR] [--memory MB]";

fn run() -> anyhow::Result<ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else { anyhow::bail!("{USAGE}") };
    if cmd != "boot" {
        anyhow::bail!("unknown command `{cmd}`; {USAGE}");
    }
    let mut cfg = BootConfig::mail_ports(root.join("target/image"), root.join("target/qemu/run"));
    let (mut uefi, mut keep) = (false, None);
    let mut attach = Vec::new();
    let value = |args: &mut dyn Iterator<Item = String>, opt: &str| -> anyhow::Result<String> {
        args.next().ok_or_else(|| anyhow::anyhow!("{opt} needs a value; {USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--disks" => cfg.data_disks = true,
            "--uefi" => uefi = true,
            "--keep" => keep = Some(PathBuf::from(value(&mut args, "--keep")?)),
            "--attach" => attach.push((PathBuf::from(value(&mut args, "--attach")?), false)),
            "--attach-ro" => attach.push((PathBuf::from(value(&mut args, "--attach-ro")?), true)),
            "--image" => cfg.image_dir = PathBuf::from(value(&mut args, "--image")?),
            "--run" => cfg.run_dir = PathBuf::from(value(&mut args, "--run")?),
            "--memory" => {
                let m = value(&mut args, "--memory")?;
                cfg.memory_mb = m.parse().map_err(|_| anyhow::anyhow!("--memory {m}: not a number"))?;
            }
            other => anyhow::bail!("unknown option `{other}`; {USAGE}"),
        }
    }
    if uefi {
        let mut u = BootConfig::uefi(cfg.image_dir.join("hermes.img"), cfg.run_dir.clone());
        u.data_disks = cfg.data_disks;
        u.memory_mb = cfg.memory_mb;
        if let Some(disk) = keep {
            u = u.with_boot_disk(disk);
        }
        cfg = u;
    } else if keep.is_some() {
        anyhow::bail!("--keep needs --uefi");
    }
    for (path, read_only) in attach {
        cfg = cfg.attach_disk(path, read_only);
    }
    if let Boot::Uefi(u) = &cfg.boot {
        eprintln!("hermes-qemu: UEFI boot of {} (boot disk {})", u.image.display(), u.disk.display());
    }
    let mut machine = Machine::boot(&cfg)?;
    eprintln!("hermes-qemu: run folder {} (console.log, qemu.log, qmp.sock)", machine.run_dir().display());
    for (name, guest) in &cfg.forwards {
        eprintln!("hermes-qemu: {name:<12} guest {guest:<4} → 127.0.0.1:{}", machine.port(name)?);
    }
    // Echo the console: follow console.log by waiting on lines.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        while let Ok(line) = rx.try_recv() {
            machine.send_line(&line)?;
        }
        match machine.wait_for_line("", Duration::from_millis(200)) {
            Ok(line) => println!("{line}"),
            Err(_) if machine.wait_exit(Duration::from_millis(0))? => return Ok(ExitCode::SUCCESS),
            Err(_) => {}
        }
    }
}
