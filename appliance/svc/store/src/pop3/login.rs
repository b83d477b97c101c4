//! USER/PASS (RFC 1939 §7) and AUTH PLAIN (RFC 5034, RFC 4616): the ways into TRANSACTION.
//!
//! What it is: both paths end in [`attempt`]: check the password in the directory (argon2, on
//! the blocking pool), apply the failed-login delay and the per-session failure limit, take a
//! per-user session slot, open the user's store, take the INBOX view that becomes the
//! maildrop, and switch the session to TRANSACTION. The bookkeeping (delays, slots, PLAIN
//! splitting) is IMAP's [`crate::imap::auth`], so one address guessing over both protocols is
//! slowed by one counter, and one user's IMAP and POP sessions share one limit.
//! What it is not: password storage or checking (that is the directory).
//!
//! Invariants: a password never reaches a log field; a failed login is answered only after the
//! per-address delay and always as `-ERR [AUTH] Authentication failed` (an unknown user and a
//! wrong password look the same); a server-side problem is `-ERR [SYS/TEMP]` so clients retry
//! instead of asking for a new password; clear-text credentials are refused (`-ERR [AUTH]`)
//! unless [`Session::plaintext_allowed`]; after [`MAX_FAILURES_PER_SESSION`] failures the
//! connection closes.

use super::maildrop::Maildrop;
use super::session::{End, Session, State, Transaction};
use crate::imap::auth::{self, MAX_FAILURES_PER_SESSION, PlainError, SessionSlot};
use hermes_core::directory::AuthError;
use hermes_core::secret::Secret;
use hermes_proto::pop3::{self as p, LineEvent, MAX_COMMAND_LINE, MAX_SASL_LINE, RespCode, Response, SaslResponse};
use tokio::io::AsyncWriteExt;

/// The text Dovecot uses, which clients and admins recognise.
const PLAINTEXT_REFUSED: &str = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections";

/// Returns whether the command succeeded (for the bad-command counter).
pub(super) async fn user(s: &mut Session, name: String) -> Result<bool, End> {
    if !s.plaintext_allowed() {
        s.reply(&Response::err(PLAINTEXT_REFUSED).with_code(RespCode::Auth)).await?;
        return Ok(false);
    }
    s.state = State::Authorization { user: Some(name) };
    s.reply(&Response::ok("")).await?;
    Ok(true)
}

pub(super) async fn pass(s: &mut Session, password: p::Secret<Vec<u8>>) -> Result<bool, End> {
    let State::Authorization { user } = &mut s.state else {
        return Ok(false);
    };
    let Some(login) = user.take() else {
        s.reply(&Response::err("No user name given: send USER first")).await?;
        return Ok(false);
    };
    if !s.plaintext_allowed() {
        s.reply(&Response::err(PLAINTEXT_REFUSED).with_code(RespCode::Auth)).await?;
        return Ok(false);
    }
    // A password that is not UTF-8 cannot match any stored one; it still costs a failure.
    let password = Secret::new(String::from_utf8(password.into_inner()).unwrap_or_default());
    attempt(s, login, password).await
}

pub(super) async fn auth(
    s: &mut Session,
    mechanism: Option<String>,
    initial: Option<p::Secret<Vec<u8>>>,
) -> Result<bool, End> {
    let Some(mechanism) = mechanism else {
        // The pre-RFC 5034 listing form, which some clients (fetchmail among them) probe.
        let mut out = Response::ok("Supported SASL mechanisms follow").to_bytes();
        if s.plaintext_allowed() {
            p::multiline::push_line(&mut out, b"PLAIN");
        }
        p::multiline::end(&mut out);
        s.io.write_all(&out).await?;
        return Ok(true);
    };
    if mechanism != "PLAIN" {
        s.reply(&Response::err("Unsupported authentication mechanism")).await?;
        return Ok(false);
    }
    if !s.plaintext_allowed() {
        s.reply(&Response::err(PLAINTEXT_REFUSED).with_code(RespCode::Auth)).await?;
        return Ok(false);
    }
    s.state = State::Authorization { user: None };
    let response = match initial {
        Some(ir) => ir.into_inner(),
        None => {
            s.io.write_all(b"+ \r\n").await?;
            s.io.flush().await?;
            match read_sasl_line(s).await? {
                None => {
                    s.reply(&Response::err("Authentication response too long")).await?;
                    return Ok(false);
                }
                Some(line) => match p::parse_sasl_response(&line) {
                    Ok(SaslResponse::Cancel) => {
                        s.reply(&Response::err("Authentication cancelled")).await?;
                        return Ok(false);
                    }
                    Ok(SaslResponse::Data(d)) => d.into_inner(),
                    Err(e) => {
                        s.reply(&Response::err(e.message)).await?;
                        return Ok(false);
                    }
                },
            }
        }
    };
    let response = Secret::new(response);
    match auth::decode_plain(response.expose()) {
        Ok((login, password)) => attempt(s, login, password).await,
        Err(PlainError::Malformed) => {
            s.reply(&Response::err("Malformed PLAIN response")).await?;
            Ok(false)
        }
        Err(PlainError::AuthzMismatch) => failed(s, "authorization identity differs").await,
    }
}

