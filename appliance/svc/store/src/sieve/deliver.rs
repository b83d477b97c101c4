//! The LMTP hook: runs each recipient's active script and stores the message where the
//! scripts say, sends redirects and vacation replies through the relay.
//!
//! Order for one message: (1) per distinct user, load (cached) and run the active script into
//! a [`Plan`]; (2) send the redirects — before storing, so that a redirect the relay refuses
//! turns into a keep instead of a lost message; (3) one [`Store::deliver`] call for every
//! target of every user (one stored copy, hard-linked); (4) vacation replies, each recorded
//! in the user's reply log before it is handed to the relay.
//!
//! Invariants:
//! - Every recipient ends with its message stored in at least one mailbox, or with an explicit
//!   `discard`, or redirected (the relay accepted it), or with a store error (LMTP 4xx/5xx, the
//!   sender retries). A script error, a missing relay, a refused redirect, or a mailbox name
//!   the store refuses all fall back to INBOX.
//! - Blocking (file reads, store writes, SMTP): call from `spawn_blocking`.
//! - Vacation is never sent to the null sender, lists or bulk mail ([`super::vacation`]),
//!   always from `<>` with `Auto-Submitted: auto-replied`.

use super::Engine;
use super::execute::{self, EnvelopeInfo, Filing, Oracle, Plan, VacationBounds};
use super::relay::{self, Relay};
use super::vacation::{self, ReplyLog};
use hermes_core::directory::UserId;
use hermes_proto::lmtp::Reply;
use hermes_store::{Appended, DeliveryTarget, Store, StoreError};
use std::cell::RefCell;

/// One recipient's outcome.
#[derive(Debug)]
pub enum Filed {
    /// Stored (the first target's place), or why the store refused.
    Stored(Result<Appended, StoreError>),
    /// The script discarded it (or redirected it without keeping a copy).
    Discarded,
}

/// One accepted recipient: the account and the address given at RCPT.
#[derive(Debug, Clone)]
pub struct Rcpt {
    pub user: UserId,
    pub address: String,
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::TooLarge => StoreError::TooLarge,
        StoreError::OverQuota => StoreError::OverQuota,
        StoreError::NoSuchMailbox => StoreError::NoSuchMailbox,
        StoreError::InvalidMailboxName => StoreError::InvalidMailboxName,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// The recipient's reply after DATA (the store cases are [`crate::deliver::store_reply`]'s).
pub fn reply(rcpt: &str, filed: &Filed, id: &str, quota_permanent: bool) -> Reply {
    match filed {
        Filed::Stored(r) => crate::deliver::store_reply(rcpt, r, id, quota_permanent),
        Filed::Discarded => {
            Reply::new(250, (2, 0, 0), format!("<{rcpt}> Delivered id {id} (discarded by the recipient's filter)"))
        }
    }
}

/// `user+detail@domain` → `user@domain`: the account's own address for vacation.
fn base_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", local.split_once('+').map_or(local, |(u, _)| u)),
        None => address.to_string(),
    }
}

/// `<a@b>` or `a@b` → `a@b`; `<>` → empty.
fn bare(path: &str) -> &str {
    path.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Keeps only flags the store can hold: the IMAP system flags and keyword atoms.
fn store_flags(flags: &[String]) -> Vec<String> {
    const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];
    let mut out = Vec::new();
    for f in flags {
        let f = f.trim();
        let keep = if let Some(sys) = SYSTEM.iter().find(|s| s.eq_ignore_ascii_case(f)) {
            Some(sys.to_string())
        } else if !f.is_empty()
            && f.len() <= 128
            && f.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']'))
        {
            Some(f.to_string())
        } else {
            None
        };
        if let Some(k) = keep
            && !out.iter().any(|x: &String| x.eq_ignore_ascii_case(&k))
        {
            out.push(k);
        }
    }
    out
}

struct UserOracle<'a> {
    store: &'a Store,
    user: &'a UserId,
    log: &'a ReplyLog,
    now: i64,
    /// Loaded on first use.
    mailboxes: RefCell<Option<Vec<String>>>,
}

impl Oracle for UserOracle<'_> {
    fn mailbox_exists(&self, name: &str) -> bool {
        let mut cache = self.mailboxes.borrow_mut();
        let names = cache.get_or_insert_with(|| match self.store.user(self.user) {
            Ok(u) => u.list_mailboxes().into_iter().map(|m| m.name).collect(),
            Err(_) => Vec::new(),
        });
        names.iter().any(|n| n == name || (n.eq_ignore_ascii_case("INBOX") && name.eq_ignore_ascii_case("INBOX")))
    }
    fn replied_recently(&self, key: &str) -> bool {
        self.log.is_recent(key, self.now)
    }
}

