//! The TLS certificate, system, firmware and disks pages, and the service-log part of Logs.
//! Same rules as [`super::pages`]: server-rendered, no JavaScript, CSRF on every form, the
//! shared operations in [`crate::ops`], errors beside their fields.

use super::pages::{csrf, field_error, form_error, layout, page, reload_markup, take_flash, uptime, when};
use super::{Authed, PageAuth, SessionForm, St, reauthenticate};
use crate::ops::{self, OpError};
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

// ---- TLS certificate ----------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct CertForm {
    #[serde(default)]
    chain: String,
    #[serde(default)]
    key: String,
}

fn chain_markup(chain: &[crate::cert::CertInfo], now: i64) -> Markup {
    html! {
        @for (i, c) in chain.iter().enumerate() {
            @let days = (c.not_after - now) / 86_400;
            h3 { @if i == 0 { "Server certificate" } @else { "Chain certificate " (i) } }
            dl.stats {
                dt { "Subject" } dd { (c.subject) }
                @if i == 0 { dt { "Names (SAN)" } dd { @if c.sans.is_empty() { "none" } @else { (c.sans.join(", ")) } } }
                dt { "Issuer" } dd { (c.issuer) @if c.self_signed { " " span.state.state-stopping { "self-signed" } } }
                dt { "Valid" } dd class=(if days < 14 { "level-error" } else if days < 30 { "level-warn" } else { "" }) {
                    (when(c.not_before)) " to " (when(c.not_after)) " (" (days) " days left)"
                }
                dt { "SHA-256" } dd { code { (c.sha256) } }
            }
        }
    }
}

async fn cert_markup(
    st: &St,
    a: &Authed,
    err: Option<&OpError>,
    result: Option<&[crate::control::ReloadOutcome]>,
) -> Markup {
    let path = st.data.tls_cert();
    let chain = tokio::task::spawn_blocking(move || crate::cert::read_chain(&path)).await.ok().flatten();
    let now = chrono::Utc::now().timestamp();
    let body = html! {
        @if let Some(r) = result {
            section.card { h2 { "Applied" } p { "The new certificate was installed; each service reloaded it:" } (reload_markup(r)) }
        }
        section.card aria-labelledby="cur-h" {
            h2 #cur-h { "Current certificate" }
            @match &chain {
                Some(c) if !c.is_empty() => { (chain_markup(c, now)) }
                _ => { p.flash.err { "No readable certificate in tls/cert.pem." } }
            }
        }
        section.card aria-labelledby="up-h" {
            h2 #up-h { "Install a certificate" }
            p.muted { "Paste the PEM chain (server certificate first, then intermediates) and its private key. They are checked (they parse, the key fits the certificate, it is valid now) before anything is written; then the store, the router and this UI reload them without dropping connections." }
            form method="post" action="/certificates" {
                (csrf(a))
                (form_error(err))
                label for="chain" { "Certificate chain (PEM)" }
                textarea #chain.code name="chain" rows="8" required maxlength=(crate::cert::MAX_UPLOAD_PEM) spellcheck="false" placeholder="-----BEGIN CERTIFICATE-----" {}
                (field_error(err, "chain"))
                label for="key" { "Private key (PEM)" }
                textarea #key.code name="key" rows="5" required maxlength=(crate::cert::MAX_UPLOAD_PEM) spellcheck="false" autocomplete="off" placeholder="-----BEGIN PRIVATE KEY-----" {}
                (field_error(err, "key"))
                button type="submit" { "Check and install" }
            }
        }
        section.card aria-labelledby="gen-h" {
            h2 #gen-h { "Self-signed certificate" }
            p { "Replace the certificate with a new self-signed one for " code { (st.config.hostname) } " (clients will warn until you install one from a CA)." }
            form method="post" action="/certificates/self-signed" {
                (csrf(a))
                button.danger type="submit" { "Generate a new self-signed certificate" }
            }
        }
    };
    layout("TLS certificate", "certificates", Some(a), take_flash(a, st), body)
}

