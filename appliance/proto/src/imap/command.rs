//! The IMAP command AST: what a client asked for, after framing and parsing.
//!
//! What it is: plain owned data types for every command of RFC 9051 (IMAP4rev2) and RFC 3501
//! (IMAP4rev1) plus the extensions Hermes serves (LITERAL+, SASL-IR, ENABLE, ID, IDLE, UNSELECT,
//! UIDPLUS, MOVE, NAMESPACE, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE/CREATE-SPECIAL-USE,
//! STATUS=SIZE, ESEARCH, SEARCHRES, WITHIN, MULTIAPPEND, APPENDLIMIT, BINARY, CONDSTORE/QRESYNC
//! parameters, SORT/ESORT/THREAD (RFC 5256, 5267, 5957 DISPLAYFROM/DISPLAYTO), COMPRESS (RFC
//! 4978), QUOTA (RFC 9208)). [`crate::imap::parse::parse_command`] builds them.
//!
//! What it is not: no I/O and no semantics. Mailbox names are kept as sent on the wire (modified
//! UTF-7 or UTF-8, decoding is [`crate::imap::utf7`]'s job), flags are not checked against a
//! mailbox's permanent flags, sequence numbers are not checked against a mailbox's size.
//!
//! Invariants: every value here was validated by the grammar (numbers are in range, sequence
//! numbers are non-zero, dates are real calendar dates, a `MIME` section always has a part
//! number); the fetch macros `ALL`/`FAST`/`FULL` are already expanded to attributes; the types
//! hold no borrowed data so a command outlives the buffer it came from. Passwords and SASL
//! responses sit in [`Secret`], whose `Debug` is redacted.

use std::fmt;
use std::num::NonZeroU32;

/// A value that must never be printed: `Debug` shows `Secret(..)`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// The wrapped value; callers must not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// Unwraps the value; callers must not log it.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One complete client command: its tag and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's tag, echoed in the tagged response. Never empty, never contains `+`.
    pub tag: String,
    /// The command itself.
    pub body: CommandBody,
}

