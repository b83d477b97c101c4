//! Undelete and the control protocol of the store service's socket `run/store.sock` (JSON
//! lines; served by [`crate::control`]): the [`Request`] and [`Response`] types, and
//! `hermes undelete ACCOUNT [--mailbox M] [--since T] [--until T] [--list] [--json]`.
//!
//! One request line, one response line:
//! `{"op":"undelete","account":"a@example.org","filter":{"mailbox":"INBOX","since":1700000000,"until":null},"list":true}`
//! answers `{"ok":true,"account":...,"messages":[...]}` (the retained messages, each with the
//! Date, From, Subject and Message-ID of its header, or with `"list":false` the ones restored,
//! each with its new mailbox and UID) or
//! `{"ok":false,"error":"..."}`. When no store service answers on the socket, the command
//! opens the store itself (taking the store lock, so it can never race a running server),
//! as `hermes deliver` does.
//!
//! What it is not: an authenticated API. The socket is mode 0660 inside the data folder's
//! `run/`, so only the data folder's owner (and group) reach it, as with `run/lmtp.sock`.
//!
//! Invariants:
//! - A request line is at most [`MAX_REQUEST`] bytes; a longer one is answered with an error
//!   and the connection closed. The client bounds what it reads ([`MAX_RESPONSE`]).
//! - A restore is durable (one change-log record) before the response says ok; sessions of
//!   the user see the messages as new mail through the store's change notices.
//! - Errors name the account or the filter, never a path or an internal detail.
//! - A listing decompresses only each message's header (at most [`MAX_HEADER_READ`] bytes);
//!   a message whose header cannot be read is listed with empty header fields.

use anyhow::{Context as _, bail};
use hermes_core::config::{Config, StoreSettings};
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use hermes_store::{RetainedFilter, RetainedMessage, RetainedReason, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};

/// Longest request line: an address, a mailbox name (at most 1 KiB) and two times.
pub const MAX_REQUEST: u64 = 16 * 1024;
/// Longest response the client reads: at least 200,000 retained messages in JSON, each with
/// its header fields at their longest (about 2.5 KiB), and about a million typical ones.
pub const MAX_RESPONSE: u64 = 512 * 1024 * 1024;
/// Most characters kept of each header field a listing shows (`date`, `from`, `subject`,
/// `message_id`).
pub const MAX_FIELD_CHARS: usize = 200;
/// Most bytes of a retained message decompressed to find its header fields: a header longer
/// than this is read only that far (fields past it are left empty).
pub const MAX_HEADER_READ: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Undelete {
        account: String,
        #[serde(default)]
        filter: Filter,
        /// Only list what would be restored.
        #[serde(default)]
        list: bool,
    },
    /// Live and retained usage of up to [`MAX_USAGE_ACCOUNTS`] accounts (the admin UI's
    /// account pages): `{"op":"usage","accounts":["a@example.org"]}` answers
    /// `{"ok":true,"usage":[{"account":...,"live_bytes":...},...]}`, one entry per account
    /// found, in order; unknown accounts are left out.
    Usage { accounts: Vec<String> },
    /// Re-read `DATA/config/hermes.toml` and apply what can be applied live
    /// (see [`crate::control`]). Only the running service answers it.
    Reload {},
    /// Cumulative counters since the service started (see [`crate::control::Stats`]).
    Stats {},
}

/// Accounts per `usage` request: one page of the admin UI's account list, with room to spare.
pub const MAX_USAGE_ACCOUNTS: usize = 500;

/// One account's usage (raw message sizes) and quota, as the `usage` op answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    pub account: String,
    pub live_bytes: u64,
    pub live_messages: u64,
    pub retained_bytes: u64,
    pub retained_messages: u64,
    pub quota_bytes: u64,
    /// The message limit that applies (RFC 9208 MESSAGE); `None`: unlimited.
    #[serde(default)]
    pub quota_messages: Option<u64>,
}

/// Which retained messages: every given condition must hold (see [`RetainedFilter`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The mailbox expunged from (its name then, or its current name).
    #[serde(default)]
    pub mailbox: Option<String>,
    /// Expunged at or after (Unix seconds).
    #[serde(default)]
    pub since: Option<i64>,
    /// Expunged before (Unix seconds).
    #[serde(default)]
    pub until: Option<i64>,
}

