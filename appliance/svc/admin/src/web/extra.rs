//! The pages added after the first set: routes and relay, the queue. Same rules as
//! [`super::pages`]: server-rendered, no JavaScript, every form with its CSRF token, the
//! shared operations in [`crate::ops`] / [`crate::queue`], errors beside their fields.

use super::pages::{csrf, layout, page, reload_markup, seg, take_flash, when};
use super::{Authed, PageAuth, SessionForm, St};
use crate::ops::{self, OpError, SettingsError};
use crate::settings::{FieldErrors, RelayInput, RouteInput, RouteView};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

/// An error from a per-field form beside its field.
fn ferr(errs: Option<&FieldErrors>, field: &str) -> Markup {
    html! {
        @if let Some(m) = errs.and_then(|e| e.get(field)) {
            span.error id=(format!("{field}-error")) { (m) }
        }
    }
}

fn described(errs: Option<&FieldErrors>, field: &str) -> Option<String> {
    errs.and_then(|e| e.get(field)).map(|_| format!("{field}-error"))
}

/// The outcome of a settings form that failed as a whole (not a single field).
fn settings_other(e: Option<&SettingsError>) -> Markup {
    html! {
        @match e {
            Some(SettingsError::Config(list)) => {
                div.flash.err role="alert" {
                    p { "The resulting configuration is invalid; nothing was changed:" }
                    ul { @for c in list { li { code { (c.path) } ": " (c.message) } } }
                }
            }
            Some(SettingsError::Op(e)) => { p.flash.err role="alert" { (e.to_string()) } }
            _ => {}
        }
    }
}

fn applied_flash(st: &St, a: &Authed, what: &str, v: &ops::Applied) {
    st.sessions.set_flash(
        &a.session_id,
        v.reload.iter().all(|r| r.ok),
        format!("{what} Version {} applied. {}.", v.version.id, v.summary()),
    );
}

// ---- routes and relay ---------------------------------------------------------------------

/// The route form as the browser sends it (hosts as text, the checkbox present or absent).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RouteForm {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    tls: String,
    #[serde(default)]
    auth_user: String,
    #[serde(default)]
    auth_password: String,
    #[serde(default)]
    verify_recipients: Option<String>,
}

impl RouteForm {
    fn input(&self) -> RouteInput {
        RouteInput {
            domain: self.domain.clone(),
            hosts: crate::settings::split_list(&self.hosts),
            tls: self.tls.clone(),
            auth_user: self.auth_user.clone(),
            auth_password: self.auth_password.clone(),
            verify_recipients: self.verify_recipients.is_some(),
        }
    }
    fn from_view(r: &RouteView) -> RouteForm {
        RouteForm {
            domain: r.domain.clone(),
            hosts: r.hosts.join("\n"),
            tls: r.tls.clone(),
            auth_user: r.auth_user.clone().unwrap_or_default(),
            auth_password: String::new(),
            verify_recipients: r.verify_recipients.then(|| "1".into()),
        }
    }
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RelayForm {
    #[serde(default)]
    relay_networks: String,
    #[serde(default)]
    max_message_bytes: String,
    #[serde(default)]
    max_recipients_mx: String,
    #[serde(default)]
    max_recipients_submission: String,
    #[serde(default)]
    max_connections_per_ip: String,
}

impl RelayForm {
    fn input(&self) -> RelayInput {
        RelayInput {
            relay_networks: crate::settings::split_list(&self.relay_networks),
            max_message_bytes: self.max_message_bytes.clone(),
            max_recipients_mx: self.max_recipients_mx.clone(),
            max_recipients_submission: self.max_recipients_submission.clone(),
            max_connections_per_ip: self.max_connections_per_ip.clone(),
        }
    }
}

/// Which form failed (so its values and errors are shown back) and how.
enum RoutesState<'a> {
    Fresh,
    Route(&'a RouteForm, &'a SettingsError),
    Relay(&'a RelayForm, &'a SettingsError),
}

