//! The HTML pages (maud: compile-time templates, every interpolation HTML-escaped).
//!
//! Each state-changing form posts to a handler that takes a [`SessionForm`] (CSRF checked),
//! calls the shared operation in [`crate::ops`], and then redirects (POST/redirect/GET, with a
//! one-time flash message) or, when the input was invalid, renders the same page again with
//! the error beside its field and status 422.
//!
//! What it is not: JavaScript. Nothing here needs it; the CSP forbids it.
//!
//! Invariants: every form has a `csrf` field (login and setup, which have no session yet, use a
//! double-submit cookie instead); every input has a `<label>`; graphics (the storage and quota
//! bars) are inline SVG with a text alternative.

use super::{Authed, PageAuth, SessionForm, St, peer_ip, reauthenticate, session_cookie};
use crate::ops::{self, OpError};
use crate::sessions;
use axum::extract::{FromRequest, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hermes_core::secret::Secret;
use maud::{DOCTYPE, Markup, html};
use std::time::Instant;

/// The pre-session CSRF cookie for the login and setup forms (double submit).
const PRE_COOKIE: &str = "__Host-hermes_pre";

pub(crate) fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub(crate) fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Percent-encodes a path segment (addresses contain `@`, which is fine, but be strict).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn q(s: &str) -> String {
    seg(s)
}

/// The common frame: header with navigation, the flash message, the page body.
pub(crate) fn layout(
    title: &str,
    nav: &str,
    auth: Option<&Authed>,
    flash: Option<sessions::Flash>,
    body: Markup,
) -> Markup {
    let items = [
        ("/", "dashboard", "Dashboard"),
        ("/domains", "domains", "Domains"),
        ("/accounts", "accounts", "Accounts"),
        ("/aliases", "aliases", "Aliases"),
        ("/undelete", "undelete", "Undelete"),
        ("/routes", "routes", "Routes"),
        ("/queue", "queue", "Queue"),
        ("/certificates", "certificates", "TLS"),
        ("/disks", "disks", "Disks"),
        ("/logs", "logs", "Logs"),
        ("/config", "config", "Config"),
        ("/system", "system", "System"),
        ("/tokens", "tokens", "Access"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hermes admin" }
                link rel="stylesheet" href="/static/admin.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Hermes" }
                    @if let Some(a) = auth {
                        nav aria-label="Main" {
                            ul {
                                @for (href, key, label) in items {
                                    li { a href=(href) aria-current=[(key == nav).then_some("page")] { (label) } }
                                }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(a.session.csrf);
                            span.who { (a.session.admin) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(f) = flash {
                        p class=(if f.ok { "flash ok" } else { "flash err" }) role="status" { (f.text) }
                    }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn take_flash(a: &Authed, st: &St) -> Option<sessions::Flash> {
    st.sessions.take_flash(&a.session_id)
}

/// A small error page (also used by the middleware for refused requests).
pub fn error_page(status: StatusCode, text: &str) -> Response {
    let body = html! { p { (text) } p { a href="/" { "Back to the dashboard" } } };
    page(status, layout(status.canonical_reason().unwrap_or("Error"), "", None, None, body))
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no such page.")
}

/// An error message beside a field (`aria-describedby` points here).
pub(crate) fn field_error(err: Option<&OpError>, field: &str) -> Markup {
    html! {
        @if let Some(e) = err.filter(|e| e.field() == Some(field)) {
            span.error id=(format!("{field}-error")) { (e.to_string()) }
        }
    }
}

/// An error not tied to a field.
pub(crate) fn form_error(err: Option<&OpError>) -> Markup {
    html! {
        @if let Some(e) = err.filter(|e| e.field().is_none()) {
            p.flash.err role="alert" { (e.to_string()) }
        }
    }
}

pub(crate) fn csrf(a: &Authed) -> Markup {
    html! { input type="hidden" name="csrf" value=(a.session.csrf); }
}

/// A horizontal bar, `used` of `total`, as inline SVG with a text alternative.
pub fn bar(used: u64, total: u64, label: &str) -> Markup {
    let frac = if total == 0 { 0.0 } else { (used as f64 / total as f64).clamp(0.0, 1.0) };
    let pct = (frac * 100.0).round() as u32;
    let class = if pct >= 95 {
        "bar-crit"
    } else if pct >= 80 {
        "bar-warn"
    } else {
        "bar-ok"
    };
    html! {
        svg.bar width="100%" height="14" viewBox="0 0 100 14" preserveAspectRatio="none" role="img" aria-label=(format!("{label}: {pct}%")) {
            rect.bar-bg x="0" y="0" width="100" height="14" rx="3" {}
            rect class=(class) x="0" y="0" width=(format!("{:.2}", frac * 100.0)) height="14" rx="3" {}
        }
    }
}

// ---- sign in and first-boot setup ---------------------------------------------------------

fn pre_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';').filter_map(|p| p.trim().split_once('=')).find_map(|(n, v)| {
            (n == PRE_COOKIE && v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                .then(|| v.to_string())
        })
    })
}

/// The pre-session token for a login/setup form, and the cookie to set if it is new.
fn pre_session(h: &HeaderMap) -> (String, Option<HeaderValue>) {
    match pre_token(h) {
        Some(t) => (t, None),
        None => {
            let t = crate::admins::random_token();
            let cookie = format!("{PRE_COOKIE}={t}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600");
            let v = HeaderValue::from_str(&cookie).ok();
            (t, v)
        }
    }
}

fn with_cookie(mut r: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn login_markup(pre: &str, error: Option<&str>, name: &str) -> Markup {
    layout(
        "Sign in",
        "",
        None,
        None,
        html! {
            form.card method="post" action="/login" {
                input type="hidden" name="csrf" value=(pre);
                @if let Some(e) = error { p.flash.err role="alert" { (e) } }
                label for="name" { "Admin name" }
                input #name name="name" type="text" autocomplete="username" required autofocus value=(name) maxlength="64";
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn login_page(st: St, headers: HeaderMap) -> Response {
    let st2 = st.0.clone();
    if let Ok(Ok(false)) = tokio::task::spawn_blocking(move || st2.admins.has_admins()).await {
        return Redirect::to("/setup").into_response();
    }
    let (pre, cookie) = pre_session(&headers);
    with_cookie(page(StatusCode::OK, login_markup(&pre, None, "")), cookie)
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// Checks the double-submit token of the login and setup forms.
fn pre_ok(h: &HeaderMap, field: &str) -> bool {
    pre_token(h).is_some_and(|t| crate::admins::ct_eq(t.as_bytes(), field.as_bytes()))
}

fn new_session_response(st: &St, admin: &str, headers: &HeaderMap) -> Response {
    let previous = session_cookie(headers);
    let (id, _) = st.sessions.create(admin, previous.as_deref(), Instant::now());
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions::set_cookie(&id)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn login_submit(st: St, req: Request) -> Response {
    let peer = peer_ip(req.extensions());
    let headers = req.headers().clone();
    let Ok(axum::Form(f)) = axum::Form::<LoginForm>::from_request(req, &()).await else {
        return error_page(StatusCode::BAD_REQUEST, "The form was incomplete or malformed.");
    };
    let (pre, cookie) = pre_session(&headers);
    if !pre_ok(&headers, &f.csrf) {
        return with_cookie(
            page(StatusCode::FORBIDDEN, login_markup(&pre, Some("The form expired. Please sign in again."), &f.name)),
            cookie,
        );
    }
    let name = f.name.trim().to_ascii_lowercase();
    let now = Instant::now();
    let audit = |ok: bool, detail: &'static str| {
        let st = st.0.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || st.audit.record(&name, &peer.to_string(), "login", "", ok, detail))
    };
    if let Some(wait) = st.throttle.check(peer, &name, now) {
        let _ = audit(false, "throttled").await;
        let msg = format!("Too many failed sign-ins. Try again in {} minutes.", wait.as_secs().div_ceil(60));
        return page(StatusCode::TOO_MANY_REQUESTS, login_markup(&pre, Some(&msg), &name));
    }
    let st2 = st.0.clone();
    let (n, pw) = (name.clone(), Secret::new(f.password));
    let ok = matches!(tokio::task::spawn_blocking(move || st2.admins.verify(&n, &pw)).await, Ok(Ok(true)));
    if !ok {
        st.throttle.failure(peer, &name, now);
        let _ = audit(false, "wrong name or password").await;
        return page(StatusCode::UNAUTHORIZED, login_markup(&pre, Some("Wrong admin name or password."), &name));
    }
    st.throttle.success(peer, &name);
    let _ = audit(true, "").await;
    new_session_response(&st, &name, &headers)
}

pub async fn logout(st: St, SessionForm(a, _): SessionForm<serde::de::IgnoredAny>) -> Response {
    st.sessions.destroy(&a.session_id);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions::clear_cookie()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn setup_markup(pre: &str, err: Option<&OpError>, name: &str) -> Markup {
    layout(
        "First-boot setup",
        "",
        None,
        None,
        html! {
            p { "No admin account exists yet. Enter the one-time setup token that " code { "hermes up" } " printed on its console, and choose the first admin's name and password." }
            form.card method="post" action="/setup" {
                input type="hidden" name="csrf" value=(pre);
                (form_error(err))
                label for="token" { "Setup token" }
                input #token name="token" type="password" autocomplete="off" required maxlength="256";
                (field_error(err, "token"))
                label for="name" { "Admin name" }
                input #name name="name" type="text" autocomplete="username" required maxlength="64" value=(name) pattern="[a-z0-9._\\-]+";
                (field_error(err, "name"))
                label for="new_password" { "Password (at least " (crate::admins::MIN_ADMIN_PASSWORD) " characters)" }
                input #new_password name="new_password" type="password" autocomplete="new-password" required minlength=(crate::admins::MIN_ADMIN_PASSWORD) maxlength="1024";
                (field_error(err, "new_password"))
                label for="confirm" { "Password again" }
                input #confirm name="confirm" type="password" autocomplete="new-password" required maxlength="1024";
                (field_error(err, "confirm"))
                button type="submit" { "Create the admin account" }
            }
        },
    )
}

pub async fn setup_page(st: St, headers: HeaderMap) -> Response {
    let st2 = st.0.clone();
    if !matches!(tokio::task::spawn_blocking(move || st2.admins.has_admins()).await, Ok(Ok(false))) {
        return Redirect::to("/login").into_response();
    }
    let (pre, cookie) = pre_session(&headers);
    with_cookie(page(StatusCode::OK, setup_markup(&pre, None, "")), cookie)
}

#[derive(Debug, serde::Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn setup_submit(st: St, req: Request) -> Response {
    let peer = peer_ip(req.extensions());
    let headers = req.headers().clone();
    let Ok(axum::Form(f)) = axum::Form::<SetupForm>::from_request(req, &()).await else {
        return error_page(StatusCode::BAD_REQUEST, "The form was incomplete or malformed.");
    };
    let (pre, cookie) = pre_session(&headers);
    let name = f.name.trim().to_ascii_lowercase();
    if !pre_ok(&headers, &f.csrf) {
        let e = OpError::Conflict("The form expired; please try again.".into());
        return with_cookie(page(StatusCode::FORBIDDEN, setup_markup(&pre, Some(&e), &name)), cookie);
    }
    // The setup token is a password too: throttled the same way (keyed as "setup").
    let now = Instant::now();
    if st.throttle.check(peer, "(setup)", now).is_some() {
        let e = OpError::Conflict("Too many wrong setup tokens; wait a few minutes.".into());
        return page(StatusCode::TOO_MANY_REQUESTS, setup_markup(&pre, Some(&e), &name));
    }
    if f.new_password != f.confirm {
        let e = OpError::invalid("confirm", "the two passwords differ");
        return page(StatusCode::UNPROCESSABLE_ENTITY, setup_markup(&pre, Some(&e), &name));
    }
    let st2 = st.0.clone();
    let (token, n, pw) = (Secret::new(f.token), name.clone(), Secret::new(f.new_password));
    let result = match tokio::task::spawn_blocking(move || st2.admins.complete_setup(&token, &n, &pw)).await {
        Ok(r) => r.map_err(ops::admin_error),
        Err(_) => Err(OpError::Internal),
    };
    let st3 = st.0.clone();
    let (ok, detail) = match &result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e.to_string()),
    };
    let (nm, p) = (name.clone(), peer.to_string());
    let _ = tokio::task::spawn_blocking(move || st3.audit.record(&nm, &p, "setup", &nm, ok, &detail)).await;
    match result {
        Ok(()) => {
            tracing::info!(admin = %name, peer = %peer, "first admin created; setup complete");
            new_session_response(&st, &name, &headers)
        }
        Err(OpError::Conflict(_)) => Redirect::to("/login").into_response(),
        Err(e) => {
            if e.field() == Some("token") {
                st.throttle.failure(peer, "(setup)", now);
            }
            page(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                setup_markup(&pre, Some(&e), &name),
            )
        }
    }
}

// ---- dashboard ----------------------------------------------------------------------------

/// Bytes used and total of the filesystem holding the data folder.
pub(crate) fn disk_usage(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    let total = (s.blocks() as u64).saturating_mul(frag);
    let free = (s.blocks_available() as u64).saturating_mul(frag);
    Some((total.saturating_sub(free), total))
}

pub(crate) fn uptime(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 86_400 {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct DashQuery {
    #[serde(default)]
    range: Option<String>,
}

/// The rates section: two SVG line charts and the live counters, or why they are missing.
fn rates_markup(view: crate::rates::View, now: i64, samples: &[crate::rates::Sample]) -> Markup {
    use crate::rates::{ACCEPTED, AUTH_FAILED, DELIVERED, LOGINS_FAILED, LOGINS_OK, VIEWS, chart};
    let from = now - view.span;
    let latest = samples.last();
    let router = latest.and_then(|l| l.router.as_ref());
    let store = latest.and_then(|l| l.store.as_ref());
    html! {
        section.card.wide aria-labelledby="rates-h" {
            h2 #rates-h { "Mail and logins" }
            nav.ranges aria-label="Time range" {
                @for v in VIEWS {
                    a href=(format!("/?range={}", v.name)) aria-current=[(v == view).then_some("true")] { "last " (crate::rates::human_span(v.span)) }
                }
            }
            div.charts {
                @if router.is_some() {
                    (chart("Messages", samples, &[ACCEPTED, DELIVERED], from, now, view.buckets))
                } @else {
                    p.flash.warn role="status" { "Message rates: the router is not running (or does not report statistics)." }
                }
                @if store.is_some() || router.is_some() {
                    (chart("Logins", samples, &[LOGINS_OK, LOGINS_FAILED, AUTH_FAILED], from, now, view.buckets))
                }
                @if store.is_none() {
                    p.flash.warn role="status" { "Login rates: the store service is not running (or does not report statistics)." }
                }
            }
            dl.stats {
                @if let Some(r) = router {
                    dt { "Queue" } dd { a href="/queue" { (r.get("queue_size")) " messages" } }
                    dt { "Since the router started" } dd { (r.get("accepted")) " accepted, " (r.get("delivered")) " delivered, " (r.get("deferred")) " deferred, " (r.get("bounced")) " bounced, " (r.get("rejected")) " rejected" }
                }
                @if let Some(s) = store {
                    dt { "Since the store started" } dd { (s.get("logins_ok")) " logins, " (s.get("logins_failed")) " failed; " (s.get("lmtp_delivered")) " delivered by LMTP; " (s.get("imap_sessions")) " IMAP and " (s.get("pop3_sessions")) " POP3 sessions" }
                }
            }
        }
    }
}

pub async fn dashboard(PageAuth(a): PageAuth, st: St, Query(dq): Query<DashQuery>) -> Response {
    let view = crate::rates::View::parse(dq.range.as_deref()).unwrap_or(crate::rates::VIEWS[0]);
    let ((now_rates, samples), status, hw) = tokio::join!(
        crate::rates::current(&st),
        crate::control::supervisor_status(&st.data),
        super::more::hw_request(&st, hermes_hw::api::Request::Status)
    );
    let domains = ops::list_domains(&st).await;
    let data_root = st.data.root().to_path_buf();
    let cert_path = st.data.tls_cert();
    let (disk, cert) =
        tokio::task::spawn_blocking(move || (disk_usage(&data_root), crate::cert::read_validity(&cert_path)))
            .await
            .unwrap_or((None, None));
    let now = chrono::Utc::now().timestamp();
    let body = html! {
        div.grid {
            section.card.wide aria-labelledby="svc-h" {
                h2 #svc-h { "Services" }
                @match &status {
                    Ok(s) => {
                        table {
                            thead { tr { th scope="col" { "Service" } th scope="col" { "State" } th scope="col" { "Restarts" } th scope="col" { "Up for" } th scope="col" { "Last exit" } } }
                            tbody {
                                @for svc in &s.services {
                                    @let state = format!("{:?}", svc.state).to_lowercase();
                                    tr {
                                        td { (svc.name) }
                                        td { span class=(format!("state state-{state}")) { (state) } }
                                        td.num { (svc.restarts) }
                                        td { (svc.started_at.map(|t| uptime(now - t)).unwrap_or_else(|| "—".into())) }
                                        td { (svc.last_exit.clone().unwrap_or_else(|| "—".into())) }
                                    }
                                }
                            }
                        }
                        p.muted { "Supervisor up " (uptime(now - s.started_at)) "." }
                    }
                    Err(e) => { p.flash.err { "Service status unavailable: " (e.to_string()) } }
                }
            }
            (rates_markup(view, now_rates, &samples))
            section.card aria-labelledby="dir-h" {
                h2 #dir-h { "Directory" }
                @match &domains {
                    Ok(d) => {
                        dl.stats {
                            dt { "Domains" } dd { a href="/domains" { (d.len()) } }
                            dt { "Accounts" } dd { a href="/accounts" { (d.iter().map(|x| x.accounts).sum::<usize>()) } }
                        }
                    }
                    Err(e) => { p.flash.err { (e.to_string()) } }
                }
            }
            section.card aria-labelledby="disk-h" {
                h2 #disk-h { "Storage" }
                @match disk {
                    Some((used, total)) => {
                        (bar(used, total, "Data storage used"))
                        p { (ops::human(used)) " of " (ops::human(total)) " used on the data file system." }
                    }
                    None => { p { "n/a" } }
                }
            }
            section.card aria-labelledby="hw-h" {
                h2 #hw-h { "Disks and RAID" }
                @match &hw {
                    Ok(r) => {
                        @let status = r.status.clone().unwrap_or_default();
                        @let count = |v: &str| status.bays.iter().filter(|b| super::more::verdict_label(b) == v).count();
                        p { a href="/disks" { (count("ok")) " ok" } ", " (count("warning")) " warning, " (count("failing")) " failing, " (count("unknown")) " unknown, " (count("empty")) " empty bays." }
                        @for ar in &status.arrays {
                            p { (ar.name) " (" (ar.level) "): " strong { (format!("{:?}", ar.state).to_lowercase()) }
                                @if let Some(p) = ar.progress_percent { ", " (ar.sync_action) " " (format!("{p:.1}")) " %" } }
                        }
                        @if status.arrays.is_empty() { p.muted { "No RAID array." } }
                    }
                    Err(e) => { p.flash.warn role="status" { (e.to_string()) "." } }
                }
            }
            section.card aria-labelledby="cert-h" {
                h2 #cert-h { "TLS certificate" }
                @match cert {
                    Some(v) => {
                        @let days = (v.not_after - now) / 86_400;
                        p class=(if days < 14 { "flash err" } else if days < 30 { "flash warn" } else { "" }) {
                            "Expires " (when(v.not_after)) " (" (days) " days)."
                        }
                        p.muted { "Valid from " (when(v.not_before)) "." }
                    }
                    None => { p.flash.err { "No readable certificate in tls/cert.pem." } }
                }
            }
        }
    };
    let flash = take_flash(&a, &st);
    page(StatusCode::OK, layout("Dashboard", "dashboard", Some(&a), flash, body))
}

// ---- domains ------------------------------------------------------------------------------

async fn domains_markup(st: &St, a: &Authed, err: Option<&OpError>, typed: &str) -> Markup {
    let list = ops::list_domains(st).await;
    let body = html! {
        section.card {
            h2 { "Add a domain" }
            form method="post" action="/domains" {
                (csrf(a))
                (form_error(err))
                label for="domain" { "Domain name" }
                input #domain name="domain" type="text" required maxlength="253" value=(typed) placeholder="example.org"
                    aria-describedby=[err.filter(|e| e.field() == Some("domain")).map(|_| "domain-error")];
                (field_error(err, "domain"))
                button type="submit" { "Add domain" }
            }
        }
        section.card {
            h2 { "Domains" }
            @match &list {
                Ok(list) if list.is_empty() => { p { "No domains yet." } }
                Ok(list) => {
                    table {
                        thead { tr { th scope="col" { "Domain" } th scope="col" { "Accounts" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for d in list {
                                tr {
                                    td { a href=(format!("/accounts?domain={}", q(&d.domain))) { (d.domain) } }
                                    td.num { (d.accounts) }
                                    td { a href=(format!("/domains/{}/delete", seg(&d.domain))) { "Delete…" } }
                                }
                            }
                        }
                    }
                }
                Err(e) => { p.flash.err { (e.to_string()) } }
            }
        }
    };
    layout("Domains", "domains", Some(a), take_flash(a, st), body)
}

pub async fn domains(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, domains_markup(&st, &a, None, "").await)
}

#[derive(Debug, serde::Deserialize)]
pub struct DomainForm {
    #[serde(default)]
    domain: String,
}

pub async fn domain_add(st: St, SessionForm(a, f): SessionForm<DomainForm>) -> Response {
    match ops::add_domain(&st, &a.actor, &f.domain).await {
        Ok(d) => {
            st.sessions.set_flash(&a.session_id, true, format!("Domain {d} added."));
            Redirect::to("/domains").into_response()
        }
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            domains_markup(&st, &a, Some(&e), &f.domain).await,
        ),
    }
}

fn confirm_markup(a: &Authed, title: &str, what: Markup, action: &str, err: Option<&str>, back: &str) -> Markup {
    layout(
        title,
        "",
        Some(a),
        None,
        html! {
            section.card.danger {
                (what)
                form method="post" action=(action) {
                    (csrf(a))
                    @if let Some(e) = err { p.flash.err role="alert" { (e) } }
                    label for="password" { "Your admin password, to confirm" }
                    input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                    button.danger type="submit" { (title) }
                    " " a href=(back) { "Cancel" }
                }
            }
        },
    )
}

pub async fn domain_delete_page(PageAuth(a): PageAuth, Path(domain): Path<String>) -> Response {
    let what =
        html! { p { "Delete the domain " strong { (domain) } "? It must have no accounts and no aliases left." } };
    page(
        StatusCode::OK,
        confirm_markup(&a, "Delete domain", what, &format!("/domains/{}/delete", seg(&domain)), None, "/domains"),
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    password: String,
}

const REAUTH_FAILED: &str = "Wrong password (or too many attempts): nothing was deleted.";

pub async fn domain_delete(st: St, Path(domain): Path<String>, SessionForm(a, f): SessionForm<ReauthForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let what = html! { p { "Delete the domain " strong { (domain) } "?" } };
        return page(
            StatusCode::FORBIDDEN,
            confirm_markup(
                &a,
                "Delete domain",
                what,
                &format!("/domains/{}/delete", seg(&domain)),
                Some(REAUTH_FAILED),
                "/domains",
            ),
        );
    }
    match ops::delete_domain(&st, &a.actor, &domain).await {
        Ok(()) => st.sessions.set_flash(&a.session_id, true, format!("Domain {domain} deleted.")),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    Redirect::to("/domains").into_response()
}

// ---- accounts -----------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    quota: String,
    /// The MESSAGE limit on the account page's quota form (empty: unchanged).
    #[serde(default)]
    messages: String,
}

fn usage_cell(u: Option<&hermes_svc_store::quota::undelete::UsageEntry>, quota: u64) -> Markup {
    html! {
        @match u {
            Some(u) => {
                (bar(u.live_bytes, quota, "Quota used"))
                span.small { (ops::human(u.live_bytes)) " · " (u.live_messages) " msgs" }
            }
            None => { span.muted { "n/a" } }
        }
    }
}

async fn accounts_markup(
    st: &St,
    a: &Authed,
    query: &AccountQuery,
    err: Option<&OpError>,
    typed: &AccountForm,
) -> Markup {
    let page_no = query.page.unwrap_or(1).max(1);
    let domain = (!query.domain.is_empty()).then(|| query.domain.clone());
    let result = ops::search_accounts(st, query.q.clone(), domain.clone(), page_no, ops::DEFAULT_PER_PAGE).await;
    let usage = match &result {
        Ok(p) => ops::usage(st, p.accounts.iter().map(|x| x.address.clone()).collect()).await.ok(),
        Err(_) => None,
    };
    let link = |p: usize| format!("/accounts?q={}&domain={}&page={p}", q(&query.q), q(&query.domain));
    let body = html! {
        section.card {
            h2 { "Find accounts" }
            form.inline method="get" action="/accounts" role="search" {
                label for="q" { "Address contains" }
                input #q name="q" type="search" value=(query.q) maxlength="320";
                @if let Some(d) = &domain { input type="hidden" name="domain" value=(d); }
                button type="submit" { "Search" }
            }
            @match &result {
                Ok(p) => {
                    @let pages = p.total.div_ceil(p.per_page).max(1);
                    p.muted { (p.total) " accounts" @if let Some(d) = &domain { " in " (d) } " · page " (p.page) " of " (pages) }
                    @if !p.accounts.is_empty() {
                        table {
                            thead { tr { th scope="col" { "Address" } th scope="col" { "Quota" } th scope="col" { "Usage" } th scope="col" { "Created" } } }
                            tbody {
                                @for acc in &p.accounts {
                                    tr {
                                        td { a href=(format!("/accounts/{}", seg(&acc.address))) { (acc.address) } }
                                        td.num { (ops::format_size(acc.quota_bytes)) }
                                        td.usage { (usage_cell(usage.as_ref().and_then(|u| u.get(&acc.address)), acc.quota_bytes)) }
                                        td { (when(acc.created)) }
                                    }
                                }
                            }
                        }
                    }
                    nav.pager aria-label="Pages" {
                        @if p.page > 1 { a href=(link(p.page - 1)) rel="prev" { "← Previous" } }
                        @if p.page < pages { a href=(link(p.page + 1)) rel="next" { "Next →" } }
                    }
                }
                Err(e) => { p.flash.err { (e.to_string()) } }
            }
        }
        section.card {
            h2 { "Create an account" }
            form method="post" action="/accounts" {
                (csrf(a))
                (form_error(err))
                label for="address" { "Address" }
                input #address name="address" type="email" required maxlength="320" value=(typed.address) placeholder="alice@example.org";
                (field_error(err, "address"))
                label for="password" { "Password (at least " (ops::MIN_PASSWORD_CHARS) " characters)" }
                input #password name="password" type="password" autocomplete="new-password" required minlength=(ops::MIN_PASSWORD_CHARS) maxlength="1024";
                (field_error(err, "password"))
                label for="quota" { "Quota (e.g. 2G, 500M; empty: 1G)" }
                input #quota name="quota" type="text" maxlength="24" value=(typed.quota);
                (field_error(err, "quota"))
                button type="submit" { "Create account" }
            }
        }
    };
    layout("Accounts", "accounts", Some(a), take_flash(a, st), body)
}

pub async fn accounts(PageAuth(a): PageAuth, st: St, Query(query): Query<AccountQuery>) -> Response {
    page(StatusCode::OK, accounts_markup(&st, &a, &query, None, &AccountForm::default()).await)
}

pub async fn account_create(st: St, SessionForm(a, f): SessionForm<AccountForm>) -> Response {
    match ops::create_account(&st, &a.actor, &f.address, Secret::new(f.password.clone()), &f.quota).await {
        Ok(addr) => {
            st.sessions.set_flash(&a.session_id, true, format!("Account {addr} created."));
            Redirect::to(&format!("/accounts/{}", seg(&addr))).into_response()
        }
        Err(e) => {
            let typed =
                AccountForm { address: f.address, password: String::new(), quota: f.quota, messages: String::new() };
            page(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                accounts_markup(&st, &a, &AccountQuery::default(), Some(&e), &typed).await,
            )
        }
    }
}

async fn account_markup(st: &St, a: &Authed, address: &str, err: Option<&OpError>) -> Result<Markup, Response> {
    let acc = match ops::get_account(st, address).await {
        Ok(acc) => acc,
        Err(e) => {
            return Err(error_page(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::NOT_FOUND), &e.to_string()));
        }
    };
    let usage = ops::usage(st, vec![acc.address.clone()]).await;
    let base = format!("/accounts/{}", seg(&acc.address));
    let body = html! {
        div.grid {
            section.card {
                h2 { "Account" }
                dl.stats {
                    dt { "Address" } dd { (acc.address) }
                    dt { "Created" } dd { (when(acc.created)) }
                    dt { "Mailbox id" } dd { code { (acc.user_id) } }
                    dt { "Quota" } dd { (ops::format_size(acc.quota_bytes)) }
                    dt { "Message limit" } dd { (message_limit(acc.quota_messages)) }
                }
                h3 { "Usage" }
                @match &usage {
                    Ok(u) => {
                        @match u.get(&acc.address) {
                            Some(u) => {
                                (bar(u.live_bytes, acc.quota_bytes, "Quota used"))
                                p { (ops::human(u.live_bytes)) " in " (u.live_messages) " messages, of " (ops::human(acc.quota_bytes)) "." }
                                p.muted { "Restorable (expunged) mail: " (ops::human(u.retained_bytes)) " in " (u.retained_messages) " messages. "
                                    a href=(format!("/undelete?account={}", q(&acc.address))) { "Undelete…" } }
                            }
                            None => { p.muted { "n/a" } }
                        }
                    }
                    Err(e) => { p.muted { "Usage n/a: " (e.to_string()) } }
                }
            }
            section.card {
                h2 { "Reset the password" }
                form method="post" action=(format!("{base}/password")) {
                    (csrf(a))
                    label for="password" { "New password" }
                    input #password name="password" type="password" autocomplete="new-password" required minlength=(ops::MIN_PASSWORD_CHARS) maxlength="1024";
                    (field_error(err, "password"))
                    button type="submit" { "Set password" }
                }
                h2 { "Quota" }
                form method="post" action=(format!("{base}/quota")) {
                    (csrf(a))
                    label for="quota" { "Quota (e.g. 2G, 500M)" }
                    input #quota name="quota" type="text" required maxlength="24" value=(ops::format_size(acc.quota_bytes));
                    (field_error(err, "quota"))
                    label for="messages" { "Message limit (a number, unlimited, or default)" }
                    input #messages name="messages" type="text" maxlength="24" value=(acc.quota_messages.to_string());
                    (field_error(err, "messages"))
                    button type="submit" { "Set quota" }
                }
                (form_error(err))
            }
            section.card.danger {
                h2 { "Delete the account" }
                p { "The address stops receiving mail and its owner can no longer sign in. The mail stays in the store, unreachable, until purged; re-adding the address creates a new, empty mailbox." }
                form method="post" action=(format!("{base}/delete")) {
                    (csrf(a))
                    label for="reauth" { "Your admin password, to confirm" }
                    input #reauth name="password" type="password" autocomplete="current-password" required maxlength="1024";
                    (field_error(err, "reauth"))
                    button.danger type="submit" { "Delete account" }
                }
            }
        }
    };
    Ok(layout(&acc.address, "accounts", Some(a), take_flash(a, st), body))
}

pub async fn account_detail(PageAuth(a): PageAuth, st: St, Path(address): Path<String>) -> Response {
    match account_markup(&st, &a, &address, None).await {
        Ok(m) => page(StatusCode::OK, m),
        Err(r) => r,
    }
}

async fn after_account_change(st: &St, a: &Authed, address: &str, result: Result<String, OpError>) -> Response {
    match result {
        Ok(msg) => {
            st.sessions.set_flash(&a.session_id, true, msg);
            Redirect::to(&format!("/accounts/{}", seg(address))).into_response()
        }
        Err(e) => match account_markup(st, a, address, Some(&e)).await {
            Ok(m) => page(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), m),
            Err(r) => r,
        },
    }
}

pub async fn account_password(
    st: St,
    Path(address): Path<String>,
    SessionForm(a, f): SessionForm<AccountForm>,
) -> Response {
    let r = ops::set_password(&st, &a.actor, &address, Secret::new(f.password))
        .await
        .map(|()| "Password changed.".to_string());
    after_account_change(&st, &a, &address, r).await
}

/// How the account page shows a MESSAGE limit.
fn message_limit(m: hermes_core::directory::MessageQuota) -> String {
    match m {
        hermes_core::directory::MessageQuota::Default => {
            "site default ([store] default_quota_messages; unlimited unless set)".into()
        }
        other => other.to_string(),
    }
}

pub async fn account_quota(
    st: St,
    Path(address): Path<String>,
    SessionForm(a, f): SessionForm<AccountForm>,
) -> Response {
    let messages = Some(f.messages.as_str()).filter(|m| !m.trim().is_empty());
    let r = ops::set_quota(&st, &a.actor, &address, &f.quota, messages)
        .await
        .map(|(q, m)| format!("Quota set to {}, message limit {}.", ops::format_size(q), message_limit(m)));
    after_account_change(&st, &a, &address, r).await
}

pub async fn account_delete(
    st: St,
    Path(address): Path<String>,
    SessionForm(a, f): SessionForm<ReauthForm>,
) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = OpError::invalid("reauth", REAUTH_FAILED);
        return match account_markup(&st, &a, &address, Some(&e)).await {
            Ok(m) => page(StatusCode::FORBIDDEN, m),
            Err(r) => r,
        };
    }
    match ops::delete_account(&st, &a.actor, &address).await {
        Ok(()) => {
            st.sessions.set_flash(&a.session_id, true, format!("Account {address} deleted."));
            Redirect::to("/accounts").into_response()
        }
        Err(e) => after_account_change(&st, &a, &address, Err(e)).await,
    }
}

// ---- aliases ------------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct AliasForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    targets: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AliasQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    page: Option<usize>,
}

async fn aliases_markup(st: &St, a: &Authed, query: &AliasQuery, err: Option<&OpError>, typed: &AliasForm) -> Markup {
    let domain = (!query.domain.is_empty()).then(|| query.domain.clone());
    let list =
        ops::search_aliases(st, query.q.clone(), domain.clone(), query.page.unwrap_or(1), ops::ALIASES_PER_PAGE).await;
    let link = |p: usize| format!("/aliases?q={}&domain={}&page={p}", q(&query.q), q(&query.domain));
    let body = html! {
        section.card {
            h2 { "Add or replace an alias" }
            form method="post" action="/aliases" {
                (csrf(a))
                (form_error(err))
                label for="address" { "Alias address (" code { "@domain" } " for a catch-all)" }
                input #address name="address" type="text" required maxlength="320" value=(typed.address) placeholder="team@example.org";
                (field_error(err, "address"))
                label for="targets" { "Targets (one per line or comma-separated)" }
                textarea #targets name="targets" rows="3" required maxlength="60000" { (typed.targets) }
                (field_error(err, "targets"))
                button type="submit" { "Save alias" }
            }
        }
        section.card {
            h2 { "Aliases" }
            form.inline method="get" action="/aliases" role="search" {
                label for="aq" { "Alias or target contains" }
                input #aq name="q" type="search" value=(query.q) maxlength="320";
                @if let Some(d) = &domain { input type="hidden" name="domain" value=(d); }
                button type="submit" { "Search" }
            }
            @match &list {
                Ok(p) if p.total == 0 => { p { @if query.q.is_empty() { "No aliases." } @else { "No alias matches." } } }
                Ok(p) => {
                    @let pages = p.total.div_ceil(p.per_page).max(1);
                    p.muted { (p.total) " aliases" @if let Some(d) = &domain { " in " (d) } " · page " (p.page) " of " (pages) }
                    table {
                        thead { tr { th scope="col" { "Alias" } th scope="col" { "Targets" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for al in &p.aliases {
                                tr {
                                    td { (al.address) }
                                    td { (al.targets.join(", ")) }
                                    td {
                                        form method="post" action=(format!("/aliases/{}/delete", seg(&al.address))) {
                                            (csrf(a))
                                            button.link type="submit" aria-label=(format!("Delete alias {}", al.address)) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    nav.pager aria-label="Pages" {
                        @if p.page > 1 { a href=(link(p.page - 1)) rel="prev" { "← Previous" } }
                        @if p.page < pages { a href=(link(p.page + 1)) rel="next" { "Next →" } }
                    }
                }
                Err(e) => { p.flash.err { (e.to_string()) } }
            }
        }
    };
    layout("Aliases", "aliases", Some(a), take_flash(a, st), body)
}

pub async fn aliases(PageAuth(a): PageAuth, st: St, Query(query): Query<AliasQuery>) -> Response {
    page(StatusCode::OK, aliases_markup(&st, &a, &query, None, &AliasForm::default()).await)
}

pub async fn alias_add(st: St, SessionForm(a, f): SessionForm<AliasForm>) -> Response {
    match ops::add_alias(&st, &a.actor, &f.address, &f.targets).await {
        Ok(al) => {
            st.sessions.set_flash(&a.session_id, true, format!("Alias {} saved.", al.address));
            Redirect::to("/aliases").into_response()
        }
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            aliases_markup(&st, &a, &AliasQuery::default(), Some(&e), &f).await,
        ),
    }
}

pub async fn alias_delete(
    st: St,
    Path(address): Path<String>,
    SessionForm(a, _): SessionForm<serde::de::IgnoredAny>,
) -> Response {
    match ops::delete_alias(&st, &a.actor, &address).await {
        Ok(()) => st.sessions.set_flash(&a.session_id, true, format!("Alias {address} deleted.")),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    Redirect::to("/aliases").into_response()
}

// ---- undelete -----------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct UndeleteForm {
    #[serde(default)]
    account: String,
    #[serde(default)]
    mailbox: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// Rows the Undelete page shows (about 100 KB); the restore acts on every message listed.
const UNDELETE_ROWS: usize = 250;

async fn undelete_markup(st: &St, a: &Authed, f: &UndeleteForm, err: Option<&OpError>) -> Markup {
    let listing = if f.account.trim().is_empty() || err.is_some() {
        None
    } else {
        Some(match ops::undelete_filter(&f.mailbox, &f.since, &f.until) {
            Ok(filter) => ops::undelete_list(st, &f.account, filter).await,
            Err(e) => Err(e),
        })
    };
    let field_err = match (&listing, err) {
        (_, Some(e)) => Some(e.clone()),
        (Some(Err(e)), None) => Some(e.clone()),
        _ => None,
    };
    let err = field_err.as_ref();
    let body = html! {
        section.card {
            h2 { "Find restorable mail" }
            p.muted { "Expunged messages stay restorable for the retention period (" (st.config.store.retention_days) " days)." }
            form method="get" action="/undelete" {
                label for="account" { "Account" }
                input #account name="account" type="email" required maxlength="320" value=(f.account);
                (field_error(err, "account"))
                label for="mailbox" { "Mailbox (empty: all)" }
                input #mailbox name="mailbox" type="text" maxlength="1024" value=(f.mailbox);
                (field_error(err, "mailbox"))
                div.row {
                    div {
                        label for="since" { "Expunged from (YYYY-MM-DD)" }
                        input #since name="since" type="date" value=(f.since);
                        (field_error(err, "since"))
                    }
                    div {
                        label for="until" { "Expunged until (inclusive)" }
                        input #until name="until" type="date" value=(f.until);
                        (field_error(err, "until"))
                    }
                }
                button type="submit" { "List messages" }
            }
            (form_error(err))
        }
        @if let Some(Ok(messages)) = &listing {
            section.card {
                h2 { (messages.len()) " restorable messages" }
                @if !messages.is_empty() {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Subject" } th scope="col" { "From" } th scope="col" { "Date" }
                                th scope="col" { "Expunged" } th scope="col" { "Mailbox" } th scope="col" { "UID" }
                                th scope="col" { "Size" } th scope="col" { "Reason" } th scope="col" { "Purged after" }
                            }
                        }
                        tbody {
                            @for m in messages.iter().take(UNDELETE_ROWS) {
                                tr {
                                    // Read from the message's header by the store: untrusted
                                    // text, escaped by maud like everything else.
                                    td.subject title=(m.message_id) {
                                        @if m.subject.is_empty() { span.muted { "(no subject)" } } @else { (m.subject) }
                                    }
                                    td { (m.from) }
                                    td { (m.date) }
                                    td { (when(m.expunged_at)) }
                                    td { (m.mailbox) }
                                    td.num { (m.uid) }
                                    td.num { (ops::human(m.size)) }
                                    td { (m.reason) }
                                    td { (when(m.expires_at)) }
                                }
                            }
                        }
                    }
                    @if messages.len() > UNDELETE_ROWS {
                        p.muted { "Showing the first " (UNDELETE_ROWS) " of " (messages.len()) ": narrow the mailbox or the dates to see the others. Restore acts on all " (messages.len()) "." }
                    }
                    form method="post" action="/undelete" {
                        (csrf(a))
                        input type="hidden" name="account" value=(f.account);
                        input type="hidden" name="mailbox" value=(f.mailbox);
                        input type="hidden" name="since" value=(f.since);
                        input type="hidden" name="until" value=(f.until);
                        button type="submit" { "Restore these " (messages.len()) " messages" }
                    }
                }
            }
        }
    };
    layout("Undelete", "undelete", Some(a), take_flash(a, st), body)
}

pub async fn undelete(PageAuth(a): PageAuth, st: St, Query(f): Query<UndeleteForm>) -> Response {
    page(StatusCode::OK, undelete_markup(&st, &a, &f, None).await)
}

pub async fn undelete_restore(st: St, SessionForm(a, f): SessionForm<UndeleteForm>) -> Response {
    let result = match ops::undelete_filter(&f.mailbox, &f.since, &f.until) {
        Ok(filter) => ops::undelete_restore(&st, &a.actor, &f.account, filter).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(restored) => {
            st.sessions.set_flash(
                &a.session_id,
                true,
                format!("Restored {} messages for {}.", restored.len(), f.account.trim()),
            );
            Redirect::to(&format!("/undelete?account={}", q(f.account.trim()))).into_response()
        }
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            undelete_markup(&st, &a, &f, Some(&e)).await,
        ),
    }
}

// ---- logs ---------------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    text: String,
    #[serde(default)]
    failed: Option<String>,
}

/// Audit entries shown at most.
const LOG_ROWS: usize = 500;

pub async fn logs(
    PageAuth(a): PageAuth,
    st: St,
    Query(lq): Query<LogQuery>,
    Query(sf): Query<crate::logs::Filter>,
) -> Response {
    let service_logs = super::more::service_logs(&st, &sf).await;
    let st2 = st.0.clone();
    let entries = tokio::task::spawn_blocking(move || st2.audit.tail(crate::audit::MAX_TAIL_BYTES as usize)).await;
    let needle = lq.text.trim().to_lowercase();
    let failed_only = lq.failed.is_some();
    let body = html! {
        (super::more::service_logs_markup(&sf, &service_logs))
        section.card {
            h2 { "Audit log" }
            p.muted { "Every change made here and every sign-in: who, what, when, from where." }
            form.inline method="get" action="/logs" role="search" {
                label for="text" { "Contains" }
                input #text name="text" type="search" value=(lq.text) maxlength="200";
                label.check for="failed" { input #failed name="failed" type="checkbox" value="1" checked[failed_only]; " failures only" }
                button type="submit" { "Filter" }
            }
            @match &entries {
                Ok(Ok(list)) => {
                    table {
                        thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Admin" } th scope="col" { "From" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Result" } } }
                        tbody {
                            @for e in list.iter().filter(|e| (!failed_only || !e.ok) && (needle.is_empty() || format!("{} {} {} {} {}", e.admin, e.peer, e.action, e.target, e.detail).to_lowercase().contains(&needle))).take(LOG_ROWS) {
                                tr {
                                    td { (e.ts) }
                                    td { (e.admin) }
                                    td { (e.peer) }
                                    td { code { (e.action) } }
                                    td { (e.target) }
                                    td { @if e.ok { span.state.state-running { "ok" } } @else { span.state.state-backoff { "failed" } " " (e.detail) } }
                                }
                            }
                        }
                    }
                }
                _ => { p.flash.err { "The audit log could not be read." } }
            }
        }
    };
    let flash = take_flash(&a, &st);
    page(StatusCode::OK, layout("Logs", "logs", Some(&a), flash, body))
}

// ---- API tokens and admins ------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

async fn tokens_markup(st: &St, a: &Authed, err: Option<&OpError>, created: Option<(&str, &str)>) -> Markup {
    let st2 = st.0.clone();
    let (tokens, admins) = tokio::task::spawn_blocking(move || (st2.admins.api_tokens(), st2.admins.list()))
        .await
        .unwrap_or_else(|_| (Ok(Vec::new()), Ok(Vec::new())));
    let body = html! {
        @if let Some((name, token)) = created {
            section.card {
                h2 { "New API token “" (name) "”" }
                p { "Copy it now: it is shown only once. Send it as " code { "Authorization: Bearer …" } "." }
                p { output.token { (token) } }
            }
        }
        section.card {
            h2 { "API tokens" }
            p.muted { "For scripts using the JSON API under /api/ (see docs/admin-api.md). A token acts as the admin who created it." }
            @match &tokens {
                Ok(list) if !list.is_empty() => {
                    table {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Admin" } th scope="col" { "Created" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for t in list {
                                tr {
                                    td { (t.name) } td { code { (t.id) } } td { (t.admin) } td { (when(t.created)) }
                                    td { form method="post" action=(format!("/tokens/{}/revoke", seg(&t.id))) { (csrf(a)) button.link type="submit" aria-label=(format!("Revoke token {}", t.name)) { "Revoke" } } }
                                }
                            }
                        }
                    }
                }
                Ok(_) => { p { "No API tokens." } }
                Err(_) => { p.flash.err { "The token list could not be read." } }
            }
            form method="post" action="/tokens" {
                (csrf(a))
                label for="name" { "New token name" }
                input #name name="name" type="text" required maxlength="64" placeholder="backup script";
                (field_error(err.filter(|_| created.is_none()), "name"))
                button type="submit" { "Create token" }
            }
        }
        section.card {
            h2 { "Admins" }
            @if let Ok(list) = &admins { p { (list.join(", ")) } }
            form method="post" action="/admins" {
                (csrf(a))
                (form_error(err))
                label for="admin_name" { "New admin's name" }
                input #admin_name name="name" type="text" required maxlength="64" pattern="[a-z0-9._\\-]+";
                label for="new_password" { "Their password (at least " (crate::admins::MIN_ADMIN_PASSWORD) " characters)" }
                input #new_password name="new_password" type="password" autocomplete="new-password" required maxlength="1024";
                (field_error(err, "new_password"))
                label for="password" { "Your password, to confirm" }
                input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                (field_error(err, "reauth"))
                button type="submit" { "Add admin" }
            }
        }
    };
    layout("Access", "tokens", Some(a), take_flash(a, st), body)
}

pub async fn tokens(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, tokens_markup(&st, &a, None, None).await)
}

pub async fn token_create(st: St, SessionForm(a, f): SessionForm<TokenForm>) -> Response {
    match ops::create_api_token(&st, &a.actor, &f.name).await {
        Ok((rec, token)) => page(StatusCode::OK, tokens_markup(&st, &a, None, Some((&rec.name, token.expose()))).await),
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            tokens_markup(&st, &a, Some(&e), None).await,
        ),
    }
}

pub async fn token_revoke(
    st: St,
    Path(id): Path<String>,
    SessionForm(a, _): SessionForm<serde::de::IgnoredAny>,
) -> Response {
    match ops::revoke_api_token(&st, &a.actor, &id).await {
        Ok(()) => st.sessions.set_flash(&a.session_id, true, "Token revoked."),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    Redirect::to("/tokens").into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AdminForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    password: String,
}

pub async fn admin_create(st: St, SessionForm(a, f): SessionForm<AdminForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = OpError::invalid("reauth", "Wrong password (or too many attempts): no admin was added.");
        return page(StatusCode::FORBIDDEN, tokens_markup(&st, &a, Some(&e), None).await);
    }
    match ops::create_admin(&st, &a.actor, &f.name, Secret::new(f.new_password)).await {
        Ok(()) => {
            st.sessions.set_flash(&a.session_id, true, format!("Admin {} added.", f.name.trim()));
            Redirect::to("/tokens").into_response()
        }
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            tokens_markup(&st, &a, Some(&e), None).await,
        ),
    }
}

