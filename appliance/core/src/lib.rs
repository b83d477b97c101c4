//! Hermes core: what every service shares and nothing that does I/O on the network.
//!
//! - [`paths`]: the layout of the data folder (`DATA/...`), the one place that names files.
//! - [`config`]: the validated configuration (raw serde structs, then a checked [`config::Config`]).
//! - [`directory`]: domains and accounts (argon2id), the only code that can mint an
//!   [`directory::Authenticated`] token.
//! - [`secret`]: [`secret::Secret`], a wrapper whose `Debug` never shows the value.
//! - [`ipc`]: the small typed messages services and the supervisor exchange (JSON lines).
//! - [`manifest`]: the appliance manifest schema (services, users, ports, privileges) that the
//!   image builder and `hermes init` both read.
//! - [`network`]: `network.toml` (static addresses, resolvers), written by the admin UI and
//!   applied by `hermes init`.
//!
//! What this crate is not: it opens no sockets and starts no runtime; it reads and writes
//! files only in `config` and `directory`.

pub mod config;
pub mod directory;
pub mod ipc;
pub mod manifest;
pub mod network;
pub mod paths;
pub mod secret;

/// Default message size limit: 25 MB, as the issue and common providers set it.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;
