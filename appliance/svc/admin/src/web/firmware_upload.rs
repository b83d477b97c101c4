//! Firmware update by upload (issue 7): the Firmware page's form (`POST /firmware/upload`,
//! `multipart/form-data`) and its API twin (`POST /api/firmware`, the raw bundle as
//! `application/octet-stream`).
//!
//! The flow, for both: a signed-in admin (session) or an API token → the CSRF token (the form's
//! `csrf` field, which must come first; the API's `X-CSRF-Token` header for a session) → the
//! admin's own password (the form's `password` field, which must come before the file; the
//! API's [`PASSWORD_HEADER`]), checked under the login throttle → only then the file's bytes,
//! streamed to `DATA/admin/uploads/<random>.part` (0600) and hashed on the way, at most
//! [`MAX_UPLOAD_BYTES`] (413 beyond) → fsync, rename to `<random>.bundle`, fsync the folder →
//! init's `{"op":"firmware_install","path":...,"force":...,"reboot":...}` on
//! `DATA/run/control.sock` → the upload removed, whatever the answer → one audit entry
//! (`firmware.install`) for every attempt that got past the session check.
//!
//! What it is not: a verifier. The signature, the payload's hash, the version order and the
//! slot writing are init's (`appliance/svc/init/src/firmware.rs`); this module only delivers the
//! bytes to a place init accepts from a caller that is not root (a regular file under
//! `DATA/admin/uploads` owned by this service: init's `control::open_upload`) and shows init's
//! answer.
//!
//! Invariants: no file byte is written before the CSRF and password checks passed; the
//! multipart parser (multer) holds at most [`MAX_BUFFERED`] not yet taken (its part headers
//! included), every small field at most [`MAX_FIELD`], and the file passes through a 1 MiB
//! write buffer: never whole in memory; at most [`MAX_UPLOAD_BYTES`] on disk; one
//! upload at a time ([`UPLOAD_LOCK`]); the upload is removed on every path (the [`Upload`]
//! guard's `Drop`, and the install runs in its own task, so a client that hangs up cannot skip
//! the removal or the audit entry); leftovers of a crash are removed when the service starts
//! ([`remove_stale_uploads`]); messages shown never name a path on the box.

use super::pages::{csrf, error_page, page};
use super::{ApiAuth, Authed, PageAuth, St, api::error_response, reauthenticate};
use crate::ops::Actor;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use hermes_core::paths::DataDir;
use http_body_util::BodyExt as _;
use maud::{Markup, html};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// Largest bundle accepted: about init's own limit for a bundle's payload (a slot's UKI is ~20 MiB,
/// and the ESP holds two of up to ~28 MiB, so anything near this is refused by init anyway).
pub const MAX_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Room in a form upload for the small fields, the part headers and the boundaries.
pub const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;
/// The form's whole body at most (every other route keeps [`super::MAX_BODY_BYTES`]).
pub const MAX_FORM_BODY: u64 = MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES;
/// Most bytes the multipart parser may hold that the handler has not taken yet: part headers,
/// boundaries, a preamble and one frame being scanned for a boundary (the parser buffers a
/// part's headers until their end, so without this a body of headers would sit in memory).
const MAX_BUFFERED: u64 = 1024 * 1024;
/// Longest small form field (the password's own limit; the CSRF token is 43 characters).
const MAX_FIELD: usize = 1024;
/// Where uploads wait for init, under the data folder: the one folder init accepts a path in
/// from a caller that is not root (init's `control::UPLOADS`).
pub const UPLOADS: &str = "admin/uploads";
/// The API's re-authentication header (the body is the bundle, so the password cannot be in it).
pub const PASSWORD_HEADER: &str = "x-hermes-password";
/// How long init may take to read, verify and write a bundle (seconds even under TCG; init
/// holds one firmware lock, so a trial's mark-good may go first). The connection itself is
/// closed after 2 minutes without traffic (`run::IDLE_TIMEOUT`): a client that waits longer
/// loses the answer, but the install still finishes, is audited and its file removed.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The write buffer between the socket and the file.
const WRITE_BUFFER: usize = 1024 * 1024;
/// One upload at a time: two would only race for the same ESP in init anyway, and each may
/// take up to [`MAX_UPLOAD_BYTES`] of `/data` (RAM on a box without provisioned disks).
static UPLOAD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `DATA/admin/uploads`.
pub fn uploads_dir(data: &DataDir) -> PathBuf {
    data.root().join(UPLOADS)
}

