//! One ManageSieve connection (RFC 5804), from greeting to close.
//!
//! The wire format is `hermes_proto::managesieve` (sans-I/O); this module does the I/O, the
//! STARTTLS upgrade, AUTHENTICATE PLAIN (RFC 4616, with an initial response or a `""`
//! challenge), and the script commands over [`super::scripts::ScriptStore`]: PUTSCRIPT and
//! CHECKSCRIPT compile with the delivery compiler (same extensions, same limits) and answer
//! errors with their line; HAVESPACE, LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT,
//! RENAMESCRIPT, NOOP, UNAUTHENTICATE, LOGOUT.
//!
//! Hermes addition: when the user's script failed at delivery, the final `OK` of LISTSCRIPTS
//! carries `(WARNINGS)` and the recorded error (so a client, or `sieve-connect`, shows why
//! mail went to INBOX); a successful PUTSCRIPT of the active script or SETACTIVE clears it.
//!
//! Invariants:
//! - Plain-text authentication only over TLS, or from loopback when
//!   `[managesieve] plaintext_auth_on_loopback` is set; otherwise SASL is advertised empty and
//!   AUTHENTICATE answers `NO (ENCRYPT-NEEDED)`.
//! - Failed logins are delayed per address with the IMAP helpers ([`crate::imap::auth`]); three
//!   failures in one session end it with BYE. A password never reaches a log field.
//! - Bytes pipelined after STARTTLS are discarded, never run inside TLS (CVE-2011-0411 class).
//! - Before login, literals are bounded by [`PRELOGIN_MAX_LITERAL`]; after, by the script size
//!   limit. Timeouts: `limits.prelogin_timeout_secs` before login, `idle_timeout_secs` after.
//! - Error texts name no paths or internals; storage errors are logged and answered `TRYLATER`.

