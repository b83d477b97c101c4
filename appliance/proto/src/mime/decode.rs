//! Content decoding: transfer encodings, charsets, RFC 2047 encoded-words, HTML to text.
//!
//! What it is: lenient decoders as RFC 2045 recommends for receivers: base64 ignores characters
//! outside its alphabet, quoted-printable keeps a malformed `=` sequence as it is; charset
//! conversion uses mail-parser's tables (with `full_encoding`: ISO-2022-JP, KOI8-R, GB18030, ...)
//! and falls back to lossy UTF-8 for unknown or missing labels. RFC 2047 decoding joins adjacent
//! encoded-words as §6.2 says. `html_to_text` strips tags, scripts and styles and resolves the
//! common entities, for SEARCH only.
//!
//! What it is not: no encoders, no MIME structure (see `tree`), no validation: corrupt input
//! decodes to something rather than failing, except where the caller asks (`Encoding::parse`).
//!
//! Invariants: every decoder is a single pass over its input with output no larger than a small
//! constant times the input, and none can panic on any byte string.

use mail_parser::decoders::charsets::map::charset_decoder;

/// A Content-Transfer-Encoding this module can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary or absent: bytes are the content.
    Identity,
    /// base64 (RFC 2045 §6.8).
    Base64,
    /// quoted-printable (RFC 2045 §6.7).
    QuotedPrintable,
}

impl Encoding {
    /// Maps a lower-cased Content-Transfer-Encoding token; `None` for an unknown one.
    pub fn parse(token: Option<&str>) -> Option<Encoding> {
        match token {
            None | Some("7bit" | "8bit" | "binary") => Some(Encoding::Identity),
            Some("base64") => Some(Encoding::Base64),
            Some("quoted-printable") => Some(Encoding::QuotedPrintable),
            Some(_) => None,
        }
    }