impl From<&Filter> for RetainedFilter {
    fn from(f: &Filter) -> RetainedFilter {
        RetainedFilter { mailbox: f.mailbox.clone(), since: f.since, until: f.until }
    }
}

/// One retained message, listed or restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The mailbox it was expunged from (its name then) and its UID there.
    pub mailbox: String,
    pub uid: u32,
    /// `expunged` or `mailbox deleted`.
    pub reason: String,
    pub expunged_at: i64,
    /// When the purge may drop it.
    pub expires_at: i64,
    pub size: u64,
    pub flags: Vec<String>,
    /// Listed only (a restore leaves them empty), read from the message's header: its `Date`
    /// as written, `From` and `Subject` with RFC 2047 encoded-words decoded, and `Message-ID`;
    /// unfolded, control characters made spaces, each at most [`MAX_FIELD_CHARS`] characters
    /// (cut ones end in `…`). Empty (and left out of the JSON) when the header has no such
    /// field or the message could not be read (the listing still answers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub date: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// Restored only: where it is now (mailbox, UIDVALIDITY, new UID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uidvalidity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_uid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub account: String,
    /// True when only listed.
    #[serde(default)]
    pub listed: bool,
    #[serde(default)]
    pub messages: Vec<Entry>,
    /// True when the store was opened directly (no store service running).
    #[serde(default)]
    pub offline: bool,
    /// The `usage` op's answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<UsageEntry>,
    /// `reload`: the settings applied live (`store.retention_days`, `tls.certificate`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<String>>,
    /// `reload`: changed settings that take effect only at the next restart (`store.imap.listen`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_needed: Option<Vec<String>>,
    /// `reload` refused: every problem found in the new config (the old one stays in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// `stats`: the counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::control::StatsSnapshot>,
}

pub(crate) fn error(text: impl Into<String>) -> Response {
    Response { ok: false, error: Some(text.into()), ..Response::default() }
}

fn entry(m: &RetainedMessage) -> Entry {
    Entry {
        mailbox: m.mailbox_name.clone(),
        uid: m.uid,
        reason: match m.reason {
            RetainedReason::Expunged => "expunged".into(),
            RetainedReason::MailboxDeleted => "mailbox deleted".into(),
        },
        expunged_at: m.expunged_at,
        expires_at: m.expires_at,
        size: m.size,
        flags: m.flags.clone(),
        date: String::new(),
        from: String::new(),
        subject: String::new(),
        message_id: String::new(),
        restored_to: None,
        uidvalidity: None,
        new_uid: None,
    }
}

/// Runs one request against an open store. Blocking (store calls fsync): use
/// `spawn_blocking` from async code.
/// `settings` gives the site's default message limit (for accounts without their own).
/// `reload` and `stats` concern a running service: here they are refused.
pub fn execute(store: &Store, directory: &Directory, settings: &StoreSettings, request: &Request) -> Response {
    let (account, filter, list) = match request {
        Request::Undelete { account, filter, list } => (account, filter, list),
        Request::Usage { accounts } => return usage(store, directory, settings, accounts),
        Request::Reload {} | Request::Stats {} => return error("the store service is not running"),
    };
    let found = match directory.lookup(account) {
        Ok(Some(a)) => a,
        Ok(None) => return error(format!("no such account: {account}")),
        Err(e) => {
            tracing::warn!(error = %e, "directory lookup failed");
            return error("the directory could not be read");
        }
    };
    let user = match store.user(&found.user_id) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(user = %found.address, error = %e, "cannot open the user's store");
            return error("the account's mail store could not be opened");
        }
    };
    crate::quota::apply_account(&user, &found, settings);
    let filter = RetainedFilter::from(filter);
    let listed = user.list_retained(&filter);
    let mut response = Response { ok: true, account: found.address.clone(), listed: *list, ..Response::default() };
    if *list {
        response.messages = listed
            .iter()
            .map(|m| {
                let mut e = entry(m);
                describe(&user, m, &mut e);
                e
            })
            .collect();
        return response;
    }
    let restored = match user.undelete(&filter) {
        Ok(r) => r,
        Err(StoreError::InvalidMailboxName) => return error("invalid mailbox name"),
        Err(e) => {
            tracing::error!(user = %found.address, error = %e, "undelete failed");
            return error("the restore failed; nothing was changed");
        }
    };
    tracing::info!(user = %found.address, restored = restored.len(), "undelete");
    response.messages = restored
        .iter()
        .map(|r| {
            let mut e = match listed.iter().find(|m| m.mailbox == r.original_mailbox && m.uid == r.original_uid) {
                Some(m) => entry(m),
                // Expunged between the listing and the restore: report what the store says.
                None => Entry {
                    mailbox: r.mailbox.clone(),
                    uid: r.original_uid,
                    reason: "expunged".into(),
                    expunged_at: 0,
                    expires_at: 0,
                    size: 0,
                    flags: Vec::new(),
                    date: String::new(),
                    from: String::new(),
                    subject: String::new(),
                    message_id: String::new(),
                    restored_to: None,
                    uidvalidity: None,
                    new_uid: None,
                },
            };
            e.flags.retain(|f| f != "\\Deleted");
            e.restored_to = Some(r.mailbox.clone());
            e.uidvalidity = Some(r.uidvalidity);
            e.new_uid = Some(r.uid);
            e
        })
        .collect();
    response
}