use super::Engine;
use super::scripts::ScriptError;
use crate::SharedContext;
use crate::imap::auth::{self, MAX_FAILURES_PER_SESSION, PlainError, SessionSlot};
use hermes_core::directory::{AuthError, Authenticated};
use hermes_core::secret::Secret;
use hermes_proto::managesieve::{self as ms, Command, Event, Limits, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

/// Literal bound before login: a SASL PLAIN response is a few hundred octets.
pub const PRELOGIN_MAX_LITERAL: usize = 8 * 1024;
/// Longest command line (literal contents excluded).
const MAX_LINE: usize = 8 * 1024;
/// Consecutive failed commands before the connection is closed (a confused or hostile client).
const MAX_BAD_COMMANDS: u32 = 20;
const READ_CHUNK: usize = 16 * 1024;

/// The refusal written when the connection limiter says no.
pub fn too_many_connections() -> Vec<u8> {
    Response::bye("Too many connections, try again later").with_code("TRYLATER").to_bytes()
}

/// Serves one ManageSieve connection (STARTTLS available when the service has a certificate).
pub async fn serve(tcp: TcpStream, peer: SocketAddr, ctx: SharedContext) {
    let span = tracing::info_span!("managesieve", session = %crate::deliver::new_delivery_id(), peer = %peer);
    async move {
        let mut s = Session::new(peer, ctx);
        let mut tcp = tcp;
        match s.run(&mut tcp, true).await {
            Ok(Next::StartTls) => {}
            Ok(Next::Close) | Err(_) => return,
        }
        let Some(acceptor) = s.ctx.tls() else { return };
        let timeout = Duration::from_secs(s.ctx.config().limits.prelogin_timeout_secs);
        let mut tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "STARTTLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        s.tls = true;
        // RFC 5804 §2.2: after TLS the server sends its capabilities again.
        let mut out = Vec::new();
        s.capabilities(&mut out);
        Response::ok("TLS negotiation successful").write_to(&mut out);
        if tls.write_all(&out).await.is_err() {
            return;
        }
        let _ = s.run(&mut tls, false).await;
    }
    .instrument(span)
    .await
}

enum Next {
    Close,
    StartTls,
}

struct Session {
    ctx: SharedContext,
    engine: Engine,
    peer: SocketAddr,
    reader: ms::Reader,
    tls: bool,
    user: Option<(Authenticated, SessionSlot)>,
    auth_failures: u32,
    bad_commands: u32,
}

impl Session {
    fn new(peer: SocketAddr, ctx: SharedContext) -> Session {
        let engine = Engine::new(&ctx.config(), &ctx.data);
        Session {
            reader: ms::Reader::new(Limits { max_line: MAX_LINE, max_literal: PRELOGIN_MAX_LITERAL, max_tokens: 4 }),
            engine,
            ctx,
            peer,
            tls: false,
            user: None,
            auth_failures: 0,
            bad_commands: 0,
        }
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls || (self.peer.ip().is_loopback() && self.ctx.config().managesieve.plaintext_auth_on_loopback)
    }

    fn capabilities(&self, out: &mut Vec<u8>) {
        let mut cap = |k: &str, v: Option<&str>| {
            ms::string(out, k.as_bytes());
            if let Some(v) = v {
                out.push(b' ');
                ms::string(out, v.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        cap("IMPLEMENTATION", Some("Hermes"));
        cap("SASL", Some(if self.plaintext_allowed() && self.user.is_none() { "PLAIN" } else { "" }));
        cap("SIEVE", Some(&super::sieve_capability()));
        if !self.tls && self.ctx.tls().is_some() && self.user.is_none() {
            cap("STARTTLS", None);
        }
        cap("MAXREDIRECTS", Some(&self.engine.settings.max_redirects.to_string()));
        if let Some((a, _)) = &self.user {
            cap("OWNER", Some(a.address()));
        }
        cap("VERSION", Some("1.0"));
    }

    /// Reads and answers commands until LOGOUT, EOF, timeout, shutdown or STARTTLS.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S, greet: bool) -> std::io::Result<Next> {
        let mut out = Vec::new();
        if greet {
            self.capabilities(&mut out);
            Response::ok("Hermes ManageSieve ready").write_to(&mut out);
        }
        let mut buf = vec![0u8; READ_CHUNK];
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            while let Some(event) = self.reader.next_event() {
                let (response, next) = self.handle(event, io, &mut out).await?;
                if let Some(r) = response {
                    r.write_to(&mut out);
                }
                match next {
                    Some(Next::Close) => {
                        io.write_all(&out).await?;
                        io.flush().await?;
                        let _ = io.shutdown().await;
                        return Ok(Next::Close);
                    }
                    Some(Next::StartTls) => {
                        io.write_all(&out).await?;
                        io.flush().await?;
                        let dropped = self.reader.take_pending();
                        if !dropped.is_empty() {
                            tracing::warn!(bytes = dropped.len(), "discarded input pipelined after STARTTLS");
                        }
                        return Ok(Next::StartTls);
                    }
                    None => {}
                }
            }
            if !out.is_empty() {
                io.write_all(&out).await?;
                io.flush().await?;
                out.clear();
            }
            if *shutdown.borrow() {
                let _ = io.write_all(&Response::bye("Server shutting down").with_code("TRYLATER").to_bytes()).await;
                let _ = io.shutdown().await;
                return Ok(Next::Close);
            }
            let limits = &self.ctx.config().limits;
            let timeout = Duration::from_secs(if self.user.is_some() {
                limits.idle_timeout_secs
            } else {
                limits.prelogin_timeout_secs
            });
            let n = tokio::select! {
                r = tokio::time::timeout(timeout, io.read(&mut buf)) => match r {
                    Ok(r) => r?,
                    Err(_) => {
                        let _ = io.write_all(&Response::bye("Connection timed out").to_bytes()).await;
                        let _ = io.shutdown().await;
                        return Ok(Next::Close);
                    }
                },
                r = shutdown.changed() => {
                    if r.is_err() {
                        let _ = io.write_all(&Response::bye("Server shutting down").with_code("TRYLATER").to_bytes()).await;
                        return Ok(Next::Close);
                    }
                    continue;
                }
            };
            if n == 0 {
                return Ok(Next::Close);
            }
            self.reader.feed(&buf[..n]);
        }
    }

    fn bad(&mut self, r: Response) -> (Option<Response>, Option<Next>) {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            return (Some(Response::bye("Too many errors")), Some(Next::Close));
        }
        (Some(r), None)
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        event: Event,
        io: &mut S,
        out: &mut Vec<u8>,
    ) -> std::io::Result<(Option<Response>, Option<Next>)> {
        let tokens = match event {
            Event::Line(t) if t.is_empty() => return Ok((None, None)),
            Event::Line(t) => t,
            Event::TooLong => {
                let code = if self.user.is_some() { "QUOTA/MAXSIZE" } else { "TRYLATER" };
                return Ok(self.bad(Response::no("Command or script too large").with_code(code)));
            }
            Event::Malformed(why) => return Ok(self.bad(Response::no(format!("Syntax error: {why}")))),
        };
        let cmd = match ms::parse_command(&tokens) {
            Ok(c) => c,
            Err(e) => return Ok(self.bad(Response::no(format!("Syntax error: {e}")))),
        };
        tracing::debug!(command = ?cmd, "command");
        let authed = self.user.is_some();
        let r = match cmd {
            Command::Capability => {
                self.capabilities(out);
                Response::ok("Capability completed")
            }
            Command::Logout => return Ok((Some(Response::ok("Logout completed")), Some(Next::Close))),
            Command::Noop { tag } => {
                let mut r = Response::ok("Done");
                if let Some(t) = tag {
                    let mut code = b"TAG ".to_vec();
                    ms::string(&mut code, &t);
                    r = r.with_code(String::from_utf8_lossy(&code).into_owned());
                }
                r
            }
            Command::StartTls => {
                if self.tls {
                    Response::no("TLS is already active")
                } else if authed {
                    Response::no("STARTTLS is only allowed before authentication")
                } else if self.ctx.tls().is_none() {
                    Response::no("STARTTLS is not available")
                } else {
                    return Ok((Some(Response::ok("Begin TLS negotiation now")), Some(Next::StartTls)));
                }
            }
            Command::Authenticate { mechanism, initial } => {
                if authed {
                    Response::no("Already authenticated")
                } else {
                    return self.authenticate(&mechanism, initial, io).await;
                }
            }
            Command::Unauthenticate => {
                if !authed {
                    Response::no("Not authenticated")
                } else {
                    self.user = None;
                    self.reader.set_limits(Limits {
                        max_line: MAX_LINE,
                        max_literal: PRELOGIN_MAX_LITERAL,
                        max_tokens: 4,
                    });
                    Response::ok("Unauthenticate completed")
                }
            }
            _ if !authed => Response::no("Authenticate first"),
            other => self.script_command(other, out).await,
        };
        if r.status == ms::Status::Ok {
            self.bad_commands = 0;
        }
        Ok((Some(r), None))
    }

    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
        io: &mut S,
    ) -> std::io::Result<(Option<Response>, Option<Next>)> {
        if mechanism != "PLAIN" {
            return Ok((Some(Response::no("Unsupported authentication mechanism")), None));
        }
        if !self.plaintext_allowed() {
            return Ok((Some(Response::no("Plaintext authentication requires TLS").with_code("ENCRYPT-NEEDED")), None));
        }
        let encoded = match initial {
            Some(ir) => ir,
            None => {
                io.write_all(b"\"\"\r\n").await?;
                io.flush().await?;
                let event = loop {
                    if let Some(e) = self.reader.next_event() {
                        break e;
                    }
                    let mut buf = vec![0u8; 4096];
                    let timeout = Duration::from_secs(self.ctx.config().limits.prelogin_timeout_secs);
                    let n = match tokio::time::timeout(timeout, io.read(&mut buf)).await {
                        Ok(r) => r?,
                        Err(_) => return Ok((Some(Response::bye("Connection timed out")), Some(Next::Close))),
                    };
                    if n == 0 {
                        return Ok((None, Some(Next::Close)));
                    }
                    self.reader.feed(&buf[..n]);
                };
                let tokens = match event {
                    Event::Line(t) => t,
                    _ => return Ok((Some(Response::no("Malformed authentication response")), None)),
                };
                match ms::parse_sasl_response(&tokens) {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok((Some(Response::no("Authentication cancelled")), None)),
                    Err(_) => return Ok((Some(Response::no("Malformed authentication response")), None)),
                }
            }
        };
        use base64::Engine as _;
        let decoded = match base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) {
            Ok(d) => Secret::new(d),
            Err(_) => return Ok((Some(Response::no("Malformed PLAIN response")), None)),
        };
        let (login, password) = match auth::decode_plain(decoded.expose()) {
            Ok(x) => x,
            Err(PlainError::Malformed) => return Ok((Some(Response::no("Malformed PLAIN response")), None)),
            Err(PlainError::AuthzMismatch) => return self.failed(io).await,
        };
        let directory = self.ctx.directory.clone();
        let check = login.clone();
        let result = tokio::task::spawn_blocking(move || directory.authenticate(&check, &password)).await;
        let account = match result {
            Ok(Ok(a)) => a,
            Ok(Err(AuthError::InvalidCredentials)) => {
                tracing::info!(login = %login.chars().take(128).filter(|c| !c.is_control()).collect::<String>(), "login failed");
                return self.failed(io).await;
            }
            Ok(Err(AuthError::Directory(e))) => {
                tracing::error!(error = %e, "directory error during login");
                return Ok((Some(Response::no("Temporary failure, try again later").with_code("TRYLATER")), None));
            }
            Err(e) => {
                tracing::error!(error = %e, "login task failed");
                return Ok((Some(Response::no("Temporary failure, try again later").with_code("TRYLATER")), None));
            }
        };
        let Some(slot) = SessionSlot::acquire(account.user_id(), self.ctx.config().limits.max_sessions_per_user) else {
            return Ok((
                Some(Response::no("Too many simultaneous sessions for this user").with_code("TRYLATER")),
                None,
            ));
        };
        auth::record_success(self.peer.ip());
        crate::control::Stats::add(&self.ctx.stats.logins_ok, 1);
        tracing::info!(user = account.address(), "logged in");
        self.user = Some((account, slot));
        let max_literal = self.engine.scripts.max_bytes();
        self.reader.set_limits(Limits { max_line: MAX_LINE, max_literal, max_tokens: 4 });
        self.bad_commands = 0;
        Ok((Some(Response::ok("Logged in")), None))
    }

    async fn failed<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> std::io::Result<(Option<Response>, Option<Next>)> {
        let delay = auth::record_failure(self.peer.ip(), &self.ctx.config().limits);
        crate::control::Stats::add(&self.ctx.stats.logins_failed, 1);
        self.auth_failures += 1;
        io.flush().await?;
        tokio::time::sleep(delay).await;
        let r = Response::no("Authentication failed");
        if self.auth_failures >= MAX_FAILURES_PER_SESSION {
            let mut out = r.to_bytes();
            out.extend_from_slice(&Response::bye("Too many authentication failures").to_bytes());
            io.write_all(&out).await?;
            return Ok((None, Some(Next::Close)));
        }
        Ok((Some(r), None))
    }

    /// The authenticated commands; storage work runs on the blocking pool.
    async fn script_command(&mut self, cmd: Command, out: &mut Vec<u8>) -> Response {
        let Some((account, _)) = &self.user else { return Response::no("Authenticate first") };
        let user = account.user_id().clone();
        let engine = Engine::new(&self.ctx.config(), &self.ctx.data);
        let task = tokio::task::spawn_blocking(move || run_script_command(&engine, &user, cmd));
        match task.await {
            Ok((extra, r)) => {
                out.extend_from_slice(&extra);
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "script command task failed");
                Response::no("Temporary failure, try again later").with_code("TRYLATER")
            }
        }
    }
}

