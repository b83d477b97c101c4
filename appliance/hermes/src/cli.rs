//! The `hermes` command line, declared with clap's derive API. Parsing only: what each command
//! does lives in `admin`, `supervisor`, `status` and `main`.
//!
//! What it is not: a second config source. Options here choose the data folder and what to do;
//! server settings live in `DATA/config/hermes.toml`.
//!
//! Invariant: every command takes `--data DIR` (also `HERMES_DATA`), default `./hermes-data`.

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Where the data folder is when neither `--data` nor `HERMES_DATA` says: beside the user,
/// in the working directory, so a newcomer finds it.
pub const DEFAULT_DATA_DIR: &str = "hermes-data";

#[derive(Debug, Parser)]
#[command(name = "hermes", version, about = "Hermes mail appliance: IMAP/LMTP store, accounts, host-mode supervisor")]
pub struct Cli {
    /// The data folder (config, directory, mail store, TLS keys, run state).
    #[arg(long, global = true, env = "HERMES_DATA", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every implemented service on loopback under a supervisor (host mode).
    Up,
    /// Run one service in the foreground (the supervisor starts these; not for direct use).
    #[command(hide = true)]
    Serve {
        #[arg(value_enum)]
        service: Service,
    },
    /// Manage mail domains.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Deliver a message read from standard input to local accounts (as LMTP would).
    Deliver {
        /// A recipient address (repeat for several).
        #[arg(long = "to", required = true, value_name = "ADDR")]
        to: Vec<String>,
        /// The envelope sender (default: the null sender `<>`).
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
    },
    /// Show the services of a running `hermes up`.
    Status {
        /// Print the supervisor's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The services `hermes serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// IMAP and LMTP over the mail store.
    Store,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Store => "store",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a domain.
    Add { domain: String },
    /// Remove a domain (refused while it has accounts).
    #[command(alias = "remove", alias = "rm")]
    Del { domain: String },
    /// List domains.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an account, with a password read from standard input or an existing argon2id hash.
    #[command(group(ArgGroup::new("secret").required(true).args(["password_stdin", "password_hash"])))]
    Add {
        address: String,
        /// Read the password from standard input (one trailing newline is stripped).
        #[arg(long)]
        password_stdin: bool,
        /// Use an existing argon2id PHC hash (migrations).
        #[arg(long, value_name = "HASH")]
        password_hash: Option<String>,
        /// Storage quota: bytes or with K, M, G, T (powers of 1024). Default 1G.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
    },
    /// Change an account's password (read from standard input).
    Passwd {
        address: String,
        /// Read the password from standard input (required; the only source).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set an account's storage quota.
    Quota {
        address: String,
        /// Bytes or with K, M, G, T (powers of 1024).
        size: String,
    },
    /// Remove an account (its mail stays in the store, unreachable, until purged).
    #[command(alias = "remove", alias = "rm")]
    Del { address: String },
    /// List accounts.
    List {
        /// Only this domain's accounts.
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Import accounts from a file of `address<TAB>argon2id-hash[<TAB>quota]` lines ("-": stdin).
    Import {
        file: PathBuf,
        /// Add domains that do not exist yet instead of refusing their accounts.
        #[arg(long)]
        create_domains: bool,
    },
}
