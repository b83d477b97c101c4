//! Disk and RAID health for Hermes appliances (issue 5): the pure models and the thin I/O under them.
//!
//! What it is: SMART decoders for ATA (through SAT ATA PASS-THROUGH) and NVMe, the command builders
//! for them, the ioctls that carry those commands ([`ioctl`]) and the per-disk probe that picks
//! them ([`probe`]), a verdict per disk with reasons
//! ([`verdict`]) and a daily history to see counters grow ([`history`]), block-device discovery and
//! bay mapping from sysfs ([`discover`]), and md RAID state from `/proc/mdstat` and sysfs with
//! mdadm-style events and scrub control ([`md`]).
//!
//! What it is not: the health daemon, the CLI or the control-socket protocol. Those wire these
//! functions into services; this crate owns no threads, no runtime and no clock (callers pass `now`).
//!
//! Invariants:
//! - Every decoder is a pure function over a byte slice or text; it is bounded (fixed page sizes,
//!   capped line/file lengths and counts) and returns `Result`, never panics on any input.
//! - Every filesystem reader takes a root path (`ROOT/sys/...`, `ROOT/proc/...`), so tests point it at
//!   a fake tree built by `testutil` (feature `testutil`).
//! - `unsafe` lives only in [`ioctl`], one `// SAFETY:` comment per block.

pub mod api;
pub mod discover;
pub mod history;
pub mod ioctl;
pub mod md;
pub mod probe;
pub mod provision;
pub mod smart;
pub mod verdict;

mod bytes;
mod sysfs;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