    /// Decodes `input`.
    pub fn decode(self, input: &[u8]) -> Vec<u8> {
        match self {
            Encoding::Identity => input.to_vec(),
            Encoding::Base64 => base64(input),
            Encoding::QuotedPrintable => quoted_printable(input, false),
        }
    }
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Lenient base64: characters outside the alphabet (line ends, blanks, junk) are skipped; `=`
/// ends a quantum; a trailing lone sextet is dropped.
pub fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u8;
    for &c in input {
        if c == b'=' {
            // Padding: flush a partial quantum and start afresh (concatenated base64 blocks).
            flush_b64(&mut out, acc, n);
            acc = 0;
            n = 0;
            continue;
        }
        let Some(v) = b64_value(c) else { continue };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush_b64(&mut out, acc, n);
    out
}

fn flush_b64(out: &mut Vec<u8>, acc: u32, n: u8) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lenient quoted-printable. `q_word` selects the RFC 2047 "Q" variant (`_` is a space, no soft
/// line breaks). Trailing blanks before a line end are transport padding and dropped; a malformed
/// `=` is kept literally.
pub fn quoted_printable(input: &[u8], q_word: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        match c {
            b'=' => {
                let h1 = input.get(i + 1).copied();
                let h2 = input.get(i + 2).copied();
                if let (Some(a), Some(b)) = (h1.and_then(hex), h2.and_then(hex)) {
                    out.push(a << 4 | b);
                    i += 3;
                    continue;
                }
                if !q_word {
                    // Soft line break: `=` then optional blanks then a line end (or input end).
                    let mut j = i + 1;
                    while matches!(input.get(j), Some(b' ' | b'\t')) {
                        j += 1;
                    }
                    match input.get(j) {
                        Some(b'\n') => {
                            i = j + 1;
                            continue;
                        }
                        Some(b'\r') if input.get(j + 1) == Some(&b'\n') => {
                            i = j + 2;
                            continue;
                        }
                        None => {
                            i = j;
                            continue;
                        }
                        _ => {}
                    }
                }
                out.push(b'=');
                i += 1;
            }
            b'_' if q_word => {
                out.push(b' ');
                i += 1;
            }
            b' ' | b'\t' if !q_word => {
                // Drop blanks that end a line.
                let mut j = i;
                while matches!(input.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                let at_eol = match input.get(j) {
                    None | Some(b'\n') => true,
                    Some(b'\r') => input.get(j + 1) == Some(&b'\n'),
                    _ => false,
                };
                if !at_eol {
                    out.extend_from_slice(input.get(i..j).unwrap_or_default());
                }
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Converts `bytes` in `charset` to UTF-8. Unknown labels and absent charsets decode as UTF-8,
/// replacing invalid sequences (the common reality of unlabelled 8-bit mail).
pub fn charset_to_utf8(charset: Option<&[u8]>, bytes: &[u8]) -> String {
    let label = charset.map(|c| {
        // RFC 2231 language suffix: `utf-8*en`.
        let c = c.split(|&b| b == b'*').next().unwrap_or(c);
        c.trim_ascii()
    });
    match label.filter(|l| !l.is_empty() && l.len() <= 64).and_then(charset_decoder) {
        // US-ASCII and UTF-8 labels on UTF-8 text are common; read valid UTF-8 as is.
        Some(dec) => match std::str::from_utf8(bytes) {
            Ok(s) if is_utf8_compatible(label) => s.to_owned(),
            _ => dec(bytes),
        },
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn is_utf8_compatible(label: Option<&[u8]>) -> bool {
    label.is_some_and(|l| {
        ["us-ascii", "ascii", "utf-8", "utf8"].iter().any(|n| l.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// Decodes RFC 2047 encoded-words in an unfolded header value; other text is read as UTF-8
/// (lossy). Blank space between two adjacent encoded-words is dropped (RFC 2047 §6.2).
pub fn rfc2047(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut last_was_word = false;
    let mut plain_start = 0;
    while i < value.len() {
        if value.get(i..i + 2) == Some(b"=?")
            && let Some((decoded, end)) = encoded_word(value, i)
        {
            // Flush plain text before the word (minus blank space between two words).
            let plain = value.get(plain_start..i).unwrap_or_default();
            let only_ws = plain.iter().all(|c| matches!(c, b' ' | b'\t'));
            if !(last_was_word && only_ws) {
                out.push_str(&String::from_utf8_lossy(plain));
            }
            out.push_str(&decoded);
            i = end;
            plain_start = end;
            last_was_word = true;
            continue;
        }
        if !matches!(value.get(i), Some(b' ' | b'\t')) {
            last_was_word = false;
        }
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(value.get(plain_start..).unwrap_or_default()));
    out
}

/// Parses `=?charset?enc?text?=` at `start`; returns the decoded text and the index past `?=`.
fn encoded_word(v: &[u8], start: usize) -> Option<(String, usize)> {
    const MAX_WORD: usize = 2048;
    let rest = v.get(start + 2..)?;
    let rest = rest.get(..rest.len().min(MAX_WORD))?;
    let q1 = memchr::memchr(b'?', rest)?;
    let charset = rest.get(..q1)?;
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') || charset.is_empty() {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = memchr::memmem::find(rest.get(text_start..)?, b"?=")?;
    let text = rest.get(text_start..text_start + text_len)?;
    if text.iter().any(|c| matches!(c, b' ' | b'\t')) {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => base64(text),
        b'Q' | b'q' => quoted_printable(text, true),
        _ => return None,
    };
    Some((charset_to_utf8(Some(charset), &bytes), start + 2 + text_start + text_len + 2))
}

/// Text content of an HTML document, for SEARCH: tags, comments, `<script>` and `<style>` are
/// dropped, block-ish tags become a space, the common entities and numeric references resolve.
pub fn html_to_text(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len() / 2);
    let mut i = 0;
    let mut text_start = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'<') => {
                push_text(&mut out, html.get(text_start..i).unwrap_or_default());
                let rest = b.get(i..).unwrap_or_default();
                let skip_to = if rest.starts_with(b"<!--") {
                    memchr::memmem::find(rest, b"-->").map(|e| i + e + 3)
                } else if starts_with_ci(rest, b"<script") || starts_with_ci(rest, b"<style") {
                    let close: &[u8] = if starts_with_ci(rest, b"<script") { b"</script" } else { b"</style" };
                    find_ci(rest, close)
                        .and_then(|e| memchr::memchr(b'>', rest.get(e..)?).map(|g| i + e + g + 1))
                } else {
                    memchr::memchr(b'>', rest).map(|e| i + e + 1)
                };
                i = skip_to.unwrap_or(b.len());
                text_start = i;
                out.push(' ');
            }
            _ => i += 1,
        }
    }
    push_text(&mut out, html.get(text_start..).unwrap_or_default());
    out
}

fn starts_with_ci(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// Appends HTML character data with entities resolved.
fn push_text(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let semi = after.find(';').filter(|&s| s <= 10);
        let decoded = semi.and_then(|s| entity(after.get(..s).unwrap_or_default()));
        match (semi, decoded) {
            (Some(s), Some(ch)) => {
                out.push(ch);
                rest = after.get(s + 1..).unwrap_or_default();
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// HTML 4 named entities (the Latin-1, symbol and special sets) and numeric references.
fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "iexcl" => '\u{a1}',
        "cent" => '\u{a2}',
        "pound" => '\u{a3}',
        "curren" => '\u{a4}',
        "yen" => '\u{a5}',
        "brvbar" => '\u{a6}',
        "sect" => '\u{a7}',
        "uml" => '\u{a8}',
        "copy" => '\u{a9}',
        "ordf" => '\u{aa}',
        "laquo" => '\u{ab}',
        "not" => '\u{ac}',
        "shy" => '\u{ad}',
        "reg" => '\u{ae}',
        "macr" => '\u{af}',
        "deg" => '\u{b0}',
        "plusmn" => '\u{b1}',
        "sup2" => '\u{b2}',
        "sup3" => '\u{b3}',
        "acute" => '\u{b4}',
        "micro" => '\u{b5}',
        "para" => '\u{b6}',
        "middot" => '\u{b7}',
        "cedil" => '\u{b8}',
        "sup1" => '\u{b9}',
        "ordm" => '\u{ba}',
        "raquo" => '\u{bb}',
        "frac14" => '\u{bc}',
        "frac12" => '\u{bd}',
        "frac34" => '\u{be}',
        "iquest" => '\u{bf}',
        "Agrave" => '\u{c0}',
        "Aacute" => '\u{c1}',
        "Acirc" => '\u{c2}',
        "Atilde" => '\u{c3}',
        "Auml" => '\u{c4}',
        "Aring" => '\u{c5}',
        "AElig" => '\u{c6}',
        "Ccedil" => '\u{c7}',
        "Egrave" => '\u{c8}',
        "Eacute" => '\u{c9}',
        "Ecirc" => '\u{ca}',
        "Euml" => '\u{cb}',
        "Igrave" => '\u{cc}',
        "Iacute" => '\u{cd}',
        "Icirc" => '\u{ce}',
        "Iuml" => '\u{cf}',
        "ETH" => '\u{d0}',
        "Ntilde" => '\u{d1}',
        "Ograve" => '\u{d2}',
        "Oacute" => '\u{d3}',
        "Ocirc" => '\u{d4}',
        "Otilde" => '\u{d5}',
        "Ouml" => '\u{d6}',
        "times" => '\u{d7}',
        "Oslash" => '\u{d8}',
        "Ugrave" => '\u{d9}',
        "Uacute" => '\u{da}',
        "Ucirc" => '\u{db}',
        "Uuml" => '\u{dc}',
        "Yacute" => '\u{dd}',
        "THORN" => '\u{de}',
        "szlig" => '\u{df}',
        "agrave" => '\u{e0}',
        "aacute" => '\u{e1}',
        "acirc" => '\u{e2}',
        "atilde" => '\u{e3}',
        "auml" => '\u{e4}',
        "aring" => '\u{e5}',
        "aelig" => '\u{e6}',
        "ccedil" => '\u{e7}',
        "egrave" => '\u{e8}',
        "eacute" => '\u{e9}',
        "ecirc" => '\u{ea}',
        "euml" => '\u{eb}',
        "igrave" => '\u{ec}',
        "iacute" => '\u{ed}',
        "icirc" => '\u{ee}',
        "iuml" => '\u{ef}',
        "eth" => '\u{f0}',
        "ntilde" => '\u{f1}',
        "ograve" => '\u{f2}',
        "oacute" => '\u{f3}',
        "ocirc" => '\u{f4}',
        "otilde" => '\u{f5}',
        "ouml" => '\u{f6}',
        "divide" => '\u{f7}',
        "oslash" => '\u{f8}',
        "ugrave" => '\u{f9}',
        "uacute" => '\u{fa}',
        "ucirc" => '\u{fb}',
        "uuml" => '\u{fc}',
        "yacute" => '\u{fd}',
        "thorn" => '\u{fe}',
        "yuml" => '\u{ff}',
        "OElig" => '\u{152}',
        "oelig" => '\u{153}',
        "Scaron" => '\u{160}',
        "scaron" => '\u{161}',
        "Yuml" => '\u{178}',
        "fnof" => '\u{192}',
        "circ" => '\u{2c6}',
        "tilde" => '\u{2dc}',
        "Alpha" => '\u{391}',
        "Beta" => '\u{392}',
        "Gamma" => '\u{393}',
        "Delta" => '\u{394}',
        "Epsilon" => '\u{395}',
        "Zeta" => '\u{396}',
        "Eta" => '\u{397}',
        "Theta" => '\u{398}',
        "Iota" => '\u{399}',
        "Kappa" => '\u{39a}',
        "Lambda" => '\u{39b}',
        "Mu" => '\u{39c}',
        "Nu" => '\u{39d}',
        "Xi" => '\u{39e}',
        "Omicron" => '\u{39f}',
        "Pi" => '\u{3a0}',
        "Rho" => '\u{3a1}',
        "Sigma" => '\u{3a3}',
        "Tau" => '\u{3a4}',
        "Upsilon" => '\u{3a5}',
        "Phi" => '\u{3a6}',
        "Chi" => '\u{3a7}',
        "Psi" => '\u{3a8}',
        "Omega" => '\u{3a9}',
        "alpha" => '\u{3b1}',
        "beta" => '\u{3b2}',
        "gamma" => '\u{3b3}',
        "delta" => '\u{3b4}',
        "epsilon" => '\u{3b5}',
        "zeta" => '\u{3b6}',
        "eta" => '\u{3b7}',
        "theta" => '\u{3b8}',
        "iota" => '\u{3b9}',
        "kappa" => '\u{3ba}',
        "lambda" => '\u{3bb}',
        "mu" => '\u{3bc}',
        "nu" => '\u{3bd}',
        "xi" => '\u{3be}',
        "omicron" => '\u{3bf}',
        "pi" => '\u{3c0}',
        "rho" => '\u{3c1}',
        "sigmaf" => '\u{3c2}',
        "sigma" => '\u{3c3}',
        "tau" => '\u{3c4}',
        "upsilon" => '\u{3c5}',
        "phi" => '\u{3c6}',
        "chi" => '\u{3c7}',
        "psi" => '\u{3c8}',
        "omega" => '\u{3c9}',
        "thetasym" => '\u{3d1}',
        "upsih" => '\u{3d2}',
        "piv" => '\u{3d6}',
        "ensp" => '\u{2002}',
        "emsp" => '\u{2003}',
        "thinsp" => '\u{2009}',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        "lrm" => '\u{200e}',
        "rlm" => '\u{200f}',
        "ndash" => '\u{2013}',
        "mdash" => '\u{2014}',
        "lsquo" => '\u{2018}',
        "rsquo" => '\u{2019}',
        "sbquo" => '\u{201a}',
        "ldquo" => '\u{201c}',
        "rdquo" => '\u{201d}',
        "bdquo" => '\u{201e}',
        "dagger" => '\u{2020}',
        "Dagger" => '\u{2021}',
        "bull" => '\u{2022}',
        "hellip" => '\u{2026}',
        "permil" => '\u{2030}',
        "prime" => '\u{2032}',
        "Prime" => '\u{2033}',
        "lsaquo" => '\u{2039}',
        "rsaquo" => '\u{203a}',
        "oline" => '\u{203e}',
        "frasl" => '\u{2044}',
        "euro" => '\u{20ac}',
        "image" => '\u{2111}',
        "weierp" => '\u{2118}',
        "real" => '\u{211c}',
        "trade" => '\u{2122}',
        "alefsym" => '\u{2135}',
        "larr" => '\u{2190}',
        "uarr" => '\u{2191}',
        "rarr" => '\u{2192}',
        "darr" => '\u{2193}',
        "harr" => '\u{2194}',
        "crarr" => '\u{21b5}',
        "lArr" => '\u{21d0}',
        "uArr" => '\u{21d1}',
        "rArr" => '\u{21d2}',
        "dArr" => '\u{21d3}',
        "hArr" => '\u{21d4}',
        "forall" => '\u{2200}',
        "part" => '\u{2202}',
        "exist" => '\u{2203}',
        "empty" => '\u{2205}',
        "nabla" => '\u{2207}',
        "isin" => '\u{2208}',
        "notin" => '\u{2209}',
        "ni" => '\u{220b}',
        "prod" => '\u{220f}',
        "sum" => '\u{2211}',
        "minus" => '\u{2212}',
        "lowast" => '\u{2217}',
        "radic" => '\u{221a}',
        "prop" => '\u{221d}',
        "infin" => '\u{221e}',
        "ang" => '\u{2220}',
        "and" => '\u{2227}',
        "or" => '\u{2228}',
        "cap" => '\u{2229}',
        "cup" => '\u{222a}',
        "int" => '\u{222b}',
        "there4" => '\u{2234}',
        "sim" => '\u{223c}',
        "cong" => '\u{2245}',
        "asymp" => '\u{2248}',
        "ne" => '\u{2260}',
        "equiv" => '\u{2261}',
        "le" => '\u{2264}',
        "ge" => '\u{2265}',
        "sub" => '\u{2282}',
        "sup" => '\u{2283}',
        "nsub" => '\u{2284}',
        "sube" => '\u{2286}',
        "supe" => '\u{2287}',
        "oplus" => '\u{2295}',
        "otimes" => '\u{2297}',
        "perp" => '\u{22a5}',
        "sdot" => '\u{22c5}',
        "lceil" => '\u{2308}',
        "rceil" => '\u{2309}',
        "lfloor" => '\u{230a}',
        "rfloor" => '\u{230b}',
        "lang" => '\u{2329}',
        "rang" => '\u{232a}',
        "loz" => '\u{25ca}',
        "spades" => '\u{2660}',
        "clubs" => '\u{2663}',
        "hearts" => '\u{2665}',
        "diams" => '\u{2666}',
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap and panic (workspace rule)
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient() {
        assert_eq!(base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(base64(b"aGVsbG8"), b"hello");
        assert_eq!(base64(b"a!G*V%s"), b"hel");
        assert_eq!(base64(b""), b"");
        assert_eq!(base64(b"aGk=aGk="), b"hihi");
    }

    #[test]
    fn quoted_printable_soft_breaks_and_garbage() {
        assert_eq!(quoted_printable(b"caf=E9 =\r\nau lait  \r\nx=ZZ=\n", false), b"caf\xe9 au lait\r\nx=ZZ");
        assert_eq!(quoted_printable(b"a_b=3D", true), b"a b=");
        assert_eq!(quoted_printable(b"=", false), b"");
    }

    #[test]
    fn encoded_words() {
        assert_eq!(rfc2047(b"=?iso-8859-1?q?caf=E9?= au lait"), "café au lait");
        assert_eq!(rfc2047(b"=?UTF-8?B?SsO2cmc=?= =?utf-8?q?_x?="), "Jörg x");
        assert_eq!(rfc2047(b"a =?bogus?x?y?= b"), "a =?bogus?x?y?= b");
        assert_eq!(rfc2047(b"=?ISO-2022-JP?B?GyRCJEckIhsoQg==?="), "であ");
        assert_eq!(rfc2047(b"=?koi8-r?b?8NLJ18XU?="), "Привет");
        assert_eq!(rfc2047(b"=?"), "=?");
    }

    #[test]
    fn html_text() {
        let t = html_to_text("<html><head><style>p{x:1}</style></head><body><p>Caf&eacute; &amp; <b>bar</b>&#33;</p><script>var a='<p>';</script>tail");
        let t: Vec<&str> = t.split_whitespace().collect();
        assert_eq!(t.join(" "), "Café & bar ! tail");
    }
}