pub async fn certificates(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, cert_markup(&st, &a, None, None).await)
}

pub async fn certificate_upload(st: St, SessionForm(a, f): SessionForm<CertForm>) -> Response {
    match ops::install_certificate(&st, &a.actor, f.chain, f.key).await {
        Ok((_, reload)) => page(StatusCode::OK, cert_markup(&st, &a, None, Some(&reload)).await),
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            cert_markup(&st, &a, Some(&e), None).await,
        ),
    }
}

pub async fn certificate_generate(st: St, SessionForm(a, _): SessionForm<serde::de::IgnoredAny>) -> Response {
    match ops::generate_certificate(&st, &a.actor).await {
        Ok((_, reload)) => page(StatusCode::OK, cert_markup(&st, &a, None, Some(&reload)).await),
        Err(e) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            cert_markup(&st, &a, Some(&e), None).await,
        ),
    }
}

// ---- service logs (part of the Logs page) -------------------------------------------------

pub async fn service_logs(st: &St, f: &crate::logs::Filter) -> Result<crate::logs::LogPage, crate::logs::LogError> {
    let dir = st.data.log_dir();
    let f = f.clone();
    tokio::task::spawn_blocking(move || crate::logs::read(&dir, &f))
        .await
        .unwrap_or_else(|_| Err(crate::logs::LogError::Invalid { field: "text", message: "internal error".into() }))
}

pub fn service_logs_markup(f: &crate::logs::Filter, r: &Result<crate::logs::LogPage, crate::logs::LogError>) -> Markup {
    let err_field = match r {
        Err(crate::logs::LogError::Invalid { field, message }) => Some((*field, message.clone())),
        Ok(_) => None,
    };
    let ferr = |name: &str| {
        html! { @if let Some((f, m)) = &err_field { @if *f == name { span.error id=(format!("{name}-error")) { (m) } } } }
    };
    let services = r.as_ref().map(|p| p.services.clone()).unwrap_or_default();
    let link = |p: usize| {
        format!(
            "/logs?service={}&level={}&text={}&since={}&until={}&page={p}",
            super::pages::q(&f.service),
            super::pages::q(&f.level),
            super::pages::q(&f.text),
            super::pages::q(&f.since),
            super::pages::q(&f.until)
        )
    };
    html! {
        section.card aria-labelledby="svclog-h" {
            h2 #svclog-h { "Service logs" }
            form.inline method="get" action="/logs" role="search" {
                div { label for="service" { "Service" }
                    select #service name="service" {
                        option value="" { "all" }
                        @for s in &services { option value=(s) selected[*s == f.service] { (s) } }
                        @if !f.service.is_empty() && !services.contains(&f.service) { option value=(f.service) selected { (f.service) } }
                    }
                }
                div { label for="level" { "At least" }
                    select #level name="level" {
                        @for (v, t) in [("", "any level"), ("error", "error"), ("warn", "warning"), ("info", "info"), ("debug", "debug")] {
                            option value=(v) selected[f.level == v] { (t) }
                        }
                    }
                    (ferr("level"))
                }
                div { label for="ltext" { "Contains" } input #ltext name="text" type="search" value=(f.text) maxlength="200"; }
                div { label for="since" { "From (UTC)" } input #since name="since" type="text" value=(f.since) maxlength="40" placeholder="2026-11-28T10:00"; (ferr("since")) }
                div { label for="until" { "Until" } input #until name="until" type="text" value=(f.until) maxlength="40" placeholder="2026-11-28"; (ferr("until")) }
                button type="submit" { "Filter" }
            }
            @match r {
                Ok(p) if p.sources.is_empty() => {
                    p { "No log files in " code { "DATA/log/" } ". On the appliance, init writes " code { "console.log" } " there. In host mode " code { "hermes up" } " appends the services' JSON lines to " code { "hermes.log" } " there." }
                }
                Ok(p) => {
                    @let pages = p.total.div_ceil(p.per_page).max(1);
                    p.muted { (p.total) " lines · page " (p.page) " of " (pages) " · from "
                        @for (i, (name, cut)) in p.sources.iter().enumerate() { @if i > 0 { ", " } code { (name) } @if *cut { " (last " (crate::logs::MAX_TAIL_BYTES / 1024 / 1024) " MiB)" } } }
                    @if !p.lines.is_empty() {
                        table {
                            thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Level" } th scope="col" { "Service" } th scope="col" { "Message" } } }
                            tbody {
                                @for l in &p.lines {
                                    tr {
                                        td.small { (l.ts) }
                                        td { span class=(format!("level-{}", l.level.to_ascii_lowercase())) { (l.level) } }
                                        td { (l.service) }
                                        td { pre.log { (l.msg) @if !l.fields.is_empty() { " " span.small { (l.fields) } } } }
                                    }
                                }
                            }
                        }
                    }
                    nav.pager aria-label="Log pages" {
                        @if p.page > 1 { a href=(link(p.page - 1)) rel="prev" { "← Newer" } }
                        @if p.page < pages { a href=(link(p.page + 1)) rel="next" { "Older →" } }
                    }
                }
                Err(_) => {}
            }
        }
    }
}

// ---- system and firmware ------------------------------------------------------------------

/// What the system page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemInfo {
    pub hostname: String,
    pub os_hostname: String,
    pub version: &'static str,
    /// Seconds since the box (kernel) started.
    pub system_uptime: Option<u64>,
    /// Seconds since the supervisor (host mode) or init (appliance) started.
    pub service_uptime: Option<i64>,
    /// True when the appliance's init answers `firmware_status` (not `hermes up`).
    pub appliance: bool,
    /// init's `firmware_status` answer, when it gave one.
    pub firmware: Option<serde_json::Value>,
}

