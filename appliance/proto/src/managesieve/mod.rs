//! ManageSieve (RFC 5804) server-side codec, sans-I/O.
//!
//! What it is: [`Reader`] frames the client's byte stream into command lines (atoms, numbers,
//! quoted strings and literals, `{n+}` or `{n}`), [`parse_command`] turns one line into a typed
//! [`Command`], and [`Response`] / [`string`] produce the server's bytes.
//! What it is not: no sockets, no clock, no files, no authentication and no script storage; the
//! session in `hermes-svc-store` (`sieve::managesieve`) does those.
//!
//! Invariants:
//! - Memory per connection is bounded by [`Limits`]: a line longer than `max_line` or a literal
//!   longer than `max_literal` is never buffered; its bytes are counted and dropped (a literal's
//!   announced length keeps the framing intact) and the reader yields [`Event::TooLong`] once, at
//!   the end of that command. The session answers `NO` and carries on with the next command.
//! - Any input yields events or nothing; nothing here panics (fuzzed:
//!   `appliance/proto/fuzz/fuzz_targets/managesieve.rs`).
//! - Both synchronizing (`{n}`) and non-synchronizing (`{n+}`) literals are accepted without a
//!   continuation: RFC 5804 §4 lets clients send only `{n+}`, and Pigeonhole accepts both.

use std::fmt;

/// Bounds on what one command may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, excluding literal contents.
    pub max_line: usize,
    /// Longest single literal (a script upload).
    pub max_literal: usize,
    /// Most arguments in one command (RFC 5804 commands take at most 2; SASL at most 2).
    pub max_tokens: usize,
}

/// RFC 5804 §4: quoted strings hold at most 1024 octets.
pub const MAX_QUOTED: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        // 8 KiB of command line is far above any real command (names are short; scripts come as
        // literals); the literal bound is the caller's script size limit plus slack.
        Limits { max_line: 8 * 1024, max_literal: 1024 * 1024, max_tokens: 8 }
    }
}

/// One lexical element of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word (command names, `PLAIN`), as sent.
    Atom(String),
    /// Digits only.
    Number(u64),
    /// A quoted string or a literal; may hold any octets (script contents).
    String(Vec<u8>),
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete command line, its literals included.
    Line(Vec<Token>),
    /// A line or literal exceeded its bound; the whole command was dropped.
    TooLong,
    /// The line could not be split into tokens; the whole command was dropped.
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading a line segment (up to CRLF).
    Line,
    /// Reading `remaining` octets of a literal into the current token list.
    Literal { remaining: usize },
    /// Dropping `remaining` octets of an oversized literal, then the rest of the command.
    SkipLiteral { remaining: usize },
    /// Dropping the rest of an oversized line (until LF), then the rest of the command.
    SkipLine,
}

/// Frames commands out of a byte stream. Feed bytes with [`Reader::feed`], then call
/// [`Reader::next_event`] until it returns `None`.
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    buf: Vec<u8>,
    mode: Mode,
    tokens: Vec<Token>,
    /// Octets of the current command's line segments so far (literal contents excluded).
    line_len: usize,
    /// Set once the current command has been found too long or malformed.
    failed: Option<Event>,
}

impl Reader {
    pub fn new(limits: Limits) -> Reader {
        Reader { limits, buf: Vec::new(), mode: Mode::Line, tokens: Vec::new(), line_len: 0, failed: None }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes (and forgets) the bytes not yet consumed, e.g. before a TLS handshake: bytes a
    /// client pipelined after STARTTLS must not be read as if they came over TLS.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.reset_command();
        std::mem::take(&mut self.buf)
    }

