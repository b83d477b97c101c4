//! BODY[section] and BINARY[section] content (RFC 9051 §6.4.5, RFC 3516).
//!
//! What it is: part-path resolution over the byte-exact tree and extraction of the requested
//! bytes: HEADER, HEADER.FIELDS[.NOT], TEXT, MIME and bare part numbers, including the rules for
//! non-multipart messages (part 1 is the body; `1.MIME` is the message header) and for embedded
//! messages (`N.HEADER`/`N.TEXT` address the message in part N, `N.M` its parts). BINARY decodes
//! the part's transfer encoding.
//!
//! What it is not: no `<partial>` slicing and no literal framing (the session does both), no
//! \Seen handling.
//!
//! Invariants: returned BODY bytes are always a sub-slice of the raw message, except for
//! HEADER.FIELDS, which is the original field lines (folds and case kept) in message order
//! followed by an empty line. A part that does not exist yields an empty string, which is what
//! Dovecot answers; `None` is only returned for a request the grammar forbids (MIME without a part).

use super::decode::Encoding;
use super::header;
use super::tree::{self, Kind, Part};
pub use crate::imap::command::{Section, SectionText};

/// Resolves a non-empty part path from the root, as Dovecot does (`imap-msgpart.c`): a number
/// selects a child of a multipart; a non-multipart entity has only a part 1 (itself), after which
/// the path must end unless the entity is an embedded message, whose parts the next number
/// addresses.
fn resolve<'t>(root: &'t Part, path: &[u32]) -> Option<&'t Part> {
    let mut part = root;
    for (i, &n) in path.iter().enumerate() {
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        let more = i + 1 < path.len();
        part = match &part.kind {
            Kind::Multipart(children) => children.get(idx)?,
            Kind::EmptyMultipart => return None,
            Kind::Message(_) if idx == 0 => part,
            Kind::Leaf | Kind::Opaque if idx == 0 && !more => part,
            _ => return None,
        };
        if more && let Kind::Message(inner) = &part.kind {
            part = inner;
        }
    }
    Some(part)
}

/// The content of `BODY[section]` for a raw message (see the module doc for missing parts).
pub fn section(raw: &[u8], section: &Section) -> Option<Vec<u8>> {
    let root = tree::parse(raw);
    let slice = |r: std::ops::Range<usize>| raw.get(r).unwrap_or_default().to_vec();
    if section.part.is_empty() {
        return match &section.text {
            None => Some(raw.to_vec()),
            Some(SectionText::Mime) => None,
            Some(SectionText::Header) => Some(slice(root.header.clone())),
            Some(SectionText::Text) => Some(slice(root.body.clone())),
            Some(SectionText::HeaderFields { not, fields }) => Some(header_fields(
                raw.get(root.header.clone()).unwrap_or_default(),
                fields,
                *not,
            )),
        };
    }
    let Some(part) = resolve(&root, &section.part) else {
        return Some(Vec::new());
    };
    // HEADER, TEXT and HEADER.FIELDS address the message inside a message/rfc822 part; on any
    // other part they are empty.
    let message = match &part.kind {
        Kind::Message(inner) => Some(&**inner),
        _ => None,
    };
    Some(match &section.text {
        None => slice(part.body.clone()),
        Some(SectionText::Mime) => slice(part.header.clone()),
        Some(SectionText::Header) => message.map(|m| slice(m.header.clone())).unwrap_or_default(),
        Some(SectionText::Text) => message.map(|m| slice(m.body.clone())).unwrap_or_default(),
        Some(SectionText::HeaderFields { not, fields }) => match message {
            Some(m) => header_fields(raw.get(m.header.clone()).unwrap_or_default(), fields, *not),
            None => Vec::new(),
        },
    })
}

/// The lines of the fields named (or, with `not`, not named) in `names`, in message order and
/// as written, then the empty line that ends a header.
pub fn header_fields(hdr: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in header::fields(hdr) {
        let listed = f.has_colon && names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(f.name));
        if listed != not {
            let line = hdr.get(f.line.clone()).unwrap_or_default();
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    // The empty line that ends a header section (RFC 9051 §6.4.5), always.
    out.extend_from_slice(b"\r\n");
    out
}

/// Why BINARY cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part's Content-Transfer-Encoding is not one we know: answer `NO [UNKNOWN-CTE]`.
    #[error("unknown content-transfer-encoding")]
    UnknownCte,
}

/// The decoded content of `BINARY[part]`. The whole message (empty path), multiparts and
/// embedded messages are returned as they are (RFC 3516 decodes leaf encodings only); a part that
/// does not exist yields an empty string, as for BODY.
pub fn binary_section(raw: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let root = tree::parse(raw);
    let Some(p) = resolve(&root, part) else {
        return Ok(Vec::new());
    };
    let body = raw.get(p.body.clone()).unwrap_or_default();
    match &p.kind {
        Kind::Multipart(_) | Kind::EmptyMultipart | Kind::Message(_) => Ok(body.to_vec()),
        Kind::Leaf | Kind::Opaque => {
            let enc = p.encoding(raw);
            let enc = Encoding::parse(enc.as_deref()).ok_or(BinaryError::UnknownCte)?;
            Ok(enc.decode(body))
        }
    }
}

/// `BINARY.SIZE[part]`: the length of what [`binary_section`] returns.
pub fn binary_size(raw: &[u8], part: &[u32]) -> Result<u64, BinaryError> {
    binary_section(raw, part).map(|v| v.len() as u64)
}
