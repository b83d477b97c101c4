//! IDLE (RFC 2177): the client waits, the server pushes `EXISTS`, `EXPUNGE` and `FETCH (FLAGS)`
//! as other sessions and deliveries change the selected mailbox.
//!
//! What it is: after `+ idling`, a loop that waits on three things at once: client input (only
//! `DONE` is valid), the user's store change notices ([`hermes_store::UserStore::subscribe`]),
//! and the service's shutdown signal. A notice for the selected mailbox (or a lagged receiver,
//! which may have lost one) triggers a full sync and an immediate flush.
//! What it is not: a poller — nothing happens on a timer except the idle timeout.
//!
//! Invariants:
//! - The notice receiver is subscribed *before* the first sync, so no change can fall between
//!   the sync and the wait: a delivery reaches an idling client as soon as the store announces
//!   it (well within the one-second target).
//! - Expunges are reported during IDLE (no command using message numbers is in progress).
//! - Bytes after `DONE` stay buffered for the next command.
//! - The idle timeout applies (clients re-issue IDLE every 29 minutes, RFC 2177).

use super::reply::Reply;
use super::session::{End, Session};
use hermes_proto::imap::{LineEvent, parse::is_idle_done};
use hermes_store::ChangeNotice;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

pub(super) async fn idle(s: &mut Session) -> Result<Reply, End> {
    let Some(store) = s.user_store() else {
        return Ok(Reply::bad("Command not allowed before login"));
    };
    let mut notices = store.subscribe();
    s.send(b"+ idling\r\n").await?;
    s.sync(true).await?;
    s.io.flush().await?;
    // An idling connection may stay for 29 minutes; thousands of them must cost little.
    s.release_idle_buffers();
    let timeout = Duration::from_secs(s.ctx.config().limits.idle_timeout_secs);
    let mut rbuf = [0u8; 512];
    loop {
        // Input already buffered (pipelined DONE) is handled before waiting.
        match s.reader.next_line() {
            Some(LineEvent::Line(line)) => {
                s.restore_buffers();
                return Ok(if is_idle_done(&line) {
                    Reply::ok("IDLE terminated")
                } else {
                    Reply::bad("Expected DONE")
                });
            }
            Some(LineEvent::TooLong) => {
                s.restore_buffers();
                return Ok(Reply::bad("Expected DONE"));
            }
            None => {}
        }
        let mut shutdown = s.shutdown.clone();
        tokio::select! {
            r = tokio::time::timeout(timeout, s.io.read(&mut rbuf)) => match r {
                Err(_) => {
                    s.bye("Autologout; idle for too long").await;
                    return Err(End::Closed);
                }
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(n)) => s.reader.feed(rbuf.get(..n).unwrap_or(&[])),
                Ok(Err(e)) => return Err(End::Io(e)),
            },
            notice = notices.recv() => {
                let relevant = match notice {
                    Ok(ChangeNotice::Mailbox { mailbox, .. }) => s.selected.as_ref().is_some_and(|sel| sel.id == mailbox),
                    Ok(ChangeNotice::MailboxList) => false,
                    Err(RecvError::Lagged(_)) => true,
                    // The user's store is going away: the service is shutting down.
                    Err(RecvError::Closed) => {
                        s.bye("Server shutting down").await;
                        return Err(End::Closed);
                    }
                };
                if relevant {
                    s.sync(true).await?;
                    s.io.flush().await?;
                }
            }
            () = wait(&mut shutdown) => {
                s.bye("Server shutting down").await;
                return Err(End::Closed);
            }
        }
    }
}

async fn wait(rx: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match rx {
        Some(rx) => hermes_runtime::shutdown::triggered(rx).await,
        None => std::future::pending().await,
    }
}