fn storage_error(e: ScriptError) -> Response {
    match e {
        ScriptError::NonExistent => Response::no("There is no script by that name").with_code("NONEXISTENT"),
        ScriptError::AlreadyExists => Response::no("A script by that name already exists").with_code("ALREADYEXISTS"),
        ScriptError::Active => Response::no("The active script cannot be deleted").with_code("ACTIVE"),
        ScriptError::TooLarge => Response::no("Script too large").with_code("QUOTA/MAXSIZE"),
        ScriptError::TooMany => Response::no("Too many scripts").with_code("QUOTA/MAXSCRIPTS"),
        ScriptError::Io(e) => {
            tracing::error!(error = %e, "Sieve script storage failed");
            Response::no("Temporary failure, try again later").with_code("TRYLATER")
        }
    }
}

/// One authenticated command: (bytes to send before the final response, the response).
fn run_script_command(engine: &Engine, user: &hermes_core::directory::UserId, cmd: Command) -> (Vec<u8>, Response) {
    let store = &engine.scripts;
    let mut extra = Vec::new();
    let r = match cmd {
        Command::HaveSpace { name, size } => match store.have_space(user, &name, size) {
            Ok(()) => Response::ok("Putscript would succeed"),
            Err(e) => storage_error(e),
        },
        Command::CheckScript { script } => match engine.compile(&script) {
            Ok(_) => Response::ok("Script is valid"),
            Err(e) => Response::no(e.to_string()),
        },
        Command::PutScript { name, script } => {
            if script.len() > store.max_bytes() {
                storage_error(ScriptError::TooLarge)
            } else {
                match engine.compile(&script) {
                    Err(e) => Response::no(e.to_string()),
                    Ok(_) => match store.put(user, &name, &script) {
                        Ok(()) => {
                            if store.active_name(user).ok().flatten().as_deref() == Some(name.as_str()) {
                                store.clear_error(user);
                            }
                            tracing::info!(user = %user, script = %name, size = script.len(), "script stored");
                            Response::ok("Putscript completed")
                        }
                        Err(e) => storage_error(e),
                    },
                }
            }
        }
        Command::ListScripts => match store.list(user) {
            Ok(list) => {
                for s in list {
                    ms::string(&mut extra, s.name.as_bytes());
                    if s.active {
                        extra.extend_from_slice(b" ACTIVE");
                    }
                    extra.extend_from_slice(b"\r\n");
                }
                match store.last_error(user) {
                    Some(err) => {
                        Response::ok(format!("Listscripts completed; last filter error: {err}")).with_code("WARNINGS")
                    }
                    None => Response::ok("Listscripts completed"),
                }
            }
            Err(e) => storage_error(e.into()),
        },
        Command::SetActive { name } => {
            let target = (!name.is_empty()).then_some(name.as_str());
            // Never activate a script that would not compile now (e.g. after a config change).
            let valid = match target {
                Some(n) => match store.get(user, n) {
                    Ok(text) => {
                        engine.compile(&text).map_err(|e| Response::no(format!("The script does not compile: {e}")))
                    }
                    Err(e) => Err(storage_error(e)),
                }
                .map(|_| ()),
                None => Ok(()),
            };
            match valid.and_then(|()| store.set_active(user, target).map_err(storage_error)) {
                Ok(()) => {
                    store.clear_error(user);
                    Response::ok("Setactive completed")
                }
                Err(r) => r,
            }
        }
        Command::GetScript { name } => match store.get(user, &name) {
            Ok(text) => {
                extra.extend_from_slice(format!("{{{}}}\r\n", text.len()).as_bytes());
                extra.extend_from_slice(&text);
                extra.extend_from_slice(b"\r\n");
                Response::ok("Getscript completed")
            }
            Err(e) => storage_error(e),
        },
        Command::DeleteScript { name } => match store.delete(user, &name) {
            Ok(()) => Response::ok("Deletescript completed"),
            Err(e) => storage_error(e),
        },
        Command::RenameScript { old, new } => match store.rename(user, &old, &new) {
            Ok(()) => Response::ok("Renamescript completed"),
            Err(e) => storage_error(e),
        },
        _ => Response::no("Unexpected command"),
    };
    (extra, r)
}
