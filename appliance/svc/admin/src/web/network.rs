//! Network and time settings (`/system/network`, and the API twins under `/api/system/`):
//! per Ethernet interface DHCP or a static IPv4 address and gateway, IPv6 addresses and
//! gateway; resolvers; NTP servers; the box's clock (NTP state, "sync now", manual setting).
//!
//! Saving validates every field with `hermes_core::network`'s parser (the one init uses),
//! shows each error beside its field, writes `DATA/config/network.toml` atomically
//! (`hermes_runtime::fs::write_atomic`, like `config_apply`), audits, then asks init
//! (`{"op":"network_apply"}`) to apply it. Init rolls the change back after 120 s unless
//! `{"op":"network_confirm"}` arrives: the page shows a "Keep these settings" button with the
//! deadline. Time: `time_status`, `time_sync`, `time_set` on the same socket.
//!
//! In host mode (`hermes up`) the file is still validated and saved (it takes effect on an
//! appliance booted with this data folder), but the supervisor refuses the network and time
//! operations: the host's own network and clock are not Hermes's to manage. The page says so
//! and shows the supervisor's sentence as it is.
//!
//! What it is not: the network logic (init's `net` and `ntp`) or a way to reach anything but
//! the control socket.
//!
//! Invariants: nothing is written unless the whole file validates; every save, apply, confirm,
//! sync and manual setting is audited (`network.save`, `network.apply`, `network.confirm`,
//! `time.sync`, `time.set`), refusals too; form and JSON input are bounded (at most
//! [`MAX_INTERFACES`] interfaces, the core's limits per list).