/// Every command the parser understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // --- any state ---
    /// `CAPABILITY`
    Capability,
    /// `NOOP`
    Noop,
    /// `LOGOUT`
    Logout,
    /// `ID ("name" "value" ...)` or `ID NIL` (RFC 2971). `None` is `ID NIL`. Field names and values
    /// are decoded lossily as UTF-8: they are informational only.
    Id(Option<Vec<(String, Option<String>)>>),

    // --- not authenticated ---
    /// `STARTTLS`. The session must discard any bytes the client sent after this line.
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (RFC 9051, SASL-IR RFC 4959).
    Authenticate {
        /// SASL mechanism name, upper-cased (e.g. `PLAIN`).
        mechanism: String,
        /// Decoded initial response. `None`: no initial response given; `Some(empty)`: the client
        /// sent `=` (an empty initial response).
        initial_response: Option<Secret<Vec<u8>>>,
    },
    /// `LOGIN user password`.
    Login {
        /// The user name as sent (UTF-8).
        username: String,
        /// The password octets as sent.
        password: Secret<Vec<u8>>,
    },

    // --- authenticated ---
    /// `ENABLE cap...` (RFC 5161). Capability names upper-cased.
    Enable(Vec<String>),
    /// `SELECT mailbox [(params)]`; `params` holds e.g. `CONDSTORE` or `QRESYNC (...)`.
    Select {
        /// Mailbox to select.
        mailbox: MailboxName,
        /// Select parameters (RFC 4466), kept generically.
        params: ExtParams,
    },
    /// `EXAMINE mailbox [(params)]`: SELECT read-only.
    Examine {
        /// Mailbox to examine.
        mailbox: MailboxName,
        /// Select parameters (RFC 4466), kept generically.
        params: ExtParams,
    },
    /// `CREATE mailbox [(USE (\Sent ...)) ...]` (RFC 6154 CREATE-SPECIAL-USE).
    Create {
        /// Mailbox to create.
        mailbox: MailboxName,
        /// Special-use attributes requested with `USE (...)`, as sent with their backslash
        /// (e.g. `\Sent`).
        special_use: Vec<String>,
        /// Any other create parameters, kept generically.
        params: ExtParams,
    },
    /// `DELETE mailbox`
    Delete(MailboxName),
    /// `RENAME from to [(params)]`
    Rename {
        /// Existing name.
        from: MailboxName,
        /// New name.
        to: MailboxName,
        /// Rename parameters (RFC 4466), kept generically.
        params: ExtParams,
    },
    /// `SUBSCRIBE mailbox`
    Subscribe(MailboxName),
    /// `UNSUBSCRIBE mailbox`
    Unsubscribe(MailboxName),
    /// `LIST` in its basic (RFC 3501) and extended (RFC 5258, 5819, 6154) forms.
    List(ListCommand),
    /// `LSUB reference pattern` (RFC 3501 only).
    Lsub {
        /// Reference name (often empty).
        reference: String,
        /// Mailbox pattern with `%`/`*` wildcards.
        pattern: String,
    },
    /// `NAMESPACE` (RFC 2342).
    Namespace,
    /// `STATUS mailbox (items)`.
    Status {
        /// Mailbox whose status is asked.
        mailbox: MailboxName,
        /// Requested items, in the order sent (never empty).
        items: Vec<StatusItem>,
    },
    /// `APPEND mailbox [flags] [date-time] literal ...` (MULTIAPPEND RFC 3502: one or more
    /// messages, appended atomically).
    Append {
        /// Destination mailbox.
        mailbox: MailboxName,
        /// Messages in the order sent (never empty).
        messages: Vec<AppendMessage>,
    },
    /// `IDLE` (RFC 2177). Afterwards the session reads raw lines until `DONE`.
    Idle,

    // --- selected ---
    /// `CHECK` (RFC 3501 only; a NOOP in practice).
    Check,
    /// `CLOSE`
    Close,
    /// `UNSELECT` (RFC 3691).
    Unselect,
    /// `EXPUNGE` (`uid_set: None`) or `UID EXPUNGE set` (UIDPLUS).
    Expunge {
        /// For `UID EXPUNGE`: only messages with these UIDs are expunged.
        uid_set: Option<SequenceSet>,
    },
    /// `[UID] SEARCH [RETURN (...)] [CHARSET x] keys...`
    Search(SearchCommand),
    /// `[UID] FETCH set attributes [(modifiers)]`
    Fetch(FetchCommand),
    /// `[UID] STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags`
    Store(StoreCommand),
    /// `[UID] COPY set mailbox`
    Copy {
        /// Whether `set` holds UIDs.
        uid: bool,
        /// Messages to copy.
        set: SequenceSet,
        /// Destination.
        mailbox: MailboxName,
    },
    /// `[UID] MOVE set mailbox` (RFC 6851).
    Move {
        /// Whether `set` holds UIDs.
        uid: bool,
        /// Messages to move.
        set: SequenceSet,
        /// Destination.
        mailbox: MailboxName,
    },
    /// `[UID] SORT [RETURN (...)] (criteria) charset keys...` (RFC 5256, ESORT RFC 5267).
    Sort(SortCommand),
    /// `[UID] THREAD algorithm charset keys...` (RFC 5256).
    Thread(ThreadCommand),

    // --- quota (RFC 9208), authenticated ---
    /// `GETQUOTA root`; the root as sent (Hermes has one root per user, `""`).
    GetQuota(String),
    /// `GETQUOTAROOT mailbox`
    GetQuotaRoot(MailboxName),
    /// `SETQUOTA root (resource limit ...)`; resource names upper-cased.
    SetQuota {
        /// The quota root as sent.
        root: String,
        /// (resource, limit) pairs in the order sent.
        limits: Vec<(String, u64)>,
    },

    // --- compression (RFC 4978), authenticated ---
    /// `COMPRESS mechanism`, the mechanism upper-cased (only `DEFLATE` exists).
    Compress(String),
}

