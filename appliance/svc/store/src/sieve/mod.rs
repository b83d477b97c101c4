//! Sieve (RFC 5228) mail filtering at LMTP delivery, with sieve-rs, and ManageSieve (RFC 5804)
//! to edit the scripts.
//!
//! Modules: [`scripts`] stores each user's scripts (one active); [`execute`] runs a compiled
//! script over one message and turns its actions into a [`execute::Plan`] (store targets,
//! redirects, vacation replies); [`deliver`] is the LMTP hook that carries a plan out;
//! [`vacation`] is the reply policy and the persistent `:days` log; [`relay`] the SMTP client
//! for outgoing mail; [`managesieve`] the ManageSieve server session.
//!
//! Extensions offered ([`EXTENSIONS`]): fileinto, envelope, encoded-character, imap4flags,
//! vacation, copy, body, variables, relational, comparator-i;ascii-numeric, mailbox (for
//! `fileinto :create` and `mailboxexists`) and subaddress. Everything else sieve-rs knows
//! (reject, ereject, editheader, include, notify, ...) is refused at upload and disabled in the
//! runtime.
//!
//! What it is not: no global (admin) scripts, no `include`, no spam/virus tests.
//!
//! Invariants:
//! - A message is never lost to a script: a script that fails to compile or run, exceeds a
//!   limit, or panics inside sieve-rs is replaced by an implicit keep (INBOX), and the error is
//!   logged and recorded as the user's last error ([`scripts::ScriptStore::last_error`]).
//! - Execution is bounded: [`hermes_core::config::SieveConfig::max_instructions`] interpreter
//!   steps, `max_redirects` redirects, three outgoing messages, 64 KiB variables.
//! - Compiled scripts are cached per script file and re-compiled when the file changes
//!   (identified by inode, size and modification time; every write replaces the inode).

pub mod deliver;
pub mod execute;
pub mod managesieve;
pub mod relay;
pub mod scripts;
pub mod vacation;

use hermes_core::config::Config;
use hermes_core::paths::DataDir;
use sieve::compiler::grammar::Capability;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

/// The Sieve extensions advertised and allowed, as RFC capability strings.
pub const EXTENSIONS: [&str; 12] = [
    "fileinto",
    "envelope",
    "encoded-character",
    "imap4flags",
    "vacation",
    "copy",
    "body",
    "variables",
    "relational",
    "comparator-i;ascii-numeric",
    "mailbox",
    "subaddress",
];

/// Comparators every implementation has (RFC 5228 §2.7.3); `require` may name them.
const BUILTIN: [&str; 2] = ["comparator-i;octet", "comparator-i;ascii-casemap"];

/// Most compiled scripts kept in memory; past this the cache is emptied (recompiling costs
/// microseconds, so the bound only protects memory).
const MAX_CACHED: usize = 10_000;
/// Longest a variable may grow (sieve-rs default 4 KiB is short for templated replies).
const MAX_VARIABLE_BYTES: usize = 64 * 1024;
/// Outgoing messages per delivery: one vacation and up to the redirect limit (sieve-rs counts
/// vacation replies here).
const MAX_OUT_MESSAGES: usize = 3;

/// A compile error with its position, safe to show the script's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileFailure {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CompileFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 { write!(f, "line {}: {}", self.line, self.message) } else { f.write_str(&self.message) }
    }
}

/// The compiler, runtime settings and script storage for one process, built from the config.
pub struct Engine {
    compiler: sieve::Compiler,
    pub(crate) settings: hermes_core::config::SieveConfig,
    pub(crate) hostname: String,
    pub scripts: scripts::ScriptStore,
}

impl Engine {
    pub fn new(config: &Config, data: &DataDir) -> Engine {
        let s = &config.sieve;
        let compiler = sieve::Compiler::new()
            .with_max_script_size(s.max_script_bytes)
            .with_max_string_size(s.max_script_bytes)
            .with_max_nested_blocks(15)
            .with_max_nested_tests(15)
            .with_max_includes(0);
        Engine {
            compiler,
            settings: s.clone(),
            hostname: config.hostname.clone(),
            scripts: scripts::ScriptStore::new(scripts::ScriptStore::root_for(data), s.max_script_bytes, s.max_scripts),
        }
    }

