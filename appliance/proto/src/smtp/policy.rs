//! Address policy shared by every SMTP entry point: the open-relay tricks that a syntactically
//! valid address can still carry.
//!
//! What it is: pure functions over a parsed [`Address`]. What it is not: the relay decision
//! itself (local domain? authenticated? trusted network?) — that needs the directory and the
//! config and lives in the router.
//!
//! Invariant: an address refused here is refused for every client, authenticated or not, so
//! no downstream MTA (sendmail, old Exim) can be talked into re-routing it. The refused forms:
//! - percent hack `user%other.example@us` (old sendmail routed to `user@other.example`);
//! - bang paths `other!user@us` (UUCP routing);
//! - any `@` inside a quoted local part (`"user@other"@us`), and quoted local parts carrying
//!   `%` or `!`;
//! - source routes are refused by the parser already (`<@a,@b:user@c>`).

use crate::lmtp::address::Address;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTrick {
    PercentHack,
    BangPath,
    QuotedAt,
}

impl RelayTrick {
    pub fn describe(self) -> &'static str {
        match self {
            RelayTrick::PercentHack => "percent-hack routing is not accepted",
            RelayTrick::BangPath => "bang-path routing is not accepted",
            RelayTrick::QuotedAt => "routing characters in a quoted local part are not accepted",
        }
    }
}

/// The trick `address` carries, if any. The local part is the parser's unquoted value, so a
/// quoted `"a@b"` shows up here as a local part containing `@`.
pub fn relay_trick(address: &Address) -> Option<RelayTrick> {
    let local = address.local_part();
    if local.contains('@') {
        return Some(RelayTrick::QuotedAt);
    }
    if local.contains('%') {
        return Some(RelayTrick::PercentHack);
    }
    if local.contains('!') {
        return Some(RelayTrick::BangPath);
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn tricks_are_recognised() {
        let t = |s: &str| relay_trick(&Address::parse(s).unwrap());
        assert_eq!(t("user%other.example@us.example"), Some(RelayTrick::PercentHack));
        assert_eq!(t("other.example!user@us.example"), Some(RelayTrick::BangPath));
        assert_eq!(t("\"user@other.example\"@us.example"), Some(RelayTrick::QuotedAt));
        assert_eq!(t("\"user%other\"@us.example"), Some(RelayTrick::PercentHack));
        assert_eq!(t("\"a!b\"@us.example"), Some(RelayTrick::BangPath));
        assert_eq!(t("plain.user+tag@us.example"), None);
        assert_eq!(t("\"with space\"@us.example"), None);
    }
}
