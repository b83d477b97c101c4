//! Message analysis for IMAP FETCH and SEARCH: pure functions over raw RFC 5322/MIME bytes.
//!
//! What it is:
//! - [`envelope`]: the ENVELOPE structure (raw, unfolded header text; encoded-words stay encoded);
//! - [`bodystructure`]: BODY / BODYSTRUCTURE, Dovecot-compatible in case, defaults and recovery;
//! - [`section`]: `BODY[section]` bytes (HEADER, HEADER.FIELDS[.NOT], TEXT, MIME, part paths,
//!   embedded messages), always the message's original bytes;
//! - [`binary_section`] / [`binary_size`]: BINARY content with the transfer encoding decoded;
//! - [`SearchableMessage`]: a message analysed once for SEARCH (decoded headers, addresses, body
//!   text in UTF-8 from any charset mail-parser knows) with Unicode case-insensitive matching.
//!
//! What it is not: no I/O, no clock, no store access, no literal framing or `<partial>` slicing
//! (the IMAP session does those), and no CRLF normalisation: sizes and offsets are those of the
//! bytes given, which the store keeps exactly as received (CRLF).
//!
//! Structure comes from [`tree`], a byte-exact single-pass MIME splitter; mail-parser 0.11 is used
//! for charsets and dates, not for structure, because its tree re-bases offsets of encoded
//! embedded messages, caps encoded nesting at 3 and reshapes malformed parts, which would change
//! IMAP part numbers and octet counts (see `tree`'s module doc).
//!
//! Invariants: no function here panics on any byte string (a fuzz-style test feeds thousands of
//! mutated messages to every entry point); nesting is bounded by [`tree::MAX_DEPTH`], the number
//! of parts by [`tree::MAX_PARTS`], decoded search text by [`search::MAX_BODY_TEXT`]; the work is
//! linear in the message size.

pub mod address;
pub mod bodystructure;
pub mod decode;
pub mod envelope;
pub mod header;
pub mod imapstr;
pub mod search;
pub mod section;
pub mod tree;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests;

pub use bodystructure::bodystructure;
pub use envelope::envelope;
pub use search::SearchableMessage;
pub use section::{BinaryError, Section, SectionText, binary_section, binary_size, section};