/// Fills `e`'s header fields from the retained message's header (only the header is
/// decompressed, at most [`MAX_HEADER_READ`] bytes). A message that cannot be read (purged
/// meanwhile, a damaged file) keeps them empty: one bad message never fails the listing.
fn describe(user: &hermes_store::UserStore, m: &RetainedMessage, e: &mut Entry) {
    let head = match user.read_retained_header(m.mailbox, m.uid, MAX_HEADER_READ) {
        Ok(h) => h,
        Err(StoreError::NoSuchMessage) => return,
        Err(err) => {
            tracing::warn!(mailbox = %m.mailbox_name, uid = m.uid, error = %err, "retained message header unreadable");
            return;
        }
    };
    let fields = header_fields(&head);
    e.date = fields.date;
    e.from = fields.from;
    e.subject = fields.subject;
    e.message_id = fields.message_id;
}

/// What a listing shows of one message's header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFields {
    pub date: String,
    pub from: String,
    pub subject: String,
    pub message_id: String,
}

/// `Date`, `From` (decoded), `Subject` (decoded) and `Message-ID` of the header at the start of
/// `raw` (the first of each; absent ones empty), each unfolded and bounded (see [`Entry`]).
pub fn header_fields(raw: &[u8]) -> HeaderFields {
    use hermes_proto::mime::decode::rfc2047;
    use hermes_proto::mime::header::{first_unfolded, header_block};
    let block = header_block(raw);
    let plain = |name: &str| first_unfolded(block, name).map(|v| bounded(&String::from_utf8_lossy(&v)));
    let decoded = |name: &str| first_unfolded(block, name).map(|v| bounded(&rfc2047(&v)));
    HeaderFields {
        date: plain("Date").unwrap_or_default(),
        from: decoded("From").unwrap_or_default(),
        subject: decoded("Subject").unwrap_or_default(),
        message_id: plain("Message-ID").unwrap_or_default(),
    }
}

/// `text` with control characters as spaces, trimmed, cut to [`MAX_FIELD_CHARS`] characters.
fn bounded(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.trim().chars().enumerate() {
        if n + 1 == MAX_FIELD_CHARS && text.trim().chars().nth(MAX_FIELD_CHARS).is_some() {
            out.push('…');
            break;
        }
        // Control characters and bidirectional overrides could reorder or hide what a
        // terminal or a page shows next to the field.
        let hidden = c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        out.push(if hidden { ' ' } else { c });
    }
    out.trim_end().to_string()
}

/// The `usage` op: live and retained totals (O(1) per loaded user) for each known account.
fn usage(store: &Store, directory: &Directory, settings: &StoreSettings, accounts: &[String]) -> Response {
    if accounts.len() > MAX_USAGE_ACCOUNTS {
        return error(format!("at most {MAX_USAGE_ACCOUNTS} accounts per usage request"));
    }
    let mut response = Response { ok: true, ..Response::default() };
    for address in accounts {
        let found = match directory.lookup(address) {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "directory lookup failed");
                return error("the directory could not be read");
            }
        };
        let user = match store.user(&found.user_id) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(user = %found.address, error = %e, "cannot open the user's store");
                return error("an account's mail store could not be opened");
            }
        };
        crate::quota::apply_account(&user, &found, settings);
        let d = user.usage_detail();
        response.usage.push(UsageEntry {
            account: found.address.clone(),
            live_bytes: d.live_bytes,
            live_messages: d.live_messages,
            retained_bytes: d.retained_bytes,
            retained_messages: d.retained_messages,
            quota_bytes: found.quota_bytes,
            quota_messages: found.quota_messages.resolve(settings.default_quota_messages),
        });
    }
    response
}

