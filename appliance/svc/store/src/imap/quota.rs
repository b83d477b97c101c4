//! QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, SETQUOTA, and the numbers they report.
//!
//! What it is: each user has exactly one quota root, `""`, covering all of their mailboxes.
//! Its resources are STORAGE (the limit is the account's `quota_bytes` in the directory) and,
//! when the account has a message limit (its own `quota_messages`, or `[store]
//! default_quota_messages`), MESSAGE. Limits are read fresh on every command, so `hermes
//! account quota` changes show at once; usage is the store's live usage
//! ([`hermes_store::UserStore::usage`], O(1)). Retained (expunged,
//! not yet purged) mail does not count, as `docs/store-format.md` explains.
//! What it is not: enforcement (the store refuses over-quota APPEND/COPY/MOVE and LMTP; the
//! session maps that error to `NO [OVERQUOTA]` in [`super::reply`]) and not an admin
//! interface: SETQUOTA is refused (quotas are set with the CLI; RFC 9208 §4.1.3 allows a
//! server to refuse it, and `QUOTASET` is not advertised).
//!
//! Invariants:
//! - STORAGE is reported in units of 1024 octets (RFC 9208 §5.1): usage rounded up, limit
//!   rounded down, so a client never sees room that is not there.
//! - Only resources with a limit are listed (RFC 9208 §5): MESSAGE only for an account with a
//!   message limit; `QUOTA=RES-STORAGE` and `QUOTA=RES-MESSAGE` are both advertised.
//! - Nothing about another user is reachable: the root names the session's own user.

use super::reply::Reply;
use super::session::{End, Session};
use super::wire;
use hermes_proto::imap::MailboxName;
use hermes_store::StoreError;

/// The one quota root of every user.
pub const ROOT: &str = "";

/// STORAGE usage and limit in KiB units (RFC 9208 §5.1).
pub fn storage_units(used_bytes: u64, limit_bytes: u64) -> (u64, u64) {
    (used_bytes.div_ceil(1024), limit_bytes / 1024)
}

/// What one quota root reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    pub used_bytes: u64,
    pub limit_bytes: u64,
    pub used_messages: u64,
    /// `None`: no message limit (MESSAGE is then not listed).
    pub limit_messages: Option<u64>,
}

/// `* QUOTA "" (STORAGE used limit[ MESSAGE used limit])\r\n`.
pub fn quota_line(out: &mut Vec<u8>, n: &Numbers) {
    let (used, limit) = storage_units(n.used_bytes, n.limit_bytes);
    out.extend_from_slice(format!("* QUOTA \"\" (STORAGE {used} {limit}").as_bytes());
    if let Some(max) = n.limit_messages {
        out.extend_from_slice(format!(" MESSAGE {} {max}", n.used_messages).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

/// The account's current limits (from the directory, with the site default for messages) and
/// usage (from the store).
async fn numbers(s: &Session, command: &'static str) -> Result<Numbers, Reply> {
    let Some(user) = s.user.as_ref() else {
        return Err(Reply::bad("Command not allowed before login"));
    };
    let address = user.address().to_string();
    let fallback = user.auth.account().clone();
    let settings = s.ctx.config().store.clone();
    let ctx = std::sync::Arc::clone(&s.ctx);
    let account = tokio::task::spawn_blocking(move || match ctx.directory.lookup(&address) {
        Ok(Some(account)) => account,
        Ok(None) => fallback,
        Err(e) => {
            tracing::warn!(error = %e, "directory lookup for quota failed; using login-time quota");
            fallback
        }
    })
    .await;
    let account = match account {
        Ok(a) => a,
        Err(_) => user.auth.account().clone(),
    };
    let limits = crate::quota::limits_for(&account, &settings);
    let usage = s.store_call(command, false, |u| Ok(u.usage())).await?;
    Ok(Numbers {
        used_bytes: usage.bytes,
        limit_bytes: limits.bytes,
        used_messages: usage.messages,
        limit_messages: limits.messages,
    })
}

/// GETQUOTA root.
pub(super) async fn getquota(s: &mut Session, root: &str) -> Result<Reply, End> {
    if root != ROOT {
        return Ok(Reply::no("No such quota root").with_code("NONEXISTENT"));
    }
    let n = match numbers(s, "GETQUOTA").await {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let mut out = Vec::new();
    quota_line(&mut out, &n);
    s.send(&out).await?;
    Ok(Reply::ok("GETQUOTA completed"))
}

/// GETQUOTAROOT mailbox: the mailbox must exist; its root is always `""`.
pub(super) async fn getquotaroot(s: &mut Session, name: &MailboxName) -> Result<Reply, End> {
    let store_name = match s.mailbox_name(name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let exists = s
        .store_call("GETQUOTAROOT", false, move |u| u.mailbox(&store_name).map(|_| ()).ok_or(StoreError::NoSuchMailbox))
        .await;
    if let Err(r) = exists {
        return Ok(r);
    }
    let n = match numbers(s, "GETQUOTAROOT").await {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let mut out = b"* QUOTAROOT ".to_vec();
    let wire_name = s.mailbox_name(name).unwrap_or_default();
    wire::mailbox(&mut out, &wire_name, s.utf8);
    out.extend_from_slice(b" \"\"\r\n");
    quota_line(&mut out, &n);
    s.send(&out).await?;
    Ok(Reply::ok("GETQUOTAROOT completed"))
}

/// SETQUOTA: refused; the administrator sets quotas (`hermes account quota`).
pub(super) fn setquota() -> Reply {
    Reply::no("Quotas are set by the administrator").with_code("NOPERM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_in_kib_usage_up_limit_down() {
        assert_eq!(storage_units(0, 1 << 30), (0, 1_048_576));
        assert_eq!(storage_units(1, 1023), (1, 0));
        assert_eq!(storage_units(1024, 1024), (1, 1));
        assert_eq!(storage_units(1025, 2047), (2, 1));
        assert_eq!(storage_units(u64::MAX, u64::MAX), (u64::MAX / 1024 + 1, u64::MAX / 1024));
    }

    #[test]
    fn message_is_listed_only_with_a_limit() {
        let mut out = Vec::new();
        let mut n = Numbers { used_bytes: 2048, limit_bytes: 1 << 20, used_messages: 7, limit_messages: None };
        quota_line(&mut out, &n);
        n.limit_messages = Some(10);
        quota_line(&mut out, &n);
        assert_eq!(out, b"* QUOTA \"\" (STORAGE 2 1024)\r\n* QUOTA \"\" (STORAGE 2 1024 MESSAGE 7 10)\r\n");
    }
}