// ---- config apply ---------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct ConfigForm {
    #[serde(default)]
    config: String,
    #[serde(default)]
    password: String,
}

const LIVE_NOTE: &str = "An applied version is reloaded at once by the store and the router: open connections stay up, new ones get the new settings. The result per service is shown beside the version.";

/// What each service said when asked to reload a version (beside the version in the history).
pub(crate) fn reload_markup(outcomes: &[crate::control::ReloadOutcome]) -> Markup {
    html! {
        ul.reload {
            @for r in outcomes {
                li {
                    strong { (r.service) } ": "
                    @let class = match r.state { "applied" => "state state-running", "not running" => "state state-stopping", _ => "state state-backoff" };
                    span class=(class) { (r.state) }
                    @if !r.restart_needed.is_empty() { " " span.small { "at next start: " (r.restart_needed.join(", ")) } }
                    @if !r.errors.is_empty() { " " span.error { (r.errors.join("; ")) } }
                }
            }
        }
    }
}

async fn config_markup(
    st: &St,
    a: &Authed,
    text: Option<&str>,
    errors: &[hermes_core::config::ConfigError],
    other: Option<&OpError>,
) -> Markup {
    let data = st.data.clone();
    let (current, history) =
        tokio::task::spawn_blocking(move || (crate::config_apply::current(&data), crate::config_apply::list(&data)))
            .await
            .unwrap_or_else(|_| (Ok(String::new()), Ok(Vec::new())));
    let shown = text.map(str::to_string).unwrap_or_else(|| current.as_ref().cloned().unwrap_or_default());
    let body = html! {
        section.card {
            h2 { "hermes.toml" }
            p.muted { (LIVE_NOTE) }
            form method="post" action="/config" {
                (csrf(a))
                (form_error(other))
                @if !errors.is_empty() {
                    div.flash.err role="alert" id="config-error" {
                        p { "Nothing was changed: " (errors.len()) " problems." }
                        ul { @for e in errors { li { code { (e.path) } ": " (e.message) } } }
                    }
                }
                label for="config" { "Configuration (TOML; every key is checked, unknown keys are refused)" }
                textarea #config.code name="config" rows="28" spellcheck="false" maxlength=(crate::config_apply::MAX_CONFIG_BYTES)
                    aria-describedby=[(!errors.is_empty()).then_some("config-error")] { (shown) }
                label for="password" { "Your admin password, to confirm" }
                input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                (field_error(other, "reauth"))
                button type="submit" { "Validate and apply" }
            }
        }
        section.card {
            h2 { "History" }
            @match &history {
                Ok(h) if h.is_empty() => { p { "No version applied through this UI yet." } }
                Ok(h) => {
                    table {
                        thead { tr { th scope="col" { "Applied" } th scope="col" { "Version" } th scope="col" { "Size" } th scope="col" { "Live apply" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for (i, v) in h.iter().enumerate() {
                                tr {
                                    td { (when(v.applied_at)) @if i == 0 && current.as_ref().is_ok_and(|c| crate::config_apply::version_text(&st.data, &v.id).ok().as_ref() == Some(c)) { " (in force)" } }
                                    td { code { (v.id) } }
                                    td.num { (v.bytes) " B" }
                                    td { @match st.reload_of(&v.id) { Some(o) => { (reload_markup(&o)) } None => { span.muted { "—" } } } }
                                    td { a href=(format!("/config/history/{}", seg(&v.id))) { "Diff and rollback…" } }
                                }
                            }
                        }
                    }
                }
                Err(_) => { p.flash.err { "The history could not be read." } }
            }
        }
    };
    layout("Configuration", "config", Some(a), take_flash(a, st), body)
}

pub async fn config(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, config_markup(&st, &a, None, &[], None).await)
}

pub async fn config_apply(st: St, SessionForm(a, f): SessionForm<ConfigForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = OpError::invalid("reauth", "Wrong password (or too many attempts): nothing was applied.");
        return page(StatusCode::FORBIDDEN, config_markup(&st, &a, Some(&f.config), &[], Some(&e)).await);
    }
    match ops::apply_config(&st, &a.actor, Some(f.config.clone()), None).await {
        Ok(v) => {
            st.sessions.set_flash(
                &a.session_id,
                v.reload.iter().all(|r| r.ok),
                format!("Version {} applied. {}.", v.version.id, v.summary()),
            );
            Redirect::to("/config").into_response()
        }
        Err(ops::ConfigApplyError::Invalid(errors)) => {
            page(StatusCode::UNPROCESSABLE_ENTITY, config_markup(&st, &a, Some(&f.config), &errors, None).await)
        }
        Err(ops::ConfigApplyError::Op(e)) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            config_markup(&st, &a, Some(&f.config), &[], Some(&e)).await,
        ),
    }
}

