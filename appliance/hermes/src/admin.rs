//! `hermes domain ...` and `hermes account ...`: the directory from the command line.
//!
//! These commands work on `DATA/directory` directly, whether or not `hermes up` is running:
//! the directory serialises writers with its own lock and a running server reads the changed
//! files at its next lookup, so nothing needs a restart.
//!
//! What it is not: a way to read or change mail (the store belongs to the store process).
//!
//! Invariants: passwords come only from standard input (never argv, where `ps` shows them) and
//! are never printed; a failed command prints one line and returns an error, never panics.

use crate::cli::{AccountCommand, AliasCommand, DomainCommand, QueueCommand};
use crate::size::{format_size, parse_size};
use anyhow::{Context, anyhow, bail};
use hermes_core::directory::{Account, Directory, DirectoryError, ImportEntry, MessageQuota};
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

/// Longest password accepted: far beyond any passphrase, small enough to bound the work.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Accounts per directory batch during `account import`: one filesystem flush each.
const IMPORT_BATCH: usize = 5_000;

/// Opens the directory; read-only commands refuse a data folder that does not exist instead of
/// creating one at a mistyped path.
fn open(data: &DataDir, create: bool) -> anyhow::Result<Directory> {
    if !create && !data.root().is_dir() {
        bail!("no data folder at {} (give --data DIR, or add a domain first)", data.root().display());
    }
    crate::layout::ensure_root(data)?;
    Ok(Directory::open(data)?)
}

/// `hermes alias add|del|list`: aliases live in the directory, so a running router sees a
/// change at its next RCPT.
pub fn alias(data: &DataDir, command: AliasCommand) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { address, targets } => {
            let a = open(data, false)?.add_alias(&address, &targets)?;
            println!("alias {} -> {}", a.address, a.targets.join(", "));
        }
        AliasCommand::Del { address } => {
            let a = open(data, false)?.remove_alias(&address)?;
            println!("removed alias {}", a.address);
        }
        AliasCommand::List { domain, json } => {
            let aliases = open(data, false)?.list_aliases(domain.as_deref())?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&aliases)?)?;
            } else {
                for a in aliases {
                    writeln!(out, "{} -> {}", a.address, a.targets.join(", "))?;
                }
            }
        }
    }
    Ok(())
}

/// `hermes queue ...`: through the running router's control socket, or on the queue folder
/// when no router runs. Exit 1 when the router refused the request.
pub fn queue(data: &DataDir, command: QueueCommand) -> anyhow::Result<std::process::ExitCode> {
    use hermes_svc_router::control::{Request, request};
    let (req, json) = match command {
        QueueCommand::List { json } => (Request::List, json),
        QueueCommand::Show { id, json } => (Request::Show { id }, json),
        QueueCommand::Flush { id, json } => (Request::Flush { id }, json),
        QueueCommand::Delete { id, json } => (Request::Delete { id }, json),
        QueueCommand::Hold { id, json } => (Request::Hold { id }, json),
        QueueCommand::Release { id, json } => (Request::Release { id }, json),
    };
    let resp = request(data, &req)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&resp)?)?;
    } else if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "request failed".into()));
    } else {
        match &req {
            Request::List => {
                if resp.messages.is_empty() {
                    writeln!(out, "queue is empty")?;
                }
                for m in &resp.messages {
                    let arrival = chrono::DateTime::from_timestamp(m.arrival, 0).map(|d| d.to_rfc3339()).unwrap_or_default();
                    let from = if m.from.is_empty() { "<>" } else { m.from.as_str() };
                    writeln!(
                        out,
                        "{}{} {:>9} {} {} pending {}/{} attempts {}{}",
                        m.id,
                        if m.hold { "!" } else { " " },
                        m.size,
                        arrival,
                        from,
                        m.pending,
                        m.recipients,
                        m.attempts,
                        if m.last_reply.is_empty() { String::new() } else { format!(" ({})", m.last_reply) }
                    )?;
                }
            }
            Request::Show { .. } => {
                if let Some(d) = &resp.detail {
                    let e = &d.envelope;
                    writeln!(out, "id: {}\nfrom: <{}>\nsize: {}\narrival: {}\nclient: {} ({})", e.id, e.from, e.size, e.arrival, e.client, e.helo)?;
                    writeln!(out, "attempts: {}\nnext retry: {}\nhold: {}", d.state.attempts, d.state.next_retry, d.state.hold)?;
                    for (r, (st, reply)) in e.recipients.iter().zip(&d.state.rcpts) {
                        writeln!(out, "  {} ({}) {:?} {}", r.address, if r.local { "local" } else { "remote" }, st, reply)?;
                    }
                }
            }
            _ => writeln!(out, "ok ({} message{})", resp.count, if resp.count == 1 { "" } else { "s" })?,
        }
    }
    Ok(if resp.ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

pub fn domain(data: &DataDir, command: DomainCommand) -> anyhow::Result<()> {
    match command {
        DomainCommand::Add { domain } => {
            open(data, true)?.add_domain(&domain)?;
            println!("added domain {}", domain.to_ascii_lowercase());
        }
        DomainCommand::Del { domain } => {
            open(data, false)?.remove_domain(&domain)?;
            println!("removed domain {}", domain.to_ascii_lowercase());
        }
        DomainCommand::List { json } => {
            let domains = open(data, false)?.list_domains()?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&domains)?)?;
            } else {
                for d in domains {
                    writeln!(out, "{d}")?;
                }
            }
        }
    }
    Ok(())
}