pub async fn system_info(st: &St) -> SystemInfo {
    let fw = crate::control::json_request(
        &st.data.control_socket(),
        &serde_json::json!({ "op": "firmware_status" }),
        "supervisor",
        crate::control::REQUEST_TIMEOUT,
    )
    .await
    .ok()
    .filter(|v| v.get("ok").and_then(|o| o.as_bool()) == Some(true));
    let status = crate::control::supervisor_status(&st.data).await.ok();
    let now = chrono::Utc::now().timestamp();
    let system_uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()))
        .map(|x| x as u64);
    SystemInfo {
        hostname: st.config.hostname.clone(),
        os_hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().chars().take(253).collect())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION"),
        system_uptime,
        service_uptime: status.map(|s| now - s.started_at),
        appliance: fw.is_some(),
        firmware: fw.and_then(|v| v.get("firmware").cloned()),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct RestoreForm {
    #[serde(default)]
    config: String,
    #[serde(default)]
    password: String,
}

async fn system_markup(
    st: &St,
    a: &Authed,
    err: Option<&OpError>,
    errors: &[hermes_core::config::ConfigError],
) -> Markup {
    let info = system_info(st).await;
    let body = html! {
        section.card aria-labelledby="sys-h" {
            h2 #sys-h { "This box" }
            dl.stats {
                dt { "Host name (mail)" } dd { (info.hostname) }
                dt { "System host name" } dd { (info.os_hostname) }
                dt { "Hermes version" } dd { (info.version) " · " a href="/firmware" { "Firmware…" } }
                dt { "System up" } dd { (info.system_uptime.map(|s| uptime(s as i64)).unwrap_or_else(|| "n/a".into())) }
                dt { "Services up" } dd { (info.service_uptime.map(uptime).unwrap_or_else(|| "n/a (supervisor not answering)".into())) }
                dt { "Network and time" } dd { a href="/system/network" { "Interfaces, DNS, NTP and the clock…" } }
                dt { "Running as" } dd { @if info.appliance { "the Hermes appliance (init)" } @else { "host mode (" code { "hermes up" } ")" } }
            }
            p.muted { "The host name is set on the Config page (" code { "server.hostname" } ")." }
        }
        (super::system_ops::power_section(a, &info.hostname, info.appliance, None))
        section.card aria-labelledby="bak-h" {
            h2 #bak-h { "Configuration backup" }
            p { a href="/system/backup" download { "Download hermes.toml" } " — the configuration in force (route AUTH passwords included: keep it safe). Accounts, mail and certificates are not in it." }
            h3 { "Restore" }
            form method="post" action="/system/restore" {
                (csrf(a))
                (form_error(err))
                @if !errors.is_empty() {
                    div.flash.err role="alert" id="restore-error" {
                        p { "Nothing was changed: " (errors.len()) " problems." }
                        ul { @for e in errors { li { code { (e.path) } ": " (e.message) } } }
                    }
                }
                label for="config" { "Paste a backed-up hermes.toml (validated and applied like any config change)" }
                textarea #config.code name="config" rows="8" required spellcheck="false" maxlength=(crate::config_apply::MAX_CONFIG_BYTES) {}
                label for="password" { "Your admin password, to confirm" }
                input #password name="password" type="password" autocomplete="current-password" required maxlength="1024";
                (field_error(err, "reauth"))
                button type="submit" { "Restore" }
            }
        }
    };
    layout("System", "system", Some(a), take_flash(a, st), body)
}