    /// Bytes buffered and not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn reset_command(&mut self) {
        self.mode = Mode::Line;
        self.tokens.clear();
        self.line_len = 0;
        self.failed = None;
    }

    fn finish(&mut self) -> Event {
        let event = match self.failed.take() {
            Some(e) => e,
            None => Event::Line(std::mem::take(&mut self.tokens)),
        };
        self.reset_command();
        event
    }

    fn fail(&mut self, why: Event) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
        self.tokens.clear();
    }

    /// The next complete command, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.mode {
                Mode::Literal { remaining } | Mode::SkipLiteral { remaining } => {
                    let take = remaining.min(self.buf.len());
                    if take == 0 && remaining > 0 {
                        return None;
                    }
                    if let Mode::Literal { .. } = self.mode {
                        let data: Vec<u8> = self.buf.drain(..take).collect();
                        if let Some(Token::String(s)) = self.tokens.last_mut() {
                            s.extend_from_slice(&data);
                        }
                    } else {
                        self.buf.drain(..take);
                    }
                    let left = remaining - take;
                    if left > 0 {
                        self.mode = match self.mode {
                            Mode::Literal { .. } => Mode::Literal { remaining: left },
                            _ => Mode::SkipLiteral { remaining: left },
                        };
                        return None;
                    }
                    // The literal is done; the command continues with another line segment.
                    self.mode = Mode::Line;
                }
                Mode::SkipLine => match memchr::memchr(b'\n', &self.buf) {
                    Some(i) => {
                        self.buf.drain(..=i);
                        return Some(self.finish());
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
                Mode::Line => {
                    let Some(i) = memchr::memchr(b'\n', &self.buf) else {
                        if self.line_len + self.buf.len() > self.limits.max_line {
                            self.fail(Event::TooLong);
                            self.buf.clear();
                            self.mode = Mode::SkipLine;
                        }
                        return None;
                    };
                    let mut segment: Vec<u8> = self.buf.drain(..=i).collect();
                    segment.pop(); // LF
                    if segment.last() == Some(&b'\r') {
                        segment.pop();
                    }
                    self.line_len += segment.len() + 2;
                    if self.line_len > self.limits.max_line {
                        self.fail(Event::TooLong);
                        return Some(self.finish());
                    }
                    if self.failed.is_some() {
                        // A failed command still follows its literals, to keep framing.
                        match trailing_literal(&segment) {
                            Some(Ok((n, _))) => {
                                self.mode = Mode::SkipLiteral { remaining: n };
                                continue;
                            }
                            _ => return Some(self.finish()),
                        }
                    }
                    match tokenize(&segment, &mut self.tokens, self.limits.max_tokens) {
                        Ok(Some(n)) => {
                            if n > self.limits.max_literal {
                                self.fail(Event::TooLong);
                                self.mode = Mode::SkipLiteral { remaining: n };
                            } else {
                                self.tokens.push(Token::String(Vec::with_capacity(n.min(64 * 1024))));
                                self.mode = Mode::Literal { remaining: n };
                            }
                        }
                        Ok(None) => return Some(self.finish()),
                        Err(why) => {
                            // Follow an announced literal even so, then report the error.
                            let literal = match trailing_literal(&segment) {
                                Some(Ok((n, _))) => Some(n),
                                _ => None,
                            };
                            self.fail(Event::Malformed(why));
                            match literal {
                                Some(n) => self.mode = Mode::SkipLiteral { remaining: n },
                                None => return Some(self.finish()),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `{n}` or `{n+}` at the end of a segment: `Some(Ok((n, start)))`, or `Some(Err)` for a
/// malformed marker, `None` when the segment does not end with `}`.
fn trailing_literal(segment: &[u8]) -> Option<Result<(usize, usize), &'static str>> {
    if segment.last() != Some(&b'}') {
        return None;
    }
    let open = segment.iter().rposition(|&b| b == b'{')?;
    let mut inner = &segment[open + 1..segment.len() - 1];
    if inner.last() == Some(&b'+') {
        inner = &inner[..inner.len() - 1];
    }
    if inner.is_empty() || inner.len() > 10 || !inner.iter().all(u8::is_ascii_digit) {
        return Some(Err("invalid literal length"));
    }
    let n = inner.iter().fold(0usize, |acc, d| acc.saturating_mul(10).saturating_add(usize::from(d - b'0')));
    Some(Ok((n, open)))
}

/// Splits one segment into tokens appended to `out`. `Ok(Some(n))` when it ends with a literal
/// marker of `n` octets (the caller reads them), `Ok(None)` when the command is complete.
fn tokenize(segment: &[u8], out: &mut Vec<Token>, max_tokens: usize) -> Result<Option<usize>, &'static str> {
    let mut i = 0;
    let push = |out: &mut Vec<Token>, t: Token| {
        if out.len() >= max_tokens {
            return Err("too many arguments");
        }
        out.push(t);
        Ok(())
    };
    // A segment that follows a literal must start with a space or end the command.
    let continuing = !out.is_empty() && matches!(out.last(), Some(Token::String(_)));
    if continuing && !segment.is_empty() && segment[0] != b' ' {
        return Err("missing space after literal");
    }
    while i < segment.len() {
        match segment[i] {
            b' ' => {
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match segment.get(i) {
                        None => return Err("unterminated quoted string"),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match segment.get(i + 1) {
                            Some(&c @ (b'"' | b'\\')) => {
                                s.push(c);
                                i += 2;
                            }
                            _ => return Err("invalid escape in quoted string"),
                        },
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                    if s.len() > MAX_QUOTED {
                        return Err("quoted string too long");
                    }
                }
                push(out, Token::String(s))?;
                if segment.get(i).is_some_and(|&b| b != b' ') {
                    return Err("missing space after string");
                }
            }
            b'{' => {
                return match trailing_literal(&segment[i..]) {
                    Some(Ok((n, 0))) => {
                        if out.len() >= max_tokens {
                            return Err("too many arguments");
                        }
                        Ok(Some(n))
                    }
                    Some(Err(e)) => Err(e),
                    _ => Err("literal marker must end the line"),
                };
            }
            _ => {
                let start = i;
                while i < segment.len() && segment[i] != b' ' {
                    let c = segment[i];
                    if !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'=')) {
                        return Err("invalid character in atom");
                    }
                    i += 1;
                }
                let word = &segment[start..i];
                let token = if word.iter().all(u8::is_ascii_digit) {
                    if word.len() > 19 {
                        return Err("number too large");
                    }
                    Token::Number(word.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
                } else {
                    // Only ASCII got past the character check above.
                    Token::Atom(String::from_utf8_lossy(word).into_owned())
                };
                push(out, token)?;
            }
        }
    }
    Ok(None)
}

/// A parsed client command.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Authenticate { mechanism: String, initial: Option<Vec<u8>> },
    StartTls,
    Logout,
    Capability,
    HaveSpace { name: String, size: u64 },
    PutScript { name: String, script: Vec<u8> },
    ListScripts,
    SetActive { name: String },
    GetScript { name: String },
    DeleteScript { name: String },
    RenameScript { old: String, new: String },
    CheckScript { script: Vec<u8> },
    Noop { tag: Option<Vec<u8>> },
    Unauthenticate,
}

impl fmt::Debug for Command {
    // Never prints SASL responses (passwords) or script bodies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Authenticate { mechanism, initial } => {
                write!(
                    f,
                    "Authenticate({mechanism}, initial: {})",
                    if initial.is_some() { "<redacted>" } else { "none" }
                )
            }
            Command::PutScript { name, script } => write!(f, "PutScript({name:?}, {} octets)", script.len()),
            Command::CheckScript { script } => write!(f, "CheckScript({} octets)", script.len()),
            Command::HaveSpace { name, size } => write!(f, "HaveSpace({name:?}, {size})"),
            Command::SetActive { name } => write!(f, "SetActive({name:?})"),
            Command::GetScript { name } => write!(f, "GetScript({name:?})"),
            Command::DeleteScript { name } => write!(f, "DeleteScript({name:?})"),
            Command::RenameScript { old, new } => write!(f, "RenameScript({old:?}, {new:?})"),
            Command::Noop { .. } => f.write_str("Noop"),
            other => f.write_str(match other {
                Command::StartTls => "StartTls",
                Command::Logout => "Logout",
                Command::Capability => "Capability",
                Command::ListScripts => "ListScripts",
                _ => "Unauthenticate",
            }),
        }
    }
}

