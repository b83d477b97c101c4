//! Headers the router adds: `Received:` (RFC 5321 §4.4, in Postfix's layout with the TLS
//! parameters and the authenticated sender), and on submission `Message-ID:` and `Date:` when
//! the message lacks them (RFC 6409 §8).
//!
//! What it is not: `Return-Path:` — final delivery adds it (the store's LMTP does), so it is
//! never duplicated here; no header rewriting or parsing beyond finding field names.
//!
//! Invariants: every value placed in a header is reduced to safe characters (no CR, LF,
//! parentheses or semicolons from client input), so no client string can inject a header;
//! header folding uses CRLF + TAB.

/// Keeps only characters safe inside a Received field's structured parts.
pub fn header_safe(s: &str) -> String {
    s.chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '\\' | '<' | '>') { c } else { '?' })
        .collect()
}

/// What the Received field says.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    pub helo: &'a str,
    pub peer: std::net::IpAddr,
    pub hostname: &'a str,
    /// RFC 3848 keyword (ESMTPSA, ...).
    pub protocol: &'a str,
    pub id: &'a str,
    /// `(TLSv1.3, TLS13_AES_256_GCM_SHA384)`.
    pub tls: Option<(String, String)>,
    pub auth_user: Option<&'a str>,
    /// Named only for single-recipient messages (more would disclose Bcc recipients).
    pub single_recipient: Option<&'a str>,
    pub date: &'a str,
}

pub fn received(r: &ReceivedInfo<'_>) -> Vec<u8> {
    let ip = match r.peer {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    };
    let mut h = format!("Received: from {} ({ip})", header_safe(r.helo));
    if let Some((version, cipher)) = &r.tls {
        h.push_str(&format!("\r\n\t(using {} with cipher {})", header_safe(version), header_safe(cipher)));
    }
    if let Some(user) = r.auth_user {
        h.push_str(&format!("\r\n\t(Authenticated sender: {})", header_safe(user)));
    }
    h.push_str(&format!("\r\n\tby {} (Hermes) with {} id {}", header_safe(r.hostname), r.protocol, header_safe(r.id)));
    if let Some(rcpt) = r.single_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", header_safe(rcpt)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", r.date));
    h.into_bytes()
}

/// The header section of `msg` (up to and excluding the blank line), or all of it.
fn header_section(msg: &[u8]) -> &[u8] {
    if msg.starts_with(b"\r\n") || msg.starts_with(b"\n") {
        return &[];
    }
    let crlf = memchr::memmem::find(msg, b"\r\n\r\n").map(|i| i + 2);
    let lf = memchr::memmem::find(msg, b"\n\n").map(|i| i + 1);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => msg.len(),
    };
    &msg[..end]
}

/// Whether the header section has a field named `name` (case-insensitive).
pub fn has_field(msg: &[u8], name: &str) -> bool {
    let headers = header_section(msg);
    let mut at_line_start = true;
    for (i, &b) in headers.iter().enumerate() {
        if at_line_start {
            let rest = &headers[i..];
            if rest.len() > name.len()
                && rest[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && rest[name.len()] == b':'
            {
                return true;
            }
        }
        at_line_start = b == b'\n';
    }
    false
}

/// `Message-ID:` and `Date:` for a submitted message that lacks them.
pub fn submission_fields(msg: &[u8], id: &str, hostname: &str, date: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !has_field(msg, "Message-ID") {
        out.extend_from_slice(format!("Message-ID: <{}@{}>\r\n", header_safe(id), header_safe(hostname)).as_bytes());
    }
    if !has_field(msg, "Date") {
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn received_layout_and_injection() {
        let h = received(&ReceivedInfo {
            helo: "evil\r\nX-Injected: 1",
            peer: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.org",
            protocol: "ESMTPSA",
            id: "abc",
            tls: Some(("TLSv1.3".into(), "TLS13_AES_256_GCM_SHA384".into())),
            auth_user: Some("alice@example.org"),
            single_recipient: Some("bob@example.org"),
            date: "Mon, 1 Jan 2024 00:00:00 +0000",
        });
        let h = String::from_utf8(h).unwrap();
        assert_eq!(
            h,
            "Received: from evil??X-Injected:?1 ([192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\t(Authenticated sender: alice@example.org)\r\n\tby mx.example.org (Hermes) with ESMTPSA id abc\r\n\tfor <bob@example.org>;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn missing_fields_are_detected_in_headers_only() {
        let m = b"Subject: x\r\nmessage-id: <a@b>\r\n\r\nDate: in the body\r\n";
        assert!(has_field(m, "Message-ID"));
        assert!(!has_field(m, "Date"));
        let add = String::from_utf8(submission_fields(m, "Q1", "h.example", "D")).unwrap();
        assert_eq!(add, "Date: D\r\n");
        assert!(!has_field(b"X-Date: 1\r\n\r\n", "Date"));
        assert_eq!(submission_fields(b"\r\nbody", "Q", "h", "D").len(), "Message-ID: <Q@h>\r\nDate: D\r\n".len());
    }
}
