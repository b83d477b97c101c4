//! Mailbox name rules: validation and canonical form.
//!
//! What it is: the single place that decides whether a string is a mailbox name and how it is
//! spelled in the store. What it is not: the IMAP modified-UTF-7 codec (the IMAP layer converts
//! before calling the store) and not a LIST pattern matcher.
//!
//! Invariants of a canonical name:
//! - non-empty UTF-8, at most [`MAX_NAME_BYTES`] bytes and [`MAX_DEPTH`] levels;
//! - no control characters, no IMAP wildcards (`*`, `%`);
//! - no leading or trailing `/` and no empty level (`a//b`);
//! - a first level equal to `INBOX` in any case is spelled `INBOX` (so `inbox/x` is `INBOX/x`).

use crate::DELIMITER;

/// Longest mailbox name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Deepest hierarchy (levels separated by `/`): deep enough for any real folder tree, and a
/// bound on the work CREATE does for missing parents.
pub const MAX_DEPTH: usize = 64;

/// The canonical spelling of the inbox.
pub const INBOX: &str = "INBOX";

/// Returns the canonical form of `name`, or `None` if it is not a valid mailbox name.
pub fn canonical(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return None;
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return None;
    }
    let mut levels = 0usize;
    for level in name.split(DELIMITER) {
        if level.is_empty() {
            return None;
        }
        levels += 1;
    }
    if levels > MAX_DEPTH {
        return None;
    }
    let first_end = name.find(DELIMITER).unwrap_or(name.len());
    let (first, rest) = name.split_at(first_end);
    if first.eq_ignore_ascii_case(INBOX) {
        Some(format!("{INBOX}{rest}"))
    } else {
        Some(name.to_string())
    }
}

/// The parents of a canonical name, outermost first: `a/b/c` → `a`, `a/b`.
pub fn parents(name: &str) -> Vec<&str> {
    name.match_indices(DELIMITER).map(|(i, _)| &name[..i]).collect()
}

/// Whether `child` is strictly below `parent` in the hierarchy.
pub fn is_descendant(child: &str, parent: &str) -> bool {
    child.len() > parent.len() + 1
        && child.starts_with(parent)
        && child[parent.len()..].starts_with(DELIMITER)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("inbox").as_deref(), Some("INBOX"));
        assert_eq!(canonical("InBoX/Sub").as_deref(), Some("INBOX/Sub"));
        assert_eq!(canonical("INBOXES").as_deref(), Some("INBOXES"));
        assert_eq!(canonical("Lists/rust-users").as_deref(), Some("Lists/rust-users"));
        assert_eq!(canonical("Entwürfe").as_deref(), Some("Entwürfe"));
        for bad in ["", "/", "/a", "a/", "a//b", "a\u{0}b", "a\rb", "a*", "b%", "\u{7f}"] {
            assert_eq!(canonical(bad), None, "{bad:?}");
        }
        assert!(canonical(&"a".repeat(MAX_NAME_BYTES)).is_some());
        assert!(canonical(&"a".repeat(MAX_NAME_BYTES + 1)).is_none());
        assert!(canonical(&vec!["a"; MAX_DEPTH].join("/")).is_some());
        assert!(canonical(&vec!["a"; MAX_DEPTH + 1].join("/")).is_none());
    }

    #[test]
    fn hierarchy_helpers() {
        assert_eq!(parents("a/b/c"), vec!["a", "a/b"]);
        assert!(parents("a").is_empty());
        assert!(is_descendant("a/b", "a"));
        assert!(is_descendant("a/b/c", "a"));
        assert!(!is_descendant("ab", "a"));
        assert!(!is_descendant("a", "a"));
    }
}
