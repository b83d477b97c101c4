//! IMAP command framing: cuts a client byte stream into complete commands, sans-I/O.
//!
//! What it is: [`CommandReader`], fed bytes with [`CommandReader::feed`], yields [`Event`]s from
//! [`CommandReader::next`]: a complete [`RawCommand`] (its lines and literals), a request to send a
//! continuation (`+ Ready`) for a synchronizing literal, or a [`Rejection`] when a bound in
//! [`Limits`] is exceeded. [`CommandReader::next_line`] reads one raw line instead, for the
//! AUTHENTICATE exchange and IDLE's `DONE`. This follows imap-codec's `Fragmentizer` idea: framing
//! knows only lines and literal announcements (`{n}`, `{n+}`, `~{n}`), never the grammar.
//!
//! What it is not: no parsing beyond the literal announcement at a line's end (see
//! [`crate::imap::parse`]), no I/O, no responses: the caller writes `+ Ready`, `BAD` or
//! `NO [TOOBIG]` itself.
//!
//! Invariants:
//! - Memory held is at most what the caller fed but the reader has not consumed yet, plus one
//!   command bounded by `Limits::max_command` and `Limits::max_line`. A line longer than
//!   `max_line` is discarded as it arrives (a 10 MB line never costs 10 MB).
//! - Framing survives every rejection: a refused synchronizing literal is never sent by the client,
//!   so the command ends there; a refused non-synchronizing literal (LITERAL+) and the rest of its
//!   command are consumed and dropped without buffering; the literal announcement at the end of a
//!   discarded over-long line is still honoured.
//! - The reader stops after each event: bytes after a complete command stay buffered until the
//!   next call, so the caller can switch to raw-line mode (AUTHENTICATE, IDLE) or drop them
//!   (STARTTLS, [`CommandReader::discard_buffered`]).
//! - Lines end with CRLF; a bare LF is accepted too. Empty lines between commands are ignored.

/// Default longest command line (one segment between literals), in octets. 64 KiB, as Dovecot's
/// `imap_max_line_length`: long enough for UID sets of clients that do not compress ranges.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default largest literal: 25 MiB, the store's default message size limit.
pub const DEFAULT_MAX_LITERAL: u64 = 25 * 1024 * 1024;
/// Default largest number of literals in one command: enough for a MULTIAPPEND of 100 messages
/// with literal flags/dates, small enough that a command cannot make thousands of allocations.
pub const DEFAULT_MAX_LITERALS: usize = 256;
/// Default largest command (lines plus literals): 64 MiB, two full-size messages in one
/// MULTIAPPEND plus room; the per-connection memory bound after login.
pub const DEFAULT_MAX_COMMAND: u64 = 64 * 1024 * 1024;

/// Bounds on one command. All checks are inclusive maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line segment (without CRLF).
    pub max_line: usize,
    /// Largest single literal.
    pub max_literal: u64,
    /// Most literals in one command.
    pub max_literals: usize,
    /// Largest command: all lines plus all literals.
    pub max_command: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_literal: DEFAULT_MAX_LITERAL,
            max_literals: DEFAULT_MAX_LITERALS,
            max_command: DEFAULT_MAX_COMMAND,
        }
    }
}

impl Limits {
    /// Tight limits for a connection that has not logged in yet: enough for LOGIN with literal
    /// user name and password and for AUTHENTICATE, nothing more (Stalwart's 2025 audit found
    /// unbounded pre-login buffering; we bound it hard).
    pub const fn pre_auth() -> Limits {
        Limits {
            max_line: 8 * 1024,
            max_literal: 4 * 1024,
            max_literals: 4,
            max_command: 16 * 1024,
        }
    }
}

/// One complete command as framed: `lines.len() == literals.len() + 1`, and every line except
/// the last ends with the literal announcement (`{n}`, `{n+}`, `~{n}`) of the literal that follows
/// it. Lines carry no CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCommand {
    /// Line segments, without line terminators.
    pub lines: Vec<Vec<u8>>,
    /// Literal contents, in order.
    pub literals: Vec<Vec<u8>>,
}

