//! `/proc/mdstat` parser.
//!
//! What it is: a pure, line-oriented parser for the format the kernel's `md_seq_show` writes:
//! `Personalities :` line, per array a header (`md0 : active raid10 sdb[1] sda[0] sdc[2](S)`), a
//! status line (`… blocks … [4/3] [UU_U]`), optional progress (`[==>..]  recovery = 12.5%
//! (…/…) finish=10.1min speed=102400K/sec`, `resync=DELAYED`) and bitmap lines.
//!
//! What it is not: the source of truth for state (sysfs is; see [`super::sysfs`]) and not strict:
//! unknown lines are ignored, because the format grows with kernel versions.
//!
//! Invariants: input beyond [`MAX_MDSTAT_BYTES`] is ignored; at most [`super::MAX_ARRAYS`] arrays
//! and [`super::MAX_MEMBERS`] members each; numbers that do not parse become `None`; no panics.

use serde::{Deserialize, Serialize};

use super::{Array, MAX_ARRAYS, MAX_MEMBERS, Member, MemberState, SyncAction, SyncProgress, derive_status};

/// Largest mdstat text considered (a 256-array box writes a few tens of KiB).
pub const MAX_MDSTAT_BYTES: usize = 1024 * 1024;

/// A member as mdstat lists it: `sdb1[3](F)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdstatMember {
    pub name: String,
    /// The number in brackets: the descriptor/role number.
    pub role: Option<u32>,
    pub faulty: bool,
    pub spare: bool,
    pub write_mostly: bool,
    pub journal: bool,
    pub replacement: bool,
}

/// One array as mdstat shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdstatArray {
    pub name: String,
    /// `active` or `inactive`.
    pub active: bool,
    pub read_only: bool,
    pub level: Option<String>,
    pub members: Vec<MdstatMember>,
    pub blocks_kib: Option<u64>,
    /// `[n/m]`: raid disks and working disks.
    pub raid_disks: Option<u32>,
    pub working_disks: Option<u32>,
    /// `[UU_U]`: `true` per slot that is up.
    pub slots_up: Vec<bool>,
    pub sync: Option<SyncProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mdstat {
    pub personalities: Vec<String>,
    pub arrays: Vec<MdstatArray>,
}

const LEVELS: [&str; 9] = ["raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "linear", "multipath", "faulty"];

/// Parses mdstat text (only the first [`MAX_MDSTAT_BYTES`] bytes are looked at).
pub fn parse(text: &str) -> Mdstat {
    let mut end = text.len().min(MAX_MDSTAT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Mdstat::default();
    let mut current: Option<MdstatArray> = None;
    for line in text[..end].lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Personalities :") {
            out.personalities = rest
                .split_whitespace()
                .map(|p| p.trim_matches(|c| c == '[' || c == ']').to_string())
                .filter(|p| !p.is_empty())
                .take(32)
                .collect();
            continue;
        }
        if trimmed.starts_with("unused devices") {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some(a) = parse_header(trimmed) {
                if let Some(done) = current.take() {
                    push(&mut out, done);
                }
                current = Some(a);
            }
            continue;
        }
        if let Some(a) = current.as_mut() {
            parse_detail(trimmed, a);
        }
    }
    if let Some(done) = current.take() {
        push(&mut out, done);
    }
    out
}

fn push(out: &mut Mdstat, a: MdstatArray) {
    if out.arrays.len() < MAX_ARRAYS {
        out.arrays.push(a);
    }
}

/// `md0 : active (auto-read-only) raid10 sdb[1] sda[0](F)`.
fn parse_header(line: &str) -> Option<MdstatArray> {
    let (name, rest) = line.split_once(" : ")?;
    let name = name.trim();
    if !name.starts_with("md") || name.contains(char::is_whitespace) {
        return None;
    }
    let mut words = rest.split_whitespace().peekable();
    let active = match words.next()? {
        "active" => true,
        "inactive" => false,
        _ => return None,
    };
    let mut a = MdstatArray {
        name: name.to_string(),
        active,
        read_only: false,
        level: None,
        members: Vec::new(),
        blocks_kib: None,
        raid_disks: None,
        working_disks: None,
        slots_up: Vec::new(),
        sync: None,
    };
    while let Some(w) = words.peek() {
        if w.starts_with('(') {
            a.read_only |= w.contains("read-only");
            words.next();
        } else {
            break;
        }
    }
    if let Some(w) = words.peek()
        && LEVELS.contains(w)
    {
        a.level = Some((*w).to_string());
        words.next();
    }
    for w in words.take(MAX_MEMBERS) {
        if let Some(m) = parse_member(w) {
            a.members.push(m);
        }
    }
    Some(a)
}

/// `sdb1[3](F)(W)`.
fn parse_member(tok: &str) -> Option<MdstatMember> {
    let open = tok.find('[')?;
    let close = tok[open..].find(']')? + open;
    let name = &tok[..open];
    if name.is_empty() {
        return None;
    }
    let markers = &tok[close + 1..];
    Some(MdstatMember {
        name: name.to_string(),
        role: tok[open + 1..close].parse().ok(),
        faulty: markers.contains("(F)"),
        spare: markers.contains("(S)"),
        write_mostly: markers.contains("(W)"),
        journal: markers.contains("(J)"),
        replacement: markers.contains("(R)"),
    })
}

