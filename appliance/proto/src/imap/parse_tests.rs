//! Table-driven tests of framing + parsing from RFC 9051/3501 and extension RFC examples; every
//! example is also fed one byte at a time. Malformed input must give `ParseError`, never panic.
#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::num::NonZeroU32;

use super::command::*;
use super::framing::{CommandReader, Event, Limits};
use super::fuzz::{XorShift, run_command_path};
use super::parse::{
    AuthResponse, MAX_SEARCH_DEPTH, MAX_SORT_CRITERIA, ParseError, parse_authenticate_response, parse_command,
};

/// Frames and parses `input`, in one piece or byte by byte; continuations are ignored (the
/// client in these examples has already sent everything).
fn parse_stream(input: &[u8], bytewise: bool) -> Vec<Result<Command, ParseError>> {
    let mut r = CommandReader::new(Limits::default());
    let mut out = Vec::new();
    let drain = |r: &mut CommandReader, out: &mut Vec<_>| {
        while let Some(ev) = r.next() {
            match ev {
                Event::Command(c) => out.push(parse_command(&c)),
                Event::Continuation { .. } => {}
                Event::Rejected { tag, reason } => panic!("rejected {tag:?}: {reason:?}"),
            }
        }
    };
    if bytewise {
        for b in input {
            r.feed(std::slice::from_ref(b));
            drain(&mut r, &mut out);
        }
    } else {
        r.feed(input);
        drain(&mut r, &mut out);
    }
    out
}

/// Parses exactly one command from `input`, checking that byte-by-byte feeding agrees.
fn one(input: &str) -> Result<Command, ParseError> {
    one_bytes(input.as_bytes())
}

fn one_bytes(input: &[u8]) -> Result<Command, ParseError> {
    let whole = parse_stream(input, false);
    let bytewise = parse_stream(input, true);
    assert_eq!(
        whole,
        bytewise,
        "bytewise framing differs for {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        whole.len(),
        1,
        "expected one command in {:?}",
        String::from_utf8_lossy(input)
    );
    whole.into_iter().next().unwrap()
}

fn body(input: &str) -> CommandBody {
    match one(input) {
        Ok(c) => c.body,
        Err(e) => panic!("{input:?} failed: {e:?}"),
    }
}

fn nz(n: u32) -> SeqNum {
    SeqNum::Value(NonZeroU32::new(n).unwrap())
}