/// What `hermes undelete` asks for.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub account: String,
    pub mailbox: Option<String>,
    /// RFC 3339 or YYYY-MM-DD (the start of that day, UTC).
    pub since: Option<String>,
    /// RFC 3339 or YYYY-MM-DD (the whole day included: up to the start of the next, UTC).
    pub until: Option<String>,
    pub list: bool,
    pub json: bool,
}

/// Parses a `--since`/`--until` time: RFC 3339 (`2025-11-28T14:00:00+01:00`) or a date
/// (`2025-11-28`, UTC), which means the start of that day, or with `end_of_day` the start of
/// the next (so `--until 2025-11-28` includes the 28th).
pub fn parse_time(text: &str, end_of_day: bool) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let day = if end_of_day { d.succ_opt().unwrap_or(d) } else { d };
        if let Some(midnight) = day.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc().timestamp());
        }
    }
    bail!("not a time: {text:?} (expected RFC 3339, e.g. 2025-11-28T14:00:00Z, or YYYY-MM-DD)")
}

/// `hermes undelete`: builds the request, runs it (socket or store), prints the result.
pub fn undelete_command(data: &DataDir, args: &Args) -> anyhow::Result<()> {
    let filter = Filter {
        mailbox: args.mailbox.clone(),
        since: args.since.as_deref().map(|t| parse_time(t, false)).transpose()?,
        until: args.until.as_deref().map(|t| parse_time(t, true)).transpose()?,
    };
    if let (Some(s), Some(u)) = (filter.since, filter.until)
        && s >= u
    {
        bail!("--since must be before --until");
    }
    let request = Request::Undelete { account: args.account.clone(), filter, list: args.list };
    let response = request_via(data, &request)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&response)?)?;
    }
    if !response.ok {
        bail!("{}", response.error.as_deref().unwrap_or("the store refused the request"));
    }
    if !args.json {
        write!(out, "{}", render(&response))?;
    }
    Ok(())
}

/// Human-readable output: one line per message.
pub fn render(r: &Response) -> String {
    let mut s = String::new();
    let when = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    if r.listed {
        if r.messages.is_empty() {
            s.push_str(&format!("no restorable messages for {}\n", r.account));
            return s;
        }
        s.push_str(&format!(
            "{:<20}  {:>8}  {:>10}  {:<20}  {:<20}  FLAGS\n",
            "EXPUNGED", "UID", "SIZE", "MAILBOX", "REASON"
        ));
        for e in &r.messages {
            s.push_str(&format!(
                "{:<20}  {:>8}  {:>10}  {:<20}  {:<20}  {}\n",
                when(e.expunged_at),
                e.uid,
                crate::quota::human(e.size),
                e.mailbox,
                e.reason,
                e.flags.join(" ")
            ));
            let or_none = |t: &str| if t.is_empty() { "(none)".to_string() } else { t.to_string() };
            s.push_str(&format!("    Subject: {}\n", or_none(&e.subject)));
            s.push_str(&format!("    From: {}\n", or_none(&e.from)));
            s.push_str(&format!("    Date: {}\n", or_none(&e.date)));
            if !e.message_id.is_empty() {
                s.push_str(&format!("    Message-ID: {}\n", e.message_id));
            }
        }
        s.push_str(&format!("{} restorable messages for {}\n", r.messages.len(), r.account));
    } else {
        for e in &r.messages {
            s.push_str(&format!(
                "{} uid {} -> {} uid {}\n",
                e.mailbox,
                e.uid,
                e.restored_to.as_deref().unwrap_or("?"),
                e.new_uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            ));
        }
        s.push_str(&format!("restored {} messages for {}\n", r.messages.len(), r.account));
    }
    s
}

/// Sends `request` to the running store service, or runs it on the store directly when no
/// service answers on the socket.
pub fn request_via(data: &DataDir, request: &Request) -> anyhow::Result<Response> {
    let socket = data.store_socket();
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => over_socket(stream, request),
        Err(connect_error) => direct(data, request, &socket, connect_error),
    }
}

