//! HTTP: the routes, the security middleware and authentication.
//!
//! - [`router`]: every page and API route, the stylesheet, a 64 KiB body limit (the firmware
//!   upload alone streams up to 256 MiB to disk: [`firmware_upload`]).
//! - [`guard`]: on every response the security headers (CSP without any script, frame-ancestors
//!   none, HSTS, nosniff, referrers to this origin only, no caching of authenticated pages,
//!   `Server-Timing: app;dur=<ms>` with the time the server spent); on every non-GET
//!   request the Origin check (`Origin`, or failing that `Referer`, must be this very origin;
//!   requests with neither are refused) unless the request carries an API token.
//! - [`PageAuth`]: a signed-in admin for a page (else a redirect to `/login`).
//! - [`SessionForm`]: a signed-in admin plus a form whose `csrf` field matches the session's
//!   token (else 403). Every state-changing page handler takes one, so none can forget the check.
//! - [`ApiAuth`]: an API caller: a bearer token, or a session whose `X-CSRF-Token` header
//!   matches on non-GET requests.
//!
//! What it is not: the pages' markup ([`pages`]) or the API's shapes ([`api`]).
//!
//! Invariants: a session cookie is accepted only if it names a live session; a CSRF token is
//! compared in constant time; authentication failures never say whether the admin exists.

pub mod api;
pub mod extra;
pub mod firmware_upload;
pub mod more;
pub mod network;
pub mod pages;
pub mod system_ops;

use crate::ops::Actor;
use crate::run::PeerAddr;
use crate::sessions::{self, Session};
use crate::state::AppState;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

/// Largest request body: forms and JSON of a few fields; an alias with 1000 targets fits.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub type SharedState = Arc<AppState>;

/// `script-src 'none'`: the UI works without JavaScript, so it has none. No external origin
/// appears anywhere; inline SVG needs no source; styles come only from `/static/admin.css`.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'; script-src 'none'";

pub fn router(state: SharedState) -> Router {
    // Leftovers of a crashed admin service; no upload can be in flight before the router exists.
    firmware_upload::remove_stale_uploads(&state.data);
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/setup", get(pages::setup_page).post(pages::setup_submit))
        .route("/domains", get(pages::domains).post(pages::domain_add))
        .route("/domains/{domain}/delete", get(pages::domain_delete_page).post(pages::domain_delete))
        .route("/accounts", get(pages::accounts).post(pages::account_create))
        .route("/accounts/{address}", get(pages::account_detail))
        .route("/accounts/{address}/password", post(pages::account_password))
        .route("/accounts/{address}/quota", post(pages::account_quota))
        .route("/accounts/{address}/delete", post(pages::account_delete))
        .route("/aliases", get(pages::aliases).post(pages::alias_add))
        .route("/aliases/{address}/delete", post(pages::alias_delete))
        .route("/undelete", get(pages::undelete).post(pages::undelete_restore))
        .route("/routes", get(extra::routes).post(extra::route_save))
        .route("/routes/{domain}", get(extra::route_edit))
        .route("/routes/{domain}/delete", post(extra::route_delete))
        .route("/relay", post(extra::relay_save))
        .route("/queue", get(extra::queue))
        .route("/queue/flush", post(extra::queue_flush_all))
        .route("/queue/{id}", get(extra::queue_show))
        .route("/queue/{id}/{op}", post(extra::queue_op))
        .route("/certificates", get(more::certificates).post(more::certificate_upload))
        .route("/certificates/self-signed", post(more::certificate_generate))
        .route("/system", get(more::system))
        .route("/system/backup", get(more::backup))
        .route("/system/restore", post(more::restore))
        .route("/firmware", get(more::firmware))
        // The two routes whose body may be larger than MAX_BODY_BYTES: a firmware bundle, read as
        // a raw stream and bounded in firmware_upload.rs (GET /api/firmware is api.rs's).
        .route("/firmware/upload", post(firmware_upload::form_upload))
        .route("/api/firmware", post(firmware_upload::api_upload))
        .route("/disks", get(more::disks))
        .route("/disks/selftest", post(more::selftest))
        .route("/disks/scrub", post(more::scrub))
        .route("/system/power", get(system_ops::power_page))
        .route("/system/reboot", post(system_ops::reboot_submit))
        .route("/system/factory-reset", post(system_ops::factory_reset_submit))
        .route("/disks/provision", get(system_ops::provision_page).post(system_ops::provision_submit))
        .route("/api/system/reboot", post(system_ops::api_reboot))
        .route("/api/system/factory-reset", post(system_ops::api_factory_reset))
        .route("/api/disks/provision", post(system_ops::api_provision))
        .route("/system/network", get(network::network_page).post(network::network_submit))
        .route("/system/network/confirm", post(network::confirm_submit))
        .route("/system/time", post(network::time_set_submit))
        .route("/system/time/sync", post(network::time_sync_submit))
        .route("/api/system/network", get(network::api_get).put(network::api_put))
        .route("/api/system/network/confirm", post(network::api_confirm))
        .route("/api/system/time", get(network::api_time).put(network::api_time_set))
        .route("/api/system/time/sync", post(network::api_time_sync))
        .route("/logs", get(pages::logs))
        .route("/tokens", get(pages::tokens).post(pages::token_create))
        .route("/tokens/{id}/revoke", post(pages::token_revoke))
        .route("/admins", post(pages::admin_create))
        .route("/config", get(pages::config).post(pages::config_apply))
        .route("/config/history/{id}", get(pages::config_version))
        .route("/config/history/{id}/rollback", post(pages::config_rollback))
        .route("/static/admin.css", get(stylesheet))
        .nest("/api", api::router())
        .fallback(pages::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard))
        .with_state(state)
}