pub fn account(data: &DataDir, command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Add { address, password_stdin, password_hash, quota, quota_messages } => {
            let quota = quota.as_deref().map(parse_quota).transpose()?;
            let messages = quota_messages.as_deref().map(MessageQuota::parse).transpose().map_err(|e| anyhow!(e))?;
            let dir = open(data, true)?;
            let account = match (password_stdin, password_hash) {
                (true, None) => {
                    let password = read_password()?;
                    dir.add_account(&address, &password, quota)?
                }
                (false, Some(hash)) => dir.import_account(&address, &hash, quota)?,
                // clap's ArgGroup makes exactly one of them present.
                _ => bail!("give exactly one of --password-stdin and --password-hash"),
            };
            let account = match messages {
                Some(m) if m != account.quota_messages => dir.set_message_quota(&account.address, m)?,
                _ => account,
            };
            println!(
                "added {} (quota {}, messages {}, user id {})",
                account.address,
                format_size(account.quota_bytes),
                account.quota_messages,
                account.user_id
            );
        }
        AccountCommand::Passwd { address, password_stdin: _ } => {
            let dir = open(data, false)?;
            // Fail before reading a password for an account that does not exist.
            if !address.contains('+') && dir.lookup(&address)?.is_none() {
                return Err(DirectoryError::NoSuchAccount(address.to_ascii_lowercase()).into());
            }
            let password = read_password()?;
            dir.set_password(&address, &password)?;
            println!("password changed for {}", address.to_ascii_lowercase());
        }
        AccountCommand::Quota { address, size, messages } => {
            // A running server reads the account file at its next lookup: no restart needed.
            let keep_size = size.trim() == "-";
            let quota = if keep_size { None } else { Some(parse_quota(&size)?) };
            let messages = messages.as_deref().map(MessageQuota::parse).transpose().map_err(|e| anyhow!(e))?;
            if keep_size && messages.is_none() {
                bail!("nothing to change: give a size, or `-` with --messages N");
            }
            let dir = open(data, false)?;
            if let Some(q) = quota {
                dir.set_quota(&address, q)?;
                println!("quota of {} set to {}", address.to_ascii_lowercase(), format_size(q));
            }
            if let Some(m) = messages {
                dir.set_message_quota(&address, m)?;
                println!("message quota of {} set to {m}", address.to_ascii_lowercase());
            }
        }
        AccountCommand::Del { address } => {
            let account = open(data, false)?.remove_account(&address)?;
            println!(
                "removed {} (user id {}; its mail stays in the store until purged)",
                account.address, account.user_id
            );
        }
        AccountCommand::List { domain, json } => {
            let accounts = open(data, false)?.list_accounts(domain.as_deref())?;
            print_accounts(&accounts, json)?;
        }
        AccountCommand::Import { file, create_domains } => import(data, &file, create_domains)?,
    }
    Ok(())
}