impl CommandBody {
    /// The command's name as it would appear on the wire (`"UID FETCH"`, `"LOGIN"`...), for
    /// logs and response texts. Never contains user data.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::Id(_) => "ID",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Enable(_) => "ENABLE",
            CommandBody::Select { .. } => "SELECT",
            CommandBody::Examine { .. } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete(_) => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe(_) => "SUBSCRIBE",
            CommandBody::Unsubscribe(_) => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge { uid_set: None } => "EXPUNGE",
            CommandBody::Expunge { uid_set: Some(_) } => "UID EXPUNGE",
            CommandBody::Search(s) if s.uid => "UID SEARCH",
            CommandBody::Search(_) => "SEARCH",
            CommandBody::Fetch(f) if f.uid => "UID FETCH",
            CommandBody::Fetch(_) => "FETCH",
            CommandBody::Store(s) if s.uid => "UID STORE",
            CommandBody::Store(_) => "STORE",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Copy { .. } => "COPY",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::Move { .. } => "MOVE",
            CommandBody::Sort(s) if s.uid => "UID SORT",
            CommandBody::Sort(_) => "SORT",
            CommandBody::Thread(t) if t.uid => "UID THREAD",
            CommandBody::Thread(_) => "THREAD",
            CommandBody::GetQuota(_) => "GETQUOTA",
            CommandBody::GetQuotaRoot(_) => "GETQUOTAROOT",
            CommandBody::SetQuota { .. } => "SETQUOTA",
            CommandBody::Compress(_) => "COMPRESS",
        }
    }
}

/// A mailbox name exactly as sent (modified UTF-7 or, with UTF8=ACCEPT, UTF-8), except that any
/// case variant of `INBOX` is normalised to `INBOX` (RFC 9051 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

impl MailboxName {
    /// Wraps a wire name, normalising `inbox` in any case to `INBOX`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        if name.eq_ignore_ascii_case("INBOX") {
            MailboxName("INBOX".to_owned())
        } else {
            MailboxName(name)
        }
    }
    /// The name as sent (after INBOX normalisation).
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether this is the INBOX.
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
    /// Unwraps the name.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message flag as used by STORE, APPEND and responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Seen`
    Seen,
    /// `\Draft`
    Draft,
    /// `\Recent` (RFC 3501 only; a client cannot set it, responses may show it).
    Recent,
    /// Any other `\Name` flag; holds the name without the backslash.
    Extension(String),
    /// A keyword such as `$Forwarded` or `NonJunk`, as sent (keywords compare case-insensitively).
    Keyword(String),
}

impl Flag {
    /// Parses a flag's wire form (`\Seen`, `$Junk`). Returns `None` for an empty name or one with
    /// characters that are not atom characters.
    pub fn from_wire(s: &str) -> Option<Flag> {
        if let Some(name) = s.strip_prefix('\\') {
            if name.is_empty() || !name.bytes().all(crate::imap::parse::is_atom_char) {
                return None;
            }
            Some(match name.to_ascii_uppercase().as_str() {
                "ANSWERED" => Flag::Answered,
                "FLAGGED" => Flag::Flagged,
                "DELETED" => Flag::Deleted,
                "SEEN" => Flag::Seen,
                "DRAFT" => Flag::Draft,
                "RECENT" => Flag::Recent,
                _ => Flag::Extension(name.to_owned()),
            })
        } else if !s.is_empty() && s.bytes().all(crate::imap::parse::is_atom_char) {
            Some(Flag::Keyword(s.to_owned()))
        } else {
            None
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Answered => f.write_str("\\Answered"),
            Flag::Flagged => f.write_str("\\Flagged"),
            Flag::Deleted => f.write_str("\\Deleted"),
            Flag::Seen => f.write_str("\\Seen"),
            Flag::Draft => f.write_str("\\Draft"),
            Flag::Recent => f.write_str("\\Recent"),
            Flag::Extension(n) => write!(f, "\\{n}"),
            Flag::Keyword(k) => f.write_str(k),
        }
    }
}

/// One end of a sequence range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    /// A message sequence number or UID (never zero).
    Value(NonZeroU32),
    /// `*`: the largest sequence number or UID in the mailbox.
    Largest,
}

impl SeqNum {
    /// The number, with `*` standing for `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v.get(),
            SeqNum::Largest => largest,
        }
    }
}

/// One element of a sequence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqItem {
    /// A single number or `*`.
    Single(SeqNum),
    /// `a:b`; the ends may come in either order (`5:2` is `2:5`).
    Range(SeqNum, SeqNum),
    /// `$`: the result saved by the last `SEARCH RETURN (SAVE)` (RFC 5182).
    Saved,
}