pub async fn system(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, system_markup(&st, &a, None, &[]).await)
}

/// The config in force as a download.
pub async fn backup(PageAuth(_): PageAuth, st: St) -> Response {
    let data = st.data.clone();
    match tokio::task::spawn_blocking(move || crate::config_apply::current(&data)).await {
        Ok(Ok(text)) => {
            let name = format!("attachment; filename=\"hermes-{}.toml\"", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
            (
                [
                    (header::CONTENT_TYPE, "application/toml; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                text,
            )
                .into_response()
        }
        _ => super::pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "The configuration could not be read."),
    }
}

pub async fn restore(st: St, SessionForm(a, f): SessionForm<RestoreForm>) -> Response {
    if !reauthenticate(&st, &a.actor, &f.password).await {
        let e = OpError::invalid("reauth", "Wrong password (or too many attempts): nothing was restored.");
        return page(StatusCode::FORBIDDEN, system_markup(&st, &a, Some(&e), &[]).await);
    }
    match ops::apply_config(&st, &a.actor, Some(f.config), None).await {
        Ok(v) => {
            st.sessions.set_flash(
                &a.session_id,
                v.reload.iter().all(|r| r.ok),
                format!("Backup restored as version {}. {}.", v.version.id, v.summary()),
            );
            Redirect::to("/system").into_response()
        }
        Err(ops::ConfigApplyError::Invalid(errors)) => {
            page(StatusCode::UNPROCESSABLE_ENTITY, system_markup(&st, &a, None, &errors).await)
        }
        Err(ops::ConfigApplyError::Op(e)) => page(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            system_markup(&st, &a, Some(&e), &[]).await,
        ),
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

pub async fn firmware(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, firmware_page(&st, &a, None).await)
}

/// The Firmware page: the running version, the slots, the upload form
/// ([`super::firmware_upload`]), and `notice` (an upload's result) first.
pub(crate) async fn firmware_page(st: &St, a: &Authed, notice: Option<Markup>) -> Markup {
    let info = system_info(st).await;
    let body = html! {
        @if let Some(n) = notice { (n) }
        section.card {
            h2 { "Running version" }
            p { "Hermes " strong { (info.version) } }
            @match &info.firmware {
                Some(fw) => {
                    dl.stats {
                        dt { "Running slot version" } dd { (fw.get("running").map(json_text).unwrap_or_default()) }
                        dt { "Found by" } dd { (fw.get("running_from").map(json_text).unwrap_or_default()) }
                        dt { "Signing key" } dd { (fw.get("key_id").map(json_text).unwrap_or_else(|| "none: this build refuses every bundle".into())) }
                    }
                    h3 { "Slots (in boot order)" }
                    @match fw.get("slots").and_then(|s| s.as_array()) {
                        Some(slots) if !slots.is_empty() => {
                            table {
                                thead { tr { th scope="col" { "Slot" } th scope="col" { "Details" } } }
                                tbody {
                                    @for (i, s) in slots.iter().take(16).enumerate() {
                                        tr {
                                            td.num { (i + 1) }
                                            td { @if let Some(o) = s.as_object() { @for (k, v) in o.iter().take(20) { code { (k) } " " (json_text(v)) br; } } @else { (json_text(s)) } }
                                        }
                                    }
                                }
                            }
                        }
                        _ => { p { "No slots reported." } }
                    }
                }
                None => {
                    p { "Firmware updates apply to the appliance image: this box runs in host mode (" code { "hermes up" } "), where you update by installing a new " code { "hermes" } " binary. The supervisor of " code { "hermes up" } " installs no bundle, so an upload below is refused." }
                }
            }
        }
        (super::firmware_upload::form_markup(a))
    };
    layout("Firmware", "system", Some(a), take_flash(a, st), body)
}

// ---- disks and RAID -----------------------------------------------------------------------

use hermes_hw::api as hw;

const HW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One request to the health service (blocking client on a blocking thread).
pub async fn hw_request(st: &St, req: hw::Request) -> Result<hw::Response, OpError> {
    let path = hw::socket_path(st.data.root());
    if !path.exists() {
        return Err(OpError::Unavailable("the health service is not running".into()));
    }
    match tokio::task::spawn_blocking(move || hw::request(&path, &req, HW_TIMEOUT)).await {
        Ok(Ok(r)) if r.ok => Ok(r),
        Ok(Ok(r)) => Err(OpError::Conflict(r.error.unwrap_or_else(|| "the health service refused".into()))),
        Ok(Err(hw::ClientError::Connect { .. })) => {
            Err(OpError::Unavailable("the health service is not running".into()))
        }
        Ok(Err(e)) => Err(OpError::Unavailable(e.to_string())),
        Err(_) => Err(OpError::Internal),
    }
}

/// A bay's verdict as shown (`empty` when no disk).
pub fn verdict_label(b: &hw::Bay) -> &'static str {
    verdict_name(b)
}

fn verdict_name(b: &hw::Bay) -> &'static str {
    if !b.present {
        return "empty";
    }
    match b.verdict {
        hw::VerdictLevel::Ok => "ok",
        hw::VerdictLevel::Warning => "warning",
        hw::VerdictLevel::Failing => "failing",
        hw::VerdictLevel::Unknown => "unknown",
    }
}

/// The 16 bays as an SVG picture (4 × 4), each with its verdict as fill and as text.
pub fn bays_svg(bays: &[hw::Bay]) -> Markup {
    let n = (hw::BAYS as usize).max(bays.len());
    let cols = 4;
    let (w, h) = (180.0, 70.0);
    let rows = n.div_ceil(cols);
    let summary: Vec<String> =
        (0..n).map(|i| format!("bay {i}: {}", bays.get(i).map(verdict_name).unwrap_or("empty"))).collect();
    html! {
        svg.bays viewBox=(format!("0 0 {} {}", cols as f64 * (w + 10.0), rows as f64 * (h + 10.0))) role="img" aria-label=(format!("Disk bays. {}", summary.join("; "))) {
            title { "Disk bays" }
            @for i in 0..n {
                @let b = bays.get(i);
                @let v = b.map(verdict_name).unwrap_or("empty");
                @let (x, y) = ((i % cols) as f64 * (w + 10.0) + 5.0, (i / cols) as f64 * (h + 10.0) + 5.0);
                g {
                    rect class=(format!("bay-{v}")) x=(x) y=(y) width=(w) height=(h) rx="6" {}
                    text x=(x + 10.0) y=(y + 20.0) { "Bay " (i) " · " (v.to_uppercase()) }
                    @if let Some(b) = b.filter(|b| b.present) {
                        text x=(x + 10.0) y=(y + 40.0) { (b.device.clone().unwrap_or_default()) " " (b.capacity_bytes.map(ops::human).unwrap_or_default()) }
                        text x=(x + 10.0) y=(y + 58.0) { (b.array.as_ref().map(|m| format!("{} {:?}", m.array, m.role).to_lowercase()).unwrap_or_else(|| "no array".into())) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct DisksQuery {
    #[serde(default)]
    bay: Option<u16>,
}

pub async fn disks(PageAuth(a): PageAuth, st: St, Query(dq): Query<DisksQuery>) -> Response {
    let r = hw_request(&st, hw::Request::Status).await;
    let body = html! {
        @match &r {
            Ok(resp) => {
                @let status = resp.status.clone().unwrap_or_default();
                section.card aria-labelledby="bays-h" {
                    h2 #bays-h { "Bays" }
                    (bays_svg(&status.bays))
                    p.small { "Each bay shows its verdict in words; colours: green ok, amber warning, red (thick border) failing, grey dashed unknown, white empty. Last SMART sweep: " (if status.sampled_at > 0 { when(status.sampled_at) } else { "not yet".into() }) "." }
                    @if let Some(c) = &status.last_sweep { p.small { "The last sweep read " (c.disks) " disks in " (c.wall_ms) " ms using " (c.cpu_ms) " ms of CPU (" (format!("{:.3}", c.core_percent())) " % of a core at one sweep every " (c.interval_secs) " s)." } }
                    @if !status.bays.iter().any(|b| b.present) { p { "No disk found in any bay." } }
                    @else {
                    table {
                        thead { tr { th scope="col" { "Bay" } th scope="col" { "Verdict" } th scope="col" { "Disk" } th scope="col" { "Temp." } th scope="col" { "Array" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for b in status.bays.iter().filter(|b| b.present) {
                                tr {
                                    td.num { (b.bay) }
                                    td { span class=(format!("state bay-{}", verdict_name(b))) { (verdict_name(b)) } }
                                    td { (b.model.clone().unwrap_or_default()) " " span.small { (b.serial.clone().unwrap_or_default()) } }
                                    td.num { (b.temperature_c.map(|t| format!("{t} °C")).unwrap_or_default()) }
                                    td { (b.array.as_ref().map(|m| format!("{} ({:?})", m.array, m.role).to_lowercase()).unwrap_or_else(|| "—".into())) }
                                    td { a href=(format!("/disks?bay={}", b.bay)) { "SMART details" } }
                                }
                            }
                        }
                    }
                    }
                }
                @if let Some(b) = dq.bay.and_then(|n| status.bays.iter().find(|b| b.bay == n && b.present)) {
                    section.card aria-labelledby="smart-h" {
                        h2 #smart-h { "Bay " (b.bay) ": SMART" }
                        dl.stats {
                            dt { "Device" } dd { (b.device.clone().unwrap_or_default()) " (" (format!("{:?}", b.kind).to_lowercase()) ")" }
                            dt { "Model / serial / firmware" } dd { (b.model.clone().unwrap_or_default()) " / " (b.serial.clone().unwrap_or_default()) " / " (b.firmware.clone().unwrap_or_default()) }
                            dt { "Power-on hours" } dd { (b.power_on_hours.map(|h| h.to_string()).unwrap_or_else(|| "n/a".into())) }
                            dt { "Last self-test" } dd { (b.last_selftest.as_ref().map(|t| format!("{}: {}", t.kind, t.result)).unwrap_or_else(|| "none".into())) }
                        }
                        @if !b.reasons.is_empty() {
                            h3 { "Why" }
                            ul { @for r in &b.reasons { li { strong { (format!("{:?}", r.level).to_lowercase()) } ": " (r.message) " " code { (r.code) } } } }
                        }
                        @for (kind, label) in [("short", "Start a short self-test"), ("long", "Start a long self-test")] {
                            form.inline method="post" action="/disks/selftest" {
                                (csrf(&a))
                                input type="hidden" name="bay" value=(b.bay);
                                input type="hidden" name="kind" value=(kind);
                                button type="submit" { (label) }
                            }
                        }
                    }
                }
                section.card aria-labelledby="arrays-h" {
                    h2 #arrays-h { "Arrays" }
                    @if status.arrays.is_empty() { p { "No RAID array yet." } }
                    @for ar in &status.arrays {
                        h3 { (ar.name) " · " (ar.level) " · " (format!("{:?}", ar.state).to_lowercase()) }
                        @if let Some(p) = ar.progress_percent {
                            (super::pages::bar((p * 10.0) as u64, 1000, &format!("{} {}", ar.name, ar.sync_action)))
                            p.small { (ar.sync_action) " " (format!("{p:.1}")) " %" @if let Some(e) = ar.eta_secs { ", about " (uptime(e as i64)) " left" } }
                        }
                        p { (ar.members.len()) " members; spares in bays " (ar.spares.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")) @if let Some(m) = ar.mismatch_cnt { "; last check mismatches: " (m) } }
                        @for (action, label) in [("start", "Start a scrub"), ("stop", "Stop the scrub")] {
                            form.inline method="post" action="/disks/scrub" {
                                (csrf(&a))
                                input type="hidden" name="array" value=(ar.name);
                                input type="hidden" name="action" value=(action);
                                button type="submit" { (label) }
                            }
                        }
                    }
                }
            }
            Err(e) => { section.card { p.flash.warn role="status" { (e.to_string()) "." } } }
        }
        @if r.as_ref().is_ok_and(|resp| resp.status.as_ref().is_some_and(|s| !s.arrays.is_empty())) {
            p.muted { "The data disks are provisioned. " a href="/disks/provision" { "Provisioning" } " is refused while " code { "/data" } " is on them." }
        } @else {
            (super::system_ops::provision_section(&a, &Default::default(), None))
        }
    };
    page(StatusCode::OK, layout("Disks and RAID", "disks", Some(&a), take_flash(&a, &st), body))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SelftestForm {
    #[serde(default)]
    bay: u16,
    #[serde(default)]
    kind: String,
}

pub async fn hw_action(
    st: &St,
    actor: &crate::ops::Actor,
    req: hw::Request,
    target: String,
) -> Result<String, OpError> {
    let action = match &req {
        hw::Request::Selftest { .. } => "disk.selftest",
        hw::Request::Scrub { .. } => "disk.scrub",
        hw::Request::Provision { .. } => "disk.provision",
        hw::Request::Status => "disk.status",
    };
    let r = hw_request(st, req).await.map(|r| r.message.unwrap_or_else(|| "done".into()));
    ops::audit_result(st, actor, action, &target, r).await
}

pub async fn selftest(st: St, SessionForm(a, f): SessionForm<SelftestForm>) -> Response {
    let kind = if f.kind == "long" { hw::SelftestKind::Long } else { hw::SelftestKind::Short };
    let r = hw_action(&st, &a.actor, hw::Request::Selftest { bay: f.bay, kind }, format!("bay {}", f.bay)).await;
    match r {
        Ok(m) => st.sessions.set_flash(&a.session_id, true, m),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    Redirect::to(&format!("/disks?bay={}", f.bay)).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ScrubForm {
    #[serde(default)]
    array: String,
    #[serde(default)]
    action: String,
}

pub async fn scrub(st: St, SessionForm(a, f): SessionForm<ScrubForm>) -> Response {
    let action = if f.action == "stop" { hw::ScrubAction::Stop } else { hw::ScrubAction::Start };
    if f.array.is_empty() || f.array.len() > 32 || !f.array.bytes().all(|b| b.is_ascii_alphanumeric()) {
        st.sessions.set_flash(&a.session_id, false, "not an array name");
        return Redirect::to("/disks").into_response();
    }
    let r = hw_action(&st, &a.actor, hw::Request::Scrub { array: f.array.clone(), action }, f.array.clone()).await;
    match r {
        Ok(m) => st.sessions.set_flash(&a.session_id, true, m),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    Redirect::to("/disks").into_response()
}