fn parse_detail(line: &str, a: &mut MdstatArray) {
    if line.starts_with("bitmap:") {
        return;
    }
    if let Some(rest) = line.strip_prefix("resync=").or_else(|| line.strip_prefix("recovery=")) {
        // `resync=DELAYED` / `resync=PENDING`: queued, not running.
        let action = if line.starts_with("recovery") { SyncAction::Recover } else { SyncAction::Resync };
        if rest.starts_with("DELAYED") || rest.starts_with("PENDING") {
            a.sync = Some(SyncProgress {
                action,
                done_sectors: None,
                total_sectors: None,
                permille: None,
                speed_kib_s: None,
                eta_secs: None,
                delayed: true,
            });
        }
        return;
    }
    if line.starts_with('[') && (line.contains('=') && line.contains('%')) {
        a.sync = parse_progress(line);
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.get(1) == Some(&"blocks") {
        a.blocks_kib = words.first().and_then(|w| w.parse().ok());
    }
    for w in &words {
        if let Some(inner) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            if let Some((n, m)) = inner.split_once('/') {
                a.raid_disks = n.parse().ok();
                a.working_disks = m.parse().ok();
            } else if !inner.is_empty() && inner.bytes().all(|b| b == b'U' || b == b'_') {
                a.slots_up = inner.bytes().take(MAX_MEMBERS).map(|b| b == b'U').collect();
            }
        }
    }
}

/// `[==>..]  recovery = 12.6% (123/456) finish=10.1min speed=102400K/sec`.
fn parse_progress(line: &str) -> Option<SyncProgress> {
    let after_bar = line.split_once(']')?.1.trim();
    let (word, rest) = after_bar.split_once('=')?;
    let action = SyncAction::parse(word.trim())?;
    let mut p = SyncProgress {
        action,
        done_sectors: None,
        total_sectors: None,
        permille: None,
        speed_kib_s: None,
        eta_secs: None,
        delayed: false,
    };
    for tok in rest.split_whitespace() {
        if let Some(pct) = tok.strip_suffix('%') {
            p.permille = parse_tenths(pct).map(|v| v.min(1000));
        } else if let Some(inner) = tok.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            if let Some((d, t)) = inner.split_once('/') {
                // mdstat counts 1K blocks; sectors are 512 B.
                p.done_sectors = d.parse::<u64>().ok().map(|v| v.saturating_mul(2));
                p.total_sectors = t.parse::<u64>().ok().map(|v| v.saturating_mul(2));
            }
        } else if let Some(m) = tok.strip_prefix("finish=").and_then(|t| t.strip_suffix("min")) {
            p.eta_secs = parse_tenths(m).map(|tenths_min| u64::from(tenths_min) * 6);
        } else if let Some(s) = tok.strip_prefix("speed=").and_then(|t| t.strip_suffix("K/sec")) {
            p.speed_kib_s = s.parse().ok();
        }
    }
    Some(p)
}

/// `12.6` → 126; `7` → 70. At most one decimal is used; bounded to u16.
fn parse_tenths(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let int: u32 = int.parse().ok()?;
    let frac: u32 = frac.get(..1).unwrap_or("0").parse().ok()?;
    u16::try_from(int.checked_mul(10)?.checked_add(frac)?).ok()
}

impl MdstatArray {
    /// Members with states inferred from the markers and the `[UU_U]` map.
    pub fn members(&self) -> Vec<Member> {
        let rebuilding = self.sync.as_ref().is_some_and(|s| s.action == SyncAction::Recover);
        let mut out: Vec<Member> = self
            .members
            .iter()
            .map(|m| {
                let up = m.role.and_then(|r| self.slots_up.get(usize::try_from(r).ok()?).copied());
                let state = if m.faulty {
                    MemberState::Faulty
                } else if m.journal {
                    MemberState::Journal
                } else if m.spare {
                    MemberState::Spare
                } else if up == Some(true) {
                    MemberState::InSync
                } else if rebuilding {
                    MemberState::Rebuilding
                } else if !self.active {
                    MemberState::Spare
                } else {
                    MemberState::InSync
                };
                // The bracket number is the descriptor number; it equals the slot only for members
                // inside the slot map (a spare being rebuilt keeps its higher descriptor number).
                let in_map = |r: &u32| usize::try_from(*r).is_ok_and(|r| r < self.slots_up.len());
                let slot = match state {
                    MemberState::InSync | MemberState::Rebuilding => m.role.filter(in_map),
                    _ => None,
                };
                let mut flags = Vec::new();
                if m.write_mostly {
                    flags.push("write_mostly".to_string());
                }
                if m.replacement {
                    flags.push("replacement".to_string());
                }
                Member { name: m.name.clone(), slot, state, flags }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// An [`Array`] from mdstat alone (no sysfs for this array).
    pub fn into_array(self) -> Array {
        let degraded = match (self.raid_disks, self.working_disks) {
            (Some(n), Some(m)) => Some(n.saturating_sub(m)),
            _ => None,
        };
        let array_state = if self.active { None } else { Some("inactive") };
        let mut sync = self.sync.clone();
        if let Some(s) = sync.as_mut() {
            s.complete_estimates();
        }
        Array {
            name: self.name.clone(),
            status: derive_status(array_state, sync.as_ref(), degraded.unwrap_or(0)),
            level: self.level.clone(),
            array_state: array_state.map(str::to_string),
            raid_disks: self.raid_disks,
            degraded,
            sync,
            mismatch_cnt: None,
            size_kib: self.blocks_kib,
            members: self.members(),
        }
    }
}