/// The stylesheet, compiled into the binary.
async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/admin.css"),
    )
        .into_response()
}

/// The client's address (the TCP peer; there is no proxy in front of the admin UI).
pub fn peer_ip(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext.get::<ConnectInfo<PeerAddr>>().map(|c| c.0.0.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn has_bearer(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer "))
}

/// Whether the request's `Origin` (or `Referer`) names this server's own origin.
pub fn same_origin(h: &HeaderMap) -> bool {
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let me = format!("https://{host}");
    if let Some(origin) = h.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o == me);
    }
    match h.get(header::REFERER).and_then(|v| v.to_str().ok()) {
        Some(r) => r == me || r.strip_prefix(&me).is_some_and(|rest| rest.starts_with('/')),
        None => false,
    }
}

/// Security headers everywhere; the Origin check on state-changing requests.
pub async fn guard(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut resp = if !is_safe(req.method()) && !has_bearer(req.headers()) && !same_origin(req.headers()) {
        let api = req.uri().path().starts_with("/api/");
        tracing::info!(peer = %peer_ip(req.extensions()), path = %req.uri().path(), "cross-origin or origin-less request refused");
        if api {
            api::error_response(
                StatusCode::FORBIDDEN,
                "cross-origin request refused (Origin must be this server)",
                None,
            )
        } else {
            pages::error_page(
                StatusCode::FORBIDDEN,
                "This request did not come from this admin UI's own pages, so it was refused.",
            )
        }
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // `same-origin`, not `no-referrer`: with no-referrer browsers send `Origin: null` on form
    // posts, which the Origin check must refuse. Nothing leaks to other origins either way.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(h, header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    set(h, header::HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    // How long the server took to produce the response (the page-time target: under 50 ms).
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1000.0)) {
        h.insert(header::HeaderName::from_static("server-timing"), v);
    }
    resp
}

/// The session cookie's value, if the request carries a well-formed one.
pub fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::cookie_value)
        .map(str::to_string)
}

/// A signed-in admin (page handlers).
#[derive(Debug, Clone)]
pub struct Authed {
    pub session_id: String,
    pub session: Session,
    pub actor: Actor,
}

fn authed(st: &AppState, parts: &Parts) -> Option<Authed> {
    let id = session_cookie(&parts.headers)?;
    let session = st.sessions.get(&id, Instant::now())?;
    let actor = Actor { admin: session.admin.clone(), peer: peer_ip(&parts.extensions) };
    Some(Authed { session_id: id, session, actor })
}

