//! The local admin web UI and its JSON API (issue 7): HTTPS on `[admin] port` (8443 on the
//! appliance, 18443 in host mode), server-rendered HTML that works with JavaScript off, and
//! `/api/` with the same operations.
//!
//! - [`run`]: the TLS listener (connection limits from `hermes_runtime::listen`), axum on top,
//!   `run/endpoints.d/admin.json`, graceful shutdown.
//! - [`web`]: routes, the security middleware (headers, Origin check, CSRF), authentication
//!   (session cookie or API token), the pages ([`web::pages`]) and the API ([`web::api`]).
//! - [`ops`]: the operations both share (each audited).
//! - [`admins`]: admin accounts, the first-boot setup token and API tokens in `DATA/admin/`.
//! - [`sessions`], [`throttle`], [`audit`]: sessions, login throttling, the audit log.
//! - [`index`]: the in-memory account index that keeps search and paging fast at 50,000 accounts.
//! - [`control`]: clients for the supervisor's and the store's control sockets.
//! - [`cert`]: the TLS certificate's expiry for the dashboard.
//! - [`config_apply`]: validated, atomic, versioned edits of `hermes.toml`, diffs, rollback.
//!
//! - [`rates`]: the dashboard's counters sampled from the services, and their SVG charts.
//! - [`settings`]: routes, relay networks and limits as per-field edits of `hermes.toml`.
//!
//! What it is not: a writer of the mail store or the queue (usage, undelete and the queue go
//! through the store's and the router's sockets). An applied config is reloaded live by the
//! services (`{"op":"reload"}`), never by restarting them.
//!
//! Invariants: every state-changing request is authenticated, passes the Origin check and a
//! CSRF check (form field or `X-CSRF-Token`; API tokens are exempt since a browser never sends
//! them by itself), and is written to the audit log; destructive actions (deleting an account
//! or a domain, adding an admin, config apply and rollback, reboot, factory reset, disk
//! provisioning, installing a firmware update) require the admin's password in the same
//! request; no page loads anything from outside the box, and the CSP forbids scripts entirely.

pub mod admins;
pub mod audit;
pub mod cert;
pub mod config_apply;
pub mod control;
pub mod index;
pub mod logs;
pub mod ops;
pub mod queue;
pub mod rates;
pub mod run;
pub mod sessions;
pub mod settings;
pub mod state;
pub mod throttle;
pub mod web;

pub use run::{run, run_until};
