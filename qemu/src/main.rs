//! `hermes-qemu boot`: boots the appliance image (`cargo xtask image`) under QEMU with its
//! console on this terminal's standard output, the mail ports forwarded to free local ports
//! (printed), and a QMP socket. Lines typed on standard input go to the serial console
//! (`status`, `hermes domain add example.org`, `poweroff`). Ctrl-C kills QEMU.
//!
//! ```text
//! cargo run -p hermes-qemu -- boot [--disks] [--image DIR] [--run DIR] [--memory MB]
//! ```

use hermes_qemu::{BootConfig, Machine};
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

fn run() -> anyhow::Result<ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else { anyhow::bail!("usage: hermes-qemu boot [--disks] [--image DIR] [--run DIR] [--memory MB]") };
    if cmd != "boot" {
        anyhow::bail!("unknown command `{cmd}`; usage: hermes-qemu boot [--disks] [--image DIR] [--run DIR] [--memory MB]");
    }
    let mut cfg = BootConfig::mail_ports(root.join("target/image"), root.join("target/qemu/run"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--disks" => cfg.data_disks = true,
            "--image" => cfg.image_dir = PathBuf::from(args.next().unwrap_or_default()),
            "--run" => cfg.run_dir = PathBuf::from(args.next().unwrap_or_default()),
            "--memory" => cfg.memory_mb = args.next().and_then(|m| m.parse().ok()).unwrap_or(cfg.memory_mb),
            other => anyhow::bail!("unknown option `{other}`"),
        }
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
