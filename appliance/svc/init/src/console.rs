//! Console commands: what an admin with physical (or serial) access can do before the admin UI
//! exists. One command a line on `/dev/console`:
//!
//! ```text
//! status                          services, their state, pids, restarts, endpoints (a service
//!                                 not run on RAM /data: `not started: disks not provisioned`)
//! log                             the ring buffer (the last lines init logged)
//! poweroff | reboot               orderly shutdown
//! hermes domain ...               the CLI's domain, account and deliver commands, run as root
//! hermes account ... --password-stdin     the next console line is the password (not echoed)
//! hermes firmware status [--json]         the firmware slots (run by init itself)
//! hermes firmware install PATH [--force] [--no-reboot]
//!                                 a bundle from a file or block device (/dev/vdb)
//! hermes firmware mark-good       mark the running slot good by hand
//! hermes hw status|selftest|scrub|provision|fail ...   disk and RAID health (run as root)
//! ```
//!
//! What it is not: a shell. Nothing else runs; arguments are split on white space (no quoting,
//! no globbing), and only the listed `hermes` subcommands are accepted.
//!
//! Invariants: every command ends with one line `hermes: console: ok` or
//! `hermes: console: failed (...)` so a harness can match it; a password line is never echoed
//! or logged; after a CLI command the data folder's ownership is re-applied (files the CLI made
//! as root become readable by the services that read them).

/// The `hermes` subcommands the console runs.
pub const ALLOWED: [&str; 5] = ["domain", "account", "deliver", "queue", "hw"];

/// A parsed console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Empty,
    Status,
    Log,
    Poweroff,
    Reboot,
    /// `hermes ARGS`, and whether the next line is its standard input (a password).
    Hermes {
        args: Vec<String>,
        stdin_line: bool,
    },
    /// `hermes firmware ARGS`: init runs these itself (it owns the ESP and the reboot).
    Firmware(Firmware),
    Unknown(String),
}

/// A console firmware command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    Status { json: bool },
    Install { path: String, force: bool, reboot: bool },
    MarkGood,
}

pub fn parse(line: &str) -> Line {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Line::Empty,
        ["status"] => Line::Status,
        ["log"] => Line::Log,
        ["poweroff"] | ["halt"] => Line::Poweroff,
        ["reboot"] => Line::Reboot,
        ["hermes", "firmware", rest @ ..] => match rest {
            ["status"] => Line::Firmware(Firmware::Status { json: false }),
            ["status", "--json"] => Line::Firmware(Firmware::Status { json: true }),
            ["mark-good"] => Line::Firmware(Firmware::MarkGood),
            ["install", path, flags @ ..]
                if flags.iter().all(|f| matches!(*f, "--force" | "--no-reboot")) && !path.starts_with('-') =>
            {
                Line::Firmware(Firmware::Install {
                    path: path.to_string(),
                    force: flags.contains(&"--force"),
                    reboot: !flags.contains(&"--no-reboot"),
                })
            }
            _ => Line::Unknown("hermes firmware".into()),
        },
        ["hermes", sub, ..] if ALLOWED.contains(sub) => Line::Hermes {
            args: words[1..].iter().map(|w| w.to_string()).collect(),
            stdin_line: words.contains(&"--password-stdin"),
        },
        _ => Line::Unknown(words.first().map(|w| w.to_string()).unwrap_or_default()),
    }
}

/// Turns off echo on the console (passwords are typed there); returns whether it worked.
pub fn disable_echo() -> bool {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let Ok(mut t) = tcgetattr(&stdin) else { return false };
    t.local_flags.remove(LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK | LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &t).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse("  "), Line::Empty);
        assert_eq!(parse("status"), Line::Status);
        assert_eq!(parse("poweroff"), Line::Poweroff);
        assert_eq!(
            parse("hermes account add a@b.org --password-stdin"),
            Line::Hermes {
                args: vec!["account".into(), "add".into(), "a@b.org".into(), "--password-stdin".into()],
                stdin_line: true
            }
        );
        assert_eq!(parse("hermes up"), Line::Unknown("hermes".into()));
        assert_eq!(parse("hermes firmware status"), Line::Firmware(Firmware::Status { json: false }));
        assert_eq!(
            parse("hermes firmware install /dev/vdb --no-reboot"),
            Line::Firmware(Firmware::Install { path: "/dev/vdb".into(), force: false, reboot: false })
        );
        assert_eq!(parse("hermes firmware install --force"), Line::Unknown("hermes firmware".into()));
        assert_eq!(parse("hermes firmware install /x --yes"), Line::Unknown("hermes firmware".into()));
        assert_eq!(parse("sh -c x"), Line::Unknown("sh".into()));
    }
}
