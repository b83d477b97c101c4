//! BODY and BODYSTRUCTURE (RFC 9051 §7.5.2) from the byte-exact part tree.
//!
//! What it is: the `body` production for a raw message. Types, subtypes, parameter names and
//! values and the transfer encoding are written as they appear in the message, and the defaults
//! are Dovecot's lower-case ones (`"text" "plain" ("charset" "us-ascii") ... "7bit"`); a text part
//! without a charset parameter gets `"charset" "us-ascii"` appended, as Dovecot does. Sizes are
//! body octets of the raw bytes, lines count LF characters in the body. The extensible form adds
//! MD5 (the Content-MD5 field, NIL when absent), disposition, language (always a list) and
//! location.
//!
//! What it is not: no decoding of parameter values (RFC 2231 continuations are merged, the
//! `charset'lang'` prefix is kept), no CRLF normalisation (the store keeps messages with CRLF).
//!
//! Invariants: output is valid for any input: a multipart with no parts found gets Dovecot's
//! single empty text/plain child, a `message/rfc822` that was not parsed (encoded or beyond the
//! nesting limit) gets an all-NIL envelope and that same empty body. Nesting of the output follows
//! the tree, which is bounded by `tree::MAX_DEPTH`.

use super::envelope::write_envelope;
use super::header::{self, MediaValue};
use super::imapstr::{nstring, string};
use super::tree::{self, Kind, Part};

const EMPTY_BODY: &[u8] = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
const EMPTY_BODYSTRUCTURE: &[u8] =
    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)";
const EMPTY_ENVELOPE: &[u8] = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";

/// BODY (`extensible == false`) or BODYSTRUCTURE (`true`) of a raw message.
pub fn bodystructure(raw: &[u8], extensible: bool) -> Vec<u8> {
    let root = tree::parse(raw);
    let mut out = Vec::with_capacity(256);
    write_part(&mut out, raw, &root, extensible);
    out
}

/// Appends the `body` of `part` (parsed from `raw`).
pub fn write_part(out: &mut Vec<u8>, raw: &[u8], part: &Part, ext: bool) {
    let hdr = raw.get(part.header.clone()).unwrap_or_default();
    let body = raw.get(part.body.clone()).unwrap_or_default();
    let (ty, _) = part.media_type();
    let is_multipart_shape =
        matches!(part.kind, Kind::Multipart(_) | Kind::EmptyMultipart) || (matches!(part.kind, Kind::Opaque) && ty == "multipart");
    out.push(b'(');
    if is_multipart_shape {
        match &part.kind {
            Kind::Multipart(children) => {
                for c in children {
                    write_part(out, raw, c, ext);
                }
            }
            _ => out.extend_from_slice(if ext { EMPTY_BODYSTRUCTURE } else { EMPTY_BODY }),
        }
        out.push(b' ');
        let subtype = part.content_type.as_ref().and_then(|c| c.subtype.as_deref()).unwrap_or(b"mixed");
        string(out, subtype);
        if ext {
            out.push(b' ');
            write_params(out, part.content_type.as_ref().map(|c| c.params.as_slice()).unwrap_or_default());
            write_extension_tail(out, hdr);
        }
        out.push(b')');
        return;
    }

    // Type, subtype, parameters.
    match &part.content_type {
        Some(ct) => {
            string(out, &ct.kind);
            out.push(b' ');
            string(out, ct.subtype.as_deref().unwrap_or_default());
            out.push(b' ');
            write_leaf_params(out, ct, ty == "text");
        }
        None if part.digest_default => out.extend_from_slice(b"\"message\" \"rfc822\" NIL"),
        None => out.extend_from_slice(b"\"text\" \"plain\" (\"charset\" \"us-ascii\")"),
    }
    out.push(b' ');
    nstring(out, header::first_unfolded(hdr, "content-id").as_deref());
    out.push(b' ');
    nstring(out, header::first_unfolded(hdr, "content-description").as_deref());
    out.push(b' ');
    match header::first_unfolded(hdr, "content-transfer-encoding").filter(|e| !e.is_empty()) {
        Some(e) => string(out, &e),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    let lines = memchr::memchr_iter(b'\n', body).count();
    match &part.kind {
        Kind::Message(inner) => {
            out.push(b' ');
            let inner_hdr = raw.get(inner.header.clone()).unwrap_or_default();
            write_envelope(out, inner_hdr);
            out.push(b' ');
            write_part(out, raw, inner, ext);
            out.push(b' ');
            out.extend_from_slice(lines.to_string().as_bytes());
        }
        Kind::Opaque if ty == "message" => {
            out.push(b' ');
            out.extend_from_slice(EMPTY_ENVELOPE);
            out.push(b' ');
            out.extend_from_slice(if ext { EMPTY_BODYSTRUCTURE } else { EMPTY_BODY });
            out.push(b' ');
            out.extend_from_slice(lines.to_string().as_bytes());
        }
        _ if ty == "text" => {
            out.push(b' ');
            out.extend_from_slice(lines.to_string().as_bytes());
        }
        _ => {}
    }
    if ext {
        out.push(b' ');
        nstring(out, header::first_unfolded(hdr, "content-md5").as_deref());
        write_extension_tail(out, hdr);
    }
    out.push(b')');
}

/// Leaf parameters; text parts without a charset get `"charset" "us-ascii"` appended.
fn write_leaf_params(out: &mut Vec<u8>, ct: &MediaValue, is_text: bool) {
    if is_text && ct.param("charset").is_none() {
        let mut params = ct.params.clone();
        params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
        write_params(out, &params);
    } else {
        write_params(out, &ct.params);
    }
}

/// `("name" "value" ...)` or NIL.
fn write_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k);
        out.push(b' ');
        string(out, v);
    }
    out.push(b')');
}

/// ` dsp lang loc` (each preceded by a space).
fn write_extension_tail(out: &mut Vec<u8>, hdr: &[u8]) {
    out.push(b' ');
    match header::first_value(hdr, "content-disposition").and_then(|v| header::parse_media(v, false)) {
        Some(d) => {
            out.push(b'(');
            string(out, &d.kind);
            out.push(b' ');
            write_params(out, &d.params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let langs = header::first_unfolded(hdr, "content-language").map(|v| languages(&v)).unwrap_or_default();
    if langs.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, l) in langs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, l);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(out, header::first_unfolded(hdr, "content-location").as_deref());
}

/// Language tags of a Content-Language value (RFC 3282): comma-separated, comments removed.
fn languages(v: &[u8]) -> Vec<Vec<u8>> {
    let mut no_comments = Vec::with_capacity(v.len());
    let mut depth = 0usize;
    for &c in v {
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => no_comments.push(c),
            _ => {}
        }
    }
    no_comments
        .split(|&c| c == b',')
        .map(|l| l.trim_ascii().to_vec())
        .filter(|l| !l.is_empty())
        .take(header::MAX_PARAMS)
        .collect()
}
