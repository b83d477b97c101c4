//! LOGIN and AUTHENTICATE PLAIN (RFC 9051 §6.2.2-3, RFC 4616, SASL-IR RFC 4959).
//!
//! What it is: the two ways to log in, sharing one path: check the password in the directory
//! (argon2, on the blocking pool), apply the failed-login delay and the per-session failure
//! limit, take a per-user session slot, open the user's store and switch the session to the
//! authenticated state with the full framing limits.
//! What it is not: the policy bookkeeping itself ([`super::auth`]) nor password storage.
//!
//! Invariants: a password never reaches a log field; a failed login is answered only after the
//! per-address delay; an unknown user and a wrong password get the same answer; clear-text
//! login is refused when LOGINDISABLED is advertised.

use super::auth::{self, MAX_FAILURES_PER_SESSION, PlainError, SessionSlot};
use super::reply::Reply;
use super::session::{End, LoggedIn, Session};
use hermes_core::directory::AuthError;
use hermes_core::secret::Secret;
use hermes_proto::imap::{self as p, AuthResponse, LineEvent};
use tokio::io::AsyncWriteExt;

pub(super) async fn login(s: &mut Session, username: String, password: p::Secret<Vec<u8>>) -> Result<Reply, End> {
    if s.login_disabled() {
        return Ok(
            Reply::no("Plaintext authentication disallowed on non-secure connections").with_code("PRIVACYREQUIRED")
        );
    }
    let password = match String::from_utf8(password.into_inner()) {
        Ok(p) => Secret::new(p),
        Err(_) => Secret::new(String::new()),
    };
    attempt(s, username, password).await
}

pub(super) async fn authenticate(
    s: &mut Session,
    _tag: &str,
    mechanism: &str,
    initial: Option<p::Secret<Vec<u8>>>,
) -> Result<Reply, End> {
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        return Ok(Reply::no("Unsupported authentication mechanism"));
    }
    if s.login_disabled() {
        return Ok(
            Reply::no("Plaintext authentication disallowed on non-secure connections").with_code("PRIVACYREQUIRED")
        );
    }
    let response = match initial {
        Some(ir) => ir.into_inner(),
        None => {
            s.io.write_all(b"+ \r\n").await?;
            s.io.flush().await?;
            let line = loop {
                match s.reader.next_line() {
                    Some(LineEvent::Line(l)) => break l,
                    Some(LineEvent::TooLong) => {
                        return Ok(Reply::bad("Authentication response too long"));
                    }
                    None => s.fill().await?,
                }
            };
            match p::parse_authenticate_response(&line) {
                Ok(AuthResponse::Cancel) => return Ok(Reply::bad("Authentication cancelled")),
                Ok(AuthResponse::Data(d)) => d.into_inner(),
                Err(e) => return Ok(Reply::bad(e.message.into_owned())),
            }
        }
    };
    let response = Secret::new(response);
    match auth::decode_plain(response.expose()) {
        Ok((login, password)) => attempt(s, login, password).await,
        Err(PlainError::Malformed) => Ok(Reply::bad("Malformed PLAIN response")),
        Err(PlainError::AuthzMismatch) => failed(s, "authorization identity differs").await,
    }
}

async fn attempt(s: &mut Session, login: String, password: Secret<String>) -> Result<Reply, End> {
    let directory = s.ctx.directory.clone();
    let login_for_check = login.clone();
    let result = tokio::task::spawn_blocking(move || directory.authenticate(&login_for_check, &password)).await;
    let auth = match result {
        Ok(Ok(a)) => a,
        Ok(Err(AuthError::InvalidCredentials)) => {
            tracing::info!(login = %truncated(&login), "login failed");
            return failed(s, "invalid credentials").await;
        }
        Ok(Err(AuthError::Directory(e))) => {
            tracing::error!(error = %e, "directory error during login");
            return Ok(Reply::unavailable());
        }
        Err(e) => {
            tracing::error!(error = %e, "login task failed");
            return Ok(Reply::server_bug());
        }
    };
    let max = s.ctx.config().limits.max_sessions_per_user;
    let Some(slot) = SessionSlot::acquire(auth.user_id(), max) else {
        tracing::info!(user = auth.address(), "too many sessions");
        return Ok(Reply::no("Too many simultaneous sessions for this user").with_code("LIMIT"));
    };
    let store = s.ctx.store.clone();
    let uid = auth.user_id().clone();
    let user_store = match tokio::task::spawn_blocking(move || store.user(&uid)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return Ok(Reply::from_store(&e, "LOGIN", false)),
        Err(e) => {
            tracing::error!(error = %e, "store task failed");
            return Ok(Reply::server_bug());
        }
    };
    // The quota lives in the directory; the store enforces it atomically with each append.
    crate::quota::apply_account(&user_store, auth.account(), &s.ctx.config().store);
    auth::record_success(s.peer.ip());
    crate::control::Stats::add(&s.ctx.stats.logins_ok, 1);
    tracing::info!(user = auth.address(), "logged in");
    s.user = Some(LoggedIn::new(auth, user_store, slot));
    let limits = s.full_limits();
    s.reader.set_limits(limits);
    let caps = s.capabilities();
    Ok(Reply::ok("Logged in").with_code(format!("CAPABILITY {caps}")))
}

/// A failed attempt: wait the per-address delay, count it, and disconnect after too many.
async fn failed(s: &mut Session, why: &'static str) -> Result<Reply, End> {
    let delay = auth::record_failure(s.peer.ip(), &s.ctx.config().limits);
    crate::control::Stats::add(&s.ctx.stats.logins_failed, 1);
    s.auth_failures += 1;
    tracing::debug!(reason = why, delay_ms = delay.as_millis() as u64, "authentication failed");
    s.io.flush().await?;
    tokio::time::sleep(delay).await;
    let reply = Reply::no("Authentication failed").with_code("AUTHENTICATIONFAILED");
    if s.auth_failures >= MAX_FAILURES_PER_SESSION {
        // The tagged reply goes first, then BYE (see `Session::close_after`).
        s.close_after = Some("Too many authentication failures");
    }
    Ok(reply)
}

fn truncated(login: &str) -> String {
    login.chars().take(128).filter(|c| !c.is_control()).collect()
}