/// Removes what a crashed or killed admin service left in the uploads folder (at start, when
/// no upload can be in flight). Returns how many files went.
pub fn remove_stale_uploads(data: &DataDir) -> usize {
    let dir = uploads_dir(data);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let gone = if is_dir { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) };
        match gone {
            Ok(()) => removed += 1,
            Err(err) => tracing::warn!(error = %err, file = ?e.file_name(), "cannot remove a stale firmware upload"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed stale firmware uploads");
    }
    removed
}

// ---- the file on its way to init ----------------------------------------------------------

/// An upload being written, then waiting for init. Dropping it removes the file.
struct Upload {
    part: PathBuf,
    done: Option<PathBuf>,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    size: u64,
    hash: Sha256,
}

impl Drop for Upload {
    fn drop(&mut self) {
        for p in [Some(&self.part), self.done.as_ref()].into_iter().flatten() {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, file = %p.display(), "cannot remove a firmware upload"),
            }
        }
    }
}

impl Upload {
    async fn create(data: &DataDir) -> std::io::Result<Upload> {
        let dir = uploads_dir(data);
        tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).await?;
        let mut name = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let part = dir.join(format!("{}.part", hex::encode(name)));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&part).await?;
        Ok(Upload {
            part,
            done: None,
            file: Some(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file)),
            size: 0,
            hash: Sha256::new(),
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        let size = self.size + chunk.len() as u64;
        if size > MAX_UPLOAD_BYTES {
            return Err(Refusal::TooLarge);
        }
        let Some(f) = self.file.as_mut() else { return Err(Refusal::Internal) };
        f.write_all(chunk).await.map_err(Refusal::io)?;
        self.hash.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Makes the upload durable under its final name (init reads it after this).
    async fn finish(&mut self) -> Result<PathBuf, Refusal> {
        let Some(mut f) = self.file.take() else { return Err(Refusal::Internal) };
        f.flush().await.map_err(Refusal::io)?;
        f.get_mut().sync_all().await.map_err(Refusal::io)?;
        drop(f);
        let done = self.part.with_extension("bundle");
        tokio::fs::rename(&self.part, &done).await.map_err(Refusal::io)?;
        self.done = Some(done.clone());
        if let Some(dir) = done.parent() {
            let dir = dir.to_path_buf();
            let synced = tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await;
            match synced {
                Ok(r) => r.map_err(Refusal::io)?,
                Err(_) => return Err(Refusal::Internal),
            }
        }
        Ok(done)
    }

    fn sha256(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

// ---- why an upload was not installed -------------------------------------------------------

/// A refusal before init was asked.
#[derive(Debug)]
enum Refusal {
    /// 403: CSRF token, or the password.
    Forbidden(String),
    /// 413: over [`MAX_UPLOAD_BYTES`].
    TooLarge,
    /// 400: not the form or body expected, or cut off.
    BadRequest(String),
    /// 422: no file, an empty one, a bad query value (with its field).
    Invalid(&'static str, String),
    /// 415 (API): not `application/octet-stream`.
    Unsupported,
    /// 409: another upload is running.
    Busy,
    /// 507: `/data` is full.
    NoSpace,
    /// 500: see the service log.
    Internal,
}

impl Refusal {
    fn io(e: std::io::Error) -> Refusal {
        if e.raw_os_error() == Some(nix::libc::ENOSPC) {
            Refusal::NoSpace
        } else {
            tracing::error!(error = %e, "firmware upload: cannot store the file");
            Refusal::Internal
        }
    }

    fn multipart(e: multer::Error) -> Refusal {
        match e {
            multer::Error::StreamSizeExceeded { .. } => Refusal::TooLarge,
            multer::Error::FieldSizeExceeded { field_name, .. } if field_name.as_deref() == Some("bundle") => {
                Refusal::TooLarge
            }
            multer::Error::FieldSizeExceeded { .. } => {
                Refusal::BadRequest("A form field was too long; nothing was installed.".into())
            }
            e => {
                tracing::info!(error = %e, "firmware upload: bad multipart body");
                Refusal::BadRequest("The upload was malformed or cut off; nothing was installed.".into())
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Busy => StatusCode::CONFLICT,
            Refusal::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Refusal::Invalid(f, _) => Some(f),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Refusal::Forbidden(t) | Refusal::BadRequest(t) | Refusal::Invalid(_, t) => t.clone(),
            Refusal::TooLarge => format!(
                "The bundle is larger than {} MiB, the most this box accepts; nothing was installed.",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            ),
            Refusal::Unsupported => {
                "Send the bundle itself as the body, with Content-Type: application/octet-stream.".into()
            }
            Refusal::Busy => "Another firmware upload is in progress; wait for it to finish.".into(),
            Refusal::NoSpace => {
                "The data folder is full, so the bundle could not be stored; nothing was installed.".into()
            }
            Refusal::Internal => "The bundle could not be stored (see the service log); nothing was installed.".into(),
        }
    }
}

const CSRF_REFUSED: &str =
    "The form's security token was missing or out of date. Go back, reload the page and try again.";
const PASSWORD_REFUSED: &str = "Wrong password (or too many attempts): nothing was uploaded or installed.";
const PASSWORD_FIRST: &str = "Enter your admin password to confirm (the form sends it before the file).";

/// What init (or the host-mode supervisor) made of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the other slot; `rebooting`: the box goes down now to boot it.
    Installed { version: String, file: String, removed: Vec<String>, demoted: Option<String>, rebooting: bool },
    /// Init refused the bundle (signature, corruption, version, no ESP, no room): 422.
    Refused(String),
    /// The host-mode supervisor, which installs no firmware: 409 (as reboot and the other
    /// appliance-only operations answer there).
    HostMode(String),
    /// Nobody answered, or not in time: 503.
    Unavailable(String),
}

impl Outcome {
    fn status(&self) -> StatusCode {
        match self {
            Outcome::Installed { .. } => StatusCode::OK,
            Outcome::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::HostMode(_) => StatusCode::CONFLICT,
            Outcome::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn text(&self) -> String {
        match self {
            Outcome::Installed { version, file, rebooting, .. } => format!(
                "Hermes {version} was written to the boot slot that was not running ({file}). {}",
                if *rebooting {
                    "The box is rebooting into it now; sign in again in a minute or two."
                } else {
                    "It starts at the next reboot."
                }
            ),
            Outcome::Refused(t) => format!("The update was refused; nothing was installed: {t}"),
            Outcome::HostMode(t) | Outcome::Unavailable(t) => t.clone(),
        }
    }
}

/// The texts a host-mode supervisor answers to an op it does not know (before and after it
/// learnt to say so in words).
fn is_host_mode_refusal(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    ["unknown variant", "unknown op", "host mode", "appliance only"].iter().any(|w| e.contains(w))
        || e.starts_with("bad request")
}

/// Init's text without the paths on this box (the upload's, the uploads folder's) and in this
/// page's words (the console's `--force` is the form's and the API's `force`).
fn tidy(text: &str, upload: &Path, data: &DataDir) -> String {
    let mut t = text.chars().take(1000).collect::<String>();
    let mut names = vec![upload.display().to_string()];
    if let Ok(real) = upload.canonicalize() {
        names.push(real.display().to_string());
    }
    for n in names {
        t = t.replace(&n, "the uploaded file");
    }
    let dir = uploads_dir(data);
    for d in [dir.canonicalize().ok(), Some(dir)].into_iter().flatten() {
        t = t.replace(&d.display().to_string(), "the uploads folder");
    }
    t.replace("(--force installs it anyway)", "(force installs it anyway)")
        .replace("(--force installs anyway)", "(force installs anyway)")
}

/// Reads init's answer.
fn outcome(answer: Result<serde_json::Value, crate::control::ControlError>, upload: &Path, data: &DataDir) -> Outcome {
    use crate::control::ControlError;
    match answer {
        Ok(v) if v.get("ok").and_then(|o| o.as_bool()) == Some(true) => {
            let i = v.get("installed").cloned().unwrap_or_default();
            let s = |k: &str| i.get(k).and_then(|x| x.as_str()).unwrap_or("").chars().take(200).collect::<String>();
            Outcome::Installed {
                version: s("version"),
                file: s("file"),
                removed: i
                    .get("removed")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter().take(16).filter_map(|x| x.as_str()).map(|x| x.chars().take(200).collect()).collect()
                    })
                    .unwrap_or_default(),
                demoted: i.get("demoted").and_then(|d| d.as_str()).map(|d| d.chars().take(200).collect()),
                rebooting: v.get("rebooting").and_then(|r| r.as_bool()).unwrap_or(false),
            }
        }
        Ok(v) => {
            let e = v.get("error").and_then(|e| e.as_str()).unwrap_or("refused, without a reason");
            let e = tidy(e, upload, data);
            if is_host_mode_refusal(&e) {
                Outcome::HostMode(format!(
                    "Firmware updates apply to the appliance image: this box runs in host mode (hermes up), \
                     whose supervisor installs no firmware (it said: “{e}”). Nothing was installed; to update \
                     a host, install a new hermes binary."
                ))
            } else {
                Outcome::Refused(e)
            }
        }
        Err(ControlError::BadAnswer(_)) => Outcome::HostMode(
            "Firmware updates apply to the appliance image: the supervisor closed the connection without \
             answering the install request, as host mode's hermes up does (it installs no firmware). Nothing \
             was installed; on the appliance, see the console log."
                .into(),
        ),
        Err(ControlError::Timeout(_)) => Outcome::Unavailable(format!(
            "The box did not answer the install request within {} s; see the Firmware page (and the console log) \
             for whether the new slot was written.",
            INSTALL_TIMEOUT.as_secs()
        )),
        Err(e) => Outcome::Unavailable(format!("Nothing was installed: {e}.")),
    }
}

/// Durable, then asks init, then removes the upload and audits, in a task of its own (a client
/// that hangs up cannot cut it short). The lock guard lives until the end.
async fn install(
    st: &St,
    actor: &Actor,
    mut upload: Upload,
    force: bool,
    reboot: bool,
    busy: tokio::sync::MutexGuard<'static, ()>,
) -> Result<(Outcome, u64, String), Refusal> {
    let path = match upload.finish().await {
        Ok(p) => p,
        Err(r) => {
            audit(st, actor, "", false, &format!("{} bytes received; not stored: {}", upload.size, r.text())).await;
            return Err(r);
        }
    };
    let (size, sha) = (upload.size, upload.sha256());
    let st2: crate::web::SharedState = (**st).clone();
    let actor = actor.clone();
    let task = tokio::spawn(async move {
        let _busy = busy;
        let request = serde_json::json!({
            "op": "firmware_install",
            "path": path.display().to_string(),
            "force": force,
            "reboot": reboot,
        });
        let answer =
            crate::control::json_request(&st2.data.control_socket(), &request, "supervisor", INSTALL_TIMEOUT).await;
        let o = outcome(answer, &path, &st2.data);
        drop(upload);
        let target = match &o {
            Outcome::Installed { version, .. } => version.clone(),
            _ => String::new(),
        };
        let detail = format!("{size} bytes, sha256 {sha}; force {force}, reboot {reboot}: {}", o.text());
        let ok = matches!(o, Outcome::Installed { .. });
        let (admin, peer) = (actor.admin.clone(), actor.peer.to_string());
        let _ = tokio::task::spawn_blocking(move || {
            st2.audit.record(&admin, &peer, "firmware.install", &target, ok, &detail)
        })
        .await;
        tracing::info!(admin = %actor.admin, ok, size, sha256 = %sha, "firmware upload handed to init");
        (o, size, sha)
    });
    task.await.map_err(|_| Refusal::Internal)
}

async fn audit(st: &St, actor: &Actor, target: &str, ok: bool, detail: &str) {
    let st2: crate::web::SharedState = (**st).clone();
    let (admin, peer, target, detail) =
        (actor.admin.clone(), actor.peer.to_string(), target.to_string(), detail.to_string());
    let _ =
        tokio::task::spawn_blocking(move || st2.audit.record(&admin, &peer, "firmware.install", &target, ok, &detail))
            .await;
}

/// The declared body length, when it is declared and over `limit`.
fn declared_too_large(headers: &HeaderMap, limit: u64) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

// ---- the form ------------------------------------------------------------------------------

/// The upload form on the Firmware page. Field order matters: the CSRF token, the password and
/// the options come before the file, so they are checked before any of its bytes are stored.
pub fn form_markup(a: &Authed) -> Markup {
    html! {
        section.card aria-labelledby="fw-up-h" {
            h2 #fw-up-h { "Install an update" }
            p { "Upload a signed update bundle (" code { "hermes-VERSION.bundle" } ", at most "
                (MAX_UPLOAD_BYTES / (1024 * 1024)) " MiB). The box checks its signature against its built-in key, "
                "writes it to the boot slot that is not running and keeps the running one to fall back to: a new "
                "version that does not stay healthy after its reboot is replaced by the old one by itself." }
            form method="post" action="/firmware/upload" enctype="multipart/form-data" {
                (csrf(a))
                label for="fw-password" { "Your admin password, to confirm" }
                input #fw-password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                div { label.check for="fw-reboot" { input #fw-reboot name="reboot" type="checkbox" value="1" checked; " Reboot into it now (otherwise it starts at the next reboot)" } }
                div { label.check for="fw-force" { input #fw-force name="force" type="checkbox" value="1"; " Install even if it is older than the running version, or while the running version is still on trial" } }
                label for="fw-bundle" { "Update bundle" }
                div { input #fw-bundle name="bundle" type="file" accept=".bundle,application/octet-stream" required; }
                button type="submit" { "Upload and install" }
            }
        }
    }
}

fn flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Bytes fed to the multipart parser and bytes the handler took out of it (field data): their
/// difference is what the parser holds, at most [`MAX_BUFFERED`].
#[derive(Debug, Default)]
struct Gate {
    fed: AtomicU64,
    taken: AtomicU64,
    tripped: AtomicBool,
}

impl Gate {
    fn take(&self, n: usize) {
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The form body as a multipart parser, bounded: [`MAX_FORM_BODY`] in all, [`MAX_FIELD`] for
/// every field but the bundle, [`MAX_UPLOAD_BYTES`] for it, [`MAX_BUFFERED`] held.
fn form_parser(headers: &HeaderMap, body: Body) -> Result<(multer::Multipart<'static>, Arc<Gate>), Refusal> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(ctype)
        .map_err(|_| Refusal::BadRequest("Send the firmware form as multipart/form-data.".into()))?;
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let stream = body.into_data_stream().map(move |r| {
        let b = r.map_err(std::io::Error::other)?;
        let fed = g.fed.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
        if fed.saturating_sub(g.taken.load(Ordering::Relaxed)) > MAX_BUFFERED {
            g.tripped.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("multipart headers or preamble over the buffer bound"));
        }
        Ok(b)
    });
    let limits = multer::SizeLimit::new()
        .whole_stream(MAX_FORM_BODY)
        .per_field(MAX_FIELD as u64)
        .for_field("bundle", MAX_UPLOAD_BYTES + 1);
    let mp = multer::Multipart::with_constraints(stream, boundary, multer::Constraints::new().size_limit(limits));
    Ok((mp, gate))
}

async fn small_field(field: &mut multer::Field<'static>, gate: &Gate) -> Result<String, Refusal> {
    let mut buf = Vec::new();
    while let Some(c) = field.chunk().await.map_err(Refusal::multipart)? {
        gate.take(c.len());
        if buf.len() + c.len() > MAX_FIELD {
            return Err(Refusal::BadRequest("A form field was too long; nothing was installed.".into()));
        }
        buf.extend_from_slice(&c);
    }
    String::from_utf8(buf).map_err(|_| Refusal::BadRequest("A form field was not text; nothing was installed.".into()))
}

/// What the form delivered once its file is stored.
struct Received {
    upload: Upload,
    force: bool,
    reboot: bool,
    busy: tokio::sync::MutexGuard<'static, ()>,
}

/// Reads the form in order, refusing before any file byte is stored when the CSRF token or the
/// password is wrong or missing.
async fn receive_form(
    st: &St,
    a: &Authed,
    mp: &mut multer::Multipart<'static>,
    gate: &Gate,
) -> Result<Received, Refusal> {
    let (mut csrf_ok, mut reauth) = (false, false);
    let (mut force, mut reboot) = (false, false);
    let mut got: Option<(Upload, tokio::sync::MutexGuard<'static, ()>)> = None;
    while let Some(mut field) = mp.next_field().await.map_err(Refusal::multipart)? {
        let name = field.name().unwrap_or("").to_string();
        if !csrf_ok {
            // The token must be the first field: nothing else is looked at before it.
            let given = if name == "csrf" { small_field(&mut field, gate).await? } else { String::new() };
            if !crate::admins::ct_eq(given.as_bytes(), a.session.csrf.as_bytes()) {
                tracing::info!(peer = %a.actor.peer, admin = %a.actor.admin, "firmware upload: CSRF token missing or wrong");
                return Err(Refusal::Forbidden(CSRF_REFUSED.into()));
            }
            csrf_ok = true;
            continue;
        }
        match name.as_str() {
            "password" if !reauth => {
                let pw = small_field(&mut field, gate).await?;
                if !reauthenticate(st, &a.actor, &pw).await {
                    return Err(Refusal::Forbidden(PASSWORD_REFUSED.into()));
                }
                reauth = true;
            }
            "reboot" | "force" => {
                let v = flag(&small_field(&mut field, gate).await?)
                    .ok_or_else(|| Refusal::Invalid("reboot", "reboot and force are checkboxes (1 or 0)".into()))?;
                if name == "reboot" { reboot = v } else { force = v }
            }
            "bundle" => {
                if !reauth {
                    return Err(Refusal::Forbidden(PASSWORD_FIRST.into()));
                }
                if got.is_some() {
                    return Err(Refusal::BadRequest("One bundle at a time; nothing was installed.".into()));
                }
                let busy = UPLOAD_LOCK.try_lock().map_err(|_| Refusal::Busy)?;
                let mut up = Upload::create(&st.data).await.map_err(Refusal::io)?;
                while let Some(c) = field.chunk().await.map_err(Refusal::multipart)? {
                    gate.take(c.len());
                    up.write(&c).await?;
                }
                got = Some((up, busy));
            }
            _ => {
                // A field this form does not have (a named submit button): read and ignored.
                small_field(&mut field, gate).await?;
            }
        }
    }
    if !csrf_ok {
        return Err(Refusal::Forbidden(CSRF_REFUSED.into()));
    }
    if !reauth {
        return Err(Refusal::Forbidden(PASSWORD_FIRST.into()));
    }
    let Some((upload, busy)) = got else {
        return Err(Refusal::Invalid("bundle", "Choose an update bundle file (hermes-VERSION.bundle).".into()));
    };
    if upload.size == 0 {
        return Err(Refusal::Invalid("bundle", "The chosen file is empty; nothing was installed.".into()));
    }
    Ok(Received { upload, force, reboot, busy })
}

/// Reads what is left of a refused form (at most the route's body limit) and throws it away, so
/// that a browser still sending the file sees the answer instead of a reset connection.
async fn drain(mp: &mut multer::Multipart<'static>, gate: &Gate) {
    while let Ok(Some(mut f)) = mp.next_field().await {
        while let Ok(Some(c)) = f.chunk().await {
            gate.take(c.len());
        }
    }
}

fn notice_refused(text: &str) -> Markup {
    html! { p.flash.err role="alert" id="fw-result" { (text) } }
}

fn notice_outcome(o: &Outcome, size: u64, sha: &str) -> Markup {
    html! {
        @match o {
            Outcome::Installed { removed, demoted, rebooting, .. } => {
                section.card #fw-result role="status" {
                    h2 { @if *rebooting { "Installed: rebooting" } @else { "Installed" } }
                    p.flash.ok { (o.text()) }
                    p.muted { "Uploaded " (size) " bytes, SHA-256 " code { (sha) } "." }
                    @if !removed.is_empty() { p { "Replaced: " (removed.join(", ")) } }
                    @if let Some(d) = demoted { p { "The running slot was demoted to " code { (d) } " (a forced downgrade)." } }
                }
            }
            _ => { p.flash.err role="alert" id="fw-result" { (o.text()) } }
        }
    }
}

/// `POST /firmware/upload`: the form.
pub async fn form_upload(PageAuth(a): PageAuth, st: St, headers: HeaderMap, body: Body) -> Response {
    if declared_too_large(&headers, MAX_FORM_BODY) {
        audit(&st, &a.actor, "", false, "refused: larger than the upload limit").await;
        let r = Refusal::TooLarge;
        return page(r.status(), super::more::firmware_page(&st, &a, Some(notice_refused(&r.text()))).await);
    }
    let (mut mp, gate) = match form_parser(&headers, body) {
        Ok(p) => p,
        Err(r) => return error_page(r.status(), &r.text()),
    };
    let received = receive_form(&st, &a, &mut mp, &gate).await.map_err(|r| match r {
        Refusal::BadRequest(_) if gate.tripped.load(Ordering::Relaxed) => Refusal::BadRequest(
            "The form's part headers were longer than this box accepts; nothing was installed.".into(),
        ),
        r => r,
    });
    let r = match received {
        Ok(r) => r,
        Err(refusal) => {
            if matches!(refusal, Refusal::Forbidden(_) | Refusal::Invalid(..) | Refusal::Busy) {
                drain(&mut mp, &gate).await;
            }
            audit(&st, &a.actor, "", false, &format!("refused: {}", refusal.text())).await;
            return page(
                refusal.status(),
                super::more::firmware_page(&st, &a, Some(notice_refused(&refusal.text()))).await,
            );
        }
    };
    match install(&st, &a.actor, r.upload, r.force, r.reboot, r.busy).await {
        // The box is going down: answer at once, without asking init for the slots again (it
        // is stopping the services, this one included, which has a few seconds to finish).
        Ok((o @ Outcome::Installed { rebooting: true, .. }, size, sha)) => {
            let body = html! { (notice_outcome(&o, size, &sha)) p { a href="/firmware" { "Firmware page" } } };
            page(o.status(), super::pages::layout("Firmware", "system", Some(&a), None, body))
        }
        Ok((o, size, sha)) => {
            page(o.status(), super::more::firmware_page(&st, &a, Some(notice_outcome(&o, size, &sha))).await)
        }
        Err(refusal) => {
            page(refusal.status(), super::more::firmware_page(&st, &a, Some(notice_refused(&refusal.text()))).await)
        }
    }
}

// ---- the API -------------------------------------------------------------------------------

/// `POST /api/firmware?reboot=1&force=0` (both optional: reboot by default, never force).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiQuery {
    #[serde(default)]
    reboot: Option<String>,
    #[serde(default)]
    force: Option<String>,
}

fn api_refusal(r: &Refusal) -> Response {
    error_response(r.status(), &r.text(), r.field())
}

async fn receive_api(st: &St, actor: &Actor, headers: &HeaderMap, body: &mut Body) -> Result<Received, Refusal> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/octet-stream") {
        return Err(Refusal::Unsupported);
    }
    if declared_too_large(headers, MAX_UPLOAD_BYTES) {
        return Err(Refusal::TooLarge);
    }
    let Some(pw) = headers.get(PASSWORD_HEADER) else {
        return Err(Refusal::Forbidden(
            "re-authentication required: send your admin password in the X-Hermes-Password header".into(),
        ));
    };
    let pw = pw.to_str().unwrap_or("");
    if !reauthenticate(st, actor, pw).await {
        return Err(Refusal::Forbidden("wrong password (or too many attempts): nothing was installed".into()));
    }
    let busy = UPLOAD_LOCK.try_lock().map_err(|_| Refusal::Busy)?;
    let mut up = Upload::create(&st.data).await.map_err(Refusal::io)?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadRequest("the upload was cut off; nothing was installed".into()))?;
        if let Ok(data) = frame.into_data() {
            up.write(&data).await?;
        }
    }
    if up.size == 0 {
        return Err(Refusal::Invalid("body", "the body is empty: send the bundle as the body".into()));
    }
    Ok(Received { upload: up, force: false, reboot: true, busy })
}

/// [`drain`] for the API: what is left of a refused body, at most [`MAX_UPLOAD_BYTES`].
async fn drain_body(body: &mut Body) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > MAX_UPLOAD_BYTES {
            return;
        }
    }
}