fn parse_quota(text: &str) -> anyhow::Result<u64> {
    let q = parse_size(text).map_err(|e| anyhow!(e))?;
    if q == 0 {
        bail!("quota must be greater than zero");
    }
    Ok(q)
}

/// Reads a password from standard input: one line (a terminal) or everything up to EOF (a
/// pipe), one trailing newline stripped, refusing empty, multi-line and oversized input.
fn read_password() -> anyhow::Result<Secret<String>> {
    let stdin = std::io::stdin();
    let mut buf = Vec::new();
    if stdin.is_terminal() {
        eprint!("password (echoed): ");
        let _ = std::io::stderr().flush();
        stdin.lock().take(MAX_PASSWORD_BYTES as u64 + 3).read_until(b'\n', &mut buf)?;
    } else {
        stdin.lock().take(MAX_PASSWORD_BYTES as u64 + 3).read_to_end(&mut buf)?;
    }
    parse_password(buf)
}

fn parse_password(mut buf: Vec<u8>) -> anyhow::Result<Secret<String>> {
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    if buf.is_empty() {
        return Err(DirectoryError::EmptyPassword.into());
    }
    if buf.len() > MAX_PASSWORD_BYTES {
        bail!("password longer than {MAX_PASSWORD_BYTES} bytes");
    }
    if buf.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0) {
        bail!("password must be one line without NUL (IMAP cannot send others)");
    }
    let text = String::from_utf8(buf).map_err(|_| anyhow!("password is not UTF-8"))?;
    Ok(Secret::new(text))
}

#[derive(serde::Serialize)]
struct AccountJson<'a> {
    address: &'a str,
    user_id: &'a str,
    quota_bytes: u64,
    /// A number, `"unlimited"`, or `null`: the site default (`[store] default_quota_messages`).
    quota_messages: MessageQuota,
    created: i64,
}

fn print_accounts(accounts: &[Account], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|a| AccountJson {
                address: &a.address,
                user_id: a.user_id.as_str(),
                quota_bytes: a.quota_bytes,
                quota_messages: a.quota_messages,
                created: a.created,
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let width = accounts.iter().map(|a| a.address.len()).max().unwrap_or(0).max("ADDRESS".len());
    writeln!(out, "{:width$}  {:>6}  {:>9}  {:32}  CREATED", "ADDRESS", "QUOTA", "MESSAGES", "USER ID")?;
    for a in accounts {
        let created = chrono::DateTime::from_timestamp(a.created, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| a.created.to_string());
        writeln!(
            out,
            "{:width$}  {:>6}  {:>9}  {}  {created}",
            a.address,
            format_size(a.quota_bytes),
            a.quota_messages.to_string(),
            a.user_id
        )?;
    }
    Ok(())
}

/// One parsed line of an import file.
fn parse_import_line(line: &str) -> Result<Option<ImportEntry>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let fields: Vec<&str> = line.split('\t').collect();
    let (address, hash, quota) = match fields.as_slice() {
        [a, h] => (a, h, None),
        [a, h, q] => (a, h, Some(*q)),
        _ => return Err("expected address<TAB>argon2id-hash[<TAB>quota]".into()),
    };
    let quota_bytes = match quota.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => Some(parse_quota(q).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Some(ImportEntry { address: address.trim().to_string(), phc_hash: hash.trim().to_string(), quota_bytes }))
}