fn mb(s: &str) -> MailboxName {
    MailboxName::new(s)
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

/// Every example here must parse (RFC 9051 §6, RFC 3501 §6 and the extension RFCs).
const RFC_EXAMPLES: &[&str] = &[
    "a001 CAPABILITY\r\n",
    "a002 NOOP\r\n",
    "A023 LOGOUT\r\n",
    "a002 STARTTLS\r\n",
    "A001 AUTHENTICATE GSSAPI\r\n",
    "A01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
    "a001 LOGIN SMITH SESAME\r\n",
    "A142 SELECT INBOX\r\n",
    "A932 EXAMINE blurdybloop\r\n",
    "A003 CREATE owatagusiam/\r\n",
    "A004 CREATE owatagusiam/blurdybloop\r\n",
    "A682 DELETE blurdybloop\r\n",
    "A683 RENAME blurdybloop sarasoop\r\n",
    "A684 RENAME foo zowie\r\n",
    "A002 SUBSCRIBE #news.comp.mail.mime\r\n",
    "A002 UNSUBSCRIBE #news.comp.mail.mime\r\n",
    "A101 LIST \"\" \"\"\r\n",
    "A102 LIST #news.comp.mail.misc \"\"\r\n",
    "A103 LIST /usr/staff/jones \"\"\r\n",
    "A202 LIST ~/Mail/ %\r\n",
    "A002 LSUB \"#news.\" \"comp.mail.*\"\r\n",
    "A001 NAMESPACE\r\n",
    "A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
    "A042 STATUS blurdybloop (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT)\r\n",
    "FXXZ CHECK\r\n",
    "A341 CLOSE\r\n",
    "A342 UNSELECT\r\n",
    "A202 EXPUNGE\r\n",
    "A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
    "A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
    "A284 SEARCH TEXT \"string not in mailbox\"\r\n",
    "A285 SEARCH CHARSET UTF-8 TEXT {12}\r\nПривет\r\n",
    "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
    "A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
    "A003 COPY 2:4 MEETING\r\n",
    "a UID MOVE 42:69 foo\r\n",
    "A999 UID FETCH 4827313:4828442 FLAGS\r\n",
    "a23 IDLE\r\n",
    "a1 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")\r\n",
    "a2 ID NIL\r\n",
    "t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n",
    // RFC 5258 LIST-EXTENDED
    "A02 LIST (SUBSCRIBED) \"\" \"*\"\r\n",
    "A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n",
    "A04 LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)\r\n",
    "A05 LIST (REMOTE SUBSCRIBED) \"\" \"*\"\r\n",
    "A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n",
    "BBB LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n",
    // RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE
    "A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n",
    "t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n",
    "t3 LIST (SPECIAL-USE) \"\" \"*\"\r\n",
    "t4 LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n",
    // RFC 7162 CONDSTORE/QRESYNC
    "a103 SELECT INBOX (CONDSTORE)\r\n",
    "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
    "a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n",
    "s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
    "s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
    "a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
    "t FETCH 1:* (MODSEQ FLAGS)\r\n",
    // RFC 5182 SEARCHRES, RFC 5032 WITHIN
    "A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
    "A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.HEADER)\r\n",
    "B285 UID SEARCH RETURN (SAVE) SINCE 19-Mar-2007 OR SUBJECT ITEM BODY ITEM\r\n",
    "C286 UID SEARCH RETURN (SAVE) ALL\r\n",
    "a1 SEARCH UNSEEN YOUNGER 259200\r\n",
    // RFC 3516 BINARY, RFC 4315 UIDPLUS, RFC 3691 UNSELECT
    "t FETCH 1 (BINARY[1.2]<0.100> BINARY.SIZE[1] BINARY.PEEK[])\r\n",
    "A003 UID EXPUNGE 3000:3002\r\n",
    // fetch macros and sections
    "a FETCH 1:* ALL\r\n",
    "a FETCH 1:* FAST\r\n",
    "a FETCH 1:* FULL\r\n",
    "a FETCH 1 BODY[]<0.2048>\r\n",
    "a FETCH 1 (BODY.PEEK[1.2.MIME] BODY[1.TEXT] BODY[HEADER.FIELDS.NOT (Received)] RFC822 RFC822.TEXT RFC822.SIZE BODY BODYSTRUCTURE ENVELOPE)\r\n",
    "a STORE 1 FLAGS \\Seen \\Flagged\r\n",
    "a STORE 1 -FLAGS ()\r\n",
    // RFC 3501 keys
    "a SEARCH NEW OLD RECENT UNRECENT DRAFT UNDRAFT ANSWERED UNANSWERED DELETED UNDELETED FLAGGED UNFLAGGED SEEN UNSEEN ALL\r\n",
    "a SEARCH BCC x CC y TO z FROM w SUBJECT s BODY b TEXT t HEADER X-Foo bar KEYWORD $Junk UNKEYWORD NonJunk\r\n",
    "a SEARCH LARGER 1000 SMALLER 2000 BEFORE 1-Jan-2000 ON \"15-Mar-2001\" SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000 UID 1:*,5 1,2:3 OLDER 10\r\n",
    "a SEARCH (OR (SEEN FLAGGED) NOT (DELETED)) *\r\n",
    // RFC 5256 SORT and THREAD, RFC 5267 ESORT, RFC 5957 DISPLAYFROM
    "A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
    "A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n",
    "A284 SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"\r\n",
    "A285 UID SORT (REVERSE ARRIVAL CC FROM SIZE TO DISPLAYFROM DISPLAYTO) utf-8 UNDELETED\r\n",
    "A301 SORT RETURN (MIN) (DATE) UTF-8 SUBJECT election\r\n",
    "A302 UID SORT RETURN (ALL COUNT MAX SAVE) (DATE) UTF-8 ALL\r\n",
    "A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n",
    "A284 THREAD ORDEREDSUBJECT US-ASCII TEXT \"gewp\"\r\n",
    "A285 UID THREAD REFERENCES UTF-8 SINCE 5-MAR-2000\r\n",
    // RFC 9208 QUOTA, RFC 4978 COMPRESS
    "G0001 GETQUOTA \"!partition/sda4\"\r\n",
    "A003 GETQUOTAROOT INBOX\r\n",
    "A003 GETQUOTA \"\"\r\n",
    "S0000 SETQUOTA \"#user/alice\" (STORAGE 510)\r\n",
    "S0001 SETQUOTA \"\" ()\r\n",
    "a STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)\r\n",
    "a COMPRESS DEFLATE\r\n",
];

#[test]
fn rfc_examples_parse_whole_and_bytewise() {
    for ex in RFC_EXAMPLES {
        let r = one(ex);
        assert!(r.is_ok(), "{ex:?}: {r:?}");
    }
}