fn route_form(
    a: &Authed,
    f: &RouteForm,
    errs: Option<&FieldErrors>,
    other: Option<&SettingsError>,
    edit: bool,
) -> Markup {
    let tls = if f.tls.is_empty() { "opportunistic" } else { f.tls.as_str() };
    html! {
        form method="post" action="/routes" {
            (csrf(a))
            (settings_other(other))
            label for="domain" { "Domain" }
            input #domain name="domain" type="text" required maxlength="253" value=(f.domain) placeholder="physics.example.edu"
                readonly[edit] aria-describedby=[described(errs, "domain")];
            (ferr(errs, "domain"))
            label for="hosts" { "Servers (host:port, one per line, tried in order)" }
            textarea #hosts name="hosts" rows="3" required maxlength="4000" aria-describedby=[described(errs, "hosts")] { (f.hosts) }
            (ferr(errs, "hosts"))
            label for="tls" { "TLS" }
            select #tls name="tls" aria-describedby=[described(errs, "tls")] {
                option value="required" selected[tls == "required"] { "required (refuse to send in clear)" }
                option value="opportunistic" selected[tls == "opportunistic"] { "opportunistic (STARTTLS when offered)" }
                option value="none" selected[tls == "none"] { "none" }
            }
            (ferr(errs, "tls"))
            div.row {
                div {
                    label for="auth_user" { "AUTH user (optional)" }
                    input #auth_user name="auth_user" type="text" maxlength="320" value=(f.auth_user) autocomplete="off" aria-describedby=[described(errs, "auth_user")];
                    (ferr(errs, "auth_user"))
                }
                div {
                    label for="auth_password" { "AUTH password" @if edit { " (empty: keep)" } }
                    input #auth_password name="auth_password" type="password" maxlength="1024" autocomplete="new-password" aria-describedby=[described(errs, "auth_password")];
                    (ferr(errs, "auth_password"))
                }
            }
            label.check for="verify_recipients" {
                input #verify_recipients name="verify_recipients" type="checkbox" value="1" checked[f.verify_recipients.is_some()];
                " check recipients with the server at RCPT time (callout)"
            }
            button type="submit" { @if edit { "Save route" } @else { "Add route" } }
        }
    }
}