impl RawCommand {
    /// A command made of a single line with no literal (tests, replays).
    pub fn from_line(line: impl Into<Vec<u8>>) -> RawCommand {
        RawCommand {
            lines: vec![line.into()],
            literals: Vec::new(),
        }
    }
    /// The tag, if the first line starts with a valid one followed by a space.
    pub fn tag(&self) -> Option<String> {
        self.lines.first().and_then(|l| extract_tag(l))
    }
}

/// Why a command was refused by framing. The caller answers it (tagged if `tag` is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A line exceeded `max_line`. Answer `BAD` (RFC 9051 suggests `[TOOBIG]` is not for this).
    LineTooLong,
    /// A literal exceeded `max_literal`. Answer `NO [TOOBIG]` (APPEND) or `BAD`.
    LiteralTooBig {
        /// Announced size (`u64::MAX` if it did not fit in 64 bits).
        size: u64,
        /// Whether it was a synchronizing literal (the client is waiting and will not send it).
        synchronizing: bool,
    },
    /// More than `max_literals` literals. Answer `BAD [LIMIT]` (RFC 5530).
    TooManyLiterals,
    /// Lines plus literals exceed `max_command`. Answer `NO [LIMIT]` or `NO [TOOBIG]`.
    CommandTooBig,
}

impl Rejection {
    /// A short text for the tagged or untagged BAD/NO that answers this rejection.
    pub fn text(&self) -> &'static str {
        match self {
            Rejection::LineTooLong => "Command line too long",
            Rejection::LiteralTooBig { .. } => "Literal too big",
            Rejection::TooManyLiterals => "Too many literals in command",
            Rejection::CommandTooBig => "Command too big",
        }
    }
    /// The RFC 5530 response code that fits (`TOOBIG` or `LIMIT`), if any.
    pub fn response_code(&self) -> Option<&'static str> {
        match self {
            Rejection::LineTooLong => None,
            Rejection::LiteralTooBig { .. } | Rejection::CommandTooBig => Some("TOOBIG"),
            Rejection::TooManyLiterals => Some("LIMIT"),
        }
    }
}

/// What the reader produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete command; hand it to [`crate::imap::parse::parse_command`].
    Command(RawCommand),
    /// A synchronizing literal was accepted: send `+ Ready for literal data\r\n` and keep feeding.
    Continuation {
        /// The announced literal size.
        size: u64,
    },
    /// The command was refused; framing is kept (see the module invariants). Answer
    /// `tag BAD/NO ...` if `tag` is known, `* BAD ...` otherwise.
    Rejected {
        /// The command's tag, when its line started with one.
        tag: Option<String>,
        /// Why.
        reason: Rejection,
    },
}

/// What [`CommandReader::next_line`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// One line, without CRLF.
    Line(Vec<u8>),
    /// The line exceeded `max_line`; its remainder is discarded as it arrives.
    TooLong,
}

/// A literal announcement found at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcement {
    /// Size; `None` when it overflows u64.
    size: Option<u64>,
    /// `{n}` (true) or `{n+}` (false).
    synchronizing: bool,
}

/// Longest tail kept from a discarded line to detect a literal announcement: `~{` + 20 digits +
/// `+}` + CR fits in 32.
const TAIL: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Accumulating a line segment in `cur_line`.
    Line,
    /// Copying a literal; `remaining` octets to go.
    Literal { remaining: u64 },
    /// Dropping octets up to LF. `raw`: a raw line (no literal follows); otherwise a command line
    /// whose end may announce a non-synchronizing literal to drop as well.
    DiscardLine { raw: bool },
    /// Dropping a refused non-synchronizing literal, then the rest of its command.
    DiscardLiteral { remaining: u64 },
}

/// The sans-I/O command framer. See the module documentation.
#[derive(Debug)]
pub struct CommandReader {
    limits: Limits,
    /// Bytes fed but not yet consumed: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
    state: State,
    /// The command being framed.
    lines: Vec<Vec<u8>>,
    literals: Vec<Vec<u8>>,
    cur_line: Vec<u8>,
    /// Octets of the command so far (lines and literals).
    total: u64,
    /// Last octets of a discarded line.
    tail: Vec<u8>,
}

