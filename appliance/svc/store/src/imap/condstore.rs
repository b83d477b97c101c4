//! CONDSTORE and QRESYNC (RFC 7162): SELECT/EXAMINE parameters and VANISHED (EARLIER).
//!
//! What it is: [`select_options`] validates the parameters of SELECT/EXAMINE (`CONDSTORE`,
//! `QRESYNC (uidvalidity modseq [known-uids [seq-match]])`); [`vanished_earlier`] computes
//! which UIDs a client must be told have vanished since a mod-sequence, from the store's
//! retained expunges, with the RFC 7162 §3.2.5.2 fallback when the store's record does not reach
//! back far enough; [`write_vanished_earlier`] writes the response.
//! What it is not: the FETCH/STORE/SEARCH parts (in their handlers) or the untagged
//! `VANISHED`/`MODSEQ` of ordinary synchronisation (in [`super::sync`]).
//!
//! Invariants:
//! - A VANISHED (EARLIER) answer is never incomplete: `expunged_since` is read before
//!   `expunge_horizon`, and when the horizon is above the client's mod-sequence every UID in the
//!   client's range that is not in the mailbox is reported instead (over-reporting a UID the
//!   client never had is allowed; missing one is not).
//! - Reported UIDs are below UIDNEXT and inside the client's known-uids (or the command's UID set).
//! - Hermes always keeps mod-sequences, so `NOMODSEQ` is never sent.

use super::reply::Reply;
use hermes_proto::imap::{ExtParams, ExtValue, SequenceSet, parse_sequence_set};
use hermes_store::{MailboxId, StoreError, UserStore};

/// The client's QRESYNC state (RFC 7162 §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// The UIDs the client knows about; `None` means all.
    pub known_uids: Option<SequenceSet>,
}

/// What SELECT/EXAMINE parameters ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectOptions {
    /// `CONDSTORE` (or QRESYNC, which implies it).
    pub condstore: bool,
    pub qresync: Option<Qresync>,
}

fn positive(v: &ExtValue) -> Option<u64> {
    v.as_number().filter(|&n| n > 0)
}

/// Validates SELECT/EXAMINE parameters. `qresync_enabled`: the client issued `ENABLE QRESYNC`
/// (required before the QRESYNC parameter, RFC 7162 §3.2.3).
pub fn select_options(params: &ExtParams, qresync_enabled: bool) -> Result<SelectOptions, Reply> {
    let mut opts = SelectOptions::default();
    for p in &params.0 {
        match p.name.as_str() {
            "CONDSTORE" if p.value.is_none() => opts.condstore = true,
            "QRESYNC" => {
                if !qresync_enabled {
                    return Err(Reply::bad("QRESYNC must be enabled first"));
                }
                let Some(ExtValue::List(items)) = &p.value else {
                    return Err(Reply::bad("Invalid QRESYNC parameter"));
                };
                let invalid = || Reply::bad("Invalid QRESYNC parameter");
                let (uidvalidity, modseq) = match (items.first(), items.get(1)) {
                    (Some(a), Some(b)) => (
                        positive(a).and_then(|n| u32::try_from(n).ok()).ok_or_else(invalid)?,
                        positive(b).ok_or_else(invalid)?,
                    ),
                    _ => return Err(invalid()),
                };
                let mut rest = items.get(2..).unwrap_or_default().iter();
                let mut known_uids = None;
                let mut next = rest.next();
                if let Some(ExtValue::Atom(a)) = next {
                    known_uids = Some(parse_sequence_set(a.as_bytes()).ok_or_else(invalid)?);
                    next = rest.next();
                }
                // Sequence match data: validated, not used (RFC 7162 lets the server ignore it;
                // the fallback below is exact without it).
                if let Some(v) = next {
                    let ExtValue::List(pair) = v else {
                        return Err(invalid());
                    };
                    match pair.as_slice() {
                        [ExtValue::Atom(a), ExtValue::Atom(b)]
                            if parse_sequence_set(a.as_bytes()).is_some()
                                && parse_sequence_set(b.as_bytes()).is_some() => {}
                        _ => return Err(invalid()),
                    }
                }
                if rest.next().is_some() {
                    return Err(invalid());
                }
                opts.condstore = true;
                opts.qresync = Some(Qresync { uidvalidity, modseq, known_uids });
            }
            _ => return Err(Reply::bad("Unsupported SELECT parameter")),
        }
    }
    Ok(opts)
}

