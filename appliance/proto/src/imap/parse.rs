//! IMAP command parser: one framed [`RawCommand`] in, one [`Command`] or [`ParseError`] out.
//!
//! What it is: a hand-written recursive-descent parser for the client side of the RFC 9051 and
//! RFC 3501 grammars plus the extensions listed in [`crate::imap::command`], working on the line
//! segments and literals the framing layer ([`crate::imap::framing`]) produced. Keywords are
//! case-insensitive; atoms, quoted strings with `\"`/`\\` escapes, literals (`{n}`, `{n+}`) and,
//! in APPEND only, literal8 (`~{n}`) are understood. Also [`parse_authenticate_response`] for the
//! raw lines of an AUTHENTICATE exchange. See `docs/adr/0001-imap-parser.md` for why this is not
//! imap-codec.
//!
//! What it is not: it checks syntax only. Whether a command is allowed in the session's state,
//! whether a mailbox exists or a flag may be set is the session's business. It does no modified
//! UTF-7 conversion ([`crate::imap::utf7`] does) and no I/O.
//!
//! Invariants: never panics and never indexes out of bounds on any input; recursion is bounded
//! (SEARCH keys nest at most [`MAX_SEARCH_DEPTH`] deep, extension values [`MAX_EXT_DEPTH`]);
//! the work done is linear in the command size, which framing already bounded; an error message
//! is a short constant text plus at most the command name, never echoed client input, and says
//! whether the tag was recovered so the caller can answer `tag BAD` rather than `* BAD`.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;

use crate::imap::command::*;
use crate::imap::framing::RawCommand;

/// Deepest nesting of parenthesised lists and NOT/OR in a SEARCH program.
pub const MAX_SEARCH_DEPTH: usize = 100;
/// Deepest nesting of parenthesised lists in a generic extension value.
pub const MAX_EXT_DEPTH: usize = 8;
/// Longest tag accepted (the tag is echoed in the response).
pub const MAX_TAG: usize = 64;
/// RFC 2971 bounds for ID: at most 30 pairs, field names of at most 30 octets, values of at
/// most 1024 octets.
pub const MAX_ID_PAIRS: usize = 30;
const MAX_ID_FIELD: usize = 30;
const MAX_ID_VALUE: usize = 1024;

/// A command that could not be parsed. Answer `tag BAD <message>` when `tag` is known, else
/// `* BAD <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The tag, if it was recovered.
    pub tag: Option<String>,
    /// A short human-readable reason; never contains client input.
    pub message: Cow<'static, str>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Internal result: errors are constant texts, wrapped with the tag at the top.
type R<T> = Result<T, &'static str>;

