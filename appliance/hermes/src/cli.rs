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
    /// PID 1 of the appliance: mounts, modules, network, services from the manifest, shutdown.
    /// Runs only as PID 1 (the image's /init is this binary, which starts init by itself).
    #[command(hide = true)]
    Init,
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
    /// Manage aliases (one-to-many, internal or external targets; `@domain` is the catch-all).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Inspect and manage the router's mail queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Show the services of a running `hermes up`.
    Status {
        /// Print the supervisor's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List or restore an account's expunged messages still within the retention period.
    Undelete(UndeleteArgs),
    /// Disk and RAID health: bays, SMART verdicts, arrays, self-tests, scrubs, provisioning.
    Hw {
        #[command(subcommand)]
        command: crate::hw::HwCommand,
    },
    /// Firmware slots on the EFI system partition: status, signed update install, mark good.
    Firmware {
        #[command(subcommand)]
        command: crate::firmware::FirmwareCommand,
    },
}

/// The services `hermes serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// IMAP and LMTP over the mail store.
    Store,
    /// The SMTP hub: MX, submission, queue and delivery.
    Router,
    /// The local admin web UI and its JSON API (HTTPS).
    Admin,
    /// Disk and RAID health: SMART sweeps, md watch, failure policy, alerts (run/hw.sock).
    Hw,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Store => "store",
            Service::Router => "router",
            Service::Admin => "admin",
            Service::Hw => "hw",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create or replace an alias: `hermes alias add team@example.org a@example.org b@other.net`.
    /// `@example.org` sets the domain's catch-all.
    Add {
        address: String,
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Remove an alias (or `@domain`, the catch-all).
    #[command(alias = "remove", alias = "rm")]
    Del { address: String },
    /// List aliases.
    List {
        /// Only this domain's aliases.
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one message's envelope and per-recipient state.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Retry now: one message, or every message when no id is given.
    Flush {
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a message without sending a bounce.
    #[command(alias = "rm")]
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop delivery attempts for a message until it is released.
    Hold {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Resume delivery of a held message.
    Release {
        id: String,
        #[arg(long)]
        json: bool,
    },
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
        /// Message-count quota: a number, `unlimited`, or `default` (the `[store]
        /// default_quota_messages`, unlimited unless set). Default: `default`.
        #[arg(long, value_name = "N")]
        quota_messages: Option<String>,
    },
    /// Change an account's password (read from standard input).
    Passwd {
        address: String,
        /// Read the password from standard input (required; the only source).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set an account's storage quota (and, with --messages, its message-count quota).
    Quota {
        address: String,
        /// Bytes or with K, M, G, T (powers of 1024); `-` keeps the current one.
        size: String,
        /// Message-count quota: a number, `unlimited`, or `default` (the site default).
        #[arg(long, value_name = "N")]
        messages: Option<String>,
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

/// `hermes undelete ACCOUNT [--mailbox M] [--since T] [--until T] [--list] [--json]`.
#[derive(Debug, clap::Args)]
pub struct UndeleteArgs {
    /// The account's address.
    pub account: String,
    /// Only messages expunged from this mailbox (its name then, or its current name).
    #[arg(long, value_name = "MAILBOX")]
    pub mailbox: Option<String>,
    /// Only messages expunged at or after T: RFC 3339 or YYYY-MM-DD (start of day, UTC).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only messages expunged before T: RFC 3339, or YYYY-MM-DD (that whole day included).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// List what would be restored (with each message's Subject, From and Date); change nothing.
    #[arg(long)]
    pub list: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