/// A sequence set (`1:5,7,*`, `$`), as sent. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet(pub Vec<SeqItem>);

impl SequenceSet {
    /// Whether the set refers to the saved search result (`$`) anywhere.
    pub fn uses_saved(&self) -> bool {
        self.0.iter().any(|i| matches!(i, SeqItem::Saved))
    }

    /// The set as sorted, merged, inclusive ranges, with `*` standing for `largest` and `$`
    /// replaced by `saved` (already sorted, merged ranges, or empty). When `largest` is 0 (empty
    /// mailbox) `*` refers to nothing. The result is bounded by the size of the input.
    pub fn ranges(&self, largest: u32, saved: &[(u32, u32)]) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for item in &self.0 {
            match *item {
                SeqItem::Single(n) => {
                    let v = n.resolve(largest);
                    // `*` in an empty mailbox refers to nothing.
                    if v != 0 {
                        out.push((v, v));
                    }
                }
                SeqItem::Range(a, b) => {
                    let (a, b) = (a.resolve(largest), b.resolve(largest));
                    // A range with `*` in an empty mailbox refers to nothing.
                    if a != 0 && b != 0 {
                        out.push(if a <= b { (a, b) } else { (b, a) });
                    }
                }
                SeqItem::Saved => out.extend_from_slice(saved),
            }
        }
        out.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
        for (lo, hi) in out {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    }

    /// Whether `n` is in the set (see [`SequenceSet::ranges`] for `largest` and `saved`).
    pub fn contains(&self, n: u32, largest: u32, saved: &[(u32, u32)]) -> bool {
        self.ranges(largest, saved)
            .iter()
            .any(|&(lo, hi)| lo <= n && n <= hi)
    }
}

/// A calendar date (`1-Feb-1994`), validated (day exists in that month and year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    /// Year, 4 digits on the wire.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of month, 1..=31.
    pub day: u8,
}

impl Date {
    /// Builds a date if it exists in the proleptic Gregorian calendar.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }
    /// Days since 1970-01-01 (negative before). Dates compare by this for SEARCH.
    pub fn days_since_epoch(&self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }
}

/// A date and time with zone, as in APPEND's date-time (`"17-Jul-1996 02:44:25 -0700"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The local date.
    pub date: Date,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=60 (60 for a leap second).
    pub second: u8,
    /// Zone offset east of UTC in minutes (`-0700` is -420).
    pub zone_minutes: i16,
}

impl DateTime {
    /// Seconds since the Unix epoch, UTC.
    pub fn unix_timestamp(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }
}

pub(crate) fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01 for a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day) for days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A generic extension value (RFC 4466 `tagged-ext-val`), used for SELECT/FETCH/STORE/CREATE
/// parameters the parser does not interpret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtValue {
    /// A bare token: a number, a sequence set, an atom or a flag (`12345`, `1:*`, `\Sent`), as
    /// sent.
    Atom(String),
    /// A quoted string or literal, raw octets.
    String(Vec<u8>),
    /// A parenthesised list.
    List(Vec<ExtValue>),
}

impl ExtValue {
    /// The value as a number, if it is a bare token of digits fitting in u64.
    pub fn as_number(&self) -> Option<u64> {
        match self {
            ExtValue::Atom(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                a.parse().ok()
            }
            _ => None,
        }
    }
}

/// One extension parameter: a name and an optional value (`CONDSTORE`, `CHANGEDSINCE 12`,
/// `QRESYNC (67890007 90060115194045000)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtParam {
    /// The parameter name, upper-cased.
    pub name: String,
    /// Its value, if any.
    pub value: Option<ExtValue>,
}

/// A list of extension parameters, in the order sent. Names are upper-cased; a name appears at
/// most once (the parser rejects duplicates).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtParams(pub Vec<ExtParam>);

impl ExtParams {
    /// The parameter named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ExtParam> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
    /// Whether a parameter named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// The numeric value of parameter `name`, if present and numeric.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.value.as_ref()?.as_number()
    }
    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A STATUS data item (RFC 9051, RFC 3501, RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ, RFC 7889
/// APPENDLIMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    /// `MESSAGES`
    Messages,
    /// `UIDNEXT`
    UidNext,
    /// `UIDVALIDITY`
    UidValidity,
    /// `UNSEEN`
    Unseen,
    /// `DELETED` (RFC 9051)
    Deleted,
    /// `DELETED-STORAGE` (RFC 9208): octets an EXPUNGE would free.
    DeletedStorage,
    /// `SIZE` (RFC 8438; RFC 9051)
    Size,
    /// `RECENT` (RFC 3501)
    Recent,
    /// `HIGHESTMODSEQ` (RFC 7162)
    HighestModSeq,
    /// `APPENDLIMIT` (RFC 7889)
    AppendLimit,
}

