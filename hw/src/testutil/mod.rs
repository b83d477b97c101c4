//! Test fixtures: SMART pages of known values and fake sysfs/procfs trees.
//!
//! What it is: builders used by this crate's tests and, through the `testutil` feature, by tests of
//! the services, the CLI and the QEMU harness, so every layer tests against the same fixtures.
//!
//! What it is not: compiled into production builds (it is behind `cfg(test)` or the feature), and
//! not a simulator: it writes files and bytes, it does not model kernel behaviour over time.
//!
//! Invariants: every page builder produces a page its decoder accepts (checksums computed), unless
//! the test then corrupts it on purpose; tree builders only write below the root they are given.

pub mod pages;
pub mod tree;

/// A small deterministic PRNG (xorshift64*) for garbage-input tests, so failures reproduce.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64().to_le_bytes()[0];
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}
