//! Reboot, factory reset and disk provisioning: the operations (shared by the pages and the
//! API), their forms on the System and Disks pages, and the API handlers.
//!
//! Each asks init over its control socket (`DATA/run/control.sock`, reachable through the
//! manifest's `[init] control_clients`): `{"op":"reboot"}`, `{"op":"factory_reset"}`,
//! `{"op":"provision","bays":[...],"spares":N,"size_mib":M}`. Init checks the request again,
//! says it on the console with the caller's uid, and reboots after answering. In host mode the
//! same socket is `hermes up`'s, which refuses these with a sentence; that sentence is shown as
//! it is (409), never as an internal error.
//!
//! What it is not: the power logic (init's `system_ops`), or authorisation beyond the admin's
//! own: every operation needs the admin's password again ([`super::reauthenticate`], under the
//! login throttle), the session's CSRF token or an API token, and for a reset the host name
//! typed, for provisioning the "I understand" box (pages only; the API's password is the
//! confirmation).
//!
//! Invariants: every attempt is audited (`system.reboot`, `system.factory_reset`,
//! `disk.provision`); an accepted one is audited *before* init is asked, because init reboots
//! right after it answers (and a factory reset erases the audit log with the rest); a refusal is
//! audited again with its reason. Input is validated before init is asked.