/// Whether `b` is an ATOM-CHAR: any CHAR except atom-specials
/// (`(` `)` `{` SP CTL `%` `*` `"` `\` `]`).
pub fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// Whether `b` is an ASTRING-CHAR: ATOM-CHAR or `]`.
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// Whether `b` may appear in a tag: ASTRING-CHAR except `+`.
pub fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// Whether `b` is a list-char (LIST patterns): ATOM-CHAR, `%`, `*` or `]`.
pub fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// A position in a [`RawCommand`]: line segment index and offset within it.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    raw: &'a RawCommand,
    line: usize,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn cur(&self) -> &'a [u8] {
        self.raw
            .lines
            .get(self.line)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn peek(&self) -> Option<u8> {
        self.cur().get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.cur().get(self.pos + off).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.cur().len() && self.line + 1 >= self.raw.lines.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> R<()> {
        if self.eat(b) { Ok(()) } else { Err(what) }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "Expected a space")
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let line = self.cur();
        let start = self.pos.min(line.len());
        let mut end = start;
        while end < line.len() && pred(line[end]) {
            end += 1;
        }
        self.pos = end;
        &line[start..end]
    }

    /// Whether the next octets are `word` (case-insensitive), not followed by an atom char.
    fn peek_keyword(&self, word: &str) -> bool {
        let line = self.cur();
        let Some(rest) = line.get(self.pos..) else {
            return false;
        };
        rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && rest.get(word.len()).is_none_or(|&b| !is_atom_char(b))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.peek_keyword(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// 1*ATOM-CHAR.
    fn atom(&mut self) -> R<&'a str> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err("Expected an atom");
        }
        // Atom chars are ASCII, so this cannot fail.
        std::str::from_utf8(a).map_err(|_| "Expected an atom")
    }

    /// An atom, upper-cased.
    fn keyword(&mut self) -> R<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    /// Letters, digits, `.` and `-`: names such as `BODY.PEEK`, `HEADER.FIELDS.NOT`.
    fn word(&mut self) -> String {
        let w = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        String::from_utf8_lossy(w).to_ascii_uppercase()
    }

    fn digits(&mut self) -> R<&'a [u8]> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            Err("Expected a number")
        } else {
            Ok(d)
        }
    }

    /// number64 (RFC 9051): up to 2^63-1.
    fn number64(&mut self) -> R<u64> {
        let d = self.digits()?;
        let mut n: u64 = 0;
        for &b in d {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or("Number out of range")?;
        }
        Ok(n)
    }

    /// number: 32-bit unsigned.
    fn number(&mut self) -> R<u32> {
        u32::try_from(self.number64()?).map_err(|_| "Number out of range")
    }

    fn nz_number(&mut self) -> R<NonZeroU32> {
        NonZeroU32::new(self.number()?).ok_or("Zero is not allowed here")
    }

    /// A quoted string with `\"` and `\\` escapes. 8-bit octets (UTF-8) are accepted; CR, LF and
    /// NUL are not.
    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "Expected a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("Unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("Invalid escape in quoted string"),
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("Invalid character in quoted string"),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A literal `{n}`/`{n+}` or, if `allow8`, a literal8 `~{n}`/`~{n+}`. Returns the octets and
    /// whether it was a literal8. The announcement must end its line segment.
    fn literal(&mut self, allow8: bool, allow_nul: bool) -> R<(Vec<u8>, bool)> {
        let binary = self.eat(b'~');
        if binary && !allow8 {
            return Err("literal8 is not allowed here");
        }
        self.expect(b'{', "Expected a literal")?;
        let size = self.number64()?;
        self.eat(b'+');
        self.expect(b'}', "Invalid literal")?;
        if self.pos != self.cur().len() {
            return Err("Literal announcement must end the line");
        }
        let lit = self
            .raw
            .literals
            .get(self.line)
            .ok_or("Missing literal data")?;
        if lit.len() as u64 != size {
            return Err("Literal size mismatch");
        }
        if !binary && !allow_nul && lit.contains(&0) {
            return Err("NUL in literal");
        }
        self.line += 1;
        self.pos = 0;
        if self.line >= self.raw.lines.len() {
            return Err("Missing data after literal");
        }
        Ok((lit.clone(), binary))
    }

    /// string = quoted / literal.
    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal(false, false)?.0),
            _ => Err("Expected a string"),
        }
    }

    /// astring = 1*ASTRING-CHAR / string.
    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err("Expected a string")
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// nstring = string / NIL.
    fn nstring(&mut self) -> R<Option<Vec<u8>>> {
        if self.eat_keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn utf8_astring(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).map_err(|_| "Invalid UTF-8")
    }

    fn mailbox(&mut self) -> R<MailboxName> {
        Ok(MailboxName::new(self.utf8_astring()?))
    }

    /// list-mailbox = 1*list-char / string.
    fn list_mailbox(&mut self) -> R<String> {
        let bytes = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    return Err("Expected a mailbox pattern");
                }
                a.to_vec()
            }
        };
        String::from_utf8(bytes).map_err(|_| "Invalid UTF-8")
    }

    fn seq_num(&mut self) -> R<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Largest)
        } else {
            Ok(SeqNum::Value(self.nz_number()?))
        }
    }

    fn sequence_set(&mut self) -> R<SequenceSet> {
        let mut items = Vec::new();
        loop {
            if self.eat(b'$') {
                items.push(SeqItem::Saved);
            } else {
                let a = self.seq_num().map_err(|_| "Invalid sequence set")?;
                if self.eat(b':') {
                    let b = self.seq_num().map_err(|_| "Invalid sequence set")?;
                    items.push(SeqItem::Range(a, b));
                } else {
                    items.push(SeqItem::Single(a));
                }
            }
            if !self.eat(b',') {
                break;
            }
        }
        Ok(SequenceSet(items))
    }

    fn flag(&mut self) -> R<Flag> {
        let backslash = self.eat(b'\\');
        let a = self.atom().map_err(|_| "Invalid flag")?;
        let wire = if backslash {
            format!("\\{a}")
        } else {
            a.to_owned()
        };
        Flag::from_wire(&wire).ok_or("Invalid flag")
    }

    /// flag-list = "(" [flag *(SP flag)] ")".
    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.expect(b'(', "Expected a flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// date = date-text / DQUOTE date-text DQUOTE; date-text = 1*2DIGIT "-" month "-" 4DIGIT.
    fn date(&mut self) -> R<Date> {
        let quoted = self.eat(b'"');
        let day = self.take_while(|b| b.is_ascii_digit());
        if day.is_empty() || day.len() > 2 {
            return Err("Invalid date");
        }
        let day = parse_small(day);
        self.expect(b'-', "Invalid date")?;
        let (year, month) = self.month_year()?;
        if quoted {
            self.expect(b'"', "Invalid date")?;
        }
        Date::new(year, month, day).ok_or("Invalid date")
    }

    /// `mon-yyyy` after a day and its dash.
    fn month_year(&mut self) -> R<(u16, u8)> {
        let m = self.take_while(|b| b.is_ascii_alphabetic());
        let month = month_number(m).ok_or("Invalid month")?;
        self.expect(b'-', "Invalid date")?;
        let y = self.take_while(|b| b.is_ascii_digit());
        if y.len() != 4 {
            return Err("Invalid year");
        }
        Ok((parse_small4(y), month))
    }

    /// date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE.
    fn date_time(&mut self) -> R<DateTime> {
        self.expect(b'"', "Expected a date-time")?;
        self.eat(b' '); // date-day-fixed: SP DIGIT
        let day = self.take_while(|b| b.is_ascii_digit());
        if day.is_empty() || day.len() > 2 {
            return Err("Invalid date-time");
        }
        let day = parse_small(day);
        self.expect(b'-', "Invalid date-time")?;
        let (year, month) = self.month_year()?;
        let date = Date::new(year, month, day).ok_or("Invalid date-time")?;
        self.sp()?;
        let hour = self.two_digits()?;
        self.expect(b':', "Invalid time")?;
        let minute = self.two_digits()?;
        self.expect(b':', "Invalid time")?;
        let second = self.two_digits()?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err("Invalid time");
        }
        self.sp()?;
        let sign: i16 = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("Invalid zone"),
        };
        self.pos += 1;
        let zh = self.two_digits()?;
        let zm = self.two_digits()?;
        if zh > 23 || zm > 59 {
            return Err("Invalid zone");
        }
        self.expect(b'"', "Invalid date-time")?;
        let zone_minutes = sign * (i16::from(zh) * 60 + i16::from(zm));
        Ok(DateTime {
            date,
            hour,
            minute,
            second,
            zone_minutes,
        })
    }

    fn two_digits(&mut self) -> R<u8> {
        match (self.peek(), self.peek_at(1)) {
            (Some(a), Some(b)) if a.is_ascii_digit() && b.is_ascii_digit() => {
                self.pos += 2;
                Ok((a - b'0') * 10 + (b - b'0'))
            }
            _ => Err("Expected two digits"),
        }
    }
}