/// A page that needs a signed-in admin; otherwise the browser goes to `/login` (or `/setup`).
pub struct PageAuth(pub Authed);

impl FromRequestParts<SharedState> for PageAuth {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &SharedState) -> Result<Self, Response> {
        match authed(st, parts) {
            Some(a) => Ok(PageAuth(a)),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// Form fields every state-changing page form carries.
#[derive(Debug, serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A signed-in admin and a form `T` whose `csrf` field matches the session.
pub struct SessionForm<T>(pub Authed, pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<SharedState> for SessionForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, st: &SharedState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Ok(PageAuth(a)) = PageAuth::from_request_parts(&mut parts, st).await else {
            return Err(Redirect::to("/login").into_response());
        };
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| pages::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form was too large."))?;
        let c: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField { csrf: String::new() });
        if !crate::admins::ct_eq(c.csrf.as_bytes(), a.session.csrf.as_bytes()) {
            tracing::info!(peer = %a.actor.peer, admin = %a.actor.admin, "CSRF token missing or wrong");
            return Err(pages::error_page(
                StatusCode::FORBIDDEN,
                "The form's security token was missing or out of date. Go back, reload the page and try again.",
            ));
        }
        let form: T = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| pages::error_page(StatusCode::BAD_REQUEST, "The form was incomplete or malformed."))?;
        Ok(SessionForm(a, form))
    }
}

/// An authenticated API caller.
pub struct ApiAuth(pub Actor);

impl FromRequestParts<SharedState> for ApiAuth {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &SharedState) -> Result<Self, Response> {
        let peer = peer_ip(&parts.extensions);
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let Some(token) = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
                return Err(api::error_response(
                    StatusCode::UNAUTHORIZED,
                    "unsupported Authorization scheme (use Bearer)",
                    None,
                ));
            };
            let token = token.trim().to_string();
            if token.len() > 256 {
                return Err(api::error_response(StatusCode::UNAUTHORIZED, "invalid API token", None));
            }
            let st2 = st.clone();
            let found = tokio::task::spawn_blocking(move || st2.admins.check_api_token(&token)).await;
            return match found {
                Ok(Ok(Some(t))) => Ok(ApiAuth(Actor { admin: t.admin, peer })),
                Ok(Ok(None)) => Err(api::error_response(StatusCode::UNAUTHORIZED, "invalid API token", None)),
                _ => Err(api::error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)),
            };
        }
        let Some(a) = authed(st, parts) else {
            return Err(api::error_response(StatusCode::UNAUTHORIZED, "sign in or send an API token", None));
        };
        if !is_safe(&parts.method) {
            let given = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !crate::admins::ct_eq(given.as_bytes(), a.session.csrf.as_bytes()) {
                return Err(api::error_response(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token header", None));
            }
        }
        Ok(ApiAuth(a.actor))
    }
}

/// Re-authentication for destructive actions: the admin's own password, checked under the
/// login throttle (so the delete form is no password oracle). `Ok(false)`: wrong or throttled.
pub async fn reauthenticate(st: &SharedState, actor: &Actor, password: &str) -> bool {
    let now = Instant::now();
    if st.throttle.check(actor.peer, &actor.admin, now).is_some() || password.is_empty() || password.len() > 1024 {
        return false;
    }
    let st2 = st.clone();
    let (name, pw) = (actor.admin.clone(), hermes_core::secret::Secret::new(password.to_string()));
    let ok = matches!(tokio::task::spawn_blocking(move || st2.admins.verify(&name, &pw)).await, Ok(Ok(true)));
    if ok {
        st.throttle.success(actor.peer, &actor.admin);
    } else {
        st.throttle.failure(actor.peer, &actor.admin, now);
        let st2 = st.clone();
        let (admin, peer) = (actor.admin.clone(), actor.peer.to_string());
        let _ =
            tokio::task::spawn_blocking(move || st2.audit.record(&admin, &peer, "reauth", "", false, "wrong password"))
                .await;
    }
    ok
}

/// Shared by the handlers: the state extractor under a short name.
pub type St = State<SharedState>;
