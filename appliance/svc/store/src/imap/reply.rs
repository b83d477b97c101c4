//! Tagged command results and how store and directory errors become them.
//!
//! What it is: [`Reply`], the `OK`/`NO`/`BAD` a command ends with (its optional response code
//! and human text), and the single mapping from [`StoreError`] to what a client may see.
//! What it is not: untagged data, which handlers write straight to the connection.
//!
//! Invariant: text sent to a client never contains a path, an OS error or any other internal
//! detail; internal failures are logged here (with the command name) and answered
//! `NO [SERVERBUG] Internal error` or `NO [UNAVAILABLE]`.

use hermes_store::StoreError;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    /// Response code without brackets, e.g. `TRYCREATE` or `APPENDUID 7 12`.
    pub code: Option<Cow<'static, str>>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply { status: Status::Ok, code: None, text: text.into() }
    }
    pub fn no(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply { status: Status::No, code: None, text: text.into() }
    }
    pub fn bad(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply { status: Status::Bad, code: None, text: text.into() }
    }
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Reply {
        self.code = Some(code.into());
        self
    }
    pub fn server_bug() -> Reply {
        Reply::no("Internal error").with_code("SERVERBUG")
    }
    pub fn unavailable() -> Reply {
        Reply::no("Temporarily unavailable, try again later").with_code("UNAVAILABLE")
    }
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The tagged response line (with CRLF).
    pub fn render(&self, tag: &str) -> Vec<u8> {
        let status = match self.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        };
        let mut s = String::with_capacity(tag.len() + self.text.len() + 16);
        s.push_str(tag);
        s.push(' ');
        s.push_str(status);
        s.push(' ');
        if let Some(code) = &self.code {
            s.push('[');
            s.push_str(code);
            s.push_str("] ");
        }
        s.push_str(&self.text);
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Maps a store error for `command` (a wire command name, for the log) to what the client
    /// sees. `destination` is true when the mailbox named was an APPEND/COPY/MOVE target, so
    /// a missing one is answered `TRYCREATE` (RFC 9051 §6.3.12).
    pub fn from_store(err: &StoreError, command: &'static str, destination: bool) -> Reply {
        match err {
            StoreError::NoSuchMailbox if destination => Reply::no("Mailbox does not exist").with_code("TRYCREATE"),
            StoreError::NoSuchMailbox => Reply::no("Mailbox does not exist").with_code("NONEXISTENT"),
            StoreError::MailboxExists => Reply::no("Mailbox already exists").with_code("ALREADYEXISTS"),
            StoreError::InvalidMailboxName => Reply::no("Invalid mailbox name").with_code("CANNOT"),
            StoreError::HasChildren => Reply::no("Mailbox has children, delete them first").with_code("HASCHILDREN"),
            StoreError::CannotDeleteInbox => Reply::no("INBOX cannot be deleted").with_code("CANNOT"),
            StoreError::TooLarge => Reply::no("Message too large").with_code("TOOBIG"),
            // RFC 9208 §4.3.2 (OVERQUOTA): the change would pass the user's quota.
            StoreError::OverQuota => Reply::no("Quota exceeded").with_code("OVERQUOTA"),
            StoreError::NoSuchMessage => {
                Reply::no("Some of the requested messages no longer exist").with_code("EXPUNGEISSUED")
            }
            StoreError::Locked => {
                tracing::error!(command, error = %err, "store unavailable");
                Reply::unavailable()
            }
            StoreError::Io(_) | StoreError::Corrupt(_) => {
                tracing::error!(command, error = %err, "store error");
                Reply::server_bug()
            }
            #[allow(unreachable_patterns)]
            // the store may grow variants; they are internal until mapped
            _ => {
                tracing::error!(command, error = %err, "store error");
                Reply::server_bug()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn renders_codes_and_hides_internals() {
        assert_eq!(Reply::ok("done").render("a1"), b"a1 OK done\r\n");
        assert_eq!(Reply::no("x").with_code("TRYCREATE").render("t"), b"t NO [TRYCREATE] x\r\n");
        let r = Reply::from_store(&StoreError::Io(std::io::Error::other("/secret/path")), "APPEND", true);
        let line = String::from_utf8(r.render("z")).unwrap();
        assert_eq!(line, "z NO [SERVERBUG] Internal error\r\n");
        let r = Reply::from_store(&StoreError::NoSuchMailbox, "COPY", true);
        assert_eq!(r.code.as_deref(), Some("TRYCREATE"));
    }
}