fn parse_small(d: &[u8]) -> u8 {
    d.iter()
        .fold(0u8, |n, &b| n.saturating_mul(10).saturating_add(b - b'0'))
}

fn parse_small4(d: &[u8]) -> u16 {
    d.iter().fold(0u16, |n, &b| {
        n.saturating_mul(10).saturating_add(u16::from(b - b'0'))
    })
}

fn month_number(m: &[u8]) -> Option<u8> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// Parses one framed command. See the module documentation.
pub fn parse_command(raw: &RawCommand) -> Result<Command, ParseError> {
    let mut c = Cursor {
        raw,
        line: 0,
        pos: 0,
    };
    let tag = c.take_while(is_tag_char);
    if tag.is_empty() || tag.len() > MAX_TAG || c.peek() != Some(b' ') {
        return Err(ParseError {
            tag: None,
            message: Cow::Borrowed("Missing or invalid tag"),
        });
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let fail = |tag: &str, msg: Cow<'static, str>| ParseError {
        tag: Some(tag.to_owned()),
        message: msg,
    };
    if c.sp().is_err() {
        return Err(fail(&tag, Cow::Borrowed("Missing command")));
    }
    let Ok(name) = c.atom() else {
        return Err(fail(&tag, Cow::Borrowed("Missing command")));
    };
    let name = name.to_ascii_uppercase();
    let body = match command_body(&mut c, &name) {
        Ok(body) => body,
        Err(Unknown) => return Err(fail(&tag, Cow::Borrowed("Unknown command"))),
        Err(Syntax(cmd, msg)) => {
            return Err(fail(
                &tag,
                Cow::Owned(format!("Error in IMAP command {cmd}: {msg}")),
            ));
        }
    };
    if !c.at_end() {
        return Err(fail(
            &tag,
            Cow::Owned(format!(
                "Error in IMAP command {}: Unexpected extra arguments",
                body.name()
            )),
        ));
    }
    Ok(Command { tag, body })
}

enum BodyError {
    Unknown,
    Syntax(&'static str, &'static str),
}
use BodyError::{Syntax, Unknown};

/// The commands we know, with their canonical names (for error texts that never echo input).
const KNOWN: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "ENABLE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "APPEND",
    "IDLE",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "ID",
    "UID",
    "SORT",
    "THREAD",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "COMPRESS",
];

fn command_body(c: &mut Cursor<'_>, name: &str) -> Result<CommandBody, BodyError> {
    let Some(&canon) = KNOWN.iter().find(|k| **k == name) else {
        return Err(Unknown);
    };
    if canon == "UID" {
        let sub = c
            .sp()
            .and_then(|()| c.keyword())
            .map_err(|e| Syntax("UID", e))?;
        let Some(&sub_canon) = [
            "COPY", "MOVE", "FETCH", "STORE", "SEARCH", "EXPUNGE", "SORT", "THREAD",
        ]
        .iter()
        .find(|k| **k == sub) else {
            return Err(Syntax("UID", "Unknown UID command"));
        };
        let cmd: &'static str = match sub_canon {
            "COPY" => "UID COPY",
            "MOVE" => "UID MOVE",
            "FETCH" => "UID FETCH",
            "STORE" => "UID STORE",
            "SEARCH" => "UID SEARCH",
            "SORT" => "UID SORT",
            "THREAD" => "UID THREAD",
            _ => "UID EXPUNGE",
        };
        return args(c, sub_canon, true).map_err(|e| Syntax(cmd, e));
    }
    args(c, canon, false).map_err(|e| Syntax(canon, e))
}

