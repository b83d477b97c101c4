//! The one module of PID 1 with `unsafe`: dropping a service's privileges between fork and
//! exec. Neither std nor nix offer `capset(2)` or ambient capabilities, and the drop has to run
//! in the forked child (`CommandExt::pre_exec`), which is itself unsafe.
//!
//! What it is not: a sandbox. Namespaces, seccomp and cgroup limits are later work; this is
//! the manifest's "own user, only the capabilities it needs".
//!
//! Invariants: the child runs with exactly the manifest's uid, gid and supplementary groups;
//! its bounding set holds only the granted capabilities, which are also its permitted,
//! effective, inheritable and ambient sets (so they survive exec of the non-setuid `hermes`);
//! `no_new_privs` is set. Any failure makes the exec fail (the child never runs as root by
//! mistake): the supervisor sees a spawn error.
#![allow(unsafe_code, reason = "capset(2), prctl ambient capabilities and pre_exec have no safe API")]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const CAP_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number to drop from the bounding set (CAP_CHECKPOINT_RESTORE is 40;
/// numbers the running kernel does not know fail with EINVAL and are skipped).
const CAP_LAST: u32 = 63;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Who a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Capability numbers to keep.
    pub capabilities: Vec<u32>,
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Arranges for `cmd`'s child to switch to `creds` just before exec.
pub fn drop_privileges(cmd: &mut Command, creds: Credentials) {
    let mut mask: u64 = 0;
    for c in &creds.capabilities {
        if *c < 64 {
            mask |= 1 << c;
        }
    }
    let groups: Vec<libc::gid_t> = creds.groups.clone();
    // SAFETY: the closure runs in the forked child before exec. It calls only async-signal-safe
    // system calls (prctl, setgroups, setresgid, setresuid, capset) on memory captured before
    // the fork (`groups`, `mask`), allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            // Keep permitted capabilities across setuid; dropped from the bounding set first,
            // while we still hold CAP_SETPCAP.
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            for cap in 0..=CAP_LAST {
                if mask & (1 << cap) == 0 && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) == -1 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setresgid(creds.gid, creds.gid, creds.gid))?;
            check(libc::setresuid(creds.uid, creds.uid, creds.uid))?;
            let header = CapHeader { version: CAP_VERSION_3, pid: 0 };
            let low = mask as u32;
            let high = (mask >> 32) as u32;
            let data = [
                CapData { effective: low, permitted: low, inheritable: low },
                CapData { effective: high, permitted: high, inheritable: high },
            ];
            if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            for cap in 0..=CAP_LAST {
                if mask & (1 << cap) != 0 {
                    check(libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    ))?;
                }
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            Ok(())
        });
    }
}

/// Slews the system clock by `nanos` (positive: forward) with adjtime(3): the kernel speeds
/// or slows the clock by 0.5 ms per second until the offset is absorbed, so time never jumps
/// or runs backwards. A slew still in progress is replaced. Used by `ntp` for small offsets.
pub fn slew_clock(nanos: i64) -> std::io::Result<()> {
    let delta = libc::timeval {
        tv_sec: nanos.div_euclid(1_000_000_000) as libc::time_t,
        tv_usec: (nanos.rem_euclid(1_000_000_000) / 1000) as libc::suseconds_t,
    };
    // SAFETY: `delta` is a valid, initialised timeval that outlives the call; a null old-delta
    // pointer is allowed (the previous adjustment is not reported back).
    let rc = unsafe { libc::adjtime(&delta, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    /// Runs `grep` in a child dropped to uid/gid 65534 with CAP_NET_BIND_SERVICE and checks
    /// what the kernel reports for it. Needs root (as CI and the appliance have); skipped
    /// otherwise.
    #[test]
    fn child_runs_as_the_user_with_only_the_granted_capability() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "id -u; id -g; id -G; grep -E '^Cap(Eff|Amb|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status",
        ]);
        drop_privileges(
            &mut cmd,
            Credentials { uid: 65534, gid: 65534, groups: vec![65534, 900], capabilities: vec![10] },
        );
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "65534");
        assert_eq!(lines[1], "65534");
        assert!(lines[2].split_whitespace().any(|g| g == "900"), "{text}");
        // Bit 10 only: 0x400. The shell (exec'd by the kernel) keeps the ambient capability.
        for l in &lines[3..6] {
            assert!(l.ends_with("0000000000000400"), "{text}");
        }
        assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    }
}