impl StatusItem {
    /// The item's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
}

/// A LIST command, basic or extended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCommand {
    /// Selection options (RFC 5258), empty for a basic LIST.
    pub selection: Vec<ListSelection>,
    /// The reference name (often empty), as sent.
    pub reference: String,
    /// One or more mailbox patterns with `%`/`*` wildcards, as sent. A basic LIST has exactly one;
    /// `LIST "" ""` has one empty pattern (asks for the hierarchy delimiter).
    pub patterns: Vec<String>,
    /// Return options (RFC 5258, 5819, 6154), empty when no `RETURN` was given.
    pub returns: Vec<ListReturn>,
    /// Whether the extended syntax was used (selection options, several patterns in parentheses
    /// or `RETURN`), which changes some response rules (RFC 5258 §3).
    pub extended: bool,
}

/// A LIST selection option (RFC 5258, RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListSelection {
    /// `SUBSCRIBED`
    Subscribed,
    /// `REMOTE`
    Remote,
    /// `RECURSIVEMATCH` (only valid with another selection option; the parser checks this).
    RecursiveMatch,
    /// `SPECIAL-USE` (RFC 6154)
    SpecialUse,
}

/// A LIST return option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    /// `SUBSCRIBED`
    Subscribed,
    /// `CHILDREN`
    Children,
    /// `SPECIAL-USE` (RFC 6154)
    SpecialUse,
    /// `STATUS (items)` (RFC 5819 LIST-STATUS)
    Status(Vec<StatusItem>),
}

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags to set on the new message (may be empty).
    pub flags: Vec<Flag>,
    /// The INTERNALDATE to give it; `None` means "now".
    pub date: Option<DateTime>,
    /// The message octets.
    pub data: Vec<u8>,
    /// Whether it came as a `~{n}` literal8 (RFC 3516 BINARY: may contain NUL and 8-bit data).
    pub binary: bool,
}

/// A SEARCH command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCommand {
    /// `UID SEARCH`: results are UIDs.
    pub uid: bool,
    /// `RETURN (...)` options (RFC 4731 ESEARCH, RFC 5182 SAVE). `None`: no RETURN clause (answer
    /// with `* SEARCH`); `Some(empty)`: `RETURN ()`, which means `RETURN (ALL)`.
    pub returns: Option<Vec<SearchReturn>>,
    /// `CHARSET` name, upper-cased, if given.
    pub charset: Option<String>,
    /// Search keys, implicitly ANDed (never empty).
    pub criteria: Vec<SearchKey>,
}

/// A SEARCH RETURN option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchReturn {
    /// `MIN`
    Min,
    /// `MAX`
    Max,
    /// `ALL`
    All,
    /// `COUNT`
    Count,
    /// `SAVE` (RFC 5182 SEARCHRES)
    Save,
}