async fn version_markup(st: &St, a: &Authed, id: &str, err: Option<&OpError>) -> Result<Markup, Response> {
    let data = st.data.clone();
    let i = id.to_string();
    let texts = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::config_apply::ApplyError>((
            crate::config_apply::version_text(&data, &i)?,
            crate::config_apply::current(&data)?,
        ))
    })
    .await
    .map_err(|_| error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let (old, current) = texts.map_err(|_| error_page(StatusCode::NOT_FOUND, "There is no such config version."))?;
    let lines = crate::config_apply::diff(&current, &old);
    let changed = lines.iter().any(|l| l.kind != ' ');
    let body = html! {
        section.card {
            h2 { "Rolling back to " code { (id) } " would change" }
            @if !changed { p { "Nothing: this version is the configuration in force." } }
            @else {
                pre.diff aria-label="Differences: lines starting with minus are removed, plus added" {
                    @for l in &lines {
                        @let class = match l.kind { '+' => "add", '-' => "del", _ => "same" };
                        span class=(class) { (l.kind) " " (l.text) }
                    }
                }
                form method="post" action=(format!("/config/history/{}/rollback", seg(id))) {
                    (csrf(a))
                    (form_error(err))
                    label for="password" { "Your admin password, to confirm" }
                    input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                    (field_error(err, "reauth"))
                    button.danger type="submit" { "Roll back to this version" }
                    " " a href="/config" { "Cancel" }
                }
            }
        }
    };
    Ok(layout("Config version", "config", Some(a), take_flash(a, st), body))
}