use super::api::error_response;
use super::pages::{csrf, layout, page, take_flash, when};
use super::{ApiAuth, Authed, PageAuth, SessionForm, St};
use crate::control::{ControlError, json_request};
use crate::ops::{self, Actor, OpError};
use crate::state::AppState;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hermes_core::network::NetworkConfig;
use maud::{Markup, html};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Most interfaces a form or a JSON body may describe.
pub const MAX_INTERFACES: usize = 16;
/// Init answers an apply, a confirm, a status or a manual setting at once.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(15);
/// A sync asks up to 8 servers with 2 s each (and name resolution).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest text of init's kept for a page or the audit log.
const MAX_TEXT: usize = 4096;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// Field errors: form field (or file path, for the API) → messages.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// One control request; `Err(text)` with init's (or the supervisor's) refusal as it is.
async fn ask(st: &Arc<AppState>, request: serde_json::Value, timeout: Duration) -> Result<serde_json::Value, String> {
    match json_request(&st.data.control_socket(), &request, "supervisor", timeout).await {
        Ok(v) if v.get("ok").and_then(|o| o.as_bool()) == Some(true) => Ok(v),
        Ok(v) => Err(bounded(v.get("error").and_then(|e| e.as_str()).unwrap_or("refused without a reason"))),
        Err(ControlError::Unreachable(_)) => Err("neither init nor `hermes up` answers on the control socket".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn audit(st: &Arc<AppState>, actor: &Actor, action: &'static str, target: &str, r: Result<(), String>) -> bool {
    ops::audit_result(st, actor, action, target, r.map_err(|e| OpError::Conflict(bounded(&e)))).await.is_ok()
}

fn network_toml(st: &AppState) -> std::path::PathBuf {
    st.data.config_dir().join("network.toml")
}

/// The saved file's text (`None`: no file).
fn read_file(st: &AppState) -> Option<String> {
    std::fs::read_to_string(network_toml(st)).ok()
}

/// Splits a list field: commas, spaces or lines.
fn list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A file path from the parser (`interface[2].ipv6[0]`) → the form field it came from.
fn form_field(path: &str, index_map: &[usize]) -> String {
    if path.starts_with("dns") {
        return "dns".into();
    }
    if path.starts_with("ntp") {
        return "ntp".into();
    }
    if let Some(rest) = path.strip_prefix("interface[")
        && let Some((n, key)) = rest.split_once("].")
        && let Ok(i) = n.parse::<usize>()
    {
        let key = key.split('[').next().unwrap_or(key);
        let form = index_map.get(i).copied().unwrap_or(i);
        return format!("if{form}_{key}");
    }
    "form".into()
}

/// Parser errors (`path: message`) keyed by `key(path)`.
fn errors_by(errors: &[String], key: impl Fn(&str) -> String) -> FieldErrors {
    let mut out = FieldErrors::new();
    for e in errors {
        let (path, msg) = e.split_once(": ").unwrap_or(("", e.as_str()));
        let k = if path.is_empty() || path.contains(' ') { "form".to_string() } else { key(path) };
        out.entry(k).or_default().push(if path.contains(' ') { e.clone() } else { msg.to_string() });
    }
    out
}

/// The form's fields → the file's text, and for each `[[interface]]` the form block it came from.
pub fn form_to_toml(fields: &[(String, String)]) -> Result<(String, Vec<usize>), FieldErrors> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    let mut doc = toml::Table::new();
    let dns = list(&get("dns"));
    if !dns.is_empty() {
        doc.insert("dns".into(), toml::Value::Array(dns.into_iter().map(toml::Value::String).collect()));
    }
    let ntp = list(&get("ntp"));
    if !ntp.is_empty() {
        doc.insert("ntp".into(), toml::Value::Array(ntp.into_iter().map(toml::Value::String).collect()));
    }
    let mut errors = FieldErrors::new();
    let mut interfaces = Vec::new();
    let mut index_map = Vec::new();
    for i in 0..MAX_INTERFACES {
        let name = get(&format!("if{i}_name"));
        let static4 = get(&format!("if{i}_mode")) == "static";
        let ipv4 = get(&format!("if{i}_ipv4"));
        let gw4 = get(&format!("if{i}_gateway4"));
        let ipv6 = list(&get(&format!("if{i}_ipv6")));
        let gw6 = get(&format!("if{i}_gateway6"));
        if name.is_empty() {
            if !ipv4.is_empty() || !ipv6.is_empty() || !gw4.is_empty() || !gw6.is_empty() {
                errors.entry(format!("if{i}_name")).or_default().push("name the interface (e.g. eth1)".into());
            }
            continue;
        }
        if static4 && ipv4.is_empty() {
            errors.entry(format!("if{i}_ipv4")).or_default().push("a static address needs address/prefix".into());
        }
        // An interface on DHCP without IPv6 settings needs no entry: DHCP is the default.
        if !static4 && ipv6.is_empty() && gw6.is_empty() {
            if !gw4.is_empty() {
                errors.entry(format!("if{i}_gateway4")).or_default().push("DHCP brings its own router".into());
            }
            continue;
        }
        let mut t = toml::Table::new();
        t.insert("name".into(), toml::Value::String(name));
        if static4 && !ipv4.is_empty() {
            t.insert("ipv4".into(), toml::Value::String(ipv4));
        }
        if static4 && !gw4.is_empty() {
            t.insert("gateway4".into(), toml::Value::String(gw4));
        } else if !gw4.is_empty() {
            errors.entry(format!("if{i}_gateway4")).or_default().push("DHCP brings its own router".into());
        }
        if !ipv6.is_empty() {
            t.insert("ipv6".into(), toml::Value::Array(ipv6.into_iter().map(toml::Value::String).collect()));
        }
        if !gw6.is_empty() {
            t.insert("gateway6".into(), toml::Value::String(gw6));
        }
        interfaces.push(toml::Value::Table(t));
        index_map.push(i);
    }
    if !interfaces.is_empty() {
        doc.insert("interface".into(), toml::Value::Array(interfaces));
    }
    let text = toml::to_string(&doc).unwrap_or_default();
    if let Err(parse_errors) = NetworkConfig::parse(&text) {
        for (k, v) in errors_by(&parse_errors, |p| form_field(p, &index_map)) {
            errors.entry(k).or_default().extend(v);
        }
    }
    if errors.is_empty() { Ok((text, index_map)) } else { Err(errors) }
}

/// What a save did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saved {
    /// The file as written.
    pub text: String,
    /// Init's answer to `network_apply` (`changes`, `confirm_before`), if it applied it.
    pub applied: Option<serde_json::Value>,
    /// Why it was not applied (host mode: the supervisor's sentence).
    pub not_applied: Option<String>,
}

/// Validates `text`, writes it, audits, asks init to apply it. `Err` with field errors (keyed
/// by `key`) when invalid, or an operation error.
pub async fn save(
    st: &Arc<AppState>,
    actor: &Actor,
    text: &str,
    key: impl Fn(&str) -> String,
) -> Result<Saved, Result<FieldErrors, OpError>> {
    let cfg = match NetworkConfig::parse(text) {
        Ok(c) => c,
        Err(errors) => {
            let _ = audit(st, actor, "network.save", "network.toml", Err(errors.join("; "))).await;
            return Err(Ok(errors_by(&errors, key)));
        }
    };
    let canonical = cfg.to_toml();
    let path = network_toml(st);
    let bytes = canonical.clone();
    let written = tokio::task::spawn_blocking(move || hermes_runtime::fs::write_atomic(&path, bytes.as_bytes(), 0o600))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = &written {
        tracing::error!(error = %e, "cannot write network.toml");
        let _ = audit(st, actor, "network.save", "network.toml", Err("the file could not be written".into())).await;
        return Err(Err(OpError::Internal));
    }
    if !audit(st, actor, "network.save", "network.toml", Ok(())).await {
        return Err(Err(OpError::Internal));
    }
    let r = ask(st, json!({"op": "network_apply"}), QUICK_TIMEOUT).await;
    let _ = audit(st, actor, "network.apply", "network.toml", r.as_ref().map(|_| ()).map_err(|e| e.clone())).await;
    Ok(match r {
        Ok(v) => Saved { text: canonical, applied: Some(v), not_applied: None },
        Err(e) => Saved { text: canonical, applied: None, not_applied: Some(e) },
    })
}

async fn confirm(st: &Arc<AppState>, actor: &Actor) -> Result<(), String> {
    let r = ask(st, json!({"op": "network_confirm"}), QUICK_TIMEOUT).await.map(|_| ());
    let _ = audit(st, actor, "network.confirm", "network.toml", r.clone()).await;
    r
}

async fn time_sync(st: &Arc<AppState>, actor: &Actor) -> Result<serde_json::Value, String> {
    let r = ask(st, json!({"op": "time_sync"}), SYNC_TIMEOUT).await;
    let _ = audit(st, actor, "time.sync", "", r.as_ref().map(|_| ()).map_err(|e| e.clone())).await;
    r
}

/// Earliest and latest manual time (as init: 2020 to 2100).
const MANUAL_RANGE: std::ops::Range<i64> = 1_577_836_800..4_102_444_800;

async fn time_set(st: &Arc<AppState>, actor: &Actor, unix: i64) -> Result<serde_json::Value, OpError> {
    if !MANUAL_RANGE.contains(&unix) {
        let e = OpError::invalid("unix", "a time between 2020 and 2100 (UTC)");
        return ops::audit_result(st, actor, "time.set", &unix.to_string(), Err(e)).await;
    }
    let r = ask(st, json!({"op": "time_set", "unix": unix}), QUICK_TIMEOUT).await;
    let _ = audit(st, actor, "time.set", &unix.to_string(), r.as_ref().map(|_| ()).map_err(|e| e.clone())).await;
    r.map_err(OpError::Conflict)
}

// ---- the page -----------------------------------------------------------------------------

#[derive(Debug)]
struct View {
    /// `network_status`'s `network`, or the refusal.
    status: Result<serde_json::Value, String>,
    time: Result<serde_json::Value, String>,
    /// Form values to show again after an error.
    values: Option<Vec<(String, String)>>,
    errors: FieldErrors,
    saved: Option<Saved>,
    notice: Option<(bool, String)>,
}

async fn load(st: &Arc<AppState>) -> (Result<serde_json::Value, String>, Result<serde_json::Value, String>) {
    let status = ask(st, json!({"op": "network_status"}), QUICK_TIMEOUT).await.map(|v| v["network"].clone());
    let time = ask(st, json!({"op": "time_status"}), QUICK_TIMEOUT).await.map(|v| v["time"].clone());
    (status, time)
}

fn err_markup(errors: &FieldErrors, field: &str) -> Markup {
    html! {
        @if let Some(list) = errors.get(field) {
            span.error id=(format!("{field}-error")) { (list.join("; ")) }
        }
    }
}

/// The form's initial values from the saved file and init's interface list.
fn initial_values(cfg: &NetworkConfig, names: &[String]) -> Vec<(String, String)> {
    let mut v = vec![
        ("dns".to_string(), cfg.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        ("ntp".to_string(), cfg.ntp.join(", ")),
    ];
    let mut all: Vec<String> = names.to_vec();
    for i in &cfg.interfaces {
        if !all.contains(&i.name) {
            all.push(i.name.clone());
        }
    }
    for (n, name) in all.iter().enumerate().take(MAX_INTERFACES - 1) {
        let c = cfg.interfaces.iter().find(|i| &i.name == name);
        let f = |k: &str| format!("if{n}_{k}");
        v.push((f("name"), name.clone()));
        v.push((f("mode"), if c.is_some_and(|c| c.ipv4.is_some()) { "static" } else { "dhcp" }.into()));
        v.push((f("ipv4"), c.and_then(|c| c.ipv4.clone()).unwrap_or_default()));
        v.push((f("gateway4"), c.and_then(|c| c.gateway4).map(|g| g.to_string()).unwrap_or_default()));
        v.push((f("ipv6"), c.map(|c| c.ipv6.join("\n")).unwrap_or_default()));
        v.push((f("gateway6"), c.and_then(|c| c.gateway6).map(|g| g.to_string()).unwrap_or_default()));
    }
    v
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn markup(st: &St, a: &Authed, view: &View) -> Markup {
    let file_text = read_file(st);
    let file_cfg = file_text.as_deref().and_then(|t| NetworkConfig::parse(t).ok()).unwrap_or_default();
    let file_invalid = file_text.as_deref().and_then(|t| NetworkConfig::parse(t).err());
    let names: Vec<String> = view
        .status
        .as_ref()
        .ok()
        .and_then(|s| s["interfaces"].as_array())
        .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let values = view.values.clone().unwrap_or_else(|| initial_values(&file_cfg, &names));
    let val = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let blocks = (0..MAX_INTERFACES).filter(|i| !val(&format!("if{i}_name")).is_empty()).count().max(1);
    let blocks = (blocks + 1).min(MAX_INTERFACES); // one spare block for another interface
    let pending = view.status.as_ref().ok().and_then(|s| s["pending"]["confirm_before"].as_i64());
    let deadline = view.saved.as_ref().and_then(|s| s.applied.as_ref()).and_then(|v| v["confirm_before"].as_i64());
    let confirm_before = deadline.or(pending);
    html! {
        @if let Some((ok, text)) = &view.notice {
            p class=(if *ok { "flash ok" } else { "flash err" }) role="status" { (text) }
        }
        @if let Some(s) = &view.saved {
            section.card aria-labelledby="saved-h" {
                h2 #saved-h { "Saved" }
                p { "network.toml was written." }
                @if let Some(v) = &s.applied {
                    p { "Init applied it:" }
                    ul { @for c in v["changes"].as_array().cloned().unwrap_or_default() { li { (text_of(&c)) } } }
                }
                @if let Some(e) = &s.not_applied {
                    p.flash.err role="alert" id="not-applied" { "Not applied: " (e) }
                    p.muted { "It takes effect when the appliance applies it (at its next boot, or here once init manages this box's network)." }
                }
            }
        }
        @if let Some(t) = confirm_before {
            section.card aria-labelledby="confirm-h" {
                h2 #confirm-h { "Keep these settings?" }
                p { "The new network settings are in force. Unless you confirm before " strong { (when(t)) } " (" ((t - chrono::Utc::now().timestamp()).max(0)) " s), the box goes back to the previous ones on its own. If this page reached you over the new settings, they work." }
                form method="post" action="/system/network/confirm" {
                    (csrf(a))
                    button type="submit" { "Keep these settings" }
                }
            }
        }
        section.card aria-labelledby="now-h" {
            h2 #now-h { "Network now" }
            @match &view.status {
                Ok(s) => {
                    table {
                        thead { tr { th { "Interface" } th { "MAC" } th { "Link" } th { "Mode" } th { "Addresses" } th { "Gateways" } } }
                        tbody {
                            @for i in s["interfaces"].as_array().cloned().unwrap_or_default() {
                                tr {
                                    td { (text_of(&i["name"])) }
                                    td { code { (text_of(&i["mac"])) } }
                                    td { (text_of(&i["link"])) }
                                    td { (text_of(&i["mode"])) }
                                    td { @for ad in i["addresses"].as_array().cloned().unwrap_or_default() {
                                        code { (text_of(&ad["address"])) "/" (text_of(&ad["prefix"])) } " (" (text_of(&ad["origin"])) ") "
                                    } }
                                    td { @for g in i["gateways"].as_array().cloned().unwrap_or_default() { code { (text_of(&g)) } " " } }
                                }
                            }
                        }
                    }
                    p { "DNS: " @for d in s["dns"].as_array().cloned().unwrap_or_default() { code { (text_of(&d)) } " " } }
                }
                Err(e) => {
                    p.flash.err role="alert" id="network-refused" { (e) }
                    p.muted { "Host mode (" code { "hermes up" } "): the host's own network is not managed by Hermes. The settings below are still checked and saved to " code { "config/network.toml" } " for the appliance." }
                }
            }
        }
        section.card aria-labelledby="net-h" {
            h2 #net-h { "Network settings" }
            @if let Some(errs) = &file_invalid {
                p.flash.err role="alert" { "The saved network.toml is invalid (init uses DHCP): " (errs.join("; ")) }
            }
            form method="post" action="/system/network" {
                (csrf(a))
                @if let Some(list) = view.errors.get("form") { p.flash.err role="alert" { (list.join("; ")) } }
                @if !view.errors.is_empty() { p.flash.err role="alert" id="network-errors" { "Nothing was saved: correct the fields marked below." } }
                @for i in 0..blocks {
                    @let f = |k: &str| format!("if{i}_{k}");
                    @let known = !val(&f("name")).is_empty();
                    fieldset {
                        legend { @if known { "Interface " (val(&f("name"))) } @else { "Another interface" } }
                        label for=(f("name")) { "Name" }
                        input id=(f("name")) name=(f("name")) value=(val(&f("name"))) maxlength="15" placeholder="eth1";
                        (err_markup(&view.errors, &f("name")))
                        p {
                            label { input type="radio" name=(f("mode")) value="dhcp" checked[val(&f("mode")) != "static"]; " DHCP (IPv4)" }
                            " "
                            label { input type="radio" name=(f("mode")) value="static" checked[val(&f("mode")) == "static"]; " Static IPv4" }
                        }
                        label for=(f("ipv4")) { "IPv4 address/prefix (static)" }
                        input id=(f("ipv4")) name=(f("ipv4")) value=(val(&f("ipv4"))) maxlength="64" placeholder="192.0.2.10/24";
                        (err_markup(&view.errors, &f("ipv4")))
                        label for=(f("gateway4")) { "IPv4 gateway (static)" }
                        input id=(f("gateway4")) name=(f("gateway4")) value=(val(&f("gateway4"))) maxlength="64" placeholder="192.0.2.1";
                        (err_markup(&view.errors, &f("gateway4")))
                        label for=(f("ipv6")) { "IPv6 addresses/prefix, one per line (SLAAC needs none)" }
                        textarea id=(f("ipv6")) name=(f("ipv6")) rows="2" maxlength="2048" placeholder="2001:db8::10/64" { (val(&f("ipv6"))) }
                        (err_markup(&view.errors, &f("ipv6")))
                        label for=(f("gateway6")) { "IPv6 gateway" }
                        input id=(f("gateway6")) name=(f("gateway6")) value=(val(&f("gateway6"))) maxlength="64" placeholder="2001:db8::1";
                        (err_markup(&view.errors, &f("gateway6")))
                    }
                }
                label for="dns" { "DNS servers (comma or space separated; empty: the DHCP lease's)" }
                input #dns name="dns" value=(val("dns")) maxlength="1024" placeholder="192.0.2.53, 2001:db8::53";
                (err_markup(&view.errors, "dns"))
                label for="ntp" { "NTP servers (host or host:port; empty: the DHCP lease's)" }
                input #ntp name="ntp" value=(val("ntp")) maxlength="1024" placeholder="192.0.2.123, ntp.example.net";
                (err_markup(&view.errors, "ntp"))
                button type="submit" { "Save and apply" }
                p.muted { "On the appliance the new settings apply at once and are rolled back after 120 s unless you press \u{201c}Keep these settings\u{201d}." }
            }
        }
        (time_markup(a, &view.time))
    }
}

fn time_markup(a: &Authed, time: &Result<serde_json::Value, String>) -> Markup {
    let now = chrono::Utc::now();
    html! {
        section.card aria-labelledby="time-h" {
            h2 #time-h { "Time" }
            dl.stats {
                dt { "Box time (UTC)" } dd #box-time { (now.format("%Y-%m-%d %H:%M:%S UTC")) }
            }
            @match time {
                Ok(t) => {
                    dl.stats {
                        dt { "NTP servers" } dd { @if t["servers"].as_array().is_some_and(|s| !s.is_empty()) { (t["servers"].as_array().cloned().unwrap_or_default().iter().map(text_of).collect::<Vec<_>>().join(", ")) " (from " (text_of(&t["source"])) ")" } @else { "none" } }
                        dt { "Last synchronised" } dd { @if let Some(s) = t["last_sync"].as_i64() { (when(s)) " with " (text_of(&t["server"])) } @else { "never" } }
                        dt { "Offset / delay" } dd { (text_of(&t["offset_ms"])) " ms / " (text_of(&t["delay_ms"])) " ms, stratum " (text_of(&t["stratum"])) }
                        @if let Some(e) = t["error"].as_str() { dt { "Last error" } dd.level-error { (e) } }
                    }
                    form method="post" action="/system/time/sync" {
                        (csrf(a))
                        button type="submit" { "Sync now" }
                    }
                    @if t["manual_allowed"].as_bool() == Some(true) {
                        form method="post" action="/system/time" {
                            (csrf(a))
                            label for="time-set" { "Set the clock by hand (UTC; only while no NTP server is configured)" }
                            input #time-set name="utc" type="datetime-local" step="1" required value=(now.format("%Y-%m-%dT%H:%M:%S"));
                            button type="submit" { "Set" }
                        }
                    }
                }
                Err(e) => {
                    p.flash.err role="alert" id="time-refused" { (e) }
                    p.muted { "In host mode the host's clock is its own (systemd-timesyncd, chrony, ...); Hermes does not set it." }
                }
            }
        }
    }
}

async fn render(st: &St, a: &Authed, mut view: View, status: StatusCode) -> Response {
    let (s, t) = load(st).await;
    view.status = s;
    view.time = t;
    let body = markup(st, a, &view);
    page(status, layout("Network and time", "system", Some(a), take_flash(a, st), body))
}

fn fresh() -> View {
    View {
        status: Err(String::new()),
        time: Err(String::new()),
        values: None,
        errors: FieldErrors::new(),
        saved: None,
        notice: None,
    }
}

pub async fn network_page(PageAuth(a): PageAuth, st: St) -> Response {
    render(&st, &a, fresh(), StatusCode::OK).await
}

pub async fn network_submit(st: St, SessionForm(a, f): SessionForm<Vec<(String, String)>>) -> Response {
    let (text, index_map) = match form_to_toml(&f) {
        Ok(x) => x,
        Err(errors) => {
            let _ =
                audit(&st, &a.actor, "network.save", "network.toml", Err(format!("{} invalid fields", errors.len())))
                    .await;
            let view = View { values: Some(f), errors, ..fresh() };
            return render(&st, &a, view, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match save(&st, &a.actor, &text, |p| form_field(p, &index_map)).await {
        Ok(saved) => render(&st, &a, View { saved: Some(saved), ..fresh() }, StatusCode::OK).await,
        Err(Ok(errors)) => {
            render(&st, &a, View { values: Some(f), errors, ..fresh() }, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(Err(e)) => {
            let view = View { values: Some(f), notice: Some((false, e.to_string())), ..fresh() };
            render(&st, &a, view, StatusCode::INTERNAL_SERVER_ERROR).await
        }
    }
}

pub async fn confirm_submit(st: St, SessionForm(a, _): SessionForm<serde::de::IgnoredAny>) -> Response {
    match confirm(&st, &a.actor).await {
        Ok(()) => {
            st.sessions.set_flash(&a.session_id, true, "The new network settings are kept.".to_string());
            Redirect::to("/system/network").into_response()
        }
        Err(e) => render(&st, &a, View { notice: Some((false, e)), ..fresh() }, StatusCode::CONFLICT).await,
    }
}

pub async fn time_sync_submit(st: St, SessionForm(a, _): SessionForm<serde::de::IgnoredAny>) -> Response {
    match time_sync(&st, &a.actor).await {
        Ok(v) => {
            let t = &v["time"];
            let text = format!(
                "Synchronised with {} (offset {} ms, {}).",
                text_of(&t["server"]),
                text_of(&t["offset_ms"]),
                text_of(&t["action"])
            );
            render(&st, &a, View { notice: Some((true, text)), ..fresh() }, StatusCode::OK).await
        }
        Err(e) => {
            render(
                &st,
                &a,
                View { notice: Some((false, format!("Not synchronised: {e}"))), ..fresh() },
                StatusCode::CONFLICT,
            )
            .await
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct TimeForm {
    #[serde(default)]
    utc: String,
}

/// `2026-11-29T03:04` or `2026-11-29T03:04:05` (a datetime-local field, read as UTC).
pub fn parse_utc(text: &str) -> Option<i64> {
    let t = text.trim();
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
        .map(|d| d.and_utc().timestamp())
}

pub async fn time_set_submit(st: St, SessionForm(a, f): SessionForm<TimeForm>) -> Response {
    let Some(unix) = parse_utc(&f.utc) else {
        let view = View { notice: Some((false, "Give the time as YYYY-MM-DD HH:MM:SS (UTC).".into())), ..fresh() };
        return render(&st, &a, view, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    match time_set(&st, &a.actor, unix).await {
        Ok(_) => {
            render(
                &st,
                &a,
                View { notice: Some((true, format!("The clock was set to {}.", when(unix)))), ..fresh() },
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT);
            render(&st, &a, View { notice: Some((false, format!("Not set: {e}"))), ..fresh() }, code).await
        }
    }
}

// ---- the API ------------------------------------------------------------------------------

fn refused(e: &str) -> Response {
    error_response(StatusCode::CONFLICT, e, None)
}

/// `GET /api/system/network`: the saved file (text and parsed), and init's view of the network.
pub async fn api_get(ApiAuth(_): ApiAuth, st: St) -> Response {
    let text = read_file(&st);
    let parsed = text.as_deref().map(NetworkConfig::parse);
    let (status, _) = load(&st).await;
    Json(json!({
        "text": text,
        "config": parsed.as_ref().and_then(|p| p.as_ref().ok()),
        "errors": parsed.as_ref().and_then(|p| p.as_ref().err()),
        "status": status.as_ref().ok(),
        "status_error": status.as_ref().err(),
    }))
    .into_response()
}

/// `PUT /api/system/network`: the file's content as JSON (`dns`, `ntp`, `interface`: the keys
/// of network.toml). 422 with `errors` (`field` = the file path, `message`) when invalid.
pub async fn api_put(ApiAuth(actor): ApiAuth, st: St, body: axum::body::Bytes) -> Response {
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return error_response(StatusCode::BAD_REQUEST, "the body must be a JSON object", None),
    };
    if value["interface"].as_array().is_some_and(|a| a.len() > MAX_INTERFACES) {
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, "too many interfaces", Some("interface"));
    }
    let text = match toml::Value::try_from(&value).map(|v| toml::to_string(&v)) {
        Ok(Ok(t)) => t,
        _ => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body does not map to network.toml (no nulls)",
                None,
            );
        }
    };
    match save(&st, &actor, &text, |p| p.to_string()).await {
        Ok(saved) => Json(json!({
            "saved": true,
            "text": saved.text,
            "applied": saved.applied.is_some(),
            "changes": saved.applied.as_ref().map(|v| v["changes"].clone()),
            "confirm_before": saved.applied.as_ref().map(|v| v["confirm_before"].clone()),
            "not_applied": saved.not_applied,
        }))
        .into_response(),
        Err(Ok(errors)) => {
            let list: Vec<serde_json::Value> =
                errors.iter().flat_map(|(f, ms)| ms.iter().map(move |m| json!({"field": f, "message": m}))).collect();
            let first = errors.keys().next().cloned();
            let mut r = json!({"error": "invalid network settings; nothing was saved", "errors": list});
            if let Some(f) = first {
                r["field"] = json!(f);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, Json(r)).into_response()
        }
        Err(Err(e)) => error_response(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.to_string(),
            None,
        ),
    }
}

/// `POST /api/system/network/confirm`.
pub async fn api_confirm(ApiAuth(actor): ApiAuth, st: St) -> Response {
    match confirm(&st, &actor).await {
        Ok(()) => Json(json!({"confirmed": true})).into_response(),
        Err(e) => refused(&e),
    }
}

/// `GET /api/system/time`.
pub async fn api_time(ApiAuth(_): ApiAuth, st: St) -> Response {
    match ask(&st, json!({"op": "time_status"}), QUICK_TIMEOUT).await {
        Ok(v) => Json(v["time"].clone()).into_response(),
        Err(e) => refused(&e),
    }
}

/// `POST /api/system/time/sync`.
pub async fn api_time_sync(ApiAuth(actor): ApiAuth, st: St) -> Response {
    match time_sync(&st, &actor).await {
        Ok(v) => Json(v["time"].clone()).into_response(),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct TimeBody {
    unix: i64,
}

/// `PUT /api/system/time` with `{"unix": N}`.
pub async fn api_time_set(ApiAuth(actor): ApiAuth, st: St, body: axum::body::Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<TimeBody>(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "the body must be {\"unix\": seconds}", Some("unix"));
    };
    match time_set(&st, &actor, b.unix).await {
        Ok(v) => Json(v["time"].clone()).into_response(),
        Err(e) => {
            error_response(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT), &e.to_string(), e.field())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_form_becomes_the_file_and_errors_land_on_their_fields() {
        let (text, map) = form_to_toml(&f(&[
            ("dns", "192.0.2.53, 2001:db8::53"),
            ("ntp", "192.0.2.123 ntp.example.net:1123"),
            ("if0_name", "eth0"),
            ("if0_mode", "dhcp"),
            ("if1_name", "eth1"),
            ("if1_mode", "static"),
            ("if1_ipv4", "192.0.2.10/24"),
            ("if1_gateway4", "192.0.2.1"),
            ("if1_ipv6", "2001:db8::10/64\r\n2001:db8::11/64"),
        ]))
        .unwrap();
        assert_eq!(map, vec![1], "eth0 on DHCP needs no entry");
        let c = NetworkConfig::parse(&text).unwrap();
        assert_eq!(c.dns.len(), 2);
        assert_eq!(c.ntp, vec!["192.0.2.123", "ntp.example.net:1123"]);
        assert_eq!(c.interfaces[0].name, "eth1");
        assert_eq!(c.interfaces[0].ipv6.len(), 2);

        let errors = form_to_toml(&f(&[
            ("dns", "nope"),
            ("ntp", "bad host!"),
            ("if0_name", "eth0"),
            ("if0_mode", "static"),
            ("if0_ipv4", "192.0.2.300/24"),
            ("if1_name", "eth1"),
            ("if1_mode", "dhcp"),
            ("if1_ipv6", "2001:db8::1"),
            ("if2_name", ""),
            ("if2_ipv4", "192.0.2.5/24"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(keys, ["dns", "if0_ipv4", "if1_ipv6", "if2_name", "ntp"], "{errors:?}");
    }

    #[test]
    fn utc_times_parse() {
        assert_eq!(parse_utc("2026-11-29T03:04:05"), Some(1_795_921_445));
        assert_eq!(parse_utc("2026-11-29T03:04"), Some(1_795_921_440));
        assert_eq!(parse_utc("yesterday"), None);
    }
}