#[test]
fn pipelined_examples_frame_identically() {
    let all: String = RFC_EXAMPLES.concat();
    let whole = parse_stream(all.as_bytes(), false);
    assert_eq!(whole.len(), RFC_EXAMPLES.len());
    assert!(whole.iter().all(Result::is_ok));
}

#[test]
fn simple_commands() {
    let c = one("a001 LOGIN SMITH SESAME\r\n").unwrap();
    assert_eq!(c.tag, "a001");
    let CommandBody::Login { username, password } = c.body else {
        panic!()
    };
    assert_eq!(username, "SMITH");
    assert_eq!(password.expose(), b"SESAME");
    assert_eq!(format!("{password:?}"), "Secret(..)");
    assert_eq!(body("x noop\r\n"), CommandBody::Noop);
    assert_eq!(
        body("x Select inbox\r\n"),
        CommandBody::Select {
            mailbox: mb("INBOX"),
            params: ExtParams::default()
        }
    );
    assert_eq!(
        body("x DELETE \"a \\\"b\\\\\"\r\n"),
        CommandBody::Delete(mb("a \"b\\"))
    );
    assert_eq!(
        body("x ENABLE utf8=accept\r\n"),
        CommandBody::Enable(vec!["UTF8=ACCEPT".into()])
    );
}

#[test]
fn login_with_literals() {
    let c = one("a LOGIN {5}\r\nfred\u{1} {6+}\r\np\"a\r\ns\r\n").unwrap();
    let CommandBody::Login { username, password } = c.body else {
        panic!()
    };
    assert_eq!(username, "fred\u{1}");
    assert_eq!(password.expose(), b"p\"a\r\ns");
}

#[test]
fn authenticate_initial_response() {
    let CommandBody::Authenticate {
        mechanism,
        initial_response,
    } = body("A01 AUTHENTICATE plain dGVzdAB0ZXN0AHRlc3Q=\r\n")
    else {
        panic!()
    };
    assert_eq!(mechanism, "PLAIN");
    assert_eq!(initial_response.unwrap().expose(), b"test\0test\0test");
    let CommandBody::Authenticate {
        initial_response, ..
    } = body("A01 AUTHENTICATE PLAIN =\r\n")
    else {
        panic!()
    };
    assert_eq!(initial_response.unwrap().expose(), b"");
    assert!(one("A01 AUTHENTICATE PLAIN !!!\r\n").is_err());
    assert_eq!(parse_authenticate_response(b"*"), Ok(AuthResponse::Cancel));
    assert_eq!(
        parse_authenticate_response(b"AGFsaWNlAHB3"),
        Ok(AuthResponse::Data(Secret::new(b"\0alice\0pw".to_vec())))
    );
    assert_eq!(
        parse_authenticate_response(b""),
        Ok(AuthResponse::Data(Secret::new(Vec::new())))
    );
    assert!(parse_authenticate_response(b"a b").is_err());
    assert!(super::is_idle_done(b"done"));
}

#[test]
fn list_forms() {
    let CommandBody::List(l) = body("A101 LIST \"\" \"\"\r\n") else {
        panic!()
    };
    assert_eq!(
        l,
        ListCommand {
            selection: vec![],
            reference: String::new(),
            patterns: vec![String::new()],
            returns: vec![],
            extended: false
        }
    );
    let CommandBody::List(l) = body(
        "A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% \"Sent/*\") RETURN (CHILDREN STATUS (MESSAGES SIZE) SPECIAL-USE SUBSCRIBED)\r\n",
    ) else {
        panic!()
    };
    assert_eq!(
        l.selection,
        vec![ListSelection::Subscribed, ListSelection::RecursiveMatch]
    );
    assert_eq!(l.patterns, vec!["%".to_string(), "Sent/*".to_string()]);
    assert_eq!(
        l.returns,
        vec![
            ListReturn::Children,
            ListReturn::Status(vec![StatusItem::Messages, StatusItem::Size]),
            ListReturn::SpecialUse,
            ListReturn::Subscribed
        ]
    );
    assert!(l.extended);
    let CommandBody::List(l) = body("A202 LIST ~/Mail/ %]*\r\n") else {
        panic!()
    };
    assert_eq!(l.reference, "~/Mail/");
    assert_eq!(l.patterns, vec!["%]*".to_string()]);
    // RECURSIVEMATCH alone, unknown options.
    assert!(one("C04 LIST (RECURSIVEMATCH) \"\" \"%\"\r\n").is_err());
    assert!(one("C05 LIST (BOGUS) \"\" \"%\"\r\n").is_err());
    assert!(one("C06 LIST \"\" \"%\" RETURN (BOGUS)\r\n").is_err());
    assert!(one("C07 LIST \"\" \"%\" FOO\r\n").is_err());
}