use super::pages::{csrf, field_error, form_error, layout, page, take_flash};
use super::{Authed, PageAuth, SessionForm, St, reauthenticate};
use crate::control::{ControlError, json_request};
use crate::ops::{self, Actor, OpError};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Init answers a reboot or a reset at once.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(15);
/// Provisioning runs mdadm and mke2fs; init's own deadline is 960 s.
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(1000);
/// Longest init answer text kept for a page or the audit log.
const MAX_TEXT: usize = 8 * 1024;
/// Most bays in a list (hw's bay numbers are 0-255).
pub const MAX_BAY: u16 = 255;
/// Fewest active disks of a RAID10 (hw's `MIN_RAID10_DEVICES`).
pub const MIN_ACTIVE: usize = hermes_hw::provision::MIN_RAID10_DEVICES;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// One request to init (or, in host mode, the supervisor) on the control socket. An
/// `"ok": false` answer becomes [`OpError::Conflict`] with its text.
async fn ask_init(
    st: &Arc<AppState>,
    request: serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, OpError> {
    match json_request(&st.data.control_socket(), &request, "supervisor", timeout).await {
        Ok(v) if v.get("ok").and_then(|o| o.as_bool()) == Some(true) => Ok(v),
        Ok(v) => Err(OpError::Conflict(bounded(
            v.get("error").and_then(|e| e.as_str()).unwrap_or("the supervisor refused without a reason"),
        ))),
        Err(ControlError::Unreachable(_)) => {
            Err(OpError::Unavailable("neither init nor `hermes up` answers on the control socket".into()))
        }
        Err(e) => Err(OpError::Unavailable(e.to_string())),
    }
}

/// Appends an audit entry; `Err(Internal)` when it cannot be written (then nothing is asked).
async fn record(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    ok: bool,
    detail: &str,
) -> Result<(), OpError> {
    let st2 = st.clone();
    let (admin, peer, target, detail) =
        (actor.admin.clone(), actor.peer.to_string(), target.to_string(), bounded(detail));
    match tokio::task::spawn_blocking(move || st2.audit.record(&admin, &peer, action, &target, ok, &detail)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(OpError::Internal),
    }
}

/// Audits the attempt, asks init, audits a refusal.
async fn asked(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    request: serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, OpError> {
    record(st, actor, action, target, true, "requested; asking init").await?;
    let r = ask_init(st, request, timeout).await;
    if let Err(e) = &r {
        let _ = record(st, actor, action, target, false, &e.to_string()).await;
    }
    r
}

/// A refusal before init is asked (validation, confirmation), audited.
async fn refused<T>(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    e: OpError,
) -> Result<T, OpError> {
    ops::audit_result(st, actor, action, target, Err(e)).await
}

/// The error for a wrong password (after [`reauthenticate`] said no), audited under the action.
pub async fn reauth_failed(st: &Arc<AppState>, actor: &Actor, action: &'static str, target: &str) -> OpError {
    let e = OpError::invalid("password", "Wrong password (or too many attempts): nothing was done.");
    let _ = record(st, actor, action, target, false, "re-authentication failed").await;
    e
}

/// Reboots the box. Answer: init's (`{"ok":true,"rebooting":true}`).
pub async fn reboot(st: &Arc<AppState>, actor: &Actor) -> Result<serde_json::Value, OpError> {
    asked(st, actor, "system.reboot", "", json!({"op": "reboot"}), QUICK_TIMEOUT).await
}

/// Whether `typed` names this box (the mail host name, as the System page shows it).
pub fn hostname_matches(st: &AppState, typed: &str) -> bool {
    let typed = typed.trim().trim_end_matches('.');
    !typed.is_empty() && typed.eq_ignore_ascii_case(st.config.hostname.trim_end_matches('.'))
}

/// Erases everything on `/data` (at the next boot) and reboots; `confirm` must be the host name.
pub async fn factory_reset(st: &Arc<AppState>, actor: &Actor, confirm: &str) -> Result<serde_json::Value, OpError> {
    if !hostname_matches(st, confirm) {
        let e = OpError::invalid("confirm", format!("Type the host name, {}, to confirm.", st.config.hostname));
        return refused(st, actor, "system.factory_reset", "", e).await;
    }
    asked(st, actor, "system.factory_reset", "", json!({"op": "factory_reset"}), QUICK_TIMEOUT).await
}

/// Parses a bay list as the CLI does: `0-15`, `0,1,2,3`, `0-7,9`.
pub fn parse_bays(text: &str) -> Result<Vec<u16>, String> {
    if text.len() > 1024 {
        return Err("the list is too long".into());
    }
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = || format!("`{part}` is not a bay (0-{MAX_BAY}) or a range like 0-15");
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a > b || b > MAX_BAY {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("name the bays, e.g. 0-15".into());
    }
    Ok(out)
}

/// `0,1,2,3,5` → `0-3,5`.
pub fn bays_text(bays: &[u16]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bays.len() {
        let start = bays[i];
        let mut end = start;
        while i + 1 < bays.len() && bays[i + 1] == end + 1 {
            i += 1;
            end = bays[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// Checks a provisioning request (as init will again): RAID10 needs four active disks.
pub fn check_provision(bays: &[u16], spares: u16, size_mib: Option<u64>) -> Result<(), OpError> {
    let active = bays.len().saturating_sub(usize::from(spares));
    if active < MIN_ACTIVE {
        return Err(OpError::invalid(
            "spares",
            format!(
                "RAID10 needs at least {MIN_ACTIVE} active disks: {} bays with {spares} spares leave {active}",
                bays.len()
            ),
        ));
    }
    if let Some(s) = size_mib
        && !(1..=(1u64 << 32)).contains(&s)
    {
        return Err(OpError::invalid("size_mib", "a size per disk in MiB, from 1 (leave it empty for whole disks)"));
    }
    Ok(())
}

/// Creates the data array over `bays` (the highest `spares` of them hot spares) and reboots
/// onto it. Answer: init's (`{"ok":true,"output":"...","rebooting":true}`).
pub async fn provision(
    st: &Arc<AppState>,
    actor: &Actor,
    bays: &[u16],
    spares: u16,
    size_mib: Option<u64>,
) -> Result<serde_json::Value, OpError> {
    let target = format!(
        "bays {} spares {spares}{}",
        bays_text(bays),
        size_mib.map(|s| format!(" size {s} MiB")).unwrap_or_default()
    );
    if let Err(e) = check_provision(bays, spares, size_mib) {
        return refused(st, actor, "disk.provision", &target, e).await;
    }
    let req = json!({"op": "provision", "bays": bays, "spares": spares, "size_mib": size_mib});
    asked(st, actor, "disk.provision", &target, req, PROVISION_TIMEOUT).await
}

// ---- pages --------------------------------------------------------------------------------

/// The System page's section: reboot and factory reset forms.
pub fn power_section(a: &Authed, hostname: &str, appliance: bool, err: Option<&OpError>) -> Markup {
    html! {
        section.card.danger #power aria-labelledby="power-h" {
            h2 #power-h { "Reboot and factory reset" }
            @if !appliance {
                p.muted { "These act on the Hermes appliance. In host mode (" code { "hermes up" } ") they are refused: stop and start " code { "hermes up" } " instead, and remove its data folder yourself to start afresh." }
            }
            (form_error(err))
            @if let Some(e) = err.filter(|e| e.field() == Some("password")) { p.flash.err role="alert" id="password-error" { (e.to_string()) } }
            h3 { "Reboot" }
            p { "Stops every service in order and restarts the box. Connections drop; mail in flight is kept (acknowledged mail is on the disks). The UI is back in about a minute." }
            form method="post" action="/system/reboot" {
                (csrf(a))
                label for="reboot-password" { "Your admin password, to confirm" }
                input #reboot-password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                button type="submit" { "Reboot now" }
            }
            h3 { "Factory reset" }
            p { strong { "Erases everything on the data disks" } ": the configuration, domains, accounts and all mail, the queue, aliases, admin accounts and API tokens, certificates and logs. The disks stay provisioned (the RAID array is kept, empty) and the firmware is kept. The box reboots and starts as new: a new setup token is shown on its console." }
            form method="post" action="/system/factory-reset" {
                (csrf(a))
                label for="confirm" { "Type the host name, " code { (hostname) } ", to confirm" }
                input #confirm name="confirm" type="text" required maxlength="253" autocomplete="off" spellcheck="false" aria-describedby="confirm-error";
                (field_error(err, "confirm"))
                label for="reset-password" { "Your admin password" }
                input #reset-password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                button.danger type="submit" { "Erase everything and reboot" }
            }
        }
    }
}

/// The Disks page's section: the provisioning form.
pub fn provision_section(a: &Authed, form: &ProvisionForm, err: Option<&OpError>) -> Markup {
    html! {
        section.card.danger #provision aria-labelledby="prov-h" {
            h2 #prov-h { "Provision the data disks" }
            p { strong { "Every disk in the bays you name is overwritten" } " (whatever it holds is lost) to make one RAID10 array with ext4 on it, the highest bays as hot spares. Then the box reboots and " code { "/data" } " moves from RAM onto the array. What was set up on RAM moves with it: admin accounts and API tokens, the configuration, the certificate, domains and accounts (sign in again after the reboot). Refused when " code { "/data" } " is already on disks." }
            form method="post" action="/disks/provision" {
                (csrf(a))
                (form_error(err))
                label for="bays" { "Bays (a list like " code { "0-15" } " or " code { "0-7,9" } ")" }
                input #bays name="bays" type="text" required maxlength="200" value=(form.bays) placeholder="0-15" spellcheck="false" aria-describedby="bays-error";
                (field_error(err, "bays"))
                label for="spares" { "Hot spares (the highest bays of the list)" }
                input #spares name="spares" type="number" min="0" max="255" value=(form.spares) aria-describedby="spares-error";
                (field_error(err, "spares"))
                label for="size_mib" { "Size per disk in MiB (optional; empty: whole disks)" }
                input #size_mib name="size_mib" type="number" min="1" value=(form.size_mib) aria-describedby="size_mib-error";
                (field_error(err, "size_mib"))
                label.check {
                    input name="understand" type="checkbox" value="yes" required;
                    " I understand every disk in bays " (if form.bays.is_empty() { "I name" } else { form.bays.as_str() }) " is erased"
                }
                (field_error(err, "understand"))
                label for="prov-password" { "Your admin password, to confirm" }
                input #prov-password name="password" type="password" autocomplete="current-password" required maxlength="1024" aria-describedby="password-error";
                (field_error(err, "password"))
                button.danger type="submit" { "Erase these disks, provision and reboot" }
            }
        }
    }
}

/// After an accepted request: the box is going down; when to come back.
fn rebooting_page(a: &Authed, title: &str, what: Markup) -> Response {
    let body = html! {
        section.card role="status" {
            h2 { "The box is rebooting" }
            (what)
            p { "Reload " a href="/" { "this UI" } " in a minute or two (longer when a large array is checked at boot). Your session ends with the reboot: sign in again." }
        }
    };
    page(StatusCode::OK, layout(title, "system", Some(a), None, body))
}

/// `GET /system/power`: the section alone (also where its errors are shown).
pub async fn power_page(PageAuth(a): PageAuth, st: St) -> Response {
    power_markup(&st, &a, None, StatusCode::OK).await
}

async fn power_markup(st: &St, a: &Authed, err: Option<&OpError>, status: StatusCode) -> Response {
    let appliance = super::more::system_info(st).await.appliance;
    let body = power_section(a, &st.config.hostname, appliance, err);
    page(status, layout("Reboot and factory reset", "system", Some(a), take_flash(a, st), body))
}

fn status_of(e: &OpError) -> StatusCode {
    match e {
        OpError::Invalid { field: "password", .. } => StatusCode::FORBIDDEN,
        e => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn reboot_submit(st: St, SessionForm(a, f): SessionForm<PasswordForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = reauth_failed(&st, &a.actor, "system.reboot", "").await;
        return power_markup(&st, &a, Some(&e), status_of(&e)).await;
    }
    match reboot(&st, &a.actor).await {
        Ok(_) => rebooting_page(
            &a,
            "Rebooting",
            html! { p { "Every service is being stopped in order; then the box restarts." } },
        ),
        Err(e) => power_markup(&st, &a, Some(&e), status_of(&e)).await,
    }
}

pub async fn factory_reset_submit(st: St, SessionForm(a, f): SessionForm<PasswordForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = reauth_failed(&st, &a.actor, "system.factory_reset", "").await;
        return power_markup(&st, &a, Some(&e), status_of(&e)).await;
    }
    match factory_reset(&st, &a.actor, &f.confirm).await {
        Ok(v) => rebooting_page(
            &a,
            "Factory reset",
            html! {
                p { "Everything on " code { "/data" } " is erased as the box starts again; the disks stay provisioned. Then the box starts as new: its console shows a new one-time setup token for " a href="/setup" { "setup" } "." }
                @if let Some(n) = v.get("note").and_then(|n| n.as_str()) { p.muted { (n) } }
            },
        ),
        Err(e) => power_markup(&st, &a, Some(&e), status_of(&e)).await,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ProvisionForm {
    #[serde(default)]
    pub bays: String,
    #[serde(default)]
    pub spares: String,
    #[serde(default)]
    pub size_mib: String,
    #[serde(default)]
    pub understand: String,
    #[serde(default)]
    password: String,
}

/// `GET /disks/provision`: the form alone (also where its errors are shown).
pub async fn provision_page(PageAuth(a): PageAuth, st: St) -> Response {
    let f = ProvisionForm { spares: "0".into(), ..Default::default() };
    provision_markup(&st, &a, &f, None, StatusCode::OK)
}

fn provision_markup(st: &St, a: &Authed, f: &ProvisionForm, err: Option<&OpError>, status: StatusCode) -> Response {
    let body = html! {
        (provision_section(a, f, err))
        p { a href="/disks" { "Back to the disks and their bays" } }
    };
    page(status, layout("Provision the data disks", "disks", Some(a), take_flash(a, st), body))
}

/// The form's fields, checked (every problem beside its field, the first one found).
fn provision_fields(f: &ProvisionForm) -> Result<(Vec<u16>, u16, Option<u64>), OpError> {
    let bays = parse_bays(&f.bays).map_err(|m| OpError::invalid("bays", m))?;
    let spares = match f.spares.trim() {
        "" => 0,
        s => s.parse::<u16>().map_err(|_| OpError::invalid("spares", "a whole number of disks, 0 or more"))?,
    };
    let size_mib = match f.size_mib.trim() {
        "" => None,
        s => Some(s.parse::<u64>().map_err(|_| OpError::invalid("size_mib", "a whole number of MiB, or empty"))?),
    };
    if f.understand != "yes" {
        return Err(OpError::invalid("understand", "Tick the box: every disk in these bays is erased."));
    }
    Ok((bays, spares, size_mib))
}

pub async fn provision_submit(st: St, SessionForm(a, f): SessionForm<ProvisionForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = reauth_failed(&st, &a.actor, "disk.provision", &f.bays.chars().take(200).collect::<String>()).await;
        return provision_markup(&st, &a, &f, Some(&e), status_of(&e));
    }
    let (bays, spares, size_mib) = match provision_fields(&f) {
        Ok(v) => v,
        Err(e) => {
            let _ = refused::<()>(
                &st,
                &a.actor,
                "disk.provision",
                &f.bays.chars().take(200).collect::<String>(),
                e.clone(),
            )
            .await;
            return provision_markup(&st, &a, &f, Some(&e), status_of(&e));
        }
    };
    match provision(&st, &a.actor, &bays, spares, size_mib).await {
        Ok(v) => rebooting_page(
            &a,
            "Provisioned",
            html! {
                p { "The array was created over bays " code { (bays_text(&bays)) } "; the box reboots so " code { "/data" } " comes up on it." }
                @if let Some(o) = v.get("output").and_then(|o| o.as_str()) { pre.log { (bounded(o)) } }
                @if let Some(err) = v.get("carry_error").and_then(|e| e.as_str()) {
                    div.flash.err role="alert" {
                        p { strong { "Your setup was not carried to the array: " } (bounded(err)) }
                        @if let Some(note) = v.get("note").and_then(|n| n.as_str()) { p { (bounded(note)) } }
                    }
                } @else {
                    p {
                        "Kept on the array: the admin accounts and API tokens, the configuration, the certificate and the domains and accounts made so far"
                        @if let Some(summary) = v.get("carried").and_then(|c| c.get("summary")).and_then(|x| x.as_str()) { " (" (bounded(summary)) ")" }
                        ". Sign in again with your password once the box is back."
                    }
                }
            },
        ),
        Err(e) => provision_markup(&st, &a, &f, Some(&e), status_of(&e)),
    }
}

// ---- API ----------------------------------------------------------------------------------

use super::api::error_response;

/// A JSON body; a malformed one is a 400 with the parser's message (as the rest of the API).
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, st: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(req, st).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(error_response(StatusCode::BAD_REQUEST, &e.body_text(), None)),
        }
    }
}

fn api_error(e: OpError) -> Response {
    error_response(status_of(&e), &e.to_string(), e.field())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootBody {
    password: String,
}

/// `POST /api/system/reboot {"password"}`.
pub async fn api_reboot(super::ApiAuth(actor): super::ApiAuth, st: St, Body(b): Body<RebootBody>) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return api_error(reauth_failed(&st, &actor, "system.reboot", "").await);
    }
    match reboot(&st, &actor).await {
        Ok(_) => axum::Json(json!({"rebooting": true})).into_response(),
        Err(e) => api_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    password: String,
    confirm: String,
}

/// `POST /api/system/factory-reset {"password", "confirm": "<host name>"}`.
pub async fn api_factory_reset(super::ApiAuth(actor): super::ApiAuth, st: St, Body(b): Body<ResetBody>) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return api_error(reauth_failed(&st, &actor, "system.factory_reset", "").await);
    }
    match factory_reset(&st, &actor, &b.confirm).await {
        Ok(v) => axum::Json(json!({"rebooting": true, "note": v.get("note")})).into_response(),
        Err(e) => api_error(e),
    }
}