pub async fn config_version(PageAuth(a): PageAuth, st: St, Path(id): Path<String>) -> Response {
    match version_markup(&st, &a, &id, None).await {
        Ok(m) => page(StatusCode::OK, m),
        Err(r) => r,
    }
}

pub async fn config_rollback(st: St, Path(id): Path<String>, SessionForm(a, f): SessionForm<ReauthForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = OpError::invalid("reauth", "Wrong password (or too many attempts): nothing was changed.");
        return match version_markup(&st, &a, &id, Some(&e)).await {
            Ok(m) => page(StatusCode::FORBIDDEN, m),
            Err(r) => r,
        };
    }
    match ops::apply_config(&st, &a.actor, None, Some(id.clone())).await {
        Ok(v) => {
            st.sessions.set_flash(
                &a.session_id,
                v.reload.iter().all(|r| r.ok),
                format!("Rolled back: version {} is now in force. {}.", v.version.id, v.summary()),
            );
            Redirect::to("/config").into_response()
        }
        Err(ops::ConfigApplyError::Invalid(errors)) => {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            let e = OpError::Conflict(format!("That version is not valid for this release: {}", text.join("; ")));
            match version_markup(&st, &a, &id, Some(&e)).await {
                Ok(m) => page(StatusCode::UNPROCESSABLE_ENTITY, m),
                Err(r) => r,
            }
        }
        Err(ops::ConfigApplyError::Op(e)) => {
            st.sessions.set_flash(&a.session_id, false, e.to_string());
            Redirect::to("/config").into_response()
        }
    }
}