#[test]
fn create_special_use() {
    assert_eq!(
        body("t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n"),
        CommandBody::Create {
            mailbox: mb("MySpecial"),
            special_use: vec!["\\Drafts".into(), "\\Sent".into()],
            params: ExtParams::default()
        }
    );
    assert!(one("t1 CREATE x (USE (Drafts))\r\n").is_err());
    assert!(one("t1 CREATE x (USE)\r\n").is_err());
}

#[test]
fn select_params_generic() {
    let CommandBody::Select { params, .. } = body(
        "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541) CONDSTORE)\r\n",
    ) else {
        panic!()
    };
    assert!(params.has("condstore"));
    assert_eq!(
        params.get("QRESYNC").unwrap().value,
        Some(ExtValue::List(vec![
            ExtValue::Atom("67890007".into()),
            ExtValue::Atom("20050715194045000".into()),
            ExtValue::Atom("41,43:211,214:541".into()),
        ]))
    );
    assert!(one("A02 SELECT INBOX (CONDSTORE CONDSTORE)\r\n").is_err());
    assert!(one("A02 SELECT INBOX (((\r\n").is_err());
}

#[test]
fn status_items() {
    assert_eq!(
        body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        CommandBody::Status {
            mailbox: mb("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert!(one("A042 STATUS x ()\r\n").is_err());
    assert!(one("A042 STATUS x (BOGUS)\r\n").is_err());
}

const RFC3501_MSG: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu.example\r\nMessage-Id: <B27397-0100000@Blurdybloop.example>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

#[test]
fn append_single_and_multi() {
    let input = format!(
        "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n{}\r\n",
        RFC3501_MSG.len(),
        RFC3501_MSG
    );
    let CommandBody::Append { mailbox, messages } = body(&input) else {
        panic!()
    };
    assert_eq!(mailbox, mb("saved-messages"));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].flags, vec![Flag::Seen]);
    assert_eq!(messages[0].date, None);
    assert_eq!(messages[0].data, RFC3501_MSG.as_bytes());
    assert!(!messages[0].binary);

    // RFC 3502 MULTIAPPEND, with a date-time and a LITERAL+ second message.
    let input = format!(
        "A003 APPEND saved-messages (\\Seen) {{{n}}}\r\n{m} (\\Seen $Work) \" 1-Jul-2002 22:30:00 -0700\" {{{n}+}}\r\n{m} {{3}}\r\nabc\r\n",
        n = RFC3501_MSG.len(),
        m = RFC3501_MSG
    );
    let CommandBody::Append { messages, .. } = body(&input) else {
        panic!()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[1].flags,
        vec![Flag::Seen, Flag::Keyword("$Work".into())]
    );
    let dt = messages[1].date.unwrap();
    assert_eq!(
        dt,
        DateTime {
            date: date(2002, 7, 1),
            hour: 22,
            minute: 30,
            second: 0,
            zone_minutes: -420
        }
    );
    assert_eq!(dt.unix_timestamp(), 1_025_587_800);
    assert_eq!(messages[2].data, b"abc");

    // BINARY literal8 with NUL.
    let CommandBody::Append { messages, .. } = body("A APPEND INBOX ~{3}\r\n\0\x01\x02\r\n") else {
        panic!()
    };
    assert!(messages[0].binary);
    assert_eq!(messages[0].data, b"\0\x01\x02");
    // Quoted message data is not allowed; a missing message neither.
    assert!(one("A APPEND INBOX \"hello\"\r\n").is_err());
    assert!(one("A APPEND INBOX\r\n").is_err());
    assert!(one("A APPEND INBOX (\\Seen)\r\n").is_err());
    assert!(one("A APPEND INBOX \"31-Feb-2002 22:30:00 -0700\" {1}\r\nx\r\n").is_err());
}

#[test]
fn search_programs() {
    let CommandBody::Search(s) =
        body("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n")
    else {
        panic!()
    };
    assert_eq!(
        s,
        SearchCommand {
            uid: false,
            returns: Some(vec![SearchReturn::Min, SearchReturn::Count]),
            charset: None,
            criteria: vec![
                SearchKey::Flagged,
                SearchKey::Since(date(1994, 2, 1)),
                SearchKey::Not(Box::new(SearchKey::From(b"Smith".to_vec()))),
            ],
        }
    );
    let CommandBody::Search(s) = body("A285 UID SEARCH CHARSET utf-8 TEXT {4+}\r\nf\u{f6}o\r\n")
    else {
        panic!()
    };
    assert!(s.uid);
    assert_eq!(s.charset.as_deref(), Some("UTF-8"));
    assert_eq!(s.criteria, vec![SearchKey::Text("föo".as_bytes().to_vec())]);
    let CommandBody::Search(s) = body("a SEARCH RETURN () 1:3,5:* $ UID $\r\n") else {
        panic!()
    };
    assert_eq!(s.returns, Some(vec![]));
    assert_eq!(
        s.criteria,
        vec![
            SearchKey::SequenceSet(SequenceSet(vec![
                SeqItem::Range(nz(1), nz(3)),
                SeqItem::Range(nz(5), SeqNum::Largest)
            ])),
            SearchKey::SequenceSet(SequenceSet(vec![SeqItem::Saved])),
            SearchKey::Uid(SequenceSet(vec![SeqItem::Saved])),
        ]
    );
    let CommandBody::Search(s) =
        body("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338 MODSEQ 5\r\n")
    else {
        panic!()
    };
    assert_eq!(
        s.criteria,
        vec![
            SearchKey::ModSeq {
                entry: Some((b"/flags/\\draft".to_vec(), "ALL".into())),
                modseq: 620162338
            },
            SearchKey::ModSeq {
                entry: None,
                modseq: 5
            },
        ]
    );
    let CommandBody::Search(s) = body("a SEARCH OR (SEEN FLAGGED) HEADER Message-ID <x@y>\r\n")
    else {
        panic!()
    };
    assert_eq!(
        s.criteria,
        vec![SearchKey::Or(
            Box::new(SearchKey::And(vec![SearchKey::Seen, SearchKey::Flagged])),
            Box::new(SearchKey::Header("Message-ID".into(), b"<x@y>".to_vec()))
        )]
    );
    for bad in [
        "a SEARCH\r\n",
        "a SEARCH BOGUS\r\n",
        "a SEARCH SINCE 30-Feb-2000\r\n",
        "a SEARCH SINCE 1-Foo-2000\r\n",
        "a SEARCH SINCE 1-Jan-99\r\n",
        "a SEARCH OR SEEN\r\n",
        "a SEARCH ()\r\n",
        "a SEARCH (SEEN\r\n",
        "a SEARCH 0\r\n",
        "a SEARCH 1:0\r\n",
        "a SEARCH 4294967296\r\n",
        "a SEARCH LARGER 99999999999999999999\r\n",
        "a SEARCH RETURN (BOGUS) ALL\r\n",
        "a SEARCH YOUNGER 0\r\n",
        "a SEARCH MODSEQ \"/flags/x\" bogus 5\r\n",
    ] {
        let e = one(bad).unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("a"), "{bad:?}");
    }
}