/// Bays as the form's text (`"0-15"`) or a JSON list of numbers.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum BaysField {
    Text(String),
    List(Vec<u16>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionBody {
    password: String,
    bays: BaysField,
    #[serde(default)]
    spares: u16,
    #[serde(default)]
    size_mib: Option<u64>,
}

/// `POST /api/disks/provision {"password", "bays": "0-15" or [0, 1, ...], "spares": 2, "size_mib": 256}`.
pub async fn api_provision(super::ApiAuth(actor): super::ApiAuth, st: St, Body(b): Body<ProvisionBody>) -> Response {
    let bays = match b.bays {
        BaysField::Text(t) => parse_bays(&t),
        BaysField::List(l) if l.len() > 256 => Err("at most 256 bays".to_string()),
        BaysField::List(l) => {
            let mut v = l.clone();
            v.sort_unstable();
            v.dedup();
            if v.len() != l.len() {
                Err("a bay is listed twice".to_string())
            } else if v.is_empty() || v.iter().any(|&x| x > MAX_BAY) {
                Err(format!("name bays 0-{MAX_BAY}"))
            } else {
                Ok(v)
            }
        }
    };
    if !reauthenticate(&st, &actor, &b.password).await {
        return api_error(reauth_failed(&st, &actor, "disk.provision", "").await);
    }
    let bays = match bays {
        Ok(v) => v,
        Err(m) => {
            let e = OpError::invalid("bays", m);
            let _ = refused::<()>(&st, &actor, "disk.provision", "", e.clone()).await;
            return api_error(e);
        }
    };
    match provision(&st, &actor, &bays, b.spares, b.size_mib).await {
        Ok(v) => axum::Json(json!({
            "rebooting": true,
            "output": v.get("output"),
            "carried": v.get("carried"),
            "carry_error": v.get("carry_error"),
            "note": v.get("note"),
        }))
        .into_response(),
        Err(e) => api_error(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn bay_lists_parse_like_the_cli() {
        assert_eq!(parse_bays("0-15").unwrap(), (0..16).collect::<Vec<u16>>());
        assert_eq!(parse_bays("0-7,9").unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 9]);
        assert_eq!(parse_bays(" 3, 1 ,2,2 ").unwrap(), [1, 2, 3]);
        for bad in ["", ",", "a", "3-1", "0-256", "1-", "-1", "0-15x", &"1,".repeat(600)] {
            assert!(parse_bays(bad).is_err(), "{bad}");
        }
        assert_eq!(bays_text(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(bays_text(&parse_bays("0-15").unwrap()), "0-15");
    }

    #[test]
    fn provisioning_needs_four_active_disks_and_a_sane_size() {
        assert!(check_provision(&[0, 1, 2, 3], 0, None).is_ok());
        assert!(check_provision(&(0..16).collect::<Vec<_>>(), 2, Some(256)).is_ok());
        assert_eq!(check_provision(&[0, 1, 2, 3, 4], 2, None).unwrap_err().field(), Some("spares"));
        assert_eq!(check_provision(&[0, 1, 2, 3], 0, Some(0)).unwrap_err().field(), Some("size_mib"));
        assert_eq!(check_provision(&[0, 1, 2, 3], u16::MAX, None).unwrap_err().field(), Some("spares"));
    }
}