/// `POST /api/firmware`: the bundle as the raw body.
pub async fn api_upload(
    ApiAuth(actor): ApiAuth,
    st: St,
    query: Result<Query<ApiQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    mut body: Body,
) -> Response {
    let flags = match query {
        Ok(Query(q)) => match (flag(q.reboot.as_deref().unwrap_or("1")), flag(q.force.as_deref().unwrap_or("0"))) {
            (Some(reboot), Some(force)) => Ok((reboot, force)),
            _ => Err(Refusal::Invalid("reboot", "reboot and force are 1 or 0".into())),
        },
        Err(_) => Err(Refusal::BadRequest("unknown query parameter (reboot and force only)".into())),
    };
    let (reboot, force, received) = match flags {
        Ok((reboot, force)) => (reboot, force, receive_api(&st, &actor, &headers, &mut body).await),
        Err(refusal) => (true, false, Err(refusal)),
    };
    let mut r = match received {
        Ok(r) => r,
        Err(refusal) => {
            if matches!(
                refusal,
                Refusal::Forbidden(_)
                    | Refusal::Invalid(..)
                    | Refusal::Unsupported
                    | Refusal::Busy
                    | Refusal::BadRequest(_)
            ) {
                drain_body(&mut body).await;
            }
            audit(&st, &actor, "", false, &format!("refused: {}", refusal.text())).await;
            return api_refusal(&refusal);
        }
    };
    (r.force, r.reboot) = (force, reboot);
    match install(&st, &actor, r.upload, r.force, r.reboot, r.busy).await {
        Ok((o, size, sha)) => {
            let mut body = match &o {
                Outcome::Installed { version, file, removed, demoted, rebooting } => serde_json::json!({
                    "installed": {"version": version, "file": file, "removed": removed, "demoted": demoted},
                    "rebooting": rebooting,
                    "message": o.text(),
                }),
                _ => serde_json::json!({ "error": o.text() }),
            };
            body["bytes"] = serde_json::json!(size);
            body["sha256"] = serde_json::json!(sha);
            (o.status(), axum::Json(body)).into_response()
        }
        Err(refusal) => api_refusal(&refusal),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn init_texts_lose_their_paths_and_host_mode_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let up = uploads_dir(&data).join("ab.bundle");
        let t = tidy(&format!("{}: No such file or directory", up.display()), &up, &data);
        assert_eq!(t, "the uploaded file: No such file or directory");
        let t =
            tidy("bundle version 0.1 is older than the running 0.2; refused (--force installs it anyway)", &up, &data);
        assert!(t.ends_with("(force installs it anyway)"), "{t}");
        let host = serde_json::json!({"ok": false, "error": "bad request: unknown variant `firmware_install`, expected `status`"});
        assert!(matches!(outcome(Ok(host), &up, &data), Outcome::HostMode(t) if t.contains("host mode")));
        let host = serde_json::json!({"ok": false, "error":
            "`firmware_install` acts on the appliance only (its init); host mode (`hermes up`) answers only `status`"});
        assert!(matches!(outcome(Ok(host), &up, &data), Outcome::HostMode(t) if t.contains("appliance image")));
        let bad = serde_json::json!({"ok": false, "error": "bundle payload is corrupt (its sha256 does not match the signed header)"});
        assert!(matches!(outcome(Ok(bad), &up, &data), Outcome::Refused(t) if t.contains("corrupt")));
        let good = serde_json::json!({"ok": true, "rebooting": true,
            "installed": {"version": "0.1.0.1", "file": "hermes-0.1.0.1+3.efi", "removed": [], "demoted": null}});
        let o = outcome(Ok(good), &up, &data);
        assert!(matches!(&o, Outcome::Installed { version, rebooting: true, .. } if version == "0.1.0.1"), "{o:?}");
        assert!(o.text().contains("rebooting into it now"), "{}", o.text());
    }

    #[test]
    fn flags() {
        assert_eq!(flag("1"), Some(true));
        assert_eq!(flag("on"), Some(true));
        assert_eq!(flag("0"), Some(false));
        assert_eq!(flag("maybe"), None);
    }

    #[tokio::test]
    async fn an_upload_is_removed_when_dropped_and_stale_ones_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let mut up = Upload::create(&data).await.unwrap();
        up.write(b"bundle bytes").await.unwrap();
        let done = up.finish().await.unwrap();
        assert_eq!(std::fs::read(&done).unwrap(), b"bundle bytes");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&done).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        drop(up);
        assert!(!done.exists());
        std::fs::write(uploads_dir(&data).join("left.part"), b"x").unwrap();
        assert_eq!(remove_stale_uploads(&data), 1);
        assert_eq!(std::fs::read_dir(uploads_dir(&data)).unwrap().count(), 0);
    }
}
