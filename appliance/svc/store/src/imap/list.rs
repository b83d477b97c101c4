//! Which mailboxes a LIST or LSUB command names, and with which attributes (RFC 9051 §6.3.9,
//! RFC 3501 §6.3.8-9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE).
//!
//! What it is: pure functions over the user's mailbox list and subscriptions: `%`/`*` pattern
//! matching and the selection/return-option rules. What it is not: wire encoding of names (the
//! session converts to modified UTF-7 or UTF-8) nor LIST-STATUS (the session adds STATUS lines).
//!
//! Invariants:
//! - Matching is a dynamic programme, O(pattern × name) per name with O(name) memory, so no
//!   pattern can make it exponential; patterns are bounded by [`MAX_PATTERN`].
//! - Names are `/`-separated UTF-8; `INBOX` matches case-insensitively (RFC 9051 §5.1).
//! - Every entry carries exactly one of `\HasChildren`/`\HasNoChildren` (CHILDREN is always
//!   returned, as RFC 5258 §4 permits), and a mailbox that does not exist is marked
//!   `\NonExistent` (extended) or `\Noselect` (basic) instead.

use hermes_store::{DELIMITER, MailboxInfo};
use std::collections::{BTreeMap, BTreeSet};

/// Longest pattern accepted (bytes): far beyond any real name, small enough to keep matching cheap.
pub const MAX_PATTERN: usize = 1024;

/// Whether `name` matches `pattern` (`*` any run, `%` any run without the delimiter).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // prev[j]: pattern[..i] matches name[..j]
    let mut prev = vec![false; n.len() + 1];
    prev[0] = true;
    for &pc in &p {
        let mut cur = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                cur[0] = prev[0];
                for j in 1..=n.len() {
                    let can_extend = pc == '*' || n[j - 1] != DELIMITER;
                    cur[j] = prev[j] || (can_extend && cur[j - 1]);
                }
            }
            c => {
                for j in 1..=n.len() {
                    cur[j] = prev[j - 1] && n[j - 1] == c;
                }
            }
        }
        prev = cur;
        if !prev.iter().any(|&b| b) {
            return false;
        }
    }
    prev[n.len()]
}

/// Canonical form of a full pattern: any case of a leading `INBOX` component becomes `INBOX`.
pub fn canonical_pattern(reference: &str, pattern: &str) -> String {
    let full = if reference.is_empty() {
        pattern.to_string()
    } else if reference.ends_with(DELIMITER) && pattern.starts_with(DELIMITER) {
        format!("{}{}", reference, &pattern[DELIMITER.len_utf8()..])
    } else {
        format!("{reference}{pattern}")
    };
    canonical_name(&full)
}

/// Any case of `INBOX` as the first component becomes `INBOX`.
pub fn canonical_name(name: &str) -> String {
    if let (Some(head), Some(rest)) = (name.get(..5), name.get(5..))
        && head.eq_ignore_ascii_case("INBOX")
        && (rest.is_empty() || rest.starts_with(DELIMITER))
    {
        return format!("INBOX{rest}");
    }
    name.to_string()
}

/// What a LIST asks for, independent of wire syntax.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Full patterns (reference applied, UTF-8).
    pub patterns: Vec<String>,
    pub select_subscribed: bool,
    pub select_special_use: bool,
    pub recursive_match: bool,
    pub return_subscribed: bool,
    /// Extended syntax: `\NonExistent` rather than `\Noselect` for missing mailboxes.
    pub extended: bool,
    /// LSUB semantics: only subscribed names, `\Noselect` for unsubscribed parents, no children info.
    pub lsub: bool,
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// UTF-8 store name.
    pub name: String,
    pub attributes: Vec<&'static str>,
    /// RFC 5258 `CHILDINFO ("SUBSCRIBED")`.
    pub child_info_subscribed: bool,
    /// Whether the mailbox exists and can be selected (so LIST-STATUS applies).
    pub selectable: bool,
}

fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices().filter(|&(_, c)| c == DELIMITER).map(move |(i, _)| &name[..i])
}