/// A search key. Strings are raw octets in the command's CHARSET (UTF-8 or US-ASCII if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    /// `ALL`
    All,
    /// `ANSWERED`
    Answered,
    /// `BCC string`
    Bcc(Vec<u8>),
    /// `BEFORE date` (internal date)
    Before(Date),
    /// `BODY string`
    Body(Vec<u8>),
    /// `CC string`
    Cc(Vec<u8>),
    /// `DELETED`
    Deleted,
    /// `DRAFT`
    Draft,
    /// `FLAGGED`
    Flagged,
    /// `FROM string`
    From(Vec<u8>),
    /// `HEADER field-name string`
    Header(String, Vec<u8>),
    /// `KEYWORD flag-keyword`
    Keyword(String),
    /// `LARGER n`
    Larger(u64),
    /// `NEW` (RFC 3501: RECENT UNSEEN)
    New,
    /// `NOT key`
    Not(Box<SearchKey>),
    /// `OLD` (RFC 3501: NOT RECENT)
    Old,
    /// `ON date` (internal date)
    On(Date),
    /// `OR key1 key2`
    Or(Box<SearchKey>, Box<SearchKey>),
    /// `RECENT` (RFC 3501)
    Recent,
    /// `SEEN`
    Seen,
    /// `SENTBEFORE date` (Date: header)
    SentBefore(Date),
    /// `SENTON date`
    SentOn(Date),
    /// `SENTSINCE date`
    SentSince(Date),
    /// `SINCE date` (internal date)
    Since(Date),
    /// `SMALLER n`
    Smaller(u64),
    /// `SUBJECT string`
    Subject(Vec<u8>),
    /// `TEXT string` (header and body)
    Text(Vec<u8>),
    /// `TO string`
    To(Vec<u8>),
    /// `UID set`
    Uid(SequenceSet),
    /// `UNANSWERED`
    Unanswered,
    /// `UNDELETED`
    Undeleted,
    /// `UNDRAFT`
    Undraft,
    /// `UNFLAGGED`
    Unflagged,
    /// `UNKEYWORD flag-keyword`
    Unkeyword(String),
    /// `UNRECENT`: not in RFC 3501's grammar, accepted as a synonym of `OLD` for old clients.
    Unrecent,
    /// `UNSEEN`
    Unseen,
    /// A sequence set of message numbers (`1:5,7`, `$`).
    SequenceSet(SequenceSet),
    /// A parenthesised list of keys, ANDed (never empty).
    And(Vec<SearchKey>),
    /// `MODSEQ [entry-name entry-type] n` (RFC 7162). The entry, if given, is the raw entry name
    /// (e.g. `/flags/\Seen`) and the entry type upper-cased (`PRIV`, `SHARED`, `ALL`).
    ModSeq {
        /// Optional metadata entry and type.
        entry: Option<(Vec<u8>, String)>,
        /// Messages whose mod-sequence is at least this.
        modseq: u64,
    },
    /// `OLDER seconds` (RFC 5032 WITHIN)
    Older(u32),
    /// `YOUNGER seconds` (RFC 5032 WITHIN)
    Younger(u32),
}

/// A FETCH command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCommand {
    /// `UID FETCH`: the set holds UIDs (and the UID is always returned).
    pub uid: bool,
    /// Messages to fetch.
    pub set: SequenceSet,
    /// Attributes, in the order sent, macros expanded (never empty).
    pub attributes: Vec<FetchAttribute>,
    /// Fetch modifiers such as `CHANGEDSINCE n` and `VANISHED` (RFC 7162), kept generically.
    pub modifiers: ExtParams,
}

impl FetchCommand {
    /// The `CHANGEDSINCE` modifier's value, if given.
    pub fn changed_since(&self) -> Option<u64> {
        self.modifiers.number("CHANGEDSINCE")
    }
    /// Whether the `VANISHED` modifier was given (UID FETCH with QRESYNC).
    pub fn vanished(&self) -> bool {
        self.modifiers.has("VANISHED")
    }
}

/// A FETCH attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttribute {
    /// `ENVELOPE`
    Envelope,
    /// `FLAGS`
    Flags,
    /// `INTERNALDATE`
    InternalDate,
    /// `RFC822` (answered as `RFC822`, sets \Seen)
    Rfc822,
    /// `RFC822.HEADER` (does not set \Seen)
    Rfc822Header,
    /// `RFC822.SIZE`
    Rfc822Size,
    /// `RFC822.TEXT` (sets \Seen)
    Rfc822Text,
    /// `BODY` (non-extensible BODYSTRUCTURE)
    Body,
    /// `BODYSTRUCTURE`
    BodyStructure,
    /// `UID`
    Uid,
    /// `BODY[section]<partial>` or `BODY.PEEK[section]<partial>`.
    BodySection {
        /// `.PEEK`: do not set \Seen.
        peek: bool,
        /// The section (empty part and no text: the whole message).
        section: Section,
        /// Byte range, if given.
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[part]<partial>` (RFC 3516).
    Binary {
        /// `.PEEK`: do not set \Seen.
        peek: bool,
        /// Part numbers (empty: the whole message).
        part: Vec<u32>,
        /// Byte range, if given.
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]` (RFC 3516).
    BinarySize {
        /// Part numbers (empty: the whole message).
        part: Vec<u32>,
    },
    /// `MODSEQ` (RFC 7162)
    ModSeq,
}