#[test]
fn search_depth_is_bounded() {
    let ok = format!(
        "a SEARCH {}SEEN{}\r\n",
        "(".repeat(MAX_SEARCH_DEPTH - 2),
        ")".repeat(MAX_SEARCH_DEPTH - 2)
    );
    assert!(one(&ok).is_ok());
    let deep = format!("a SEARCH {}SEEN{}\r\n", "(".repeat(5000), ")".repeat(5000));
    assert!(one(&deep).is_err());
    let nots = format!("a SEARCH {}SEEN\r\n", "NOT ".repeat(5000));
    assert!(one(&nots).is_err());
    let ors = format!("a SEARCH {}SEEN{}\r\n", "OR SEEN ".repeat(5000), "");
    assert!(one(&ors).is_err());
}

#[test]
fn fetch_attributes() {
    let CommandBody::Fetch(f) = body("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n")
    else {
        panic!()
    };
    assert_eq!(f.set, SequenceSet(vec![SeqItem::Range(nz(2), nz(4))]));
    assert_eq!(
        f.attributes,
        vec![
            FetchAttribute::Flags,
            FetchAttribute::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields {
                        not: false,
                        fields: vec!["DATE".into(), "FROM".into()]
                    })
                },
                partial: None
            }
        ]
    );
    let CommandBody::Fetch(f) = body(
        "a fetch 1 (body.peek[1.2.mime] body[1.TEXT]<10.20> binary[1.2]<0.100> binary.size[] BODY[4.2.HEADER.FIELDS.NOT (Received X-Spam)] BODY[3] UID)\r\n",
    ) else {
        panic!()
    };
    assert_eq!(
        f.attributes,
        vec![
            FetchAttribute::BodySection {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime)
                },
                partial: None
            },
            FetchAttribute::BodySection {
                peek: false,
                section: Section {
                    part: vec![1],
                    text: Some(SectionText::Text)
                },
                partial: Some(Partial {
                    offset: 10,
                    length: Some(20)
                })
            },
            FetchAttribute::Binary {
                peek: false,
                part: vec![1, 2],
                partial: Some(Partial {
                    offset: 0,
                    length: Some(100)
                })
            },
            FetchAttribute::BinarySize { part: vec![] },
            FetchAttribute::BodySection {
                peek: false,
                section: Section {
                    part: vec![4, 2],
                    text: Some(SectionText::HeaderFields {
                        not: true,
                        fields: vec!["Received".into(), "X-Spam".into()]
                    })
                },
                partial: None
            },
            FetchAttribute::BodySection {
                peek: false,
                section: Section {
                    part: vec![3],
                    text: None
                },
                partial: None
            },
            FetchAttribute::Uid,
        ]
    );
    let CommandBody::Fetch(f) = body("a FETCH 1:* FULL\r\n") else {
        panic!()
    };
    assert_eq!(
        f.attributes,
        vec![
            FetchAttribute::Flags,
            FetchAttribute::InternalDate,
            FetchAttribute::Rfc822Size,
            FetchAttribute::Envelope,
            FetchAttribute::Body
        ]
    );
    let CommandBody::Fetch(f) =
        body("s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n")
    else {
        panic!()
    };
    assert!(f.uid);
    assert_eq!(f.changed_since(), Some(12345));
    assert!(f.vanished());
    for bad in [
        "a FETCH 1 (BODY[MIME])\r\n",
        "a FETCH 1 BODY[1.BOGUS]\r\n",
        "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
        "a FETCH 1 BODY[]<5>\r\n",
        "a FETCH 1 BODY[]<5.0>\r\n",
        "a FETCH 1 BODY.PEEK\r\n",
        "a FETCH 1 BINARY[TEXT]\r\n",
        "a FETCH 1 BINARY.SIZE[1]<0.5>\r\n",
        "a FETCH 1 BODY[0]\r\n",
        "a FETCH 1 ()\r\n",
        "a FETCH 1 (FLAGS\r\n",
        "a FETCH 1 BOGUS\r\n",
        "a FETCH FLAGS\r\n",
        "a FETCH 1 FLAGS extra\r\n",
        "a FETCH 1 ALL FAST\r\n",
    ] {
        assert!(one(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn store_forms() {
    let CommandBody::Store(s) =
        body("a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n")
    else {
        panic!()
    };
    assert_eq!(
        s,
        StoreCommand {
            uid: true,
            set: SequenceSet(vec![
                SeqItem::Single(nz(6)),
                SeqItem::Single(nz(4)),
                SeqItem::Single(nz(8))
            ]),
            unchanged_since: Some(12121230045),
            modifiers: ExtParams::default(),
            action: StoreAction::Add,
            silent: true,
            flags: vec![Flag::Deleted],
        }
    );
    let CommandBody::Store(s) = body("a STORE 1 flags \\seen $Forwarded \\X-Ext\r\n") else {
        panic!()
    };
    assert_eq!(s.action, StoreAction::Replace);
    assert_eq!(
        s.flags,
        vec![
            Flag::Seen,
            Flag::Keyword("$Forwarded".into()),
            Flag::Extension("X-Ext".into())
        ]
    );
    for bad in [
        "a STORE 1 FLAGS\r\n",
        "a STORE 1 XFLAGS (\\Seen)\r\n",
        "a STORE 1 +FLAGS (\\)\r\n",
        "a STORE 1 (UNCHANGEDSINCE x) FLAGS ()\r\n",
    ] {
        assert!(one(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn id_and_enable() {
    let CommandBody::Id(Some(p)) = body("a1 ID (\"name\" \"sodr\" \"os\" NIL)\r\n") else {
        panic!()
    };
    assert_eq!(
        p,
        vec![("name".into(), Some("sodr".into())), ("os".into(), None)]
    );
    assert_eq!(body("a ID ()\r\n"), CommandBody::Id(Some(vec![])));
    let many: String = (0..31).map(|i| format!("\"k{i}\" \"v\" ")).collect();
    assert!(one(&format!("a ID ({})\r\n", many.trim_end())).is_err());
    assert!(one("a ENABLE\r\n").is_err());
}

#[test]
fn sequence_set_resolution() {
    let s = SequenceSet(vec![
        SeqItem::Range(nz(5), nz(2)),
        SeqItem::Single(SeqNum::Largest),
        SeqItem::Saved,
    ]);
    assert_eq!(s.ranges(10, &[(20, 22)]), vec![(2, 5), (10, 10), (20, 22)]);
    assert!(s.contains(4, 10, &[]));
    assert!(!s.contains(7, 10, &[]));
    assert_eq!(
        SequenceSet(vec![SeqItem::Range(nz(3), SeqNum::Largest)]).ranges(0, &[]),
        Vec::<(u32, u32)>::new()
    );
    assert_eq!(
        SequenceSet(vec![SeqItem::Range(nz(3), SeqNum::Largest)]).ranges(2, &[]),
        vec![(2, 3)]
    );
}

#[test]
fn malformed_inputs_give_errors_with_right_tag() {
    let cases: &[(&str, Option<&str>)] = &[
        ("\r\n", None), // ignored entirely by framing; see below
        ("+ NOOP\r\n", None),
        ("a\r\n", None),
        ("a{ NOOP\r\n", None),
        (" NOOP\r\n", None),
        ("a \r\n", Some("a")),
        ("a BOGUS\r\n", Some("a")),
        ("a NOOP extra\r\n", Some("a")),
        ("a LOGIN\r\n", Some("a")),
        ("a LOGIN x\r\n", Some("a")),
        ("a LOGIN \"x\r\n", Some("a")),
        ("a LOGIN \"x\\y\" z\r\n", Some("a")),
        ("a SELECT\r\n", Some("a")),
        ("a SELECT  INBOX\r\n", Some("a")),
        ("a UID\r\n", Some("a")),
        ("a UID NOOP\r\n", Some("a")),
        ("a COPY 1\r\n", Some("a")),
        ("a COPY x y\r\n", Some("a")),
        ("a UID EXPUNGE\r\n", Some("a")),
        ("a RENAME x\r\n", Some("a")),
        ("a ID\r\n", Some("a")),
        ("a ID (\"a\")\r\n", Some("a")),
    ];
    for (input, tag) in cases {
        let res = parse_stream(input.as_bytes(), false);
        if input.trim().is_empty() {
            assert!(res.is_empty());
            continue;
        }
        assert_eq!(res.len(), 1, "{input:?}");
        let err = res[0].clone().unwrap_err();
        assert_eq!(err.tag.as_deref(), *tag, "{input:?}");
        assert!(err.message.len() < 100, "{input:?}: {}", err.message);
    }
}

#[test]
fn error_messages_never_echo_input() {
    let huge = "x".repeat(10_000);
    for input in [
        format!("a SEARCH {huge}\r\n"),
        format!("a {huge}\r\n"),
        format!("a LOGIN \"{huge}\r\n"),
        format!("a FETCH 1 {huge}\r\n"),
    ] {
        let err = one(&input).unwrap_err();
        assert!(err.message.len() < 100, "{}", err.message);
        assert!(!err.message.contains("xxxx"));
    }
    // A 10,000-octet tag is not echoed either.
    let err = one(&format!("{huge} NOOP\r\n")).unwrap_err();
    assert_eq!(err.tag, None);
}

#[test]
fn nul_rejected_outside_append() {
    assert!(one_bytes(b"a LOGIN {3}\r\na\0b x\r\n").is_err());
    assert!(one_bytes(b"a LOGIN \"a\0b\" x\r\n").is_err());
    assert!(one_bytes(b"a LOGIN ~{1}\r\na x\r\n").is_err());
}

#[test]
fn random_inputs_never_panic() {
    // The same entry as the cargo-fuzz target, on a few thousand pseudo-random inputs biased
    // towards IMAP-looking bytes so that deep paths are reached.
    const ALPHABET: &[&[u8]] = &[
        b"a ",
        b"UID ",
        b"FETCH ",
        b"SEARCH ",
        b"STORE ",
        b"APPEND ",
        b"LIST ",
        b"LOGIN ",
        b"SELECT ",
        b"STATUS ",
        b"ID ",
        b"AUTHENTICATE ",
        b"IDLE",
        b"CREATE ",
        b"RETURN ",
        b"(",
        b")",
        b"[",
        b"]",
        b"<",
        b">",
        b".",
        b"{3}\r\n",
        b"{2+}\r\n",
        b"~{1}\r\n",
        b"{99999999999}\r\n",
        b"\"",
        b"\\",
        b"\r\n",
        b"\n",
        b" ",
        b"1:*",
        b"$",
        b",",
        b"*",
        b"BODY",
        b"PEEK",
        b"HEADER.FIELDS",
        b"MIME",
        b"NOT ",
        b"OR ",
        b"SINCE 1-Feb-1994",
        b"\"17-Jul-1996 02:44:25 -0700\"",
        b"\\Seen",
        b"NIL",
        b"&Jjo-",
        b"&",
        b"-",
        b"\0",
        b"\xff",
        b"=",
        b"DONE\r\n",
        b"CHARSET ",
        b"MODSEQ ",
        b"0",
        b"7",
    ];
    let mut rng = XorShift::new(0x5eed_1234);
    for i in 0..4000 {
        let len = (rng.next_u64() % 64) as usize;
        let mut data = vec![(rng.next_u64() & 0xff) as u8];
        for _ in 0..len {
            let r = rng.next_u64();
            if r.is_multiple_of(5) {
                data.push((r >> 8) as u8);
            } else {
                data.extend_from_slice(ALPHABET[(r >> 8) as usize % ALPHABET.len()]);
            }
        }
        if i % 7 == 0 {
            data.extend_from_slice(b"\r\n");
        }
        run_command_path(&data);
    }
}

#[test]
fn sort_thread_quota_compress_forms() {
    let CommandBody::Sort(s) = body("A283 UID SORT RETURN (COUNT SAVE) (SUBJECT REVERSE DATE) utf-8 FLAGGED NOT SEEN\r\n") else {
        panic!("not SORT")
    };
    assert!(s.uid);
    assert_eq!(s.returns, Some(vec![SearchReturn::Count, SearchReturn::Save]));
    assert_eq!(
        s.criteria,
        vec![
            SortCriterion { reverse: false, key: SortKey::Subject },
            SortCriterion { reverse: true, key: SortKey::Date },
        ]
    );
    assert_eq!(s.charset, "UTF-8");
    assert_eq!(s.search, vec![SearchKey::Flagged, SearchKey::Not(Box::new(SearchKey::Seen))]);
    let CommandBody::Thread(t) = body("a THREAD REFERENCES US-ASCII ALL\r\n") else {
        panic!("not THREAD")
    };
    assert_eq!((t.uid, t.algorithm, t.charset.as_str()), (false, ThreadAlgorithm::References, "US-ASCII"));
    assert_eq!(body("a GETQUOTA \"\"\r\n"), CommandBody::GetQuota(String::new()));
    assert_eq!(body("a GETQUOTAROOT inbox\r\n"), CommandBody::GetQuotaRoot(mb("INBOX")));
    assert_eq!(
        body("a SETQUOTA \"\" (storage 512 MESSAGE 1000)\r\n"),
        CommandBody::SetQuota { root: String::new(), limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 1000)] }
    );
    assert_eq!(body("a compress deflate\r\n"), CommandBody::Compress("DEFLATE".into()));
    assert_eq!(body("a COMPRESS DEFLATE\r\n").name(), "COMPRESS");
    for bad in [
        "a SORT SUBJECT UTF-8 ALL\r\n",
        "a SORT () UTF-8 ALL\r\n",
        "a SORT (SUBJECT) UTF-8\r\n",
        "a SORT (SUBJECT)\r\n",
        "a SORT (REVERSE) UTF-8 ALL\r\n",
        "a SORT (BOGUS) UTF-8 ALL\r\n",
        "a SORT RETURN (PARTIAL 1:5) (DATE) UTF-8 ALL\r\n",
        "a THREAD REFS UTF-8 ALL\r\n",
        "a THREAD REFERENCES UTF-8\r\n",
        "a UID THREAD\r\n",
        "a SETQUOTA \"\" (STORAGE)\r\n",
        "a SETQUOTA \"\" (STORAGE -1)\r\n",
        "a GETQUOTAROOT\r\n",
        "a COMPRESS\r\n",
        "a COMPRESS DEFLATE extra\r\n",
    ] {
        let e = one(bad).expect_err(bad);
        assert_eq!(e.tag.as_deref(), Some("a"), "{bad}");
    }
    let many = format!("a SORT ({}) UTF-8 ALL\r\n", vec!["DATE"; MAX_SORT_CRITERIA + 1].join(" "));
    assert!(one(&many).is_err());
}

#[test]
fn sequence_set_from_parameter_values() {
    use super::parse::parse_sequence_set;
    assert_eq!(
        parse_sequence_set(b"41,43:211,*"),
        Some(SequenceSet(vec![
            SeqItem::Single(nz(41)),
            SeqItem::Range(nz(43), nz(211)),
            SeqItem::Single(SeqNum::Largest)
        ]))
    );
    for bad in [&b""[..], b"$", b"1:", b"0", b"1,,2", b"1 2", b"a"] {
        assert_eq!(parse_sequence_set(bad), None, "{bad:?}");
    }
}