/// What one user's script decided, with the reply log it consulted.
struct UserRun {
    user: UserId,
    plan: Plan,
    log: Option<ReplyLog>,
}

fn plan_for_user(engine: &Engine, store: &Store, raw: &[u8], from: &str, rcpt: &Rcpt, now: i64) -> UserRun {
    let script = match engine.active_script(&rcpt.user) {
        Ok(None) => return UserRun { user: rcpt.user.clone(), plan: Plan::implicit_keep(), log: None },
        Ok(Some(s)) => s,
        Err(e) => {
            tracing::warn!(user = %rcpt.user, error = %e, "Sieve script unusable; delivering to INBOX");
            engine.scripts.record_error(&rcpt.user, &e);
            return UserRun { user: rcpt.user.clone(), plan: Plan::implicit_keep(), log: None };
        }
    };
    let log = ReplyLog::load(&engine.scripts.vacation_file(&rcpt.user));
    let user_address = base_address(&rcpt.address);
    let env = EnvelopeInfo { from, to: &rcpt.address, user_address: &user_address };
    let oracle = UserOracle { store, user: &rcpt.user, log: &log, now, mailboxes: RefCell::new(None) };
    let bounds =
        VacationBounds { min_days: engine.settings.vacation_min_days, max_days: engine.settings.vacation_max_days };
    let mut plan = execute::run(&engine.runtime(), script, raw, &env, bounds, &oracle);
    if let Some(e) = &plan.error {
        tracing::warn!(user = %rcpt.user, error = %e, "Sieve script failed; delivering to INBOX");
        engine.scripts.record_error(&rcpt.user, &format!("runtime error: {e}"));
    }
    for note in &plan.notes {
        tracing::info!(user = %rcpt.user, note = %note, "Sieve");
    }
    if !plan.vacations.is_empty()
        && let Some(why) = vacation::must_not_answer(from, raw)
    {
        tracing::info!(user = %rcpt.user, reason = why, "vacation reply suppressed");
        plan.vacations.clear();
    }
    UserRun { user: rcpt.user.clone(), plan, log: Some(log) }
}

fn relay_of(engine: &Engine) -> Option<Relay> {
    engine.settings.relay.as_ref().map(|(host, port)| Relay {
        host: host.clone(),
        port: *port,
        auth: engine.settings.relay_auth.clone(),
        helo: engine.hostname.clone(),
    })
}

/// Sends the plan's redirects; each one that cannot be sent becomes a keep.
fn send_redirects(engine: &Engine, relay: Option<&Relay>, run: &mut UserRun, raw: &[u8], from: &str) {
    let redirects = std::mem::take(&mut run.plan.redirects);
    for r in redirects {
        let outcome = match relay {
            Some(relay) => relay::send(relay, from, &r.to, raw).map_err(|e| e.to_string()),
            None => Err("no relay configured ([sieve] relay)".to_string()),
        };
        match outcome {
            Ok(()) => tracing::info!(user = %run.user, to = %r.to, "message redirected"),
            Err(e) => {
                tracing::warn!(user = %run.user, to = %r.to, error = %e, "redirect failed; keeping the message");
                engine.scripts.record_error(&run.user, &format!("redirect to {} failed: {e}", r.to));
                if !run.plan.filings.iter().any(|f| f.mailbox == "INBOX") {
                    run.plan.filings.push(Filing { mailbox: "INBOX".into(), flags: Vec::new() });
                }
            }
        }
    }
}

fn send_vacations(engine: &Engine, relay: Option<&Relay>, run: &mut UserRun, now: i64) {
    if run.plan.vacations.is_empty() {
        return;
    }
    let Some(relay) = relay else {
        tracing::info!(user = %run.user, "vacation reply skipped: no relay configured ([sieve] relay)");
        return;
    };
    let path = engine.scripts.vacation_file(&run.user);
    for v in std::mem::take(&mut run.plan.vacations) {
        let Some(message) = v.message else { continue };
        if let (Some((key, period)), Some(log)) = (&v.track, run.log.as_mut()) {
            // Recorded first: a crash or relay failure costs one reply, never a second one.
            let _g = super::scripts::user_lock(&run.user);
            let mut fresh = ReplyLog::load(&path);
            if fresh.is_recent(key, now) {
                continue; // another delivery for the same sender just answered
            }
            fresh.record(key, now, *period);
            if let Err(e) = fresh.save(&path) {
                tracing::warn!(user = %run.user, error = %e, "cannot record the vacation reply; not sending it");
                continue;
            }
            *log = fresh;
        }
        let message = crate::deliver::to_crlf(&message);
        match relay::send(relay, "", &v.to, &message) {
            Ok(()) => tracing::info!(user = %run.user, to = %v.to, "vacation reply sent"),
            Err(e) => tracing::warn!(user = %run.user, to = %v.to, error = %e, "vacation reply not sent"),
        }
    }
}