fn over_socket(stream: std::os::unix::net::UnixStream, request: &Request) -> anyhow::Result<Response> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(600)))?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut w = stream.try_clone()?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    w.write_all(&line)?;
    let mut r = BufReader::new(stream).take(MAX_RESPONSE);
    let mut answer = Vec::new();
    r.read_until(b'\n', &mut answer).context("reading the store service's answer")?;
    if !answer.ends_with(b"\n") {
        bail!("the store service closed the connection without a complete answer");
    }
    serde_json::from_slice(&answer).context("the store service's answer is not understood")
}

fn direct(
    data: &DataDir,
    request: &Request,
    socket: &std::path::Path,
    connect_error: std::io::Error,
) -> anyhow::Result<Response> {
    let config = match std::fs::read_to_string(data.config_file()) {
        Ok(text) => Config::from_toml(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::host_default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", data.config_file().display())),
    };
    if !data.directory_dir().is_dir() {
        bail!("no directory in {} (give --data DIR)", data.root().display());
    }
    let directory = Directory::open(data).context("opening the directory")?;
    let store = match Store::open(&data.store_dir(), crate::run::store_config(&config)) {
        Ok(s) => s,
        Err(StoreError::Locked) => bail!(
            "the store is held by a running server, but its control socket {} is unreachable ({connect_error})",
            socket.display()
        ),
        Err(e) => return Err(e).context("opening the store"),
    };
    store.set_quota_warnings(crate::quota::warning_composer(&config.hostname));
    store.set_quota_warning_percents(config.store.quota_warning_percents.clone());
    let mut r = execute(&store, &directory, &config.store, request);
    r.offline = true;
    Ok(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z", false).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00", true).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2023-11-14", false).unwrap(), 1_699_920_000);
        assert_eq!(parse_time("2023-11-14", true).unwrap(), 1_699_920_000 + 86_400);
        assert!(parse_time("yesterday", false).is_err());
        assert!(parse_time("2023-13-01", false).is_err());
    }

    #[test]
    fn header_fields_are_decoded_and_bounded() {
        let raw = b"Received: x\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nFrom: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= <r@reg.example>\r\n\
Subject: =?utf-8?B?w4RuZGVydW5n?= an\r\n der Domain\x1b[31m\r\nMessage-ID: <a@b>\r\n\r\nSubject: body\r\n";
        let f = header_fields(raw);
        assert_eq!(f.date, "Tue, 24 Nov 2026 10:00:00 +0000");
        assert_eq!(f.from, "Grüße <r@reg.example>");
        assert_eq!(f.subject, "Änderung an der Domain [31m");
        assert_eq!(f.message_id, "<a@b>");
        assert_eq!(header_fields(b"\r\nSubject: not a header\r\n"), HeaderFields::default());
        assert_eq!(header_fields(b"garbage without colon\n\xff\xfe"), HeaderFields::default());
        let long = format!("Subject: {}\n\n", "é".repeat(5000));
        let s = header_fields(long.as_bytes()).subject;
        assert_eq!(s.chars().count(), MAX_FIELD_CHARS);
        assert!(s.ends_with('…'));
        assert_eq!(header_fields(b"Subject: a\xe2\x80\xaeb\n\n").subject, "a b");
    }

    #[test]
    fn old_entries_still_parse() {
        let e: Entry = serde_json::from_str(
            r#"{"mailbox":"INBOX","uid":3,"reason":"expunged","expunged_at":1,"expires_at":2,"size":9,"flags":[]}"#,
        )
        .unwrap();
        assert_eq!((e.subject.as_str(), e.from.as_str(), e.date.as_str()), ("", "", ""));
        assert!(!serde_json::to_string(&e).unwrap().contains("subject"));
    }

    #[test]
    fn requests_parse_strictly() {
        let r: Request = serde_json::from_str(r#"{"op":"undelete","account":"a@b.org","list":true}"#).unwrap();
        assert_eq!(r, Request::Undelete { account: "a@b.org".into(), filter: Filter::default(), list: true });
        assert!(serde_json::from_str::<Request>(r#"{"op":"undelete","account":"a","lsit":true}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop","account":"a"}"#).is_err());
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"reload"}"#).unwrap(), Request::Reload {});
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"stats"}"#).unwrap(), Request::Stats {});
        assert!(serde_json::from_str::<Request>(r#"{"op":"stats","x":1}"#).is_err());
    }
}