/// The UIDs expunged since `modseq` that lie in `within` (all UIDs when `None`), as ascending,
/// disjoint ranges. `present` (ascending) are the mailbox's UIDs now; `uidnext` bounds the
/// range. The fallback works on ranges, so its cost is linear in the mailbox size whatever
/// the client's range.
pub fn vanished_earlier(
    store: &UserStore,
    mailbox: MailboxId,
    modseq: u64,
    within: Option<&SequenceSet>,
    present: &[u32],
    uidnext: u32,
) -> Result<Vec<(u32, u32)>, StoreError> {
    let largest = uidnext.saturating_sub(1);
    let ranges: Vec<(u32, u32)> = match within {
        Some(set) => set
            .ranges(largest, &[])
            .into_iter()
            .filter_map(|(lo, hi)| (lo <= largest).then_some((lo, hi.min(largest))))
            .collect(),
        None if largest == 0 => Vec::new(),
        None => vec![(1, largest)],
    };
    let inside = |u: u32| {
        let i = ranges.partition_point(|&(_, hi)| hi < u);
        ranges.get(i).is_some_and(|&(lo, _)| lo <= u)
    };
    let exact = store.expunged_since(mailbox, modseq)?;
    if store.expunge_horizon(mailbox)? <= modseq {
        return Ok(to_ranges(exact.into_iter().filter(|&u| inside(u))));
    }
    // Fallback (RFC 7162 §3.2.5.2): everything in range that is not here.
    Ok(complement(&ranges, present))
}

/// Ascending UIDs as merged ranges.
fn to_ranges(uids: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for u in uids {
        match out.last_mut() {
            Some(r) if r.1.checked_add(1) == Some(u) => r.1 = u,
            _ => out.push((u, u)),
        }
    }
    out
}

/// The parts of `ranges` (ascending, disjoint) not covered by `present` (ascending).
fn complement(ranges: &[(u32, u32)], present: &[u32]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        let mut next = lo;
        let start = present.partition_point(|&u| u < lo);
        for &u in present.get(start..).unwrap_or_default() {
            if u > hi {
                break;
            }
            if u > next {
                out.push((next, u - 1));
            }
            next = match u.checked_add(1) {
                Some(n) => n,
                None => return out,
            };
        }
        if next <= hi {
            out.push((next, hi));
        }
    }
    out
}

/// `* VANISHED (EARLIER) set\r\n`, or nothing for no UIDs.
pub fn write_vanished_earlier(out: &mut Vec<u8>, ranges: &[(u32, u32)]) {
    if ranges.is_empty() {
        return;
    }
    out.extend_from_slice(b"* VANISHED (EARLIER) ");
    out.extend_from_slice(hermes_proto::imap::response::ranges_to_sequence_set(ranges).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use hermes_proto::imap::ExtParam;

    fn params(v: Option<ExtValue>) -> ExtParams {
        ExtParams(vec![ExtParam { name: "QRESYNC".into(), value: v }])
    }

    fn atom(s: &str) -> ExtValue {
        ExtValue::Atom(s.into())
    }

    #[test]
    fn qresync_parameter_forms() {
        let full = params(Some(ExtValue::List(vec![
            atom("67890007"),
            atom("90060115194045000"),
            atom("41:211,214:541"),
            ExtValue::List(vec![atom("1:3"), atom("5,7,9")]),
        ])));
        let o = select_options(&full, true).unwrap();
        assert!(o.condstore);
        let q = o.qresync.unwrap();
        assert_eq!((q.uidvalidity, q.modseq), (67_890_007, 90_060_115_194_045_000));
        assert!(q.known_uids.is_some());
        assert!(select_options(&full, false).is_err());
        for bad in [
            None,
            Some(atom("1")),
            Some(ExtValue::List(vec![atom("1")])),
            Some(ExtValue::List(vec![atom("0"), atom("5")])),
            Some(ExtValue::List(vec![atom("1"), atom("0")])),
            Some(ExtValue::List(vec![atom("1"), atom("5"), atom("x")])),
            Some(ExtValue::List(vec![atom("1"), atom("5"), atom("1:*"), atom("2")])),
            Some(ExtValue::List(vec![atom("99999999999"), atom("5")])),
        ] {
            assert!(select_options(&params(bad.clone()), true).is_err(), "{bad:?}");
        }
        let cs = ExtParams(vec![ExtParam { name: "CONDSTORE".into(), value: None }]);
        assert_eq!(select_options(&cs, false).unwrap(), SelectOptions { condstore: true, qresync: None });
    }

    #[test]
    fn vanished_line() {
        let mut out = Vec::new();
        write_vanished_earlier(&mut out, &[]);
        assert!(out.is_empty());
        write_vanished_earlier(&mut out, &[(2, 4), (9, 9)]);
        assert_eq!(out, b"* VANISHED (EARLIER) 2:4,9\r\n");
    }

    #[test]
    fn fallback_complement_and_ranges() {
        assert_eq!(complement(&[(1, 10)], &[1, 4, 5, 10]), vec![(2, 3), (6, 9)]);
        assert_eq!(complement(&[(3, 3), (7, 9)], &[1, 8, 20]), vec![(3, 3), (7, 7), (9, 9)]);
        assert_eq!(complement(&[(1, u32::MAX)], &[u32::MAX]), vec![(1, u32::MAX - 1)]);
        assert!(complement(&[], &[1]).is_empty());
        assert_eq!(to_ranges([1, 2, 3, 7, 9, 10].into_iter()), vec![(1, 3), (7, 7), (9, 10)]);
    }
}
