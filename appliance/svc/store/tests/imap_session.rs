//! Golden transcripts of whole IMAP sessions against a real store on 127.0.0.1:0: login and
//! capabilities, mailbox management (LIST-EXTENDED, SPECIAL-USE, modified UTF-7 vs UTF-8),
//! and the message life cycle an IMAP4rev1 client such as Python's imaplib drives (APPEND with
//! literals, MULTIAPPEND, FETCH, SEARCH, STORE, COPY, MOVE, EXPUNGE, UID variants, EXAMINE).
//!
//! Run: `cargo test -p hermes-svc-store --test imap_session`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod imap_common;
use imap_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_capabilities_and_any_state_commands() {
    let server = start().await;
    let (mut c, greeting) = Client::connect(&server).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS AUTH=PLAIN SASL-IR "),
        "{greeting}"
    );
    assert!(greeting.ends_with("] Hermes ready"), "{greeting}");
    transcript(
        &mut c,
        r#"
        C: a1 CAPABILITY
        S: * CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS AUTH=PLAIN SASL-IR LITERAL+ ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH MULTIAPPEND BINARY CONDSTORE QRESYNC SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES SEARCHRES WITHIN QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE APPENDLIMIT=1048576
        S: a1 OK CAPABILITY completed
        C: a2 SELECT INBOX
        S: a2 BAD Command not allowed before login
        C: a3 NOOP
        S: a3 OK NOOP completed
        C: a4 LOGIN alice@example.org "not the password"
        S: a4 NO [AUTHENTICATIONFAILED] Authentication failed
        C: a5 LOGIN nobody@example.org "correct horse"
        S: a5 NO [AUTHENTICATIONFAILED] Authentication failed
        C: a6 LOGIN alice@example.org "correct horse"
        S: a6 OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH MULTIAPPEND BINARY CONDSTORE QRESYNC SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES SEARCHRES WITHIN QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE APPENDLIMIT=1048576] Logged in
        C: a7 LOGIN alice@example.org "correct horse"
        S: a7 BAD Already authenticated
        C: a8 FETCH 1 FLAGS
        S: a8 BAD No mailbox selected
        C: a9 NAMESPACE
        S: * NAMESPACE (("" "/")) NIL NIL
        S: a9 OK NAMESPACE completed
        C: a10 ID ("name" "golden" "version" "1")
        S: * ID ("name" "Hermes" "version" "<ANY>")
        S: a10 OK ID completed
        C: a11 LIST "" ""
        S: * LIST (\Noselect) "/" ""
        S: a11 OK LIST completed
        C: a12 LOGOUT
        S: * BYE Logging out
        S: a12 OK LOGOUT completed
        "#,
    )
    .await;
    assert!(
        c.line_or_eof().await.is_none(),
        "connection closed after LOGOUT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_management() {
    let server = start().await;
    let (mut c, _) = Client::connect(&server).await;
    transcript(
        &mut c,
        r#"
        C: b1 LOGIN alice@example.org "correct horse"
        S: b1 OK [CAPABILITY <ANY>] Logged in
        C: b2 LIST "" "*"
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren \Archive) "/" "Archive"
        S: * LIST (\HasNoChildren \Drafts) "/" "Drafts"
        S: * LIST (\HasNoChildren \Junk) "/" "Junk"
        S: * LIST (\HasNoChildren \Sent) "/" "Sent"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: b2 OK LIST completed
        C: b3 CREATE Work/Projects/
        S: b3 OK CREATE completed
        C: b4 CREATE "Caf&AOk-"
        S: b4 OK CREATE completed
        C: b5 LIST "" %
        S: * LIST (\HasNoChildren) "/" "INBOX"
        S: * LIST (\HasNoChildren \Archive) "/" "Archive"
        S: * LIST (\HasNoChildren) "/" "Caf&AOk-"
        S: * LIST (\HasNoChildren \Drafts) "/" "Drafts"
        S: * LIST (\HasNoChildren \Junk) "/" "Junk"
        S: * LIST (\HasNoChildren \Sent) "/" "Sent"
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * LIST (\HasChildren) "/" "Work"
        S: b5 OK LIST completed
        C: b6 LIST "" "work/*"
        S: b6 OK LIST completed
        C: b7 LIST "" "Work/*"
        S: * LIST (\HasNoChildren) "/" "Work/Projects"
        S: b7 OK LIST completed
        C: b8 RENAME Work Jobs
        S: b8 OK RENAME completed
        C: b9 DELETE Jobs
        S: b9 NO [HASCHILDREN] Mailbox has children, delete them first
        C: b10 DELETE Jobs/Projects
        S: b10 OK DELETE completed
        C: b11 DELETE inbox
        S: b11 NO [CANNOT] INBOX cannot be deleted
        C: b12 CREATE INBOX
        S: b12 NO [ALREADYEXISTS] INBOX already exists
        C: b13 SELECT Nope
        S: b13 NO [NONEXISTENT] Mailbox does not exist
        C: b14 CREATE Receipts (USE (\Important))
        S: b14 NO [USEATTR] Unsupported special-use attribute
        C: b15 SUBSCRIBE Ghost
        S: b15 OK SUBSCRIBE completed
        C: b16 LIST (SUBSCRIBED) "" "G*"
        S: * LIST (\NonExistent \Subscribed) "/" "Ghost"
        S: b16 OK LIST completed
        C: b17 LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UIDNEXT))
        S: * LIST (\HasNoChildren \Archive) "/" "Archive"
        S: * STATUS "Archive" (MESSAGES 0 UIDNEXT 1)
        S: * LIST (\HasNoChildren \Drafts) "/" "Drafts"
        S: * STATUS "Drafts" (MESSAGES 0 UIDNEXT 1)
        S: * LIST (\HasNoChildren \Junk) "/" "Junk"
        S: * STATUS "Junk" (MESSAGES 0 UIDNEXT 1)
        S: * LIST (\HasNoChildren \Sent) "/" "Sent"
        S: * STATUS "Sent" (MESSAGES 0 UIDNEXT 1)
        S: * LIST (\HasNoChildren \Trash) "/" "Trash"
        S: * STATUS "Trash" (MESSAGES 0 UIDNEXT 1)
        S: b17 OK LIST completed
        C: b18 STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE DELETED)
        S: * STATUS "INBOX" (MESSAGES 0 UIDNEXT 1 UNSEEN 0 SIZE 0 DELETED 0)
        S: b18 OK STATUS completed
        C: b19 CREATE Caf&AOk
        S: b19 NO [CANNOT] Mailbox name is not valid modified UTF-7
        C: b20 ENABLE IMAP4rev2
        S: * ENABLED IMAP4rev2
        S: b20 OK ENABLE completed
        C: b21 LIST "" "Caf*"
        S: * LIST (\HasNoChildren) "/" "Café"
        S: b21 OK LIST completed
        C: b22 SELECT INBOX
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * 0 EXISTS
        S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
        S: * OK [UIDVALIDITY <ANY>] UIDs valid
        S: * OK [UIDNEXT 1] Predicted next UID
        S: * OK [HIGHESTMODSEQ <ANY>] Highest mailbox mod-sequence
        S: * LIST () "/" "INBOX"
        S: b22 OK [READ-WRITE] SELECT completed
        C: b23 SEARCH ALL
        S: * ESEARCH (TAG "b23")
        S: b23 OK SEARCH completed
        C: b24 ENABLE IMAP4rev2
        S: b24 BAD ENABLE is not allowed with a mailbox selected
        C: b25 UNSELECT
        S: b25 OK UNSELECT completed
        C: b26 UNSELECT
        S: b26 BAD No mailbox selected
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_life_cycle_imap4rev1() {
    let server = start().await;
    let (mut c, _) = Client::connect(&server).await;
    transcript(
        &mut c,
        r#"
        C: a1 LOGIN alice@example.org "correct horse"
        S: a1 OK [CAPABILITY <ANY>] Logged in
        C: a2 SELECT INBOX
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * 0 EXISTS
        S: * 0 RECENT
        S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
        S: * OK [UIDVALIDITY <ANY>] UIDs valid
        S: * OK [UIDNEXT 1] Predicted next UID
        S: * OK [HIGHESTMODSEQ <ANY>] Highest mailbox mod-sequence
        S: a2 OK [READ-WRITE] SELECT completed
        # A synchronizing literal, as imaplib sends it.
        C: a3 APPEND INBOX {28}
        S: + Ready for literal data
        C: Subject: one
        C:
        C: first body
        C:
        S: * 1 EXISTS
        S: a3 OK [APPENDUID <ANY> 1] APPEND completed
        # MULTIAPPEND with LITERAL+, a date and flags.
        C: a4 APPEND INBOX (\Seen) "02-Jan-2024 10:00:00 +0100" {29+}
        C: Subject: two
        C:
        C: second body
        C:  ($Work) {30+}
        C: Subject: three
        C:
        C: third body
        C:
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work)
        S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work \*)] Flags permitted
        S: * 3 EXISTS
        S: a4 OK [APPENDUID <ANY> 2:3] APPEND completed
        C: a5 FETCH 1:* (UID FLAGS RFC822.SIZE)
        S: * 1 FETCH (UID 1 FLAGS () RFC822.SIZE 28)
        S: * 2 FETCH (UID 2 FLAGS (\Seen) RFC822.SIZE 29)
        S: * 3 FETCH (UID 3 FLAGS ($Work) RFC822.SIZE 30)
        S: a5 OK FETCH completed
        C: a6 FETCH 2 INTERNALDATE
        S: * 2 FETCH (INTERNALDATE " 2-Jan-2024 10:00:00 +0100")
        S: a6 OK FETCH completed
        C: a7 FETCH 1 (BODY[HEADER] BODY.PEEK[TEXT]<0.5>)
        S: * 1 FETCH (BODY[HEADER] {16}
        S: Subject: one
        S:
        S:  BODY[TEXT]<0> {5}
        S: first FLAGS (\Seen))
        S: a7 OK FETCH completed
        C: a8 SEARCH UNSEEN
        S: * SEARCH 3
        S: a8 OK SEARCH completed
        C: a9 UID SEARCH KEYWORD $Work
        S: * SEARCH 3
        S: a9 OK SEARCH completed
        C: a10 SEARCH OR SUBJECT two BODY third
        S: * SEARCH 2 3
        S: a10 OK SEARCH completed
        C: a11 SEARCH RETURN (MIN MAX COUNT) 1:*
        S: * ESEARCH (TAG "a11") MIN 1 MAX 3 COUNT 3
        S: a11 OK SEARCH completed
        C: a12 SEARCH CHARSET KOI8-R ALL
        S: a12 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset
        C: a13 STORE 1:2 +FLAGS (\Deleted)
        S: * 1 FETCH (FLAGS (\Deleted \Seen))
        S: * 2 FETCH (FLAGS (\Deleted \Seen))
        S: a13 OK STORE completed
        C: a14 UID STORE 3 FLAGS.SILENT (\Flagged)
        S: a14 OK STORE completed
        C: a15 COPY 1:2 Archive
        S: a15 OK [COPYUID <ANY> 1:2 1:2] COPY completed
        C: a16 COPY 1 Nowhere
        S: a16 NO [TRYCREATE] Mailbox does not exist
        C: a17 UID MOVE 3 Trash
        S: * OK [COPYUID <ANY> 3 1] Moved
        S: * 3 EXPUNGE
        S: a17 OK MOVE completed
        C: a18 UID EXPUNGE 2
        S: * 2 EXPUNGE
        S: a18 OK EXPUNGE completed
        C: a19 EXPUNGE
        S: * 1 EXPUNGE
        S: a19 OK EXPUNGE completed
        C: a20 FETCH 1 FLAGS
        S: a20 BAD Invalid message sequence number
        C: a21 STATUS Archive (MESSAGES UNSEEN DELETED)
        S: * STATUS "Archive" (MESSAGES 2 UNSEEN 0 DELETED 2)
        S: a21 OK STATUS completed
        C: a22 EXAMINE Trash
        S: * OK [CLOSED] Previous mailbox is now closed
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * 1 EXISTS
        S: * 0 RECENT
        S: * OK [UNSEEN 1] First unseen
        S: * OK [PERMANENTFLAGS ()] Flags permitted
        S: * OK [UIDVALIDITY <ANY>] UIDs valid
        S: * OK [UIDNEXT 2] Predicted next UID
        S: * OK [HIGHESTMODSEQ <ANY>] Highest mailbox mod-sequence
        S: a22 OK [READ-ONLY] EXAMINE completed
        C: a23 FETCH 1 (BODY[TEXT] BODYSTRUCTURE)
        S: * 1 FETCH (BODY[TEXT] {12}
        S: third body
        S:  BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL))
        S: a23 OK FETCH completed
        C: a24 STORE 1 +FLAGS (\Seen)
        S: a24 NO Mailbox is read-only
        C: a25 FETCH 1 FLAGS
        S: * 1 FETCH (FLAGS (\Flagged))
        S: a25 OK FETCH completed
        C: a26 SELECT Archive
        S: * OK [CLOSED] Previous mailbox is now closed
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * 2 EXISTS
        S: * 0 RECENT
        S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
        S: * OK [UIDVALIDITY <ANY>] UIDs valid
        S: * OK [UIDNEXT 3] Predicted next UID
        S: * OK [HIGHESTMODSEQ <ANY>] Highest mailbox mod-sequence
        S: a26 OK [READ-WRITE] SELECT completed
        C: a27 CLOSE
        S: a27 OK CLOSE completed
        C: a28 STATUS Archive (MESSAGES)
        S: * STATUS "Archive" (MESSAGES 0)
        S: a28 OK STATUS completed
        "#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_envelope_binary_and_rfc822_items() {
    let server = start().await;
    let mut c = Client::login(&server, ALICE).await;
    let body = "Caf=C3=A9 au lait=\r\n and more";
    let msg = format!(
        "From: Carol <carol@example.net>\r\nSubject: menu\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{body}\r\n"
    );
    let r = c.append("INBOX", "", msg.as_bytes()).await;
    assert!(r.last().unwrap().contains("OK [APPENDUID "), "{r:?}");
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])").await;
    assert_eq!(r[0], "* 1 FETCH (BINARY[1] {24}");
    assert_eq!(r[1], "Café au lait and more");
    assert_eq!(r[2], " BINARY.SIZE[1] 24)");
    let r = c.cmd("UID FETCH 1 (ENVELOPE RFC822.HEADER)").await;
    assert!(
        r[0].starts_with(
            "* 1 FETCH (UID 1 ENVELOPE (NIL \"menu\" ((\"Carol\" NIL \"carol\" \"example.net\"))"
        ),
        "{r:?}"
    );
    assert!(r.last().unwrap().ends_with("OK FETCH completed"));
    let r = c.cmd("FETCH 1 (FLAGS)").await;
    assert_eq!(
        r[0], "* 1 FETCH (FLAGS ())",
        "RFC822.HEADER and PEEK do not set \\Seen"
    );
    let r = c.cmd("FETCH 1 RFC822").await;
    assert!(r[0].starts_with("* 1 FETCH (RFC822 {"), "{r:?}");
    assert!(
        r.iter().any(|l| l.contains("FLAGS (\\Seen)")),
        "RFC822 sets \\Seen: {r:?}"
    );
}