/// Answers a LIST/LSUB query. `mailboxes` come from the store (INBOX first then by name).
pub fn list(mailboxes: &[MailboxInfo], subscriptions: &[String], q: &ListQuery) -> Vec<ListEntry> {
    let existing: BTreeMap<&str, &MailboxInfo> = mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();
    let subscribed: BTreeSet<String> = subscriptions
        .iter()
        .map(|s| canonical_name(s))
        .chain(mailboxes.iter().filter(|m| m.subscribed).map(|m| m.name.clone()))
        .collect();
    // Every name that exists or is implied as a parent of one that exists.
    let mut all: BTreeSet<&str> = existing.keys().copied().collect();
    for m in mailboxes {
        all.extend(parents(&m.name).filter(|p| !p.is_empty()));
    }
    let has_children = |name: &str| -> bool {
        let prefix = format!("{name}{DELIMITER}");
        all.range::<str, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
            .take_while(|n| n.starts_with(&prefix))
            .next()
            .is_some()
    };
    let matches_any = |name: &str| q.patterns.iter().any(|p| matches(p, name));
    let missing_attr = if q.extended { "\\NonExistent" } else { "\\Noselect" };

    let mut out: Vec<ListEntry> = Vec::new();
    if q.lsub || q.select_subscribed {
        // Candidates: subscribed names (existing or not), plus parents for `%` and RECURSIVEMATCH.
        let mut names: BTreeMap<String, (bool, bool)> = BTreeMap::new(); // name -> (listed itself, childinfo)
        for s in &subscribed {
            if matches_any(s) {
                names.entry(s.clone()).or_default().0 = true;
            }
            for p in parents(s).filter(|p| !p.is_empty()) {
                if matches_any(p) {
                    let e = names.entry(p.to_string()).or_default();
                    e.1 = true;
                }
            }
        }
        for (name, (listed, child_sub)) in names {
            let is_sub = subscribed.contains(&name);
            let exists = existing.contains_key(name.as_str());
            if q.lsub {
                if !listed && !is_sub {
                    // RFC 3501 §6.3.9: a `%` match on an unsubscribed parent is shown \Noselect.
                    out.push(ListEntry {
                        name,
                        attributes: vec!["\\Noselect"],
                        child_info_subscribed: false,
                        selectable: false,
                    });
                } else if listed {
                    let mut attributes = Vec::new();
                    if !exists {
                        attributes.push("\\Noselect");
                    }
                    out.push(ListEntry { name, attributes, child_info_subscribed: false, selectable: exists });
                }
                continue;
            }
            if !(listed || (q.recursive_match && child_sub)) {
                continue;
            }
            let mut attributes = Vec::new();
            if !exists {
                attributes.push("\\NonExistent");
            } else if has_children(&name) {
                attributes.push("\\HasChildren");
            } else {
                attributes.push("\\HasNoChildren");
            }
            if is_sub {
                attributes.push("\\Subscribed");
            }
            if let Some(su) = existing.get(name.as_str()).and_then(|m| m.special_use) {
                attributes.push(su.attribute());
            }
            out.push(ListEntry {
                child_info_subscribed: q.recursive_match && child_sub,
                name,
                attributes,
                selectable: exists,
            });
        }
        sort_inbox_first(&mut out);
        return out;
    }

    for &name in &all {
        if !matches_any(name) {
            continue;
        }
        let info = existing.get(name).copied();
        if q.select_special_use && info.and_then(|m| m.special_use).is_none() {
            continue;
        }
        let mut attributes = Vec::new();
        if info.is_none() {
            attributes.push(missing_attr);
        }
        attributes.push(if has_children(name) { "\\HasChildren" } else { "\\HasNoChildren" });
        if q.return_subscribed && subscribed.contains(name) {
            attributes.push("\\Subscribed");
        }
        if let Some(su) = info.and_then(|m| m.special_use) {
            attributes.push(su.attribute());
        }
        out.push(ListEntry {
            name: name.to_string(),
            attributes,
            child_info_subscribed: false,
            selectable: info.is_some(),
        });
    }
    // `%` also lists a missing parent of a matching deeper mailbox: `all` already holds parents.
    sort_inbox_first(&mut out);
    out
}

fn sort_inbox_first(entries: &mut [ListEntry]) {
    entries.sort_by(|a, b| {
        let ka = (a.name != "INBOX", &a.name);
        let kb = (b.name != "INBOX", &b.name);
        ka.cmp(&kb)
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use hermes_store::{MailboxId, SpecialUse};

    fn mb(name: &str, su: Option<SpecialUse>, subscribed: bool) -> MailboxInfo {
        MailboxInfo {
            id: MailboxId(1),
            name: name.into(),
            uidvalidity: 1,
            uidnext: 1,
            highest_modseq: 0,
            messages: 0,
            unseen: 0,
            size_bytes: 0,
            special_use: su,
            subscribed,
        }
    }

    #[test]
    fn wildcards() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "abc"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a*c", "a/b/c"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaax"));
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(canonical_pattern("", "inbox"), "INBOX");
        assert_eq!(canonical_pattern("inbox/", "/x"), "INBOX/x");
        assert_eq!(canonical_pattern("", "inboxes"), "inboxes");
    }

    #[test]
    fn basic_list_children_and_special_use() {
        let boxes = vec![
            mb("INBOX", None, true),
            mb("Sent", Some(SpecialUse::Sent), true),
            mb("a", None, false),
            mb("a/b", None, false),
        ];
        let q = ListQuery { patterns: vec!["%".into()], ..Default::default() };
        let got = list(&boxes, &[], &q);
        let names: Vec<_> = got.iter().map(|e| (e.name.as_str(), e.attributes.clone())).collect();
        assert_eq!(
            names,
            vec![
                ("INBOX", vec!["\\HasNoChildren"]),
                ("Sent", vec!["\\HasNoChildren", "\\Sent"]),
                ("a", vec!["\\HasChildren"]),
            ]
        );
    }

    #[test]
    fn subscribed_selection_shows_missing_and_recursive_match() {
        let boxes = vec![mb("INBOX", None, true), mb("x", None, false), mb("x/y", None, true)];
        let subs = vec!["gone".to_string()];
        let q = ListQuery {
            patterns: vec!["%".into()],
            select_subscribed: true,
            recursive_match: true,
            return_subscribed: true,
            extended: true,
            ..Default::default()
        };
        let got = list(&boxes, &subs, &q);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[1].name, "gone");
        assert_eq!(got[1].attributes, vec!["\\NonExistent", "\\Subscribed"]);
        assert_eq!(got[2].name, "x");
        assert!(got[2].child_info_subscribed);
    }

    #[test]
    fn lsub_marks_unsubscribed_parent_noselect() {
        let boxes = vec![mb("INBOX", None, false), mb("x", None, false), mb("x/y", None, true)];
        let q = ListQuery { patterns: vec!["%".into()], lsub: true, ..Default::default() };
        let got = list(&boxes, &[], &q);
        assert_eq!(
            got,
            vec![ListEntry {
                name: "x".into(),
                attributes: vec!["\\Noselect"],
                child_info_subscribed: false,
                selectable: false
            }]
        );
    }
}