fn args(c: &mut Cursor<'_>, name: &str, uid: bool) -> R<CommandBody> {
    Ok(match name {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "NAMESPACE" => CommandBody::Namespace,
        "IDLE" => CommandBody::Idle,
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "EXPUNGE" if uid => {
            c.sp()?;
            CommandBody::Expunge {
                uid_set: Some(c.sequence_set()?),
            }
        }
        "EXPUNGE" => CommandBody::Expunge { uid_set: None },
        "AUTHENTICATE" => authenticate(c)?,
        "LOGIN" => {
            c.sp()?;
            let username = c.utf8_astring()?;
            c.sp()?;
            let password = Secret::new(c.astring()?);
            CommandBody::Login { username, password }
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.eat(b' ') {
                caps.push(c.keyword()?);
            }
            if caps.is_empty() {
                return Err("Expected capability names");
            }
            CommandBody::Enable(caps)
        }
        "SELECT" | "EXAMINE" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            let params = if c.eat(b' ') {
                ext_params(c)?
            } else {
                ExtParams::default()
            };
            if name == "SELECT" {
                CommandBody::Select { mailbox, params }
            } else {
                CommandBody::Examine { mailbox, params }
            }
        }
        "CREATE" => create(c)?,
        "DELETE" => {
            c.sp()?;
            CommandBody::Delete(c.mailbox()?)
        }
        "SUBSCRIBE" => {
            c.sp()?;
            CommandBody::Subscribe(c.mailbox()?)
        }
        "UNSUBSCRIBE" => {
            c.sp()?;
            CommandBody::Unsubscribe(c.mailbox()?)
        }
        "RENAME" => {
            c.sp()?;
            let from = c.mailbox()?;
            c.sp()?;
            let to = c.mailbox()?;
            let params = if c.eat(b' ') {
                ext_params(c)?
            } else {
                ExtParams::default()
            };
            CommandBody::Rename { from, to, params }
        }
        "LIST" => CommandBody::List(list(c)?),
        "LSUB" => {
            c.sp()?;
            let reference = c.utf8_astring()?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            CommandBody::Lsub { reference, pattern }
        }
        "STATUS" => {
            c.sp()?;
            let mailbox = c.mailbox()?;
            c.sp()?;
            let items = status_items(c)?;
            if items.is_empty() {
                return Err("Expected status items");
            }
            CommandBody::Status { mailbox, items }
        }
        "APPEND" => append(c)?,
        "SEARCH" => CommandBody::Search(search(c, uid)?),
        "FETCH" => CommandBody::Fetch(fetch(c, uid)?),
        "STORE" => CommandBody::Store(store(c, uid)?),
        "COPY" | "MOVE" => {
            c.sp()?;
            let set = c.sequence_set()?;
            c.sp()?;
            let mailbox = c.mailbox()?;
            if name == "COPY" {
                CommandBody::Copy { uid, set, mailbox }
            } else {
                CommandBody::Move { uid, set, mailbox }
            }
        }
        "ID" => id(c)?,
        "SORT" => CommandBody::Sort(sort(c, uid)?),
        "THREAD" => CommandBody::Thread(thread(c, uid)?),
        "GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota(c.utf8_astring()?)
        }
        "GETQUOTAROOT" => {
            c.sp()?;
            CommandBody::GetQuotaRoot(c.mailbox()?)
        }
        "SETQUOTA" => setquota(c)?,
        "COMPRESS" => {
            c.sp()?;
            CommandBody::Compress(c.keyword()?)
        }
        _ => return Err("Unknown command"),
    })
}

fn base64_engine() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

fn authenticate(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    let mechanism = c.keyword()?;
    let initial_response = if c.eat(b' ') {
        if c.eat(b'=') && (c.at_end() || c.peek() != Some(b'=')) {
            Some(Secret::new(Vec::new()))
        } else {
            let data = c.take_while(is_base64_char);
            if data.is_empty() {
                return Err("Invalid initial response");
            }
            let decoded = base64_engine().decode(data).map_err(|_| "Invalid base64")?;
            Some(Secret::new(decoded))
        }
    } else {
        None
    };
    Ok(CommandBody::Authenticate {
        mechanism,
        initial_response,
    })
}

fn create(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut special_use = Vec::new();
    let mut params = ExtParams::default();
    if c.eat(b' ') {
        for p in ext_params(c)?.0 {
            if p.name == "USE" {
                let Some(ExtValue::List(items)) = p.value else {
                    return Err("USE needs a list of attributes");
                };
                for item in items {
                    match item {
                        ExtValue::Atom(a) if a.starts_with('\\') && a.len() > 1 => {
                            special_use.push(a)
                        }
                        _ => return Err("Invalid special-use attribute"),
                    }
                }
            } else {
                params.0.push(p);
            }
        }
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
        params,
    })
}

/// `"(" param *(SP param) ")"`, param = name [SP value] (RFC 4466). Names upper-cased and unique.
fn ext_params(c: &mut Cursor<'_>) -> R<ExtParams> {
    c.expect(b'(', "Expected a parameter list")?;
    let mut out: Vec<ExtParam> = Vec::new();
    if c.eat(b')') {
        return Ok(ExtParams(out));
    }
    loop {
        let name = c.take_while(|b| is_atom_char(b) && b != b'[');
        let first_ok = name
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'-');
        if !first_ok {
            return Err("Invalid parameter name");
        }
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        if out.iter().any(|p| p.name == name) {
            return Err("Duplicate parameter");
        }
        let mut value = None;
        if c.peek() == Some(b' ')
            && c.peek_at(1)
                .is_some_and(|b| b == b'(' || b.is_ascii_digit() || b == b'*' || b == b'$')
        {
            c.pos += 1;
            value = Some(ext_value(c, 0)?);
        }
        out.push(ExtParam { name, value });
        if c.eat(b')') {
            return Ok(ExtParams(out));
        }
        c.sp()?;
    }
}

fn is_ext_token_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'"' | b'{')
}

fn ext_value(c: &mut Cursor<'_>, depth: usize) -> R<ExtValue> {
    if depth > MAX_EXT_DEPTH {
        return Err("Parameter nesting too deep");
    }
    match c.peek() {
        Some(b'(') => {
            c.pos += 1;
            let mut items = Vec::new();
            if c.eat(b')') {
                return Ok(ExtValue::List(items));
            }
            loop {
                items.push(ext_value(c, depth + 1)?);
                if c.eat(b')') {
                    return Ok(ExtValue::List(items));
                }
                c.sp()?;
            }
        }
        Some(b'"' | b'{') => Ok(ExtValue::String(c.string()?)),
        _ => {
            let t = c.take_while(is_ext_token_char);
            if t.is_empty() {
                return Err("Invalid parameter value");
            }
            Ok(ExtValue::Atom(String::from_utf8_lossy(t).into_owned()))
        }
    }
}