/// One SASL continuation line, with the larger SASL limit; `None` if it was too long.
async fn read_sasl_line(s: &mut Session) -> Result<Option<Vec<u8>>, End> {
    s.reader.set_max_line(MAX_SASL_LINE);
    let result = loop {
        match s.reader.next_line() {
            Some(LineEvent::Line(l)) => break Ok(Some(l)),
            Some(LineEvent::TooLong) => break Ok(None),
            None => {
                if let Err(e) = s.fill().await {
                    break Err(e);
                }
            }
        }
    };
    s.reader.set_max_line(MAX_COMMAND_LINE);
    result
}

async fn attempt(s: &mut Session, login: String, password: Secret<String>) -> Result<bool, End> {
    let directory = s.ctx.directory.clone();
    let login_for_check = login.clone();
    let result = tokio::task::spawn_blocking(move || directory.authenticate(&login_for_check, &password)).await;
    let authenticated = match result {
        Ok(Ok(a)) => a,
        Ok(Err(AuthError::InvalidCredentials)) => {
            tracing::info!(login = %printable(&login), "login failed");
            return failed(s, "invalid credentials").await;
        }
        Ok(Err(AuthError::Directory(e))) => {
            tracing::error!(error = %e, "directory error during login");
            s.reply(&temporary("Temporary authentication failure, try again later")).await?;
            return Ok(false);
        }
        Err(e) => {
            tracing::error!(error = %e, "login task failed");
            s.reply(&temporary("Temporary authentication failure, try again later")).await?;
            return Ok(false);
        }
    };
    let max = s.ctx.config().limits.max_sessions_per_user;
    let Some(slot) = SessionSlot::acquire(authenticated.user_id(), max) else {
        tracing::info!(user = authenticated.address(), "too many sessions");
        s.reply(&Response::err("Too many simultaneous sessions for this user").with_code(RespCode::InUse)).await?;
        return Ok(false);
    };
    let store = s.ctx.store.clone();
    let uid = authenticated.user_id().clone();
    let account = authenticated.account().clone();
    let config = s.ctx.config();
    let opened = tokio::task::spawn_blocking(move || {
        let user = store.user(&uid)?;
        // Keeps the quota (and so the warning levels) current for this user.
        crate::quota::apply_account(&user, &account, &config.store);
        let inbox = user.mailbox("INBOX").ok_or(hermes_store::StoreError::NoSuchMailbox)?;
        let view = user.view(inbox.id)?;
        Ok::<_, hermes_store::StoreError>((user, view))
    })
    .await;
    let (user_store, view) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(user = authenticated.address(), error = %e, "cannot open the maildrop");
            s.reply(&temporary("Cannot open the mailbox, try again later")).await?;
            return Ok(false);
        }
        Err(e) => {
            tracing::error!(error = %e, "maildrop task failed");
            s.reply(&temporary("Cannot open the mailbox, try again later")).await?;
            return Ok(false);
        }
    };
    auth::record_success(s.peer.ip());
    crate::control::Stats::add(&s.ctx.stats.logins_ok, 1);
    let maildrop = Maildrop::from_view(&view);
    let (count, octets) = maildrop.stat();
    tracing::info!(user = authenticated.address(), messages = count, octets, "logged in");
    s.state =
        State::Transaction(Box::new(Transaction { auth: authenticated, store: user_store, maildrop, _slot: slot }));
    s.reply(&Response::ok(format!("Logged in: {count} messages ({octets} octets)"))).await?;
    Ok(true)
}

/// A failed attempt: wait the per-address delay, count it, and close after too many.
async fn failed(s: &mut Session, why: &'static str) -> Result<bool, End> {
    let delay = auth::record_failure(s.peer.ip(), &s.ctx.config().limits);
    crate::control::Stats::add(&s.ctx.stats.logins_failed, 1);
    s.auth_failures += 1;
    tracing::debug!(reason = why, delay_ms = delay.as_millis() as u64, "authentication failed");
    s.io.flush().await?;
    tokio::time::sleep(delay).await;
    s.reply(&Response::err("Authentication failed").with_code(RespCode::Auth)).await?;
    if s.auth_failures >= MAX_FAILURES_PER_SESSION {
        tracing::info!("too many authentication failures");
        s.close_after = true;
    }
    Ok(false)
}

fn temporary(text: &'static str) -> Response {
    Response::err(text).with_code(RespCode::SysTemp)
}

/// A login name fit for a log field: bounded, no control characters.
fn printable(login: &str) -> String {
    login.chars().take(128).filter(|c| !c.is_control()).collect()
}