fn import(data: &DataDir, file: &Path, create_domains: bool) -> anyhow::Result<()> {
    let dir = open(data, true)?;
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let name = file.display().to_string();
    let mut failed = 0usize;
    let mut imported = 0usize;
    let mut batch: Vec<(usize, ImportEntry)> = Vec::new();
    let flush =
        |batch: &mut Vec<(usize, ImportEntry)>, failed: &mut usize, imported: &mut usize| -> anyhow::Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            if create_domains {
                for (_, e) in batch.iter() {
                    if let Some((_, domain)) = e.address.rsplit_once('@')
                        && !dir.has_domain(domain)?
                    {
                        match dir.add_domain(domain) {
                            Ok(()) => eprintln!("hermes: added domain {}", domain.to_ascii_lowercase()),
                            // Left for the account's own error to explain.
                            Err(DirectoryError::InvalidDomain(_) | DirectoryError::DomainExists(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            let entries: Vec<ImportEntry> = batch.iter().map(|(_, e)| e.clone()).collect();
            let results = dir.import_accounts(&entries)?;
            for ((line, entry), result) in batch.iter().zip(results) {
                match result {
                    Ok(_) => *imported += 1,
                    Err(e) => {
                        *failed += 1;
                        eprintln!("hermes: {name}:{line}: {}: {e}", entry.address);
                    }
                }
            }
            batch.clear();
            Ok(())
        };
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                failed += 1;
                eprintln!("hermes: {name}:{number}: not UTF-8");
                continue;
            }
            Err(e) => return Err(anyhow!("reading {name}: {e}")),
        };
        match parse_import_line(&line) {
            Ok(Some(entry)) => batch.push((number, entry)),
            Ok(None) => {}
            Err(e) => {
                failed += 1;
                eprintln!("hermes: {name}:{number}: {e}");
            }
        }
        if batch.len() >= IMPORT_BATCH {
            flush(&mut batch, &mut failed, &mut imported)?;
        }
    }
    flush(&mut batch, &mut failed, &mut imported)?;
    println!("imported {imported} accounts; {failed} failed");
    if failed > 0 {
        bail!("{failed} lines of {name} were not imported (see above)");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn password_input() {
        assert_eq!(parse_password(b"pw\n".to_vec()).unwrap().expose(), "pw");
        assert_eq!(parse_password(b"pw\r\n".to_vec()).unwrap().expose(), "pw");
        assert_eq!(parse_password(b"pw".to_vec()).unwrap().expose(), "pw");
        assert_eq!(parse_password(b" spaced pw ".to_vec()).unwrap().expose(), " spaced pw ");
        for bad in [&b""[..], b"\n", b"\r\n", b"a\nb", b"pw\n\n", b"a\0b", b"\xff\xfe"] {
            assert!(parse_password(bad.to_vec()).is_err(), "{bad:?}");
        }
        assert!(parse_password(vec![b'a'; MAX_PASSWORD_BYTES]).is_ok());
        assert!(parse_password(vec![b'a'; MAX_PASSWORD_BYTES + 1]).is_err());
    }

    #[test]
    fn import_lines() {
        assert!(parse_import_line("").unwrap().is_none());
        assert!(parse_import_line("  # comment").unwrap().is_none());
        let e = parse_import_line("a@b.org\t$argon2id$x\t1G\r").unwrap().unwrap();
        assert_eq!((e.address.as_str(), e.phc_hash.as_str(), e.quota_bytes), ("a@b.org", "$argon2id$x", Some(1 << 30)));
        let e = parse_import_line("a@b.org\t$argon2id$x").unwrap().unwrap();
        assert_eq!(e.quota_bytes, None);
        for bad in ["a@b.org", "a@b.org\th\t1G\textra", "a@b.org\th\tlots", "a@b.org\th\t0"] {
            assert!(parse_import_line(bad).is_err(), "{bad}");
        }
    }
}
