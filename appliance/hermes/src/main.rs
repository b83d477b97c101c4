//! `hermes`: the multi-call binary. One executable is the admin CLI (`domain`, `account`,
//! `deliver`, `status`), the host-mode supervisor (`up`) and every service (`serve <svc>`, which
//! the supervisor starts as child processes).
//!
//! What it is not: the place for service logic. `main` parses the command line and wires:
//! load config, start tracing, run the service or command; the work lives in the library
//! crates and in this crate's small modules.
//!
//! Invariants: errors print one line (`hermes: ...`) on stderr and exit non-zero (1; 2 for an
//! invalid config or usage; 3 for `status` when nothing runs); nothing here panics on input.

mod admin;
mod cli;
mod firmware;
mod hw;
mod layout;
mod size;
mod status;
mod supervisor;

use clap::Parser;
use cli::{Cli, Command, Service};
use hermes_core::paths::DataDir;
use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The appliance's kernel runs /init (this binary) as PID 1 with no useful arguments.
    if std::process::id() == 1 {
        hermes_svc_init::run();
    }
    let cli = Cli::parse();
    let data = DataDir::new(cli.data);
    let result = match cli.command {
        Command::Up => supervisor::up(&data),
        Command::Init => init_command(),
        Command::Serve { service } => serve(&data, service),
        Command::Domain { command } => admin::domain(&data, command).map(|()| ExitCode::SUCCESS),
        Command::Account { command } => admin::account(&data, command).map(|()| ExitCode::SUCCESS),
        Command::Alias { command } => admin::alias(&data, command).map(|()| ExitCode::SUCCESS),
        Command::Queue { command } => admin::queue(&data, command),
        Command::Deliver { to, from } => deliver(&data, to, from),
        Command::Status { json } => status(&data, json),
        Command::Undelete(args) => undelete(&data, args),
        Command::Hw { command } => hw::run(&data, command),
        Command::Firmware { command } => firmware::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A reader that went away (`hermes account list | head`) is not a failure to report.
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let mut msg = format!("{e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            let _ = writeln!(std::io::stderr(), "hermes: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `hermes serve <svc>`: one service in the foreground, as the supervisor starts it.
fn serve(data: &DataDir, service: Service) -> anyhow::Result<ExitCode> {
    hermes_runtime::logging::init_tracing(service.name());
    supervisor::guard_parent_death()?;
    let config = match layout::load_config(data) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            let _ = writeln!(std::io::stderr(), "hermes: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if service == Service::Hw {
        // Threads only, no async runtime: every SMART ioctl blocks (hermes_svc_hw).
        hermes_svc_hw::run(data.clone(), config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match service {
        Service::Store => runtime.block_on(hermes_svc_store::run(data.clone(), config))?,
        Service::Router => runtime.block_on(hermes_svc_router::run(data.clone(), config))?,
        Service::Admin => runtime.block_on(hermes_svc_admin::run(data.clone(), config))?,
        Service::Hw => hermes_svc_hw::run(data.clone(), config)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `hermes deliver --to ADDR... [--from ADDR] < message`.
fn deliver(data: &DataDir, to: Vec<String>, from: Option<String>) -> anyhow::Result<ExitCode> {
    let config = match layout::load_config(data) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hermes: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let limit = config.limits.max_message_bytes;
    let mut raw = Vec::new();
    std::io::stdin().lock().take(limit.saturating_add(1)).read_to_end(&mut raw)?;
    if raw.len() as u64 > limit {
        anyhow::bail!("message larger than the limit of {} bytes (limits.max_message_bytes)", limit);
    }
    if raw.is_empty() {
        anyhow::bail!("no message on standard input");
    }
    hermes_svc_store::deliver::deliver_command(data, &to, from.as_deref(), raw)?;
    Ok(ExitCode::SUCCESS)
}

/// `hermes undelete ACCOUNT ...`: through the running store service, or the store directly.
fn undelete(data: &DataDir, args: cli::UndeleteArgs) -> anyhow::Result<ExitCode> {
    let args = hermes_svc_store::quota::undelete::Args {
        account: args.account,
        mailbox: args.mailbox,
        since: args.since,
        until: args.until,
        list: args.list,
        json: args.json,
    };
    hermes_svc_store::quota::undelete::undelete_command(data, &args)?;
    Ok(ExitCode::SUCCESS)
}

/// `hermes status [--json]`.
fn status(data: &DataDir, json: bool) -> anyhow::Result<ExitCode> {
    match status::query(data, &hermes_core::ipc::ControlRequest::Status) {
        Ok(response) => {
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&response)?)?;
            } else {
                write!(out, "{}", status::render(&response, chrono::Utc::now().timestamp()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status::StatusError::NotRunning(msg)) => {
            let _ = writeln!(std::io::stderr(), "hermes: {msg}");
            Ok(ExitCode::from(status::NOT_RUNNING))
        }
        Err(status::StatusError::Other(e)) => Err(e),
    }
}

/// `hermes init` when not PID 1: refused, because init mounts file systems and reboots the
/// machine. The appliance starts it as /init; `hermes up` is the host-mode equivalent.
fn init_command() -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hermes init` runs only as PID 1 on the appliance (it mounts file systems and reboots); use `hermes up` on a host")
}