impl CommandReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: Limits) -> CommandReader {
        CommandReader {
            limits,
            pending: Vec::new(),
            pos: 0,
            state: State::Line,
            lines: Vec::new(),
            literals: Vec::new(),
            cur_line: Vec::new(),
            total: 0,
            tail: Vec::with_capacity(TAIL),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits (e.g. after login); applies from the next line or literal announcement.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Appends bytes read from the client. Call [`CommandReader::next`] until it returns `None`
    /// before feeding more, so that buffering stays bounded by one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos >= self.pending.len() {
            self.pending.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.pending.len() / 2 {
            self.pending.drain(..self.pos);
            self.pos = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Gives back buffer memory beyond `keep` bytes (an APPEND's literal or a burst of pipelined
    /// commands must not stay allocated for the rest of a long idle connection). Cheap when
    /// there is nothing to give back; call it before waiting for input.
    pub fn release_memory(&mut self, keep: usize) {
        if self.pos >= self.pending.len() {
            self.pending.clear();
            self.pos = 0;
        }
        if self.pending.capacity() > keep.max(self.pending.len()) {
            if self.pos > 0 {
                self.pending.drain(..self.pos);
                self.pos = 0;
            }
            self.pending.shrink_to(keep.max(self.pending.len()));
        }
        if self.cur_line.capacity() > keep.max(self.cur_line.len()) {
            self.cur_line.shrink_to(keep.max(self.cur_line.len()));
        }
        if self.lines.is_empty() && self.literals.is_empty() {
            self.lines.shrink_to(0);
            self.literals.shrink_to(0);
        }
    }

    /// Octets fed but not consumed yet.
    pub fn buffered(&self) -> usize {
        self.pending.len() - self.pos
    }

    /// Drops every octet fed but not consumed yet and any partly framed command, returning how
    /// many buffered octets were dropped. Call it after `STARTTLS` (bytes sent before the TLS
    /// handshake must not be executed afterwards).
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.buffered();
        self.pending.clear();
        self.pos = 0;
        self.reset_command();
        self.state = State::Line;
        n
    }

    /// Removes and returns every octet fed but not consumed yet (and drops any partly framed
    /// command). Call it when the byte stream changes meaning between two commands: after
    /// `COMPRESS DEFLATE` (RFC 4978) the octets that follow the command line are compressed
    /// and must go through the decompressor before they are fed again.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.avail().to_vec();
        self.discard_buffered();
        rest
    }

    /// Whether nothing is buffered and no command is partly framed.
    pub fn is_idle(&self) -> bool {
        self.buffered() == 0
            && self.state == State::Line
            && self.lines.is_empty()
            && self.cur_line.is_empty()
    }

    fn avail(&self) -> &[u8] {
        self.pending.get(self.pos..).unwrap_or(&[])
    }

    fn reset_command(&mut self) {
        self.lines.clear();
        self.literals.clear();
        self.cur_line.clear();
        self.total = 0;
        self.tail.clear();
    }

    /// The next framing event, or `None` when more input is needed.
    #[allow(
        clippy::should_implement_trait,
        reason = "not an Iterator: the caller switches modes (next_line) and feeds between calls"
    )]
    pub fn next(&mut self) -> Option<Event> {
        loop {
            match self.state {
                State::Line => {
                    let avail = self.pending.get(self.pos..).unwrap_or(&[]);
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            let seg_len = i;
                            // Allow one extra octet for the CR before LF.
                            if self.cur_line.len() + seg_len > self.limits.max_line + 1 {
                                return Some(self.line_too_long());
                            }
                            self.cur_line.extend_from_slice(&avail[..seg_len]);
                            self.pos += i + 1;
                            if self.cur_line.last() == Some(&b'\r') {
                                self.cur_line.pop();
                            }
                            if self.cur_line.len() > self.limits.max_line {
                                // Exactly one octet over without CR: still too long. The line is
                                // fully consumed, so only a literal announcement may follow.
                                let ann = parse_announcement(&self.cur_line);
                                let tag = self.current_tag();
                                return Some(self.reject(tag, Rejection::LineTooLong, ann));
                            }
                            if let Some(ev) = self.line_complete() {
                                return Some(ev);
                            }
                        }
                        None => {
                            if self.cur_line.len() + avail.len() > self.limits.max_line + 1 {
                                return Some(self.line_too_long());
                            }
                            self.cur_line.extend_from_slice(avail);
                            self.pos = self.pending.len();
                            return None;
                        }
                    }
                }
                State::Literal { remaining } => {
                    let avail = self.pending.get(self.pos..).unwrap_or(&[]);
                    if avail.is_empty() && remaining > 0 {
                        return None;
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(avail.len());
                    if let Some(lit) = self.literals.last_mut() {
                        lit.extend_from_slice(&avail[..n]);
                    }
                    self.pos += n;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Line
                    } else {
                        State::Literal { remaining }
                    };
                }
                State::DiscardLine { raw } => {
                    if !self.discard_line_step(raw) {
                        return None;
                    }
                }
                State::DiscardLiteral { remaining } => {
                    if !self.discard_literal_step(remaining) {
                        return None;
                    }
                }
            }
        }
    }

    /// One step of dropping a refused literal. Returns false when more input is needed.
    fn discard_literal_step(&mut self, remaining: u64) -> bool {
        let avail = self.avail().len();
        if avail == 0 && remaining > 0 {
            return false;
        }
        let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(avail);
        self.pos += n;
        let remaining = remaining - n as u64;
        self.state = if remaining == 0 {
            self.tail.clear();
            State::DiscardLine { raw: false }
        } else {
            State::DiscardLiteral { remaining }
        };
        true
    }

    /// Reads one raw line (AUTHENTICATE responses, IDLE's `DONE`), or `None` when more input is
    /// needed. Call it only between commands; a partly framed command is abandoned. An over-long
    /// line yields [`LineEvent::TooLong`] at once and its remainder is dropped as it arrives.
    pub fn next_line(&mut self) -> Option<LineEvent> {
        loop {
            match self.state {
                State::DiscardLine { raw } => {
                    if !self.discard_line_step(raw) {
                        return None;
                    }
                }
                State::DiscardLiteral { remaining } => {
                    // Finish dropping the refused command first.
                    if !self.discard_literal_step(remaining) {
                        return None;
                    }
                }
                State::Literal { .. } => {
                    self.reset_command();
                    self.state = State::Line;
                }
                State::Line => {
                    if !self.lines.is_empty() {
                        self.reset_command();
                    }
                    let avail = self.pending.get(self.pos..).unwrap_or(&[]);
                    match memchr::memchr(b'\n', avail) {
                        Some(i) => {
                            if self.cur_line.len() + i > self.limits.max_line + 1 {
                                self.pos += i + 1;
                                self.reset_command();
                                return Some(LineEvent::TooLong);
                            }
                            self.cur_line.extend_from_slice(&avail[..i]);
                            self.pos += i + 1;
                            if self.cur_line.last() == Some(&b'\r') {
                                self.cur_line.pop();
                            }
                            let line = std::mem::take(&mut self.cur_line);
                            self.reset_command();
                            if line.len() > self.limits.max_line {
                                return Some(LineEvent::TooLong);
                            }
                            return Some(LineEvent::Line(line));
                        }
                        None => {
                            if self.cur_line.len() + avail.len() > self.limits.max_line + 1 {
                                self.pos = self.pending.len();
                                self.reset_command();
                                self.state = State::DiscardLine { raw: true };
                                return Some(LineEvent::TooLong);
                            }
                            self.cur_line.extend_from_slice(avail);
                            self.pos = self.pending.len();
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// One step of dropping a line. Returns false when more input is needed.
    fn discard_line_step(&mut self, raw: bool) -> bool {
        let avail = self.pending.get(self.pos..).unwrap_or(&[]);
        match memchr::memchr(b'\n', avail) {
            Some(i) => {
                push_tail(&mut self.tail, &avail[..i]);
                self.pos += i + 1;
                let ann = if raw {
                    None
                } else {
                    parse_announcement(trim_cr(&self.tail))
                };
                self.tail.clear();
                match ann {
                    Some(Announcement {
                        synchronizing: false,
                        size,
                    }) => {
                        self.state = State::DiscardLiteral {
                            remaining: size.unwrap_or(u64::MAX),
                        };
                    }
                    // No literal, or a synchronizing one the client will not send: command over.
                    _ => {
                        self.reset_command();
                        self.state = State::Line;
                    }
                }
                true
            }
            None => {
                push_tail(&mut self.tail, avail);
                self.pos = self.pending.len();
                false
            }
        }
    }

    /// The current line is over-long and has no LF yet in the buffer: reject it and drop the rest.
    fn line_too_long(&mut self) -> Event {
        // Recover the tag from the line's start (at most 128 octets are looked at).
        let tag = if self.lines.is_empty() && self.cur_line.len() < 128 {
            let avail = self.pending.get(self.pos..).unwrap_or(&[]);
            let take = (128 - self.cur_line.len()).min(avail.len());
            let mut head = self.cur_line.clone();
            head.extend_from_slice(&avail[..take]);
            extract_tag(&head)
        } else {
            self.current_tag()
        };
        // The octets already taken into `cur_line` seed the tail, so an announcement split
        // between them and what is still buffered is seen.
        let mut tail = std::mem::take(&mut self.tail);
        tail.clear();
        push_tail(&mut tail, &self.cur_line);
        self.reset_command();
        self.tail = tail;
        self.state = State::DiscardLine { raw: false };
        Event::Rejected {
            tag,
            reason: Rejection::LineTooLong,
        }
    }

    fn current_tag(&self) -> Option<String> {
        match self.lines.first() {
            Some(l) => extract_tag(l),
            None => extract_tag(&self.cur_line),
        }
    }

    /// Rejects the command whose current line was fully consumed and ends with `ann`.
    fn reject(
        &mut self,
        tag: Option<String>,
        reason: Rejection,
        ann: Option<Announcement>,
    ) -> Event {
        self.reset_command();
        self.state = match ann {
            Some(Announcement {
                synchronizing: false,
                size,
            }) => State::DiscardLiteral {
                remaining: size.unwrap_or(u64::MAX),
            },
            _ => State::Line,
        };
        Event::Rejected { tag, reason }
    }

    /// `cur_line` holds a complete line segment (CRLF stripped). Returns an event, or `None` to
    /// keep reading (an empty line, or a non-synchronizing literal to copy).
    fn line_complete(&mut self) -> Option<Event> {
        if self.lines.is_empty() && self.cur_line.is_empty() {
            return None;
        }
        let ann = parse_announcement(&self.cur_line);
        self.total = self.total.saturating_add(self.cur_line.len() as u64 + 2);
        let tag = self.current_tag();
        if self.total > self.limits.max_command {
            return Some(self.reject(tag, Rejection::CommandTooBig, ann));
        }
        let Some(ann) = ann else {
            let line = std::mem::take(&mut self.cur_line);
            self.lines.push(line);
            let cmd = RawCommand {
                lines: std::mem::take(&mut self.lines),
                literals: std::mem::take(&mut self.literals),
            };
            self.reset_command();
            return Some(Event::Command(cmd));
        };
        let size = ann.size.unwrap_or(u64::MAX);
        if self.literals.len() >= self.limits.max_literals {
            return Some(self.reject(tag, Rejection::TooManyLiterals, Some(ann)));
        }
        if size > self.limits.max_literal {
            let reason = Rejection::LiteralTooBig {
                size,
                synchronizing: ann.synchronizing,
            };
            return Some(self.reject(tag, reason, Some(ann)));
        }
        if self.total.saturating_add(size) > self.limits.max_command {
            return Some(self.reject(tag, Rejection::CommandTooBig, Some(ann)));
        }
        self.total += size;
        let line = std::mem::take(&mut self.cur_line);
        self.lines.push(line);
        // Do not trust the announced size for allocation: the client may never send it.
        let cap = usize::try_from(size).unwrap_or(usize::MAX).min(64 * 1024);
        self.literals.push(Vec::with_capacity(cap));
        self.state = State::Literal { remaining: size };
        if ann.synchronizing {
            Some(Event::Continuation { size })
        } else {
            None
        }
    }
}

fn trim_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Keeps the last `TAIL` octets seen of a discarded line.
fn push_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&bytes[bytes.len() - TAIL..]);
    } else {
        let overflow = (tail.len() + bytes.len()).saturating_sub(TAIL);
        tail.drain(..overflow.min(tail.len()));
        tail.extend_from_slice(bytes);
    }
}

/// Detects `{n}`, `{n+}`, `~{n}`, `~{n+}` at the very end of a line.
fn parse_announcement(line: &[u8]) -> Option<Announcement> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let inner = &body[open + 1..];
    let (digits, synchronizing) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut size: Option<u64> = Some(0);
    for &d in digits {
        size = size
            .and_then(|s| s.checked_mul(10))
            .and_then(|s| s.checked_add(u64::from(d - b'0')));
    }
    Some(Announcement {
        size,
        synchronizing,
    })
}

/// The tag at the start of a line: 1..=64 tag characters followed by a space.
pub(crate) fn extract_tag(line: &[u8]) -> Option<String> {
    let end = memchr::memchr(b' ', line)?;
    let tag = &line[..end];
    if tag.is_empty() || tag.len() > 64 || !tag.iter().all(|&b| crate::imap::parse::is_tag_char(b))
    {
        return None;
    }
    std::str::from_utf8(tag).ok().map(str::to_owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;

    fn run(reader: &mut CommandReader, input: &[u8]) -> Vec<Event> {
        reader.feed(input);
        let mut out = Vec::new();
        while let Some(ev) = reader.next() {
            out.push(ev);
        }
        out
    }

    fn run_bytewise(reader: &mut CommandReader, input: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for b in input {
            reader.feed(std::slice::from_ref(b));
            while let Some(ev) = reader.next() {
                out.push(ev);
            }
        }
        out
    }

    #[test]
    fn simple_line() {
        let mut r = CommandReader::new(Limits::default());
        let ev = run(&mut r, b"a1 NOOP\r\n");
        assert_eq!(ev, vec![Event::Command(RawCommand::from_line("a1 NOOP"))]);
        assert!(r.is_idle());
    }

    #[test]
    fn bare_lf_and_empty_lines() {
        let mut r = CommandReader::new(Limits::default());
        let ev = run(&mut r, b"\r\n\na1 NOOP\n");
        assert_eq!(ev, vec![Event::Command(RawCommand::from_line("a1 NOOP"))]);
    }

    #[test]
    fn sync_literal_asks_continuation() {
        let input = b"A003 APPEND saved-messages {5}\r\nhello\r\n";
        for bytewise in [false, true] {
            let mut r = CommandReader::new(Limits::default());
            let ev = if bytewise {
                run_bytewise(&mut r, input)
            } else {
                run(&mut r, input)
            };
            assert_eq!(
                ev,
                vec![
                    Event::Continuation { size: 5 },
                    Event::Command(RawCommand {
                        lines: vec![b"A003 APPEND saved-messages {5}".to_vec(), Vec::new()],
                        literals: vec![b"hello".to_vec()],
                    })
                ]
            );
        }
    }

    #[test]
    fn non_sync_and_binary_literals() {
        let mut r = CommandReader::new(Limits::default());
        let ev = run(
            &mut r,
            b"a LOGIN {3+}\r\nbob {2+}\r\npw\r\nb APPEND x ~{3}\r\n\0\x01\x02\r\n",
        );
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[0],
            Event::Command(RawCommand {
                lines: vec![b"a LOGIN {3+}".to_vec(), b" {2+}".to_vec(), Vec::new()],
                literals: vec![b"bob".to_vec(), b"pw".to_vec()],
            })
        );
        assert_eq!(ev[1], Event::Continuation { size: 3 });
        let Event::Command(c) = &ev[2] else {
            panic!("expected command")
        };
        assert_eq!(c.literals, vec![vec![0u8, 1, 2]]);
    }

    #[test]
    fn reader_stops_after_each_command() {
        let mut r = CommandReader::new(Limits::default());
        r.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n");
        assert_eq!(
            r.next(),
            Some(Event::Command(RawCommand::from_line("a IDLE")))
        );
        assert_eq!(r.next_line(), Some(LineEvent::Line(b"DONE".to_vec())));
        assert_eq!(
            r.next(),
            Some(Event::Command(RawCommand::from_line("b NOOP")))
        );
        assert_eq!(r.next(), None);
    }

    #[test]
    fn starttls_discards_injected_bytes() {
        let mut r = CommandReader::new(Limits::default());
        r.feed(b"a STARTTLS\r\nb LOGIN x y\r\n");
        assert_eq!(
            r.next(),
            Some(Event::Command(RawCommand::from_line("a STARTTLS")))
        );
        assert_eq!(r.discard_buffered(), 13);
        assert_eq!(r.next(), None);
        assert!(r.is_idle());
    }

    #[test]
    fn compress_hands_over_the_following_bytes() {
        let mut r = CommandReader::new(Limits::default());
        r.feed(b"a COMPRESS DEFLATE\r\n\x4a\x01\x00");
        assert_eq!(
            r.next(),
            Some(Event::Command(RawCommand::from_line("a COMPRESS DEFLATE")))
        );
        assert_eq!(r.take_buffered(), b"\x4a\x01\x00");
        assert!(r.is_idle());
        assert!(r.take_buffered().is_empty());
    }

    #[test]
    fn huge_line_is_refused_without_buffering() {
        let limits = Limits {
            max_line: 1000,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        let mut events = Vec::new();
        r.feed(b"t1 SEARCH ");
        events.extend(std::iter::from_fn(|| r.next()));
        let chunk = vec![b'x'; 8192];
        for _ in 0..(10 * 1024 * 1024 / 8192) {
            r.feed(&chunk);
            events.extend(std::iter::from_fn(|| r.next()));
            assert!(
                r.pending.capacity() <= 2 * 8192 + 64,
                "pending grew to {}",
                r.pending.capacity()
            );
            assert!(
                r.cur_line.capacity() <= 4096,
                "line grew to {}",
                r.cur_line.capacity()
            );
        }
        r.feed(b"\r\nt2 NOOP\r\n");
        events.extend(std::iter::from_fn(|| r.next()));
        assert_eq!(
            events,
            vec![
                Event::Rejected {
                    tag: Some("t1".into()),
                    reason: Rejection::LineTooLong
                },
                Event::Command(RawCommand::from_line("t2 NOOP")),
            ]
        );
    }

    #[test]
    fn too_long_line_ending_in_literal_plus_keeps_framing() {
        let limits = Limits {
            max_line: 20,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        let ev = run(
            &mut r,
            b"t1 LOGIN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa {4+}\r\nb\r\nc\r\nt2 NOOP\r\n",
        );
        assert_eq!(
            ev,
            vec![
                Event::Rejected {
                    tag: Some("t1".into()),
                    reason: Rejection::LineTooLong
                },
                Event::Command(RawCommand::from_line("t2 NOOP")),
            ]
        );
    }

    #[test]
    fn sync_literal_too_big_is_refused_and_not_expected() {
        let limits = Limits {
            max_literal: 10,
            ..Limits::default()
        };
        for bytewise in [false, true] {
            let mut r = CommandReader::new(limits);
            let input = b"a APPEND INBOX {11}\r\nb NOOP\r\n";
            let ev = if bytewise {
                run_bytewise(&mut r, input)
            } else {
                run(&mut r, input)
            };
            assert_eq!(
                ev,
                vec![
                    Event::Rejected {
                        tag: Some("a".into()),
                        reason: Rejection::LiteralTooBig {
                            size: 11,
                            synchronizing: true
                        }
                    },
                    Event::Command(RawCommand::from_line("b NOOP")),
                ]
            );
        }
    }

    #[test]
    fn non_sync_literal_too_big_is_consumed_and_dropped() {
        let limits = Limits {
            max_literal: 10,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        let mut input = b"a APPEND INBOX {30+}\r\n".to_vec();
        input.extend_from_slice(&[b'z'; 30]);
        input.extend_from_slice(b" {3+}\r\nabc\r\nb NOOP\r\n");
        for bytewise in [false, true] {
            let ev = if bytewise {
                run_bytewise(&mut r, &input)
            } else {
                run(&mut r, &input)
            };
            assert_eq!(
                ev,
                vec![
                    Event::Rejected {
                        tag: Some("a".into()),
                        reason: Rejection::LiteralTooBig {
                            size: 30,
                            synchronizing: false
                        }
                    },
                    Event::Command(RawCommand::from_line("b NOOP")),
                ]
            );
        }
    }

    #[test]
    fn too_many_literals() {
        let limits = Limits {
            max_literals: 1,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        let ev = run(&mut r, b"a LOGIN {1+}\r\nx {1+}\r\ny\r\nb NOOP\r\n");
        assert_eq!(
            ev,
            vec![
                Event::Rejected {
                    tag: Some("a".into()),
                    reason: Rejection::TooManyLiterals
                },
                Event::Command(RawCommand::from_line("b NOOP")),
            ]
        );
    }

    #[test]
    fn command_too_big() {
        let limits = Limits {
            max_command: 40,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        let ev = run(&mut r, b"a APPEND x {30}\r\n");
        assert_eq!(
            ev,
            vec![Event::Rejected {
                tag: Some("a".into()),
                reason: Rejection::CommandTooBig
            }]
        );
    }

    #[test]
    fn overflowing_literal_size() {
        let mut r = CommandReader::new(Limits::default());
        let ev = run(
            &mut r,
            b"a APPEND x {99999999999999999999999}\r\nb NOOP\r\n",
        );
        assert_eq!(ev.len(), 2);
        assert!(matches!(
            ev[0],
            Event::Rejected {
                reason: Rejection::LiteralTooBig { size: u64::MAX, .. },
                ..
            }
        ));
    }

    #[test]
    fn raw_line_too_long() {
        let limits = Limits {
            max_line: 10,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        r.feed(b"0123456789abcdef");
        assert_eq!(r.next_line(), Some(LineEvent::TooLong));
        r.feed(b"ghij\r\nAQID\r\n");
        assert_eq!(r.next_line(), Some(LineEvent::Line(b"AQID".to_vec())));
    }

    #[test]
    fn raw_line_after_refused_literal_plus_skips_the_refused_command() {
        let limits = Limits {
            max_literal: 2,
            ..Limits::default()
        };
        let mut r = CommandReader::new(limits);
        r.feed(b"a LOGIN {5+}\r\nxxxxx y\r\nDONE\r\n");
        assert!(matches!(r.next(), Some(Event::Rejected { .. })));
        assert_eq!(r.next_line(), Some(LineEvent::Line(b"DONE".to_vec())));
        assert!(r.is_idle());
    }

    #[test]
    fn announcement_parsing() {
        assert_eq!(
            parse_announcement(b"x {5}"),
            Some(Announcement {
                size: Some(5),
                synchronizing: true
            })
        );
        assert_eq!(
            parse_announcement(b"x {5+}"),
            Some(Announcement {
                size: Some(5),
                synchronizing: false
            })
        );
        assert_eq!(
            parse_announcement(b"x ~{0}"),
            Some(Announcement {
                size: Some(0),
                synchronizing: true
            })
        );
        assert_eq!(parse_announcement(b"x {}"), None);
        assert_eq!(parse_announcement(b"x {+}"), None);
        assert_eq!(parse_announcement(b"x {a}"), None);
        assert_eq!(parse_announcement(b"x }"), None);
    }
}