/// Why a line is not a valid command; the text is safe to send in a `NO` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub &'static str);

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A script name (RFC 5804 §1.6): UTF-8 without control characters, non-empty, at most
/// [`MAX_SCRIPT_NAME`] octets.
pub fn valid_script_name(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_SCRIPT_NAME
        && !s.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}');
    ok.then(|| s.to_string())
}

/// Longest script name accepted, in octets: far above what clients use ("roundcube",
/// "vacation"), and short enough to encode into a file name.
pub const MAX_SCRIPT_NAME: usize = 100;

fn string_arg(t: Option<&Token>) -> Result<&[u8], CommandError> {
    match t {
        Some(Token::String(s)) => Ok(s),
        Some(_) => Err(CommandError("expected a string argument")),
        None => Err(CommandError("missing argument")),
    }
}

fn name_arg(t: Option<&Token>) -> Result<String, CommandError> {
    valid_script_name(string_arg(t)?).ok_or(CommandError("invalid script name"))
}

/// Parses one command line from [`Event::Line`].
pub fn parse_command(tokens: &[Token]) -> Result<Command, CommandError> {
    let Some(Token::Atom(verb)) = tokens.first() else {
        return Err(CommandError("expected a command name"));
    };
    let args = &tokens[1..];
    let arity = |min: usize, max: usize| {
        if args.len() < min {
            Err(CommandError("missing argument"))
        } else if args.len() > max {
            Err(CommandError("too many arguments"))
        } else {
            Ok(())
        }
    };
    let verb = verb.to_ascii_uppercase();
    let cmd = match verb.as_str() {
        "AUTHENTICATE" => {
            arity(1, 2)?;
            let mechanism = String::from_utf8_lossy(string_arg(args.first())?).to_ascii_uppercase();
            let initial = match args.get(1) {
                Some(_) => Some(string_arg(args.get(1))?.to_vec()),
                None => None,
            };
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => arity(0, 0).map(|_| Command::StartTls)?,
        "LOGOUT" => arity(0, 0).map(|_| Command::Logout)?,
        "CAPABILITY" => arity(0, 0).map(|_| Command::Capability)?,
        "LISTSCRIPTS" => arity(0, 0).map(|_| Command::ListScripts)?,
        "UNAUTHENTICATE" => arity(0, 0).map(|_| Command::Unauthenticate)?,
        "NOOP" => {
            arity(0, 1)?;
            let tag = match args.first() {
                Some(t) => Some(string_arg(Some(t))?.to_vec()),
                None => None,
            };
            Command::Noop { tag }
        }
        "HAVESPACE" => {
            arity(2, 2)?;
            let name = name_arg(args.first())?;
            let Some(Token::Number(size)) = args.get(1) else {
                return Err(CommandError("expected a number"));
            };
            Command::HaveSpace { name, size: *size }
        }
        "PUTSCRIPT" => {
            arity(2, 2)?;
            Command::PutScript { name: name_arg(args.first())?, script: string_arg(args.get(1))?.to_vec() }
        }
        "CHECKSCRIPT" => {
            arity(1, 1)?;
            Command::CheckScript { script: string_arg(args.first())?.to_vec() }
        }
        "SETACTIVE" => {
            arity(1, 1)?;
            // The empty name deactivates every script (RFC 5804 §2.8).
            let raw = string_arg(args.first())?;
            let name = if raw.is_empty() { String::new() } else { name_arg(args.first())? };
            Command::SetActive { name }
        }
        "GETSCRIPT" => arity(1, 1).and_then(|_| name_arg(args.first())).map(|name| Command::GetScript { name })?,
        "DELETESCRIPT" => {
            arity(1, 1).and_then(|_| name_arg(args.first())).map(|name| Command::DeleteScript { name })?
        }
        "RENAMESCRIPT" => {
            arity(2, 2)?;
            Command::RenameScript { old: name_arg(args.first())?, new: name_arg(args.get(1))? }
        }
        _ => return Err(CommandError("unknown command")),
    };
    Ok(cmd)
}

/// A SASL continuation answer from the client (a line holding one string): the decoded data,
/// or `None` when the client cancelled (`"*"`).
pub fn parse_sasl_response(tokens: &[Token]) -> Result<Option<Vec<u8>>, CommandError> {
    match tokens {
        [Token::String(s)] if s == b"*" => Ok(None),
        [Token::String(s)] => Ok(Some(s.clone())),
        [Token::Atom(a)] if a == "*" => Ok(None),
        _ => Err(CommandError("expected one string")),
    }
}

/// Writes `s` as a quoted string when that is allowed (short, no CR/LF/NUL, valid UTF-8),
/// otherwise as a literal `{n}\r\n...`.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable =
        s.len() <= MAX_QUOTED && std::str::from_utf8(s).is_ok() && !s.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// The three response kinds (RFC 5804 §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// A final response: `OK`/`NO`/`BYE`, an optional response code, optional human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// E.g. `NONEXISTENT`, `QUOTA/MAXSIZE`, `SASL "..."` (the code is written as given).
    pub code: Option<String>,
    pub text: Option<String>,
}