    /// The runtime for one delivery: only [`EXTENSIONS`] enabled, every limit set.
    pub(crate) fn runtime(&self) -> sieve::Runtime {
        let allowed: Vec<Capability> = EXTENSIONS.iter().chain(BUILTIN.iter()).map(|c| Capability::parse(c)).collect();
        let disabled: Vec<Capability> = Capability::all().iter().filter(|c| !allowed.contains(c)).cloned().collect();
        let mut rt = sieve::Runtime::new()
            .without_capabilities(disabled)
            .with_cpu_limit(self.settings.max_instructions)
            .with_max_redirects(self.settings.max_redirects)
            .with_max_out_messages(MAX_OUT_MESSAGES)
            .with_max_variable_size(MAX_VARIABLE_BYTES)
            .with_max_nested_includes(0)
            .with_default_vacation_expiry(self.settings.vacation_default_days.saturating_mul(86_400))
            .with_vacation_default_subject("Automatic reply")
            .with_vacation_subject_prefix("Auto: ")
            .with_local_hostname(self.hostname.clone());
        rt.set_env_variable("name", "Hermes".to_string());
        rt.set_env_variable("host", self.hostname.clone());
        rt
    }

    /// Compiles `script` after checking that it requires only offered extensions.
    pub fn compile(&self, script: &[u8]) -> Result<sieve::Sieve, CompileFailure> {
        if script.len() > self.settings.max_script_bytes {
            return Err(CompileFailure { line: 0, message: "script too large".into() });
        }
        check_requires(script)?;
        // sieve-rs has `panic!` paths in its parser; a script must never take the process down.
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.compiler.compile(script)))
            .map_err(|_| CompileFailure { line: 0, message: "the script could not be parsed".into() })?;
        compiled.map_err(|e| CompileFailure {
            line: e.line_num(),
            // sieve-rs appends " at line N, column M."; keep its wording, we prefix the line.
            message: e.to_string().split(" at line ").next().unwrap_or("syntax error").to_string(),
        })
    }

    /// The user's active script, compiled (from the cache when the file is unchanged).
    /// `Ok(None)`: no active script. `Err`: the script cannot be read or compiled.
    pub(crate) fn active_script(
        &self,
        user: &hermes_core::directory::UserId,
    ) -> Result<Option<Arc<sieve::Sieve>>, String> {
        let Some((_, path)) =
            self.scripts.active_path(user).map_err(|e| format!("cannot read the active script: {e}"))?
        else {
            return Ok(None);
        };
        let stamp = stamp(&path).map_err(|e| format!("cannot read the active script: {e}"))?;
        if let Some(hit) = cache_get(&path, stamp) {
            return Ok(Some(hit));
        }
        let text = std::fs::read(&path).map_err(|e| format!("cannot read the active script: {e}"))?;
        let compiled = Arc::new(self.compile(&text).map_err(|e| format!("the active script does not compile: {e}"))?);
        cache_put(path, stamp, compiled.clone());
        Ok(Some(compiled))
    }
}

type Stamp = (u64, u64, i128);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.ino(), m.len(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
}

/// Script path → (file stamp, compiled script).
type ScriptCache = HashMap<PathBuf, (Stamp, Arc<sieve::Sieve>)>;

static CACHE: LazyLock<Mutex<ScriptCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn cache_get(path: &Path, stamp: Stamp) -> Option<Arc<sieve::Sieve>> {
    let map = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    map.get(path).filter(|(s, _)| *s == stamp).map(|(_, c)| c.clone())
}

fn cache_put(path: PathBuf, stamp: Stamp, compiled: Arc<sieve::Sieve>) {
    let mut map = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(path, (stamp, compiled));
}