fn status_item(c: &mut Cursor<'_>) -> R<StatusItem> {
    Ok(match c.keyword()?.as_str() {
        "MESSAGES" => StatusItem::Messages,
        "UIDNEXT" => StatusItem::UidNext,
        "UIDVALIDITY" => StatusItem::UidValidity,
        "UNSEEN" => StatusItem::Unseen,
        "DELETED" => StatusItem::Deleted,
        "DELETED-STORAGE" => StatusItem::DeletedStorage,
        "SIZE" => StatusItem::Size,
        "RECENT" => StatusItem::Recent,
        "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
        "APPENDLIMIT" => StatusItem::AppendLimit,
        _ => return Err("Unknown status item"),
    })
}

/// `"(" [status-att *(SP status-att)] ")"`.
fn status_items(c: &mut Cursor<'_>) -> R<Vec<StatusItem>> {
    c.expect(b'(', "Expected a status item list")?;
    let mut items = Vec::new();
    if c.eat(b')') {
        return Ok(items);
    }
    loop {
        items.push(status_item(c)?);
        if c.eat(b')') {
            return Ok(items);
        }
        c.sp()?;
    }
}

fn list(c: &mut Cursor<'_>) -> R<ListCommand> {
    c.sp()?;
    let mut extended = false;
    let mut selection = Vec::new();
    if c.eat(b'(') {
        extended = true;
        if !c.eat(b')') {
            loop {
                selection.push(match c.keyword()?.as_str() {
                    "SUBSCRIBED" => ListSelection::Subscribed,
                    "REMOTE" => ListSelection::Remote,
                    "RECURSIVEMATCH" => ListSelection::RecursiveMatch,
                    "SPECIAL-USE" => ListSelection::SpecialUse,
                    _ => return Err("Unknown LIST selection option"),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        // RFC 5258 §3: RECURSIVEMATCH alone (or with only REMOTE) is an error.
        if selection.contains(&ListSelection::RecursiveMatch)
            && !selection
                .iter()
                .any(|s| matches!(s, ListSelection::Subscribed | ListSelection::SpecialUse))
        {
            return Err("RECURSIVEMATCH needs another selection option");
        }
        c.sp()?;
    }
    let reference = c.utf8_astring()?;
    c.sp()?;
    let mut patterns = Vec::new();
    if c.eat(b'(') {
        extended = true;
        loop {
            patterns.push(c.list_mailbox()?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    } else {
        patterns.push(c.list_mailbox()?);
    }
    let mut returns = Vec::new();
    if c.eat(b' ') {
        if !c.eat_keyword("RETURN") {
            return Err("Expected RETURN");
        }
        extended = true;
        c.sp()?;
        c.expect(b'(', "Expected return options")?;
        if !c.eat(b')') {
            loop {
                returns.push(match c.keyword()?.as_str() {
                    "SUBSCRIBED" => ListReturn::Subscribed,
                    "CHILDREN" => ListReturn::Children,
                    "SPECIAL-USE" => ListReturn::SpecialUse,
                    "STATUS" => {
                        c.sp()?;
                        let items = status_items(c)?;
                        if items.is_empty() {
                            return Err("Expected status items");
                        }
                        ListReturn::Status(items)
                    }
                    _ => return Err("Unknown LIST return option"),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
        }
    }
    Ok(ListCommand {
        selection,
        reference,
        patterns,
        returns,
        extended,
    })
}

fn append(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut messages = Vec::new();
    while c.eat(b' ') {
        let flags = if c.peek() == Some(b'(') {
            let f = c.flag_list()?;
            c.sp()?;
            f
        } else {
            Vec::new()
        };
        let date = if c.peek() == Some(b'"') {
            let d = c.date_time()?;
            c.sp()?;
            Some(d)
        } else {
            None
        };
        let (data, binary) = c.literal(true, true)?;
        messages.push(AppendMessage {
            flags,
            date,
            data,
            binary,
        });
    }
    if messages.is_empty() {
        return Err("Expected a message literal");
    }
    Ok(CommandBody::Append { mailbox, messages })
}

fn search(c: &mut Cursor<'_>, uid: bool) -> R<SearchCommand> {
    c.sp()?;
    let returns = search_returns(c)?;
    let mut charset = None;
    if c.eat_keyword("CHARSET") {
        c.sp()?;
        let cs = c.astring()?;
        let cs = String::from_utf8(cs).map_err(|_| "Invalid charset name")?;
        if cs.is_empty() || cs.len() > 64 {
            return Err("Invalid charset name");
        }
        charset = Some(cs.to_ascii_uppercase());
        c.sp()?;
    }
    let mut criteria = vec![search_key(c, 0)?];
    while c.eat(b' ') {
        criteria.push(search_key(c, 0)?);
    }
    Ok(SearchCommand {
        uid,
        returns,
        charset,
        criteria,
    })
}

/// `[RETURN (opts) SP]` of SEARCH (RFC 4731, 5182) and SORT (RFC 5267). Options are kept once.
fn search_returns(c: &mut Cursor<'_>) -> R<Option<Vec<SearchReturn>>> {
    if !c.eat_keyword("RETURN") {
        return Ok(None);
    }
    c.sp()?;
    c.expect(b'(', "Expected return options")?;
    let mut opts = Vec::new();
    if !c.eat(b')') {
        loop {
            let opt = match c.keyword()?.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" => SearchReturn::Save,
                _ => return Err("Unknown RETURN option"),
            };
            if !opts.contains(&opt) {
                opts.push(opt);
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    c.sp()?;
    Ok(Some(opts))
}

/// Most SORT criteria accepted in one command (there are 9 keys; repeats are legal but useless).
pub const MAX_SORT_CRITERIA: usize = 32;

/// The mandatory charset of SORT and THREAD, upper-cased.
fn charset_name(c: &mut Cursor<'_>) -> R<String> {
    let cs = c.astring()?;
    let cs = String::from_utf8(cs).map_err(|_| "Invalid charset name")?;
    if cs.is_empty() || cs.len() > 64 {
        return Err("Invalid charset name");
    }
    Ok(cs.to_ascii_uppercase())
}

/// `1*(SP search-key)` after a SORT/THREAD charset.
fn search_program(c: &mut Cursor<'_>) -> R<Vec<SearchKey>> {
    c.sp()?;
    let mut keys = vec![search_key(c, 0)?];
    while c.eat(b' ') {
        keys.push(search_key(c, 0)?);
    }
    Ok(keys)
}

/// `SORT [RETURN (...)] (criteria) charset keys` (RFC 5256 §4, RFC 5267 §3).
fn sort(c: &mut Cursor<'_>, uid: bool) -> R<SortCommand> {
    c.sp()?;
    let returns = search_returns(c)?;
    c.expect(b'(', "Expected sort criteria")?;
    let mut criteria = Vec::new();
    loop {
        let reverse = c.eat_keyword("REVERSE");
        if reverse {
            c.sp()?;
        }
        let key = match c.keyword()?.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err("Unknown sort criterion"),
        };
        criteria.push(SortCriterion { reverse, key });
        if criteria.len() > MAX_SORT_CRITERIA {
            return Err("Too many sort criteria");
        }
        if c.eat(b')') {
            break;
        }
        c.sp()?;
    }
    c.sp()?;
    let charset = charset_name(c)?;
    let search = search_program(c)?;
    Ok(SortCommand {
        uid,
        returns,
        criteria,
        charset,
        search,
    })
}

/// `THREAD algorithm charset keys` (RFC 5256 §4).
fn thread(c: &mut Cursor<'_>, uid: bool) -> R<ThreadCommand> {
    c.sp()?;
    let algorithm = match c.keyword()?.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        _ => return Err("Unknown threading algorithm"),
    };
    c.sp()?;
    let charset = charset_name(c)?;
    let search = search_program(c)?;
    Ok(ThreadCommand {
        uid,
        algorithm,
        charset,
        search,
    })
}

/// Most resources in one SETQUOTA (RFC 9208 defines five).
const MAX_QUOTA_RESOURCES: usize = 16;

/// `SETQUOTA root (resource limit ...)` (RFC 9208 §4.1.3).
fn setquota(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    let root = c.utf8_astring()?;
    c.sp()?;
    c.expect(b'(', "Expected a resource list")?;
    let mut limits = Vec::new();
    if !c.eat(b')') {
        loop {
            let name = c.keyword()?;
            c.sp()?;
            let limit = c.number64()?;
            limits.push((name, limit));
            if limits.len() > MAX_QUOTA_RESOURCES {
                return Err("Too many quota resources");
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::SetQuota { root, limits })
}

fn search_key(c: &mut Cursor<'_>, depth: usize) -> R<SearchKey> {
    if depth >= MAX_SEARCH_DEPTH {
        return Err("Search program nested too deeply");
    }
    match c.peek() {
        Some(b'(') => {
            c.pos += 1;
            let mut keys = vec![search_key(c, depth + 1)?];
            loop {
                if c.eat(b')') {
                    return Ok(SearchKey::And(keys));
                }
                c.sp()?;
                keys.push(search_key(c, depth + 1)?);
            }
        }
        Some(b) if b.is_ascii_digit() || b == b'*' || b == b'$' => {
            Ok(SearchKey::SequenceSet(c.sequence_set()?))
        }
        _ => {
            let key = c.keyword().map_err(|_| "Invalid search key")?;
            let k = match key.as_str() {
                "ALL" => SearchKey::All,
                "ANSWERED" => SearchKey::Answered,
                "DELETED" => SearchKey::Deleted,
                "DRAFT" => SearchKey::Draft,
                "FLAGGED" => SearchKey::Flagged,
                "NEW" => SearchKey::New,
                "OLD" => SearchKey::Old,
                "RECENT" => SearchKey::Recent,
                "SEEN" => SearchKey::Seen,
                "UNANSWERED" => SearchKey::Unanswered,
                "UNDELETED" => SearchKey::Undeleted,
                "UNDRAFT" => SearchKey::Undraft,
                "UNFLAGGED" => SearchKey::Unflagged,
                "UNRECENT" => SearchKey::Unrecent,
                "UNSEEN" => SearchKey::Unseen,
                "BCC" | "BODY" | "CC" | "FROM" | "SUBJECT" | "TEXT" | "TO" => {
                    c.sp()?;
                    let s = c.astring()?;
                    match key.as_str() {
                        "BCC" => SearchKey::Bcc(s),
                        "BODY" => SearchKey::Body(s),
                        "CC" => SearchKey::Cc(s),
                        "FROM" => SearchKey::From(s),
                        "SUBJECT" => SearchKey::Subject(s),
                        "TEXT" => SearchKey::Text(s),
                        _ => SearchKey::To(s),
                    }
                }
                "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                    c.sp()?;
                    let d = c.date()?;
                    match key.as_str() {
                        "BEFORE" => SearchKey::Before(d),
                        "ON" => SearchKey::On(d),
                        "SINCE" => SearchKey::Since(d),
                        "SENTBEFORE" => SearchKey::SentBefore(d),
                        "SENTON" => SearchKey::SentOn(d),
                        _ => SearchKey::SentSince(d),
                    }
                }
                "HEADER" => {
                    c.sp()?;
                    let field = c.astring()?;
                    let field = String::from_utf8(field).map_err(|_| "Invalid header name")?;
                    c.sp()?;
                    SearchKey::Header(field, c.astring()?)
                }
                "KEYWORD" | "UNKEYWORD" => {
                    c.sp()?;
                    let kw = c.atom()?.to_owned();
                    if key == "KEYWORD" {
                        SearchKey::Keyword(kw)
                    } else {
                        SearchKey::Unkeyword(kw)
                    }
                }
                "LARGER" => {
                    c.sp()?;
                    SearchKey::Larger(c.number64()?)
                }
                "SMALLER" => {
                    c.sp()?;
                    SearchKey::Smaller(c.number64()?)
                }
                "UID" => {
                    c.sp()?;
                    SearchKey::Uid(c.sequence_set()?)
                }
                "NOT" => {
                    c.sp()?;
                    SearchKey::Not(Box::new(search_key(c, depth + 1)?))
                }
                "OR" => {
                    c.sp()?;
                    let a = search_key(c, depth + 1)?;
                    c.sp()?;
                    let b = search_key(c, depth + 1)?;
                    SearchKey::Or(Box::new(a), Box::new(b))
                }
                "OLDER" | "YOUNGER" => {
                    c.sp()?;
                    let n = c.nz_number()?.get();
                    if key == "OLDER" {
                        SearchKey::Older(n)
                    } else {
                        SearchKey::Younger(n)
                    }
                }
                "MODSEQ" => {
                    c.sp()?;
                    let entry = if c.peek() == Some(b'"') {
                        let name = c.quoted()?;
                        c.sp()?;
                        let ty = c.keyword()?;
                        if !matches!(ty.as_str(), "PRIV" | "SHARED" | "ALL") {
                            return Err("Invalid MODSEQ entry type");
                        }
                        c.sp()?;
                        Some((name, ty))
                    } else {
                        None
                    };
                    SearchKey::ModSeq {
                        entry,
                        modseq: c.number64()?,
                    }
                }
                _ => return Err("Unknown search key"),
            };
            Ok(k)
        }
    }
}

fn fetch(c: &mut Cursor<'_>, uid: bool) -> R<FetchCommand> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut attributes = Vec::new();
    if c.eat(b'(') {
        loop {
            attributes.push(fetch_att(c)?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    } else if c.eat_keyword("ALL") {
        attributes.extend([
            FetchAttribute::Flags,
            FetchAttribute::InternalDate,
            FetchAttribute::Rfc822Size,
            FetchAttribute::Envelope,
        ]);
    } else if c.eat_keyword("FAST") {
        attributes.extend([
            FetchAttribute::Flags,
            FetchAttribute::InternalDate,
            FetchAttribute::Rfc822Size,
        ]);
    } else if c.eat_keyword("FULL") {
        attributes.extend([
            FetchAttribute::Flags,
            FetchAttribute::InternalDate,
            FetchAttribute::Rfc822Size,
            FetchAttribute::Envelope,
            FetchAttribute::Body,
        ]);
    } else {
        attributes.push(fetch_att(c)?);
    }
    let modifiers = if c.eat(b' ') {
        ext_params(c)?
    } else {
        ExtParams::default()
    };
    Ok(FetchCommand {
        uid,
        set,
        attributes,
        modifiers,
    })
}

fn fetch_att(c: &mut Cursor<'_>) -> R<FetchAttribute> {
    let word = c.word();
    Ok(match word.as_str() {
        "ENVELOPE" => FetchAttribute::Envelope,
        "FLAGS" => FetchAttribute::Flags,
        "INTERNALDATE" => FetchAttribute::InternalDate,
        "RFC822" => FetchAttribute::Rfc822,
        "RFC822.HEADER" => FetchAttribute::Rfc822Header,
        "RFC822.SIZE" => FetchAttribute::Rfc822Size,
        "RFC822.TEXT" => FetchAttribute::Rfc822Text,
        "BODYSTRUCTURE" => FetchAttribute::BodyStructure,
        "UID" => FetchAttribute::Uid,
        "MODSEQ" => FetchAttribute::ModSeq,
        "BODY" if c.peek() != Some(b'[') => FetchAttribute::Body,
        "BODY" | "BODY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchAttribute::BodySection {
                peek: word == "BODY.PEEK",
                section,
                partial,
            }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = binary_section(c)?;
            let partial = partial(c)?;
            FetchAttribute::Binary {
                peek: word == "BINARY.PEEK",
                part,
                partial,
            }
        }
        "BINARY.SIZE" => FetchAttribute::BinarySize {
            part: binary_section(c)?,
        },
        _ => return Err("Unknown fetch attribute"),
    })
}

/// Deepest MIME part path accepted in a section (`1.2.3...`).
const MAX_PART_DEPTH: usize = 64;

/// section-part = nz-number *("." nz-number); stops before a `.` not followed by a digit.
fn section_part(c: &mut Cursor<'_>) -> R<Vec<u32>> {
    let mut part = vec![c.nz_number()?.get()];
    while c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.pos += 1;
        part.push(c.nz_number()?.get());
        if part.len() > MAX_PART_DEPTH {
            return Err("Section part too deep");
        }
    }
    Ok(part)
}

/// `"[" [section-spec] "]"`.
fn section(c: &mut Cursor<'_>) -> R<Section> {
    c.expect(b'[', "Expected a section")?;
    let mut sec = Section::default();
    if c.eat(b']') {
        return Ok(sec);
    }
    let has_part = c.peek().is_some_and(|b| b.is_ascii_digit());
    if has_part {
        sec.part = section_part(c)?;
        if c.eat(b']') {
            return Ok(sec);
        }
        c.expect(b'.', "Invalid section")?;
    }
    let text = c.word();
    sec.text = Some(match text.as_str() {
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if has_part => SectionText::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            c.sp()?;
            c.expect(b'(', "Expected a header list")?;
            let mut fields = Vec::new();
            loop {
                let f = c.astring()?;
                let f = String::from_utf8(f).map_err(|_| "Invalid header name")?;
                if f.is_empty() || !f.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b':') {
                    return Err("Invalid header name");
                }
                fields.push(f);
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
            SectionText::HeaderFields {
                not: text == "HEADER.FIELDS.NOT",
                fields,
            }
        }
        _ => return Err("Invalid section"),
    });
    c.expect(b']', "Invalid section")?;
    Ok(sec)
}

/// section-binary = "[" [section-part] "]".
fn binary_section(c: &mut Cursor<'_>) -> R<Vec<u32>> {
    c.expect(b'[', "Expected a section")?;
    if c.eat(b']') {
        return Ok(Vec::new());
    }
    let part = section_part(c)?;
    c.expect(b']', "Invalid binary section")?;
    Ok(part)
}

/// partial = "<" number64 "." nz-number64 ">", optional.
fn partial(c: &mut Cursor<'_>) -> R<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let offset = c.number64()?;
    c.expect(b'.', "Invalid partial")?;
    let length = c.number64()?;
    if length == 0 {
        return Err("Invalid partial");
    }
    c.expect(b'>', "Invalid partial")?;
    Ok(Some(Partial {
        offset,
        length: Some(length),
    }))
}

fn store(c: &mut Cursor<'_>, uid: bool) -> R<StoreCommand> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    let mut modifiers = ExtParams::default();
    if c.peek() == Some(b'(') {
        for p in ext_params(c)?.0 {
            if p.name == "UNCHANGEDSINCE" {
                let v = p
                    .value
                    .as_ref()
                    .and_then(ExtValue::as_number)
                    .ok_or("Invalid UNCHANGEDSINCE")?;
                if v > i64::MAX as u64 {
                    return Err("Invalid UNCHANGEDSINCE");
                }
                unchanged_since = Some(v);
            } else {
                modifiers.0.push(p);
            }
        }
        c.sp()?;
    }
    let action = if c.eat(b'+') {
        StoreAction::Add
    } else if c.eat(b'-') {
        StoreAction::Remove
    } else {
        StoreAction::Replace
    };
    let silent = match c.word().as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err("Expected FLAGS"),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut flags = vec![c.flag()?];
        while c.eat(b' ') {
            flags.push(c.flag()?);
        }
        flags
    };
    Ok(StoreCommand {
        uid,
        set,
        unchanged_since,
        modifiers,
        action,
        silent,
        flags,
    })
}

fn id(c: &mut Cursor<'_>) -> R<CommandBody> {
    c.sp()?;
    if c.eat_keyword("NIL") {
        return Ok(CommandBody::Id(None));
    }
    c.expect(b'(', "Expected a parameter list or NIL")?;
    let mut pairs = Vec::new();
    if c.eat(b')') {
        return Ok(CommandBody::Id(Some(pairs)));
    }
    loop {
        let field = c.string()?;
        c.sp()?;
        let value = c.nstring()?;
        if field.len() > MAX_ID_FIELD || value.as_ref().is_some_and(|v| v.len() > MAX_ID_VALUE) {
            return Err("ID field or value too long");
        }
        pairs.push((
            String::from_utf8_lossy(&field).into_owned(),
            value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        ));
        if pairs.len() > MAX_ID_PAIRS {
            return Err("Too many ID fields");
        }
        if c.eat(b')') {
            return Ok(CommandBody::Id(Some(pairs)));
        }
        c.sp()?;
    }
}

/// Parses a whole byte string as a sequence set (`1:5,7,*`), for values that arrive inside a
/// generic extension parameter (QRESYNC known-uids and sequence match data, RFC 7162 §3.2.5).
/// `$` is refused: it has no meaning there.
pub fn parse_sequence_set(text: &[u8]) -> Option<SequenceSet> {
    if text.is_empty() || text.contains(&b'$') {
        return None;
    }
    let raw = RawCommand::from_line(text.to_vec());
    let mut c = Cursor {
        raw: &raw,
        line: 0,
        pos: 0,
    };
    let set = c.sequence_set().ok()?;
    c.at_end().then_some(set)
}

/// A client's answer during AUTHENTICATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResponse {
    /// Decoded response data (an empty line is empty data).
    Data(Secret<Vec<u8>>),
    /// `*`: the client cancels; answer `tag BAD`.
    Cancel,
}

/// Parses one raw line of an AUTHENTICATE exchange (base64, or `*` to cancel). The error carries
/// no tag: the caller knows the AUTHENTICATE command's tag and answers with it.
pub fn parse_authenticate_response(line: &[u8]) -> Result<AuthResponse, ParseError> {
    if line == b"*" {
        return Ok(AuthResponse::Cancel);
    }
    if !line.iter().all(|&b| is_base64_char(b)) {
        return Err(ParseError {
            tag: None,
            message: Cow::Borrowed("Invalid base64 response"),
        });
    }
    base64_engine()
        .decode(line)
        .map(|d| AuthResponse::Data(Secret::new(d)))
        .map_err(|_| ParseError {
            tag: None,
            message: Cow::Borrowed("Invalid base64 response"),
        })
}

/// Whether a raw line read during IDLE is `DONE` (case-insensitive), which ends the IDLE.
pub fn is_idle_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}
