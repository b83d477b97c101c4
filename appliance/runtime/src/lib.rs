//! Hermes runtime: the process plumbing every network service shares.
//!
//! - [`tls`]: loading the TLS certificate into a rustls acceptor, and creating a self-signed
//!   one on first start.
//! - [`listen`]: binding TCP listeners and unix sockets, and the connection limiter (total and
//!   per client address) whose guard a session holds for its whole life.
//! - [`shutdown`]: SIGTERM/SIGINT turned into a broadcast every session watches, and a bounded
//!   drain of the sessions still running.
//! - [`logging`]: structured JSON log lines on stderr.
//! - [`logfile`]: the size-rotated `DATA/log/hermes.log` host mode's supervisor appends to.
//! - [`endpoints`]: `run/endpoints.d/<service>.json`, what a service actually bound.
//! - [`fs`]: atomic file writes (temp file, fsync, rename, fsync folder).
//!
//! What it is not: no protocol code (that is `hermes-proto`), no service logic, no config
//! parsing (that is `hermes-core`). It never daemonises or restarts anything: the supervisor does.
//!
//! Invariants: files this crate writes are replaced atomically, so a reader sees the old or the
//! new content, never a torn one; private keys are written mode 0600 from the first byte.

pub mod endpoints;
pub mod fs;
pub mod listen;
pub mod logfile;
pub mod logging;
pub mod shutdown;
pub mod tls;