/// Checks the `require` commands at the start of a script (RFC 5228 §3.2: they come before
/// any other command) against [`EXTENSIONS`]. Anything that is not a well-formed require is
/// left to the compiler.
pub fn check_requires(script: &[u8]) -> Result<(), CompileFailure> {
    let mut lx = Lexer { s: script, i: 0, line: 1 };
    loop {
        lx.skip_space();
        if !lx.word_is("require") {
            return Ok(());
        }
        let line = lx.line;
        lx.i += "require".len();
        lx.skip_space();
        let names = match lx.peek() {
            Some(b'"') => lx.string().map(|s| vec![s]),
            Some(b'[') => {
                lx.i += 1;
                let mut v = Vec::new();
                loop {
                    lx.skip_space();
                    match lx.string() {
                        Some(s) => v.push(s),
                        None => break None,
                    }
                    lx.skip_space();
                    match lx.peek() {
                        Some(b',') => lx.i += 1,
                        Some(b']') => {
                            lx.i += 1;
                            break Some(v);
                        }
                        _ => break None,
                    }
                }
            }
            _ => None,
        };
        let Some(names) = names else { return Ok(()) };
        for n in names {
            let lower = n.to_ascii_lowercase();
            if !EXTENSIONS.contains(&lower.as_str()) && !BUILTIN.contains(&lower.as_str()) {
                return Err(CompileFailure { line, message: format!("extension {n:?} is not supported") });
            }
        }
        lx.skip_space();
        if lx.peek() != Some(b';') {
            return Ok(());
        }
        lx.i += 1;
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                b'/' if self.s.get(self.i + 1) == Some(&b'*') => {
                    self.i += 2;
                    while self.i < self.s.len() && !(self.s[self.i] == b'*' && self.s.get(self.i + 1) == Some(&b'/')) {
                        if self.s[self.i] == b'\n' {
                            self.line += 1;
                        }
                        self.i += 1;
                    }
                    self.i = (self.i + 2).min(self.s.len());
                }
                _ => return,
            }
        }
    }
    fn word_is(&self, w: &str) -> bool {
        let end = self.i + w.len();
        self.s.get(self.i..end).is_some_and(|x| x.eq_ignore_ascii_case(w.as_bytes()))
            && self.s.get(end).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
    }
    /// A quoted string (escapes `\"` and `\\`); `None` for anything else.
    fn string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.s.get(self.i + 1)?);
                    self.i += 2;
                }
                c => {
                    if c == b'\n' {
                        self.line += 1;
                    }
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// The ManageSieve `SIEVE` capability value.
pub fn sieve_capability() -> String {
    EXTENSIONS.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn requires_are_checked_against_the_offered_extensions() {
        assert!(check_requires(b"require [\"fileinto\", \"imap4flags\"];\nrequire \"vacation\";\nkeep;").is_ok());
        assert!(check_requires(b"# c\n/* multi\nline */ require \"comparator-i;ascii-casemap\"; keep;").is_ok());
        let e = check_requires(b"require \"fileinto\";\n\nrequire [\"vacation\", \"reject\"];").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("reject"));
        assert!(check_requires(b"require \"editheader\";").is_err());
        assert!(check_requires(b"keep;").is_ok());
        assert!(check_requires(b"require [\"fileinto\"").is_ok(), "malformed: left to the compiler");
    }

    #[test]
    fn compile_reports_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::host_default();
        let engine = Engine::new(&config, &DataDir::new(dir.path()));
        assert!(engine.compile(b"require \"fileinto\";\nfileinto \"a\";\n").is_ok());
        let e = engine.compile(b"require \"fileinto\";\n\nfileinto ;\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = engine.compile(b"require \"reject\";\nreject \"no\";\n").unwrap_err();
        assert_eq!(e.line, 1);
        let huge = vec![b' '; config.sieve.max_script_bytes + 1];
        assert!(engine.compile(&huge).is_err());
    }
}
