//! Runs one compiled script over one message and maps its actions to a [`Plan`].
//!
//! Pure apart from the two questions the script may ask, answered by the caller through
//! [`Oracle`]: does a mailbox exist, and was a vacation reply sent to this sender recently.
//! That keeps the action mapping unit-testable without a store or a clock.
//!
//! Mapping (as Pigeonhole does):
//! - `keep` and the implicit keep → INBOX with the script's flags (imap4flags).
//! - `fileinto "X"` → X; when X does not exist and `:create` was not given, INBOX instead, with
//!   a note. The same mailbox twice is stored once (RFC 5228 §2.10.3), flags merged.
//! - `discard` → nothing stored. `redirect` → [`Plan::redirects`] (sent through the relay).
//! - `vacation` → [`Plan::vacations`]: the reply message sieve-rs built, sent from `<>`.
//! - A runtime error (instruction limit, disabled extension, a panic inside sieve-rs) → every
//!   planned action is dropped and the plan is the implicit keep alone, with [`Plan::error`] set.
//!
//! Invariant: a plan with no targets is only ever the result of an explicit `discard` (or a
//! redirect without `:copy` that the caller then performs); errors always produce INBOX.

use sieve::{Envelope, Event, Input, Recipient};
use std::collections::HashMap;

/// One place the message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub mailbox: String,
    pub flags: Vec<String>,
}

/// One outgoing message the plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: String,
    /// `None`: the original message (a redirect); `Some`: a message sieve-rs built (vacation).
    pub message: Option<Vec<u8>>,
    /// For vacation: the reply log key and the period during which it silences replies.
    pub track: Option<(String, u64)>,
}

/// What to do with one message for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub filings: Vec<Filing>,
    pub redirects: Vec<Outgoing>,
    pub vacations: Vec<Outgoing>,
    /// Explicit `discard` and no other filing.
    pub discarded: bool,
    /// Things worth logging (fileinto to a missing mailbox, ...).
    pub notes: Vec<String>,
    /// Set when the script failed: the plan is then the implicit keep only.
    pub error: Option<String>,
}

impl Plan {
    /// The fallback: INBOX, no flags.
    pub fn implicit_keep() -> Plan {
        Plan { filings: vec![Filing { mailbox: "INBOX".into(), flags: Vec::new() }], ..Plan::default() }
    }

    fn failed(error: String) -> Plan {
        Plan { error: Some(error), ..Plan::implicit_keep() }
    }

    fn file(&mut self, mailbox: &str, flags: Vec<String>) {
        match self.filings.iter_mut().find(|f| {
            f.mailbox.eq_ignore_ascii_case(mailbox) && (f.mailbox == mailbox || mailbox.eq_ignore_ascii_case("INBOX"))
        }) {
            Some(f) => {
                for fl in flags {
                    if !f.flags.iter().any(|x| x.eq_ignore_ascii_case(&fl)) {
                        f.flags.push(fl);
                    }
                }
            }
            None => self.filings.push(Filing { mailbox: mailbox.to_string(), flags }),
        }
    }
}

/// What the script may ask about the world.
pub trait Oracle {
    fn mailbox_exists(&self, name: &str) -> bool;
    /// Whether a vacation reply under `key` was sent within its period.
    fn replied_recently(&self, key: &str) -> bool;
}

/// The message's envelope, as the script's `envelope` test sees it.
#[derive(Debug, Clone)]
pub struct EnvelopeInfo<'a> {
    /// Bare address, empty for the null sender.
    pub from: &'a str,
    /// The recipient address as given at RCPT.
    pub to: &'a str,
    /// The account's own address (vacation answers mail sent to it).
    pub user_address: &'a str,
}

/// Limits the caller enforces on top of sieve-rs (vacation period bounds, in days).
#[derive(Debug, Clone, Copy)]
pub struct VacationBounds {
    pub min_days: u64,
    pub max_days: u64,
}