/// Runs the recipients' scripts and delivers `raw` (trace headers included) accordingly.
/// `return_path` is the envelope sender as `<addr>` or `<>`. One result per `rcpts` entry.
pub fn deliver(engine: &Engine, store: &Store, raw: &[u8], return_path: &str, rcpts: &[Rcpt]) -> Vec<Filed> {
    let now = chrono::Utc::now().timestamp();
    let from = bare(return_path);
    let relay = relay_of(engine);
    // One run per distinct user, in order of first appearance.
    let mut runs: Vec<UserRun> = Vec::new();
    for r in rcpts {
        if !runs.iter().any(|u| u.user == r.user) {
            let mut run = plan_for_user(engine, store, raw, from, r, now);
            send_redirects(engine, relay.as_ref(), &mut run, raw, from);
            runs.push(run);
        }
    }
    let mut targets = Vec::new();
    let mut owner = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for f in &run.plan.filings {
            targets.push(DeliveryTarget {
                user: run.user.clone(),
                mailbox: f.mailbox.clone(),
                flags: store_flags(&f.flags),
            });
            owner.push(i);
        }
    }
    let mut results = store.deliver(raw, None, &targets);
    results.resize_with(targets.len(), || Err(StoreError::Corrupt("missing delivery result".into())));
    // A mailbox name the store refuses: that user gets INBOX instead (second, rare, pass).
    let mut retry = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let mine: Vec<usize> = (0..targets.len()).filter(|t| owner[*t] == i).collect();
        let any_ok = mine.iter().any(|t| results[*t].is_ok());
        let bad_name =
            mine.iter().any(|t| matches!(results[*t], Err(StoreError::InvalidMailboxName | StoreError::NoSuchMailbox)));
        if !any_ok && bad_name {
            tracing::info!(user = %run.user, "Sieve target mailbox refused by the store; delivering to INBOX");
            retry.push((i, DeliveryTarget { user: run.user.clone(), mailbox: "INBOX".into(), flags: Vec::new() }));
        }
    }
    let mut per_user: Vec<Option<Result<Appended, StoreError>>> = runs
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mine: Vec<usize> = (0..targets.len()).filter(|t| owner[*t] == i).collect();
            if mine.is_empty() {
                return None;
            }
            // The first error wins (the sender retries); else the first stored place.
            let err = mine.iter().find_map(|t| {
                results[*t]
                    .as_ref()
                    .err()
                    .filter(|e| !matches!(e, StoreError::InvalidMailboxName | StoreError::NoSuchMailbox))
            });
            Some(match err {
                Some(e) => Err(clone_err(e)),
                None => {
                    mine.iter().find_map(|t| results[*t].as_ref().ok().copied()).ok_or(StoreError::InvalidMailboxName)
                }
            })
        })
        .collect();
    if !retry.is_empty() {
        let again: Vec<DeliveryTarget> = retry.iter().map(|(_, t)| t.clone()).collect();
        let res = store.deliver(raw, None, &again);
        for ((i, _), r) in retry.iter().zip(res) {
            per_user[*i] = Some(r);
        }
    }
    for run in &mut runs {
        send_vacations(engine, relay.as_ref(), run, now);
    }
    rcpts
        .iter()
        .map(|r| {
            let i = runs.iter().position(|u| u.user == r.user).unwrap_or(0);
            match per_user.get(i) {
                Some(Some(Ok(a))) => Filed::Stored(Ok(*a)),
                Some(Some(Err(e))) => Filed::Stored(Err(clone_err(e))),
                Some(None) => Filed::Discarded,
                None => Filed::Stored(Err(StoreError::Corrupt("missing delivery result".into()))),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn flags_are_filtered_to_what_imap_can_hold() {
        let f = |v: &[&str]| store_flags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(f(&["\\flagged", "$Work", "\\Recent", "bad flag", "a(b", "$work", ""]), ["\\Flagged", "$Work"]);
    }

    #[test]
    fn addresses() {
        assert_eq!(base_address("bob+tag@example.org"), "bob@example.org");
        assert_eq!(base_address("bob@example.org"), "bob@example.org");
        assert_eq!(bare("<a@b>"), "a@b");
        assert_eq!(bare("<>"), "");
    }
}
