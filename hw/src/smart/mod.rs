//! SMART: decoders for the pages disks return and builders for the commands that fetch them.
//!
//! What it is: [`ata`] (IDENTIFY DEVICE, SMART READ DATA / THRESHOLDS / RETURN STATUS, the self-test
//! log, ATA PASS-THROUGH(16) CDBs and the SAT sense data that carries ATA registers back) and
//! [`nvme`] (Identify Controller, the SMART / Health log page, admin command layouts).
//!
//! What it is not: I/O. Nothing here opens a device; [`crate::ioctl`] does, and hands the bytes here.
//!
//! Invariants: every decoder checks the page length before reading, reads only fixed offsets inside
//! it, and returns [`DecodeError`] for truncated, oversized or malformed input; none can panic.

pub mod ata;
pub mod nvme;

use serde::{Deserialize, Serialize};

/// Why a page could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DecodeError {
    /// The page is not the size the command returns.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length { what: String, expected: usize, got: usize },
    /// The page's checksum byte does not make its bytes sum to 0 modulo 256.
    #[error("{what}: checksum mismatch (bytes sum to {sum:#04x}, expected 0)")]
    Checksum { what: String, sum: u8 },
    /// The page is the right size but its content is impossible.
    #[error("{what}: {detail}")]
    Malformed { what: String, detail: String },
}

pub(crate) fn expect_len(what: &str, page: &[u8], expected: usize) -> Result<(), DecodeError> {
    if page.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::Length { what: what.to_string(), expected, got: page.len() })
    }
}
