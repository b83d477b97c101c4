//! Delivery status notifications (RFC 3464 `multipart/report; report-type=delivery-status`,
//! RFC 3461 semantics): failure, delay and success reports to the envelope sender.
//!
//! What it is: a pure function from an envelope, the original message and per-recipient
//! results to the bytes of the report. What it is not: the decision whether to send one (the
//! runner checks NOTIFY, the null sender and whether the message is itself a report), nor
//! queueing.
//!
//! Invariants: a report is addressed to the original envelope sender and is itself sent with
//! the null reverse path `<>` (so it can never bounce back); it returns at most
//! [`MAX_RETURNED_BYTES`] of the original (headers only when `RET=HDRS` or when the message is
//! larger, as Postfix's bounce_size_limit does); every value from the envelope is reduced to
//! header-safe characters.

use crate::headers::header_safe;
use crate::queue::{EnvRecipient, Envelope};

/// Largest original returned whole: bounces should not double a mailbox's size.
pub const MAX_RETURNED_BYTES: usize = 100 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
        }
    }
}

/// One recipient in a report.
#[derive(Debug, Clone)]
pub struct DsnRcpt<'a> {
    pub rcpt: &'a EnvRecipient,
    pub action: Action,
    /// The last reply (`550 5.1.1 ...`) or our own diagnostic.
    pub diagnostic: &'a str,
}

/// `X.Y.Z` from a reply text, or the action's generic code.
fn status_of(diag: &str, action: Action) -> String {
    for word in diag.split(' ').take(3) {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3
            && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && matches!(parts[0], "2" | "4" | "5")
        {
            // The class follows the action (an expired 4.4.1 is reported failed, 5.4.1);
            // subject and detail keep the reply's meaning.
            let class = match action {
                Action::Failed => "5",
                Action::Delayed => "4",
                Action::Delivered => "2",
            };
            return format!("{class}.{}.{}", parts[1], parts[2]);
        }
    }
    match action {
        Action::Failed => "5.0.0".into(),
        Action::Delayed => "4.0.0".into(),
        Action::Delivered => "2.0.0".into(),
    }
}

fn header_end(msg: &[u8]) -> usize {
    memchr::memmem::find(msg, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(msg, b"\n\n").map(|i| i + 2))
        .unwrap_or(msg.len())
}

/// Builds the report. `id`: the report's queue id (for its Message-ID).
pub fn build(
    hostname: &str,
    env: &Envelope,
    original: &[u8],
    rcpts: &[DsnRcpt<'_>],
    id: &str,
    date: &str,
    arrival: &str,
) -> Vec<u8> {
    let host = header_safe(hostname);
    let boundary = format!("{id}/{host}");
    let worst = if rcpts.iter().any(|r| r.action == Action::Failed) {
        Action::Failed
    } else if rcpts.iter().any(|r| r.action == Action::Delayed) {
        Action::Delayed
    } else {
        Action::Delivered
    };
    let subject = match worst {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered => "Successful Mail Delivery Report",
    };
    let mut m = String::new();
    m.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"));
    m.push_str(&format!("To: <{}>\r\n", header_safe(&env.from)));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{id}.dsn@{host}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    m.push_str(&format!("This is the mail system at host {host}.\r\n\r\n"));
    match worst {
        Action::Failed => m.push_str("I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.\r\n\r\n"),
        Action::Delayed => m.push_str("Your message could not be delivered yet to one or more recipients.\r\nThe mail system will keep trying; you do not need to resend it.\r\n\r\n"),
        Action::Delivered => m.push_str("Your message was successfully delivered to the recipients below.\r\n\r\n"),
    }
    for r in rcpts {
        m.push_str(&format!(
            "<{}>: {}: {}\r\n",
            header_safe(&r.rcpt.original),
            r.action.word(),
            r.diagnostic.replace(['\r', '\n'], " ")
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {host}\r\n"));
    if let Some(envid) = &env.envid {
        m.push_str(&format!("Original-Envelope-Id: {}\r\n", header_safe(envid)));
    }
    m.push_str(&format!("Arrival-Date: {arrival}\r\n"));
    for r in rcpts {
        m.push_str("\r\n");
        if let Some((kind, addr)) = r.rcpt.orcpt.as_deref().and_then(|o| o.split_once(';')) {
            m.push_str(&format!("Original-Recipient: {}; {}\r\n", header_safe(kind), header_safe(addr)));
        } else if !r.rcpt.original.eq_ignore_ascii_case(&r.rcpt.address) {
            m.push_str(&format!("Original-Recipient: rfc822; {}\r\n", header_safe(&r.rcpt.original)));
        }
        m.push_str(&format!("Final-Recipient: rfc822; {}\r\n", header_safe(&r.rcpt.address)));
        m.push_str(&format!("Action: {}\r\n", r.action.word()));
        m.push_str(&format!("Status: {}\r\n", status_of(r.diagnostic, r.action)));
        let diag: String = r.diagnostic.chars().filter(|c| !c.is_control()).take(400).collect();
        let is_reply =
            diag.len() > 4 && diag.as_bytes()[..3].iter().all(u8::is_ascii_digit) && diag.as_bytes()[3] == b' ';
        if is_reply {
            m.push_str(&format!("Diagnostic-Code: smtp; {diag}\r\n"));
        } else {
            m.push_str(&format!("Diagnostic-Code: X-Hermes; {diag}\r\n"));
        }
    }
    let headers_only = env.ret.as_deref() == Some("HDRS") || original.len() > MAX_RETURNED_BYTES;
    let mut out = m.into_bytes();
    if headers_only {
        out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n").as_bytes());
        out.extend_from_slice(&original[..header_end(original)]);
    } else {
        out.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(original);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn failure_report_is_rfc3464_and_parses() {
        let rc = EnvRecipient {
            address: "bob@example.org".into(),
            original: "team@example.org".into(),
            local: true,
            notify: None,
            orcpt: None,
        };
        let env = Envelope {
            id: "1".into(),
            from: "alice@example.net".into(),
            recipients: vec![rc.clone()],
            ret: None,
            envid: Some("E1".into()),
            arrival: 0,
            helo: "h".into(),
            client: "192.0.2.1".into(),
            auth_user: None,
            smtputf8: false,
            eightbit: false,
            size: 0,
            is_dsn: false,
        };
        let orig = b"Subject: hello\r\n\r\nbody\r\n";
        let rep = build(
            "mx.example.org",
            &env,
            orig,
            &[DsnRcpt { rcpt: &rc, action: Action::Failed, diagnostic: "550 5.1.1 <bob@example.org> User unknown" }],
            "Q9",
            "D",
            "A",
        );
        let text = String::from_utf8(rep.clone()).unwrap();
        assert!(text.contains("Status: 5.1.1\r\n") && text.contains("Action: failed\r\n"), "{text}");
        assert!(text.contains("Original-Recipient: rfc822; team@example.org\r\n"));
        assert!(text.contains("Original-Envelope-Id: E1\r\n"));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nSubject: hello"));
        let parsed = mail_parser::MessageParser::default().parse(&rep).unwrap();
        assert_eq!(parsed.subject(), Some("Undelivered Mail Returned to Sender"));
        assert!(parsed.parts.len() >= 4);
        assert_eq!(status_of("451 4.4.1 timeout", Action::Failed), "5.4.1");
        assert_eq!(status_of("connection refused", Action::Delayed), "4.0.0");
    }
}