impl Response {
    pub fn ok(text: impl Into<String>) -> Response {
        Response { status: Status::Ok, code: None, text: Some(text.into()) }
    }
    pub fn no(text: impl Into<String>) -> Response {
        Response { status: Status::No, code: None, text: Some(text.into()) }
    }
    pub fn bye(text: impl Into<String>) -> Response {
        Response { status: Status::Bye, code: None, text: Some(text.into()) }
    }
    pub fn with_code(mut self, code: impl Into<String>) -> Response {
        self.code = Some(code.into());
        self
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bye => b"BYE",
        });
        if let Some(code) = &self.code {
            out.extend_from_slice(b" (");
            out.extend_from_slice(code.as_bytes());
            out.push(b')');
        }
        if let Some(text) = &self.text {
            out.push(b' ');
            string(out, text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn events(input: &[u8], limits: Limits, bytewise: bool) -> Vec<Event> {
        let mut r = Reader::new(limits);
        let mut out = Vec::new();
        if bytewise {
            for b in input {
                r.feed(&[*b]);
                while let Some(e) = r.next_event() {
                    out.push(e);
                }
            }
        } else {
            r.feed(input);
            while let Some(e) = r.next_event() {
                out.push(e);
            }
        }
        out
    }

    fn s(x: &str) -> Token {
        Token::String(x.as_bytes().to_vec())
    }

    /// RFC 5804 examples and their token lists; each also fed one byte at a time.
    #[test]
    fn rfc_examples_frame_alike_whole_and_bytewise() {
        let table: Vec<(&[u8], Vec<Token>)> = vec![
            (b"CAPABILITY\r\n", vec![Token::Atom("CAPABILITY".into())]),
            (
                b"Authenticate \"PLAIN\" \"QJIrweAPyo6Q1T9xu\"\r\n",
                vec![Token::Atom("Authenticate".into()), s("PLAIN"), s("QJIrweAPyo6Q1T9xu")],
            ),
            (
                b"Putscript \"foo\" {31+}\r\n#comment\r\nInvalidSieveCommand\r\n\r\n",
                vec![Token::Atom("Putscript".into()), s("foo"), s("#comment\r\nInvalidSieveCommand\r\n")],
            ),
            (
                b"HAVESPACE \"myscript\" 999999\r\n",
                vec![Token::Atom("HAVESPACE".into()), s("myscript"), Token::Number(999999)],
            ),
            (b"RenameScript {3}\r\nfoo {3+}\r\nbar\r\n", vec![Token::Atom("RenameScript".into()), s("foo"), s("bar")]),
            (b"NOOP \"a\\\"b\\\\\"\r\n", vec![Token::Atom("NOOP".into()), s("a\"b\\")]),
            (b"LOGOUT\n", vec![Token::Atom("LOGOUT".into())]),
        ];
        for (input, want) in table {
            for bytewise in [false, true] {
                let got = events(input, Limits::default(), bytewise);
                assert_eq!(
                    got,
                    vec![Event::Line(want.clone())],
                    "{:?} bytewise={bytewise}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn oversized_literal_is_skipped_and_framing_kept() {
        let limits = Limits { max_line: 100, max_literal: 10, max_tokens: 8 };
        let input = b"PUTSCRIPT \"x\" {20+}\r\n01234567890123456789\r\nNOOP\r\n";
        for bytewise in [false, true] {
            let got = events(input, limits, bytewise);
            assert_eq!(got, vec![Event::TooLong, Event::Line(vec![Token::Atom("NOOP".into())])]);
        }
    }

    #[test]
    fn oversized_line_is_dropped_without_buffering() {
        let limits = Limits { max_line: 16, max_literal: 10, max_tokens: 8 };
        let mut input = b"NOOP \"".to_vec();
        input.extend(std::iter::repeat_n(b'a', 1000));
        input.extend_from_slice(b"\"\r\nLOGOUT\r\n");
        for bytewise in [false, true] {
            let mut r = Reader::new(limits);
            let mut got = Vec::new();
            let chunks: Vec<&[u8]> = if bytewise { input.chunks(1).collect() } else { vec![&input[..]] };
            for c in chunks {
                r.feed(c);
                assert!(r.pending() <= 1000 + 20);
                while let Some(e) = r.next_event() {
                    got.push(e);
                }
                if bytewise {
                    assert!(r.pending() <= 16, "buffered {}", r.pending());
                }
            }
            assert_eq!(got, vec![Event::TooLong, Event::Line(vec![Token::Atom("LOGOUT".into())])]);
        }
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let got = events(
            b"NOOP \"unterminated\r\nPUT {x}\r\nBAD\x01\r\nGETSCRIPT \"a\" {3+}\r\nabc\r\nCAPABILITY\r\n",
            Limits::default(),
            false,
        );
        assert!(matches!(got[0], Event::Malformed(_)));
        assert!(matches!(got[1], Event::Malformed(_)));
        assert!(matches!(got[2], Event::Malformed(_)));
        assert!(matches!(got[3], Event::Line(_)));
        assert_eq!(got[4], Event::Line(vec![Token::Atom("CAPABILITY".into())]));
    }

    #[test]
    fn commands_parse_and_validate() {
        let line = |b: &[u8]| match events(b, Limits::default(), false).remove(0) {
            Event::Line(t) => t,
            e => panic!("{e:?}"),
        };
        assert_eq!(
            parse_command(&line(b"putscript \"vacation\" {4+}\r\nkeep\r\n")).unwrap(),
            Command::PutScript { name: "vacation".into(), script: b"keep".to_vec() }
        );
        assert_eq!(parse_command(&line(b"SETACTIVE \"\"\r\n")).unwrap(), Command::SetActive { name: String::new() });
        assert_eq!(
            parse_command(&line(b"HAVESPACE \"a\" 10\r\n")).unwrap(),
            Command::HaveSpace { name: "a".into(), size: 10 }
        );
        assert!(parse_command(&line(b"GETSCRIPT \"\"\r\n")).is_err());
        assert!(parse_command(&line(b"GETSCRIPT \"a\\\\b\" \"c\"\r\n")).is_err());
        assert!(parse_command(&line(b"PUTSCRIPT {2+}\r\na\x01 {1+}\r\nx\r\n")).is_err(), "control character in a name");
        assert!(parse_command(&line(b"FROB\r\n")).is_err());
        assert!(parse_command(&line(b"HAVESPACE \"a\" \"10\"\r\n")).is_err());
        let auth = parse_command(&line(b"AUTHENTICATE \"plain\" \"AGEAYg==\"\r\n")).unwrap();
        assert_eq!(auth, Command::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"AGEAYg==".to_vec()) });
        assert!(!format!("{auth:?}").contains("AGEAYg"), "SASL data never printed");
        assert_eq!(parse_sasl_response(&line(b"\"*\"\r\n")).unwrap(), None);
    }

    #[test]
    fn responses_quote_or_use_literals() {
        assert_eq!(Response::ok("Done").to_bytes(), b"OK \"Done\"\r\n");
        assert_eq!(Response::no("x").with_code("NONEXISTENT").to_bytes(), b"NO (NONEXISTENT) \"x\"\r\n");
        assert_eq!(Response::no("line 1\r\nline 2").to_bytes(), b"NO {14}\r\nline 1\r\nline 2\r\n");
        let mut out = Vec::new();
        string(&mut out, b"a\"b");
        assert_eq!(out, b"\"a\\\"b\"");
    }
}