async fn routes_markup(st: &St, a: &Authed, state: RoutesState<'_>) -> Markup {
    let settings = ops::read_settings(st).await;
    let domains: Vec<String> =
        ops::list_domains(st).await.map(|d| d.into_iter().map(|x| x.domain).collect()).unwrap_or_default();
    let fresh_route = RouteForm { verify_recipients: Some("1".into()), ..Default::default() };
    let (rf, route_errs, route_other) = match &state {
        RoutesState::Route(f, SettingsError::Fields(e)) => (*f, Some(e), None),
        RoutesState::Route(f, e) => (*f, None, Some(*e)),
        _ => (&fresh_route, None, None),
    };
    let relay_from_settings = settings.as_ref().ok().map(|(_, r)| RelayForm {
        relay_networks: r.relay_networks.join("\n"),
        max_message_bytes: ops::format_size(r.max_message_bytes),
        max_recipients_mx: r.max_recipients_mx.to_string(),
        max_recipients_submission: r.max_recipients_submission.to_string(),
        max_connections_per_ip: r.max_connections_per_ip.to_string(),
    });
    let (lf, relay_errs, relay_other) = match (&state, &relay_from_settings) {
        (RoutesState::Relay(f, SettingsError::Fields(e)), _) => ((*f).clone(), Some(e), None),
        (RoutesState::Relay(f, e), _) => ((*f).clone(), None, Some(*e)),
        (_, Some(r)) => (r.clone(), None, None),
        (_, None) => (RelayForm::default(), None, None),
    };
    let body = html! {
        p.muted { "Each change is validated, written as a new config version (see Config for the history and rollback) and reloaded by the router at once: sessions in progress keep their settings, new ones get the new." }
        section.card aria-labelledby="routes-h" {
            h2 #routes-h { "Departmental routes" }
            p.muted { "Mail for a routed domain is relayed to its servers. A routed domain that also has accounts here is a " strong { "split domain" } ": addresses with an account (or alias) here are delivered here, the rest go to the route." }
            @match &settings {
                Ok((routes, _)) if routes.is_empty() => { p { "No routes: all mail for local domains is delivered here." } }
                Ok((routes, _)) => {
                    table {
                        thead { tr { th scope="col" { "Domain" } th scope="col" { "Servers" } th scope="col" { "TLS" } th scope="col" { "AUTH" } th scope="col" { "Kind" } th scope="col" { span.sr { "Actions" } } } }
                        tbody {
                            @for r in routes {
                                tr {
                                    td { (r.domain) }
                                    td { @for h in &r.hosts { code { (h) } br; } }
                                    td { (r.tls) }
                                    td { (r.auth_user.clone().unwrap_or_else(|| "—".into())) }
                                    td { @if domains.contains(&r.domain) { "split (local accounts first)" } @else { "relayed" } @if r.verify_recipients { br; span.small { "recipients verified" } } }
                                    td {
                                        a href=(format!("/routes/{}", seg(&r.domain))) aria-label=(format!("Edit route {}", r.domain)) { "Edit" }
                                        form method="post" action=(format!("/routes/{}/delete", seg(&r.domain))) {
                                            (csrf(a))
                                            button.link type="submit" aria-label=(format!("Delete route {}", r.domain)) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => { p.flash.err { (e.to_string()) } }
            }
            h3 { "Add a route" }
            (route_form(a, rf, route_errs, route_other, false))
        }
        section.card aria-labelledby="relay-h" {
            h2 #relay-h { "Relay networks and limits" }
            form method="post" action="/relay" {
                (csrf(a))
                (settings_other(relay_other))
                label for="relay_networks" { "Networks allowed to relay without AUTH (CIDR, one per line)" }
                textarea #relay_networks name="relay_networks" rows="4" maxlength="60000" placeholder="192.0.2.0/24" aria-describedby=[described(relay_errs, "relay_networks")] { (lf.relay_networks) }
                (ferr(relay_errs, "relay_networks"))
                div.row {
                    div {
                        label for="max_message_bytes" { "Largest message (e.g. 50M)" }
                        input #max_message_bytes name="max_message_bytes" type="text" required maxlength="24" value=(lf.max_message_bytes) aria-describedby=[described(relay_errs, "max_message_bytes")];
                        (ferr(relay_errs, "max_message_bytes"))
                    }
                    div {
                        label for="max_connections_per_ip" { "SMTP connections per client address" }
                        input #max_connections_per_ip name="max_connections_per_ip" type="text" inputmode="numeric" required maxlength="8" value=(lf.max_connections_per_ip) aria-describedby=[described(relay_errs, "max_connections_per_ip")];
                        (ferr(relay_errs, "max_connections_per_ip"))
                    }
                }
                div.row {
                    div {
                        label for="max_recipients_mx" { "Recipients per message from outside (MX)" }
                        input #max_recipients_mx name="max_recipients_mx" type="text" inputmode="numeric" required maxlength="8" value=(lf.max_recipients_mx) aria-describedby=[described(relay_errs, "max_recipients_mx")];
                        (ferr(relay_errs, "max_recipients_mx"))
                    }
                    div {
                        label for="max_recipients_submission" { "Recipients per message from users (submission)" }
                        input #max_recipients_submission name="max_recipients_submission" type="text" inputmode="numeric" required maxlength="8" value=(lf.max_recipients_submission) aria-describedby=[described(relay_errs, "max_recipients_submission")];
                        (ferr(relay_errs, "max_recipients_submission"))
                    }
                }
                button type="submit" { "Save relay and limits" }
            }
        }
    };
    layout("Routes and relay", "routes", Some(a), take_flash(a, st), body)
}

pub async fn routes(PageAuth(a): PageAuth, st: St) -> Response {
    page(StatusCode::OK, routes_markup(&st, &a, RoutesState::Fresh).await)
}

fn status_of(e: &SettingsError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
}

pub async fn route_save(st: St, SessionForm(a, f): SessionForm<RouteForm>) -> Response {
    match ops::save_route(&st, &a.actor, f.input()).await {
        Ok(v) => {
            applied_flash(&st, &a, &format!("Route for {} saved.", f.domain.trim().to_ascii_lowercase()), &v);
            Redirect::to("/routes").into_response()
        }
        Err(e) => page(status_of(&e), routes_markup(&st, &a, RoutesState::Route(&f, &e)).await),
    }
}

pub async fn route_edit(PageAuth(a): PageAuth, st: St, Path(domain): Path<String>) -> Response {
    let routes = match ops::read_settings(&st).await {
        Ok((r, _)) => r,
        Err(e) => {
            return super::pages::error_page(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT),
                &e.to_string(),
            );
        }
    };
    let Some(r) = routes.iter().find(|r| r.domain.eq_ignore_ascii_case(&domain)) else {
        return super::pages::error_page(StatusCode::NOT_FOUND, "There is no route for that domain.");
    };
    let f = RouteForm::from_view(r);
    let body = html! {
        section.card {
            h2 { "Route for " (r.domain) }
            (route_form(&a, &f, None, None, true))
            p { a href="/routes" { "Cancel" } }
        }
    };
    page(StatusCode::OK, layout("Edit route", "routes", Some(&a), take_flash(&a, &st), body))
}

pub async fn route_delete(
    st: St,
    Path(domain): Path<String>,
    SessionForm(a, _): SessionForm<serde::de::IgnoredAny>,
) -> Response {
    match ops::delete_route(&st, &a.actor, &domain).await {
        Ok(v) => applied_flash(&st, &a, &format!("Route for {domain} deleted."), &v),
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.text()),
    }
    Redirect::to("/routes").into_response()
}

pub async fn relay_save(st: St, SessionForm(a, f): SessionForm<RelayForm>) -> Response {
    match ops::save_relay(&st, &a.actor, f.input()).await {
        Ok(v) => {
            applied_flash(&st, &a, "Relay networks and limits saved.", &v);
            Redirect::to("/routes").into_response()
        }
        Err(e) => page(status_of(&e), routes_markup(&st, &a, RoutesState::Relay(&f, &e)).await),
    }
}

// ---- queue --------------------------------------------------------------------------------

#[derive(Debug, Default, serde::Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    q: String,
}

pub async fn queue(PageAuth(a): PageAuth, st: St, Query(qq): Query<QueueQuery>) -> Response {
    let result = crate::queue::list(&st, &qq.q, qq.page.unwrap_or(1), crate::queue::DEFAULT_PER_PAGE).await;
    let now = chrono::Utc::now().timestamp();
    let link = |p: usize| format!("/queue?q={}&page={p}", super::pages::q(&qq.q));
    let body = html! {
        section.card {
            @match &result {
                Ok(p) => {
                    @let pages = p.total.div_ceil(p.per_page).max(1);
                    form.inline method="get" action="/queue" role="search" {
                        label for="q" { "Sender, id or reply contains" }
                        input #q name="q" type="search" value=(qq.q) maxlength="320";
                        button type="submit" { "Search" }
                    }
                    p.muted { (p.total) " messages in the queue" @if p.held > 0 { " (" (p.held) " held)" } " · page " (p.page) " of " (pages) }
                    form method="post" action="/queue/flush" {
                        (csrf(&a))
                        button type="submit" { "Retry all now (flush)" }
                    }
                    @if !p.messages.is_empty() {
                        table {
                            thead { tr { th scope="col" { "Id" } th scope="col" { "From" } th scope="col" { "Size" } th scope="col" { "Recipients" } th scope="col" { "Arrived" } th scope="col" { "Next try" } th scope="col" { "Last reply" } th scope="col" { span.sr { "Actions" } } } }
                            tbody {
                                @for m in &p.messages {
                                    tr {
                                        td { a href=(format!("/queue/{}", seg(&m.id))) { code { (m.id) } } @if m.hold { " " span.state.state-stopping { "held" } } }
                                        td { (if m.from.is_empty() { "<>" } else { m.from.as_str() }) }
                                        td.num { (ops::human(m.size)) }
                                        td.num { (m.pending) " of " (m.recipients) }
                                        td { (when(m.arrival)) }
                                        td { @if m.hold { "—" } @else if m.next_retry <= now { "now" } @else { (when(m.next_retry)) } }
                                        td.small { (m.last_reply) }
                                        td { (queue_buttons(&a, &m.id, m.hold)) }
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
                Err(e) => { p.flash.err role="status" { (e.to_string()) } }
            }
        }
    };
    page(StatusCode::OK, layout("Queue", "queue", Some(&a), take_flash(&a, &st), body))
}

fn queue_buttons(a: &Authed, id: &str, hold: bool) -> Markup {
    let base = format!("/queue/{}", seg(id));
    html! {
        div.actions {
            @if hold {
                form method="post" action=(format!("{base}/release")) { (csrf(a)) button.link type="submit" aria-label=(format!("Release {id}")) { "Release" } }
            } @else {
                form method="post" action=(format!("{base}/flush")) { (csrf(a)) button.link type="submit" aria-label=(format!("Retry {id} now")) { "Retry now" } }
                form method="post" action=(format!("{base}/hold")) { (csrf(a)) button.link type="submit" aria-label=(format!("Hold {id}")) { "Hold" } }
            }
            form method="post" action=(format!("{base}/delete")) { (csrf(a)) button.link type="submit" aria-label=(format!("Delete {id}")) { "Delete" } }
        }
    }
}

pub async fn queue_show(PageAuth(a): PageAuth, st: St, Path(id): Path<String>) -> Response {
    let detail = match crate::queue::show(&st, &id).await {
        Ok(d) => d,
        Err(OpError::NotFound(t)) => return super::pages::error_page(StatusCode::NOT_FOUND, &t),
        Err(e) => {
            let body = html! { p.flash.err { (e.to_string()) } p { a href="/queue" { "Back to the queue" } } };
            return page(StatusCode::OK, layout("Queued message", "queue", Some(&a), None, body));
        }
    };
    let hold = detail.state.get("hold").and_then(|h| h.as_bool()).unwrap_or(false);
    let body = html! {
        section.card {
            h2 { "Message " code { (id) } }
            dl.stats {
                dt { "From" } dd { (detail.from) }
                dt { "Size" } dd { (ops::human(detail.size)) }
                dt { "Arrived" } dd { (when(detail.arrival)) }
                dt { "Client" } dd { (detail.client) " (" (detail.helo) ")" }
                @if let Some(u) = &detail.auth_user { dt { "Authenticated as" } dd { (u) } }
            }
            h3 { "Recipients" }
            ul { @for r in &detail.recipients { li { (r) } } }
            h3 { "Delivery state" }
            dl.stats {
                @for (k, v) in detail.state_lines() { dt { (k) } dd { code { (v) } } }
            }
            (queue_buttons(&a, &id, hold))
            p { a href="/queue" { "Back to the queue" } }
        }
    };
    page(StatusCode::OK, layout("Queued message", "queue", Some(&a), take_flash(&a, &st), body))
}

async fn queue_action(st: St, a: Authed, op: &'static str, id: Option<String>) -> Response {
    match crate::queue::action(&st, &a.actor, op, id.clone()).await {
        Ok(n) => {
            let text = match (op, &id) {
                ("flush", None) => format!("{n} messages will be retried now."),
                ("flush", Some(i)) => format!("Message {i} will be retried now."),
                ("delete", Some(i)) => format!("Message {i} deleted from the queue."),
                ("hold", Some(i)) => format!("Message {i} is held."),
                ("release", Some(i)) => format!("Message {i} is released."),
                _ => "Done.".into(),
            };
            st.sessions.set_flash(&a.session_id, true, text);
        }
        Err(e) => st.sessions.set_flash(&a.session_id, false, e.to_string()),
    }
    let back = match (op, &id) {
        ("delete", _) | (_, None) => "/queue".to_string(),
        (_, Some(i)) => format!("/queue/{}", seg(i)),
    };
    Redirect::to(&back).into_response()
}

pub async fn queue_flush_all(st: St, SessionForm(a, _): SessionForm<serde::de::IgnoredAny>) -> Response {
    queue_action(st, a, "flush", None).await
}

pub async fn queue_op(
    st: St,
    Path((id, op)): Path<(String, String)>,
    SessionForm(a, _): SessionForm<serde::de::IgnoredAny>,
) -> Response {
    let op = match op.as_str() {
        "flush" => "flush",
        "delete" => "delete",
        "hold" => "hold",
        "release" => "release",
        _ => return super::pages::not_found().await,
    };
    queue_action(st, a, op, Some(id)).await
}

/// For the dashboard: the reload results of the version in force (if applied here).
pub fn last_reload(st: &St) -> Option<(String, Markup)> {
    let r = st.reloads.lock().unwrap_or_else(|p| p.into_inner());
    r.back().map(|(v, o)| (v.clone(), reload_markup(o)))
}
