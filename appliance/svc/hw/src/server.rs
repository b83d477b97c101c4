//! The control socket `run/hw.sock`: one JSON request line, one JSON response line
//! ([`hermes_hw::api`]).
//!
//! What it is not: authenticated. The socket is mode 0660 (the admin service's group reaches it
//! on the appliance) inside the 0700 `run/` folder.
//!
//! Invariants: a request line is at most [`api::MAX_REQUEST`] bytes and must arrive within 10 s;
//! at most [`MAX_CONNECTIONS`] requests are served at once (more are answered "busy"); a request
//! that touches a disk runs with a deadline, so a hung disk answers with an error, never a hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use hermes_hw::api::{self, EventSeverity, Request, Response, ScrubAction, SelftestKind};
use hermes_hw::probe::{ProbeConfig, SelfTestRequest};

use crate::{Shared, event};

/// Requests served at once.
pub const MAX_CONNECTIONS: usize = 16;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Binds the socket (replacing a stale one), mode 0660.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Unblocks `accept` so the thread sees the stop flag.
pub fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

pub fn serve(listener: UnixListener, sh: &Arc<Shared>) {
    for conn in listener.incoming() {
        if sh.stopping() {
            return;
        }
        let Ok(stream) = conn else { continue };
        if ACTIVE.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
            let _ = reply(&stream, &Response::error("busy: too many requests at once"));
            continue;
        }
        let sh = sh.clone();
        let spawned = std::thread::Builder::new().name("hw-request".into()).spawn(move || {
            session(stream, &sh);
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn reply(mut stream: &UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

fn session(stream: UnixStream, sh: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut line = Vec::new();
    let mut reader = BufReader::new((&stream).take(api::MAX_REQUEST));
    if reader.read_until(b'\n', &mut line).is_err() || line.is_empty() {
        return;
    }
    let resp = if !line.ends_with(b"\n") {
        Response::error(format!("request longer than {} bytes", api::MAX_REQUEST))
    } else {
        match serde_json::from_slice::<Request>(&line) {
            Ok(req) => handle(sh, req),
            Err(e) => Response::error(format!("bad request: {e}")),
        }
    };
    let _ = reply(&stream, &resp);
}

/// Answers one request.
pub fn handle(sh: &Shared, req: Request) -> Response {
    match req {
        Request::Status => Response { ok: true, status: Some(crate::status::status(sh)), ..Default::default() },
        Request::Selftest { bay, kind } => selftest(sh, bay, kind),
        Request::Scrub { array, action } => scrub(sh, &array, action),
        Request::Provision { level: _, bays, spares } => provision(sh, &bays, spares),
    }
}

fn selftest(sh: &Shared, bay: u16, kind: SelftestKind) -> Response {
    let s = &sh.settings;
    let devices = match hermes_hw::discover::discover(&s.root) {
        Ok(d) => d,
        Err(e) => return Response::error(e),
    };
    let map = crate::bay_map(&s.root, &s.bays, &devices);
    let Some((name, _)) = map.bays.get(&bay) else {
        return Response::error(format!("bay {bay} is empty"));
    };
    let Some(dev) = devices.iter().find(|d| &d.name == name).cloned() else {
        return Response::error(format!("bay {bay}: {name} disappeared"));
    };
    let cfg = ProbeConfig { dev_root: s.dev_root.clone(), ..ProbeConfig::default() };
    let req = match kind {
        SelftestKind::Short => SelfTestRequest::Short,
        SelftestKind::Long => SelfTestRequest::Long,
    };
    let (tx, rx) = mpsc::channel();
    let started = std::thread::Builder::new().name(format!("selftest-{name}")).spawn(move || {
        let _ = tx.send(hermes_hw::probe::start_selftest(&dev, &cfg, req));
    });
    if let Err(e) = started {
        return Response::error(format!("cannot start a thread: {e}"));
    }
    let word = match kind {
        SelftestKind::Short => "short",
        SelftestKind::Long => "long",
    };
    match rx.recv_timeout(crate::sweep::SELFTEST_START_TIMEOUT) {
        Ok(Ok(())) => {
            let mut e =
                event("SelftestStarted", EventSeverity::Info, format!("bay {bay} ({name}): {word} self-test started"));
            e.bay = Some(bay);
            e.device = Some(name.clone());
            sh.record(vec![e]);
            Response::message(format!(
                "bay {bay} ({name}): {word} self-test started; its result shows in `hermes hw status` after the next sweep"
            ))
        }
        Ok(Err(e)) => Response::error(format!("bay {bay} ({name}): {e}")),
        Err(_) => Response::error(format!(
            "bay {bay} ({name}) did not accept the self-test within {} s",
            crate::sweep::SELFTEST_START_TIMEOUT.as_secs()
        )),
    }
}

fn scrub(sh: &Shared, array: &str, action: ScrubAction) -> Response {
    let root = &sh.settings.root;
    let result = match action {
        ScrubAction::Start => {
            let _ = hermes_hw::md::control::set_speed_limit(root, array, Some(sh.settings.scrub_speed_kib_s));
            hermes_hw::md::control::start_check(root, array)
        }
        ScrubAction::Stop => hermes_hw::md::control::stop_scrub(root, array),
    };
    match result {
        Ok(()) => {
            let (kind, msg) = match action {
                ScrubAction::Start => ("ScrubStarted", format!("{array}: check started by the admin")),
                ScrubAction::Stop => ("ScrubStopped", format!("{array}: check stopped by the admin")),
            };
            let mut e = event(kind, EventSeverity::Info, msg.clone());
            e.array = Some(array.to_string());
            sh.record(vec![e]);
            Response::message(msg)
        }
        Err(e) => Response::error(e),
    }
}

fn provision(sh: &Shared, bays: &[u16], spares: u16) -> Response {
    if !crate::is_root() {
        return Response::error(
            "provisioning runs mdadm --create, which only root may run, and this service runs without root: \
             run `hermes hw provision ...` on the appliance console (it runs as root)",
        );
    }
    match crate::provision_local(&sh.settings.root, &sh.settings.bays, bays, spares, None, true) {
        Ok(msg) => {
            sh.record(vec![event("Provisioned", EventSeverity::Info, msg.clone())]);
            Response::message(msg)
        }
        Err(e) => Response::error(e),
    }
}