/// Runs `script` over `raw`. Never panics: a panic inside sieve-rs becomes [`Plan::error`].
pub fn run(
    runtime: &sieve::Runtime,
    script: std::sync::Arc<sieve::Sieve>,
    raw: &[u8],
    env: &EnvelopeInfo<'_>,
    bounds: VacationBounds,
    oracle: &dyn Oracle,
) -> Plan {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(runtime, script, raw, env, bounds, oracle)));
    match result {
        Ok(plan) => plan,
        Err(_) => Plan::failed("internal error while running the script".into()),
    }
}

/// Most events handled per run: sieve-rs bounds instructions, this bounds the event loop too.
const MAX_EVENTS: usize = 10_000;

fn run_inner(
    runtime: &sieve::Runtime,
    script: std::sync::Arc<sieve::Sieve>,
    raw: &[u8],
    env: &EnvelopeInfo<'_>,
    bounds: VacationBounds,
    oracle: &dyn Oracle,
) -> Plan {
    let mut ctx = runtime
        .filter(raw)
        .with_envelope(Envelope::From, env.from.to_string())
        .with_envelope(Envelope::To, env.to.to_string())
        .with_user_address(env.user_address.to_string());
    let mut plan = Plan::default();
    let mut created: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut pending_track: Option<(String, u64)> = None;
    let mut input = Input::script("active", script);
    let mut kept_or_filed = false;
    let mut events = 0usize;
    while let Some(result) = ctx.run(input) {
        events += 1;
        if events > MAX_EVENTS {
            return Plan::failed("too many actions".into());
        }
        input = Input::True;
        match result {
            Err(e) => return Plan::failed(e.to_string()),
            Ok(event) => match event {
                Event::Keep { flags, .. } => {
                    kept_or_filed = true;
                    plan.file("INBOX", flags);
                }
                Event::FileInto { folder, flags, create, message_id, .. } => {
                    if message_id != 0 && created.contains_key(&message_id) {
                        // :fcc of a created message; not offered, so not expected. Ignore.
                        continue;
                    }
                    kept_or_filed = true;
                    let folder = folder.trim_matches('/').to_string();
                    if folder.is_empty() || folder.eq_ignore_ascii_case("INBOX") {
                        plan.file("INBOX", flags);
                    } else if create || oracle.mailbox_exists(&folder) {
                        plan.file(&folder, flags);
                    } else {
                        plan.notes.push(format!("fileinto {folder:?}: no such mailbox, delivered to INBOX"));
                        plan.file("INBOX", flags);
                    }
                }
                Event::Discard => plan.discarded = true,
                Event::Reject { .. } => {
                    // Not offered, so a compiled script cannot reach it; keep to be safe.
                    kept_or_filed = true;
                    plan.file("INBOX", Vec::new());
                }
                Event::CreatedMessage { message_id, message } => {
                    created.insert(message_id, message);
                }
                Event::SendMessage { recipient, message_id, .. } => {
                    let to = match recipient {
                        Recipient::Address(a) => a,
                        Recipient::List(l) => l,
                        Recipient::Group(g) => g.into_iter().next().unwrap_or_default(),
                    };
                    match created.remove(&message_id) {
                        Some(message) => {
                            plan.vacations.push(Outgoing { to, message: Some(message), track: pending_track.take() })
                        }
                        None => plan.redirects.push(Outgoing { to, message: None, track: None }),
                    }
                }
                Event::DuplicateId { id, expiry, .. } => {
                    // sieve-rs asks this for vacation only (the duplicate extension is off).
                    let min = bounds.min_days.saturating_mul(86_400);
                    let max = bounds.max_days.saturating_mul(86_400).max(min);
                    let period = expiry.clamp(min, max);
                    let seen = oracle.replied_recently(&id);
                    if !seen {
                        pending_track = Some((id, period));
                    }
                    input = if seen { Input::True } else { Input::False };
                }
                Event::MailboxExists { mailboxes, .. } => {
                    let all = mailboxes.iter().all(|m| match m {
                        sieve::Mailbox::Name(n) => n.eq_ignore_ascii_case("INBOX") || oracle.mailbox_exists(n),
                        sieve::Mailbox::Id(_) => false,
                    });
                    input = if all { Input::True } else { Input::False };
                }
                Event::ListContains { .. } => input = Input::False,
                Event::IncludeScript { .. } => input = Input::False,
                Event::SetEnvelope { .. } => input = Input::False,
                Event::Function { .. } => input = Input::result(sieve::runtime::Variable::default()),
                Event::Notify { .. } => {}
            },
        }
    }
    if !kept_or_filed {
        plan.filings.clear();
    }
    if plan.filings.is_empty() && !plan.discarded && plan.redirects.is_empty() {
        // sieve-rs always ends with keep or discard; never leave a message with nowhere to go.
        plan.filings.push(Filing { mailbox: "INBOX".into(), flags: Vec::new() });
    }
    if !plan.filings.is_empty() {
        plan.discarded = false;
    }
    plan
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_core::config::Config;
    use hermes_core::paths::DataDir;
    use std::cell::RefCell;

    struct World {
        mailboxes: Vec<&'static str>,
        replied: RefCell<Vec<String>>,
    }

    impl Oracle for World {
        fn mailbox_exists(&self, name: &str) -> bool {
            self.mailboxes.iter().any(|m| m.eq_ignore_ascii_case(name))
        }
        fn replied_recently(&self, key: &str) -> bool {
            self.replied.borrow().iter().any(|k| k == key)
        }
    }

    const MSG: &[u8] = b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: Hello\r\nX-Count: 5\r\nMessage-ID: <m1@example.net>\r\n\r\nWe need the TPS report.\r\n";

    fn plan_for(script: &str, world: &World) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::host_default();
        config.sieve.max_instructions = 1000;
        let engine = crate::sieve::Engine::new(&config, &DataDir::new(dir.path()));
        let compiled = std::sync::Arc::new(engine.compile(script.as_bytes()).unwrap());
        let env =
            EnvelopeInfo { from: "alice@example.net", to: "bob+tag@example.org", user_address: "bob@example.org" };
        run(&engine.runtime(), compiled, MSG, &env, VacationBounds { min_days: 1, max_days: 60 }, world)
    }

    fn world() -> World {
        World { mailboxes: vec!["INBOX", "Work", "Lists/Staff"], replied: RefCell::new(Vec::new()) }
    }

    fn filings(p: &Plan) -> Vec<(&str, Vec<&str>)> {
        p.filings.iter().map(|f| (f.mailbox.as_str(), f.flags.iter().map(String::as_str).collect())).collect()
    }

    #[test]
    fn implicit_keep_and_explicit_keep_go_to_inbox() {
        let p = plan_for("# nothing\n", &world());
        assert_eq!(filings(&p), [("INBOX", vec![])]);
        let p = plan_for("keep;", &world());
        assert_eq!(filings(&p), [("INBOX", vec![])]);
    }

    #[test]
    fn fileinto_existing_missing_and_create() {
        let p = plan_for(
            "require \"fileinto\";\nif header :contains \"subject\" \"hello\" { fileinto \"Work\"; }",
            &world(),
        );
        assert_eq!(filings(&p), [("Work", vec![])], "fileinto cancels the implicit keep");
        let p = plan_for("require \"fileinto\";\nfileinto \"Nope\";", &world());
        assert_eq!(filings(&p), [("INBOX", vec![])]);
        assert!(p.notes[0].contains("Nope"));
        let p = plan_for("require [\"fileinto\", \"mailbox\"];\nfileinto :create \"New/Box\";", &world());
        assert_eq!(filings(&p), [("New/Box", vec![])]);
        let p = plan_for("require [\"fileinto\", \"copy\"];\nfileinto :copy \"Work\";", &world());
        assert_eq!(filings(&p), [("Work", vec![]), ("INBOX", vec![])], ":copy keeps the implicit keep");
        let p = plan_for("require \"fileinto\";\nfileinto \"Work\"; fileinto \"Work\";", &world());
        assert_eq!(filings(&p), [("Work", vec![])], "stored once");
    }

    #[test]
    fn imap4flags_reach_the_filing() {
        let p = plan_for("require \"imap4flags\";\naddflag \"\\\\Flagged\";", &world());
        assert_eq!(filings(&p), [("INBOX", vec!["\\Flagged"])]);
        let p = plan_for(
            "require [\"imap4flags\", \"fileinto\"];\nfileinto :flags [\"\\\\Seen\", \"$Work\"] \"Work\";",
            &world(),
        );
        assert_eq!(filings(&p), [("Work", vec!["\\Seen", "$Work"])]);
    }

    #[test]
    fn discard_and_redirect() {
        let p = plan_for("discard;", &world());
        assert!(p.discarded && p.filings.is_empty());
        let p = plan_for("redirect \"carol@example.com\";", &world());
        assert!(p.filings.is_empty());
        assert_eq!(p.redirects, [Outgoing { to: "carol@example.com".into(), message: None, track: None }]);
        let p = plan_for("require \"copy\";\nredirect :copy \"carol@example.com\";", &world());
        assert_eq!(filings(&p), [("INBOX", vec![])]);
        assert_eq!(p.redirects.len(), 1);
    }

    #[test]
    fn vacation_builds_a_reply_and_honours_the_log() {
        let script = "require \"vacation\";\nvacation :days 3 :subject \"Away\" :handle \"h1\" \"I am away.\";";
        let w = world();
        let p = plan_for(script, &w);
        assert_eq!(filings(&p), [("INBOX", vec![])], "vacation keeps the message");
        assert_eq!(p.vacations.len(), 1);
        let v = &p.vacations[0];
        assert_eq!(v.to, "alice@example.net");
        let (key, period) = v.track.clone().unwrap();
        assert_eq!(period, 3 * 86_400);
        let text = String::from_utf8(v.message.clone().unwrap()).unwrap();
        assert!(text.contains("Subject: Away\r\n"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.net>\r\n"), "{text}");
        assert!(text.contains("I am away."), "{text}");
        w.replied.borrow_mut().push(key);
        let p = plan_for(script, &w);
        assert!(p.vacations.is_empty(), "replied within :days");
        let p = plan_for("require \"vacation\";\nvacation :days 0 \"x\";", &world());
        assert_eq!(p.vacations[0].track.as_ref().unwrap().1, 86_400, ":days below the minimum is raised");
    }

    #[test]
    fn variables_relational_body_and_envelope() {
        let script = r#"require ["variables", "relational", "body", "envelope", "fileinto", "comparator-i;ascii-numeric", "subaddress"];
set "box" "Work";
if allof (body :contains "TPS", envelope :detail "to" "tag", header :value "ge" :comparator "i;ascii-numeric" "x-count" "0") {
  fileinto "${box}";
}"#;
        let p = plan_for(script, &world());
        assert_eq!(filings(&p), [("Work", vec![])]);
    }

    #[test]
    fn runaway_scripts_fall_back_to_inbox() {
        // The instruction limit (1000 here) stops the loop; the message still goes to INBOX.
        let mut s = String::from("require [\"variables\", \"fileinto\"];\n");
        for _ in 0..800 {
            s.push_str("if header :contains \"subject\" \"x\" { fileinto \"Work\"; }\n");
        }
        s.push_str("fileinto \"Work\";\n");
        let p = plan_for(&s, &world());
        assert!(p.error.is_some());
        assert_eq!(filings(&p), [("INBOX", vec![])]);
    }
}
