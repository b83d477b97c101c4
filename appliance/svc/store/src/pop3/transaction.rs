//! The TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, and
//! QUIT, which runs the UPDATE state.
//!
//! What it is: the handlers that read the [`super::maildrop::Maildrop`] and, for RETR and TOP,
//! the stored message (on the blocking pool), streaming it through
//! [`hermes_proto::pop3::BodyEncoder`] in [`ENCODE_CHUNK`] pieces.
//!
//! Invariants:
//! - A message expunged by another session (IMAP, or another POP3 session's QUIT) after our
//!   login keeps its number here; RETR and TOP of it answer `-ERR No such message` and the
//!   session goes on. LIST, STAT and UIDL keep describing the login-time view (RFC 1939 fixes
//!   them for the session).
//! - UPDATE (QUIT) flags exactly the marked UIDs `\Deleted` and expunges exactly those UIDs
//!   (`UserStore::expunge(mailbox, Some(uids))`): a message some IMAP client flagged `\Deleted`
//!   but did not expunge is left alone, and the store's delayed expunge keeps what we removed
//!   for the retention period. Nothing else ever deletes.
//! - A store failure is answered `-ERR [SYS/TEMP]` without internals; the cause is logged.

use super::session::{End, Session, State};
use hermes_proto::pop3::{BodyEncoder, Command, Extent, RespCode, Response, multiline};
use hermes_store::{FlagOp, StoreError};
use tokio::io::AsyncWriteExt;

/// RETR/TOP encode and write this much of a message at a time, so the encoded copy in memory
/// stays small whatever the message size.
pub const ENCODE_CHUNK: usize = 64 * 1024;

/// Runs one TRANSACTION command; returns whether it succeeded.
pub(super) async fn command(s: &mut Session, cmd: Command) -> Result<bool, End> {
    let State::Transaction(t) = &mut s.state else {
        return Ok(false);
    };
    let drop = &mut t.maildrop;
    let (reply, ok) = match cmd {
        Command::Noop => (Response::ok(""), true),
        Command::Stat => {
            let (n, octets) = drop.stat();
            (Response::ok(format!("{n} {octets}")), true)
        }
        Command::List(None) => {
            let (n, octets) = drop.stat();
            let mut out = Response::ok(format!("{n} messages ({octets} octets)")).to_bytes();
            for (num, e) in drop.live() {
                multiline::push_line(&mut out, format!("{num} {}", e.size).as_bytes());
            }
            multiline::end(&mut out);
            s.io.write_all(&out).await?;
            return Ok(true);
        }
        Command::List(Some(n)) => match drop.get(n) {
            Ok(e) => (Response::ok(format!("{n} {}", e.size)), true),
            Err(r) => (r, false),
        },
        Command::Uidl(None) => {
            let mut out = Response::ok("Unique-ID listing follows").to_bytes();
            for (num, e) in drop.live() {
                multiline::push_line(&mut out, format!("{num} {}", drop.unique_id(e)).as_bytes());
            }
            multiline::end(&mut out);
            s.io.write_all(&out).await?;
            return Ok(true);
        }
        Command::Uidl(Some(n)) => match drop.get(n) {
            Ok(e) => (Response::ok(format!("{n} {}", drop.unique_id(&e))), true),
            Err(r) => (r, false),
        },
        Command::Dele(n) => match drop.mark_deleted(n) {
            Ok(()) => (Response::ok(format!("Message {n} marked for deletion")), true),
            Err(r) => (r, false),
        },
        Command::Rset => {
            drop.unmark_all();
            let (n, octets) = drop.stat();
            (Response::ok(format!("Maildrop has {n} messages ({octets} octets)")), true)
        }
        Command::Retr(n) => return send_message(s, n, Extent::Whole).await,
        Command::Top { msg, lines } => return send_message(s, msg, Extent::Top(lines)).await,
        // The session dispatches every other command itself.
        _ => (Response::err("Command not allowed now"), false),
    };
    s.reply(&reply).await?;
    Ok(ok)
}

/// RETR (`Extent::Whole`) and TOP.
async fn send_message(s: &mut Session, n: u32, extent: Extent) -> Result<bool, End> {
    let State::Transaction(t) = &s.state else {
        return Ok(false);
    };
    let entry = match t.maildrop.get(n) {
        Ok(e) => e,
        Err(r) => {
            s.reply(&r).await?;
            return Ok(false);
        }
    };
    let store = t.store.clone();
    let mailbox = t.maildrop.mailbox;
    let read = tokio::task::spawn_blocking(move || store.read_message(mailbox, entry.uid)).await;
    let raw = match read {
        Ok(Ok(raw)) => raw,
        Ok(Err(StoreError::NoSuchMessage | StoreError::NoSuchMailbox)) => {
            tracing::debug!(uid = entry.uid, "message expunged by another session");
            s.reply(&Response::err(format!("No such message: message {n} was removed by another session"))).await?;
            return Ok(true);
        }
        Ok(Err(e)) => {
            tracing::error!(uid = entry.uid, error = %e, "cannot read message");
            s.reply(&Response::err("Cannot read the message, try again later").with_code(RespCode::SysTemp)).await?;
            return Ok(true);
        }
        Err(e) => {
            tracing::error!(error = %e, "read task failed");
            s.reply(&Response::err("Cannot read the message, try again later").with_code(RespCode::SysTemp)).await?;
            return Ok(true);
        }
    };
    let first = match extent {
        Extent::Whole => Response::ok(format!("{} octets", entry.size)),
        Extent::Top(_) => Response::ok("Top of message follows"),
    };
    s.reply(&first).await?;
    let mut encoder = BodyEncoder::new(extent);
    let mut out = Vec::with_capacity(ENCODE_CHUNK + ENCODE_CHUNK / 8);
    for piece in raw.chunks(ENCODE_CHUNK) {
        encoder.encode(piece, &mut out);
        s.io.write_all(&out).await?;
        out.clear();
        if encoder.is_done() {
            break;
        }
    }
    encoder.finish(&mut out);
    s.io.write_all(&out).await?;
    Ok(true)
}

/// QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6), then close.
pub(super) async fn quit(s: &mut Session) -> Result<(), End> {
    let State::Transaction(t) = &s.state else {
        return Err(End::Closed);
    };
    let uids = t.maildrop.marked_uids();
    let reply = if uids.is_empty() {
        Response::ok("Logging out")
    } else {
        let store = t.store.clone();
        let mailbox = t.maildrop.mailbox;
        let wanted = uids.len();
        let result = tokio::task::spawn_blocking(move || {
            store.store_flags(mailbox, &uids, FlagOp::Add, &["\\Deleted".to_string()], None)?;
            store.expunge(mailbox, Some(&uids))
        })
        .await;
        match result {
            Ok(Ok(gone)) => {
                // Fewer than marked: IMAP expunged some first; they are gone either way.
                tracing::info!(
                    user = t.auth.address(),
                    marked = wanted,
                    expunged = gone.len(),
                    "POP3 deletions applied"
                );
                Response::ok(format!("Logging out, {wanted} messages deleted"))
            }
            Ok(Err(e)) => {
                tracing::error!(user = t.auth.address(), error = %e, "UPDATE failed");
                Response::err("Some deleted messages were not removed").with_code(RespCode::SysTemp)
            }
            Err(e) => {
                tracing::error!(error = %e, "UPDATE task failed");
                Response::err("Some deleted messages were not removed").with_code(RespCode::SysTemp)
            }
        }
    };
    s.reply(&reply).await?;
    s.io.flush().await?;
    Err(End::Closed)
}