/// A body section specifier: `BODY[1.2.HEADER.FIELDS (From)]`. Shared with the MIME engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Section {
    /// Part path (`1.2` is `[1, 2]`); empty for the whole message. Every number is non-zero.
    pub part: Vec<u32>,
    /// Which text of that part; `None` means the whole part (or whole message).
    pub text: Option<SectionText>,
}

/// The text specifier of a [`Section`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SectionText {
    /// `HEADER`
    Header,
    /// `HEADER.FIELDS (a b)` or, with `not`, `HEADER.FIELDS.NOT (a b)`. Field names as sent (they
    /// compare case-insensitively); never empty.
    HeaderFields {
        /// `.NOT`: every field except these.
        not: bool,
        /// The field names.
        fields: Vec<String>,
    },
    /// `TEXT`
    Text,
    /// `MIME` (only with a non-empty part; the parser checks this).
    Mime,
}

/// A partial fetch range `<offset.length>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partial {
    /// First octet to return.
    pub offset: u64,
    /// Number of octets; the parser always sets `Some(n)` with n > 0 (requests always carry a
    /// length). `None` means "to the end" for internal callers.
    pub length: Option<u64>,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreAction {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// A STORE command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCommand {
    /// `UID STORE`.
    pub uid: bool,
    /// Messages to change.
    pub set: SequenceSet,
    /// `UNCHANGEDSINCE n` modifier (RFC 7162), if given.
    pub unchanged_since: Option<u64>,
    /// Other store modifiers, kept generically (unknown ones should be answered BAD).
    pub modifiers: ExtParams,
    /// Replace, add or remove.
    pub action: StoreAction,
    /// `.SILENT`: no untagged FETCH for the changed flags.
    pub silent: bool,
    /// The flags (may be empty, e.g. `FLAGS ()` clears all).
    pub flags: Vec<Flag>,
}

/// A SORT criterion key (RFC 5256 §3, RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// `ARRIVAL`: INTERNALDATE.
    Arrival,
    /// `CC`: mailbox of the first Cc address.
    Cc,
    /// `DATE`: the Date: header (INTERNALDATE when missing or invalid).
    Date,
    /// `FROM`: mailbox of the first From address.
    From,
    /// `SIZE`: RFC822.SIZE.
    Size,
    /// `SUBJECT`: the base subject (RFC 5256 §2.1).
    Subject,
    /// `TO`: mailbox of the first To address.
    To,
    /// `DISPLAYFROM` (RFC 5957): display name of the first From address, else its address.
    DisplayFrom,
    /// `DISPLAYTO` (RFC 5957): display name of the first To address, else its address.
    DisplayTo,
}

/// One SORT criterion: a key, possibly reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SortCriterion {
    /// `REVERSE` was given before the key.
    pub reverse: bool,
    /// The key.
    pub key: SortKey,
}

/// A SORT command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortCommand {
    /// `UID SORT`: results are UIDs.
    pub uid: bool,
    /// ESORT `RETURN (...)` options (RFC 5267); `None` answers with `* SORT`. `Some(empty)` is
    /// `RETURN ()`, which means `RETURN (ALL)`.
    pub returns: Option<Vec<SearchReturn>>,
    /// Sort criteria in order of precedence (never empty; `REVERSE` applies to one key).
    pub criteria: Vec<SortCriterion>,
    /// The mandatory charset, upper-cased.
    pub charset: String,
    /// Search keys selecting the messages, ANDed (never empty).
    pub search: Vec<SearchKey>,
}

/// A THREAD algorithm (RFC 5256 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadAlgorithm {
    /// `ORDEREDSUBJECT`
    OrderedSubject,
    /// `REFERENCES`
    References,
}

/// A THREAD command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCommand {
    /// `UID THREAD`: results are UIDs.
    pub uid: bool,
    /// The threading algorithm.
    pub algorithm: ThreadAlgorithm,
    /// The mandatory charset, upper-cased.
    pub charset: String,
    /// Search keys selecting the messages, ANDed (never empty).
    pub search: Vec<SearchKey>,
}
