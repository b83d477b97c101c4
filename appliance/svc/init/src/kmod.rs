//! Loading the kernel modules the image carries: the list in `/etc/hermes/modules` (from the
//! manifest), each after its dependencies from `/lib/modules/VERSION/modules.dep`, with
//! `finit_module(2)`. Loading the drivers binds them to whatever devices exist (coldplug for
//! the drivers we ship).
//!
//! What it is not: modprobe. No aliases, options files or blacklists; a module is loaded by
//! its name from the manifest.
//!
//! Invariants: a module is loaded at most once (EEXIST counts as loaded); a module whose
//! hardware is absent (ENODEV, ENXIO) is not an error; one failure does not stop the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The manifest's module list in the image.
pub const MODULE_LIST: &str = "/etc/hermes/modules";

/// `modules.dep` parsed: module name → (path relative to the module folder, dependencies in
/// the file's order, which is load-from-last).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DepTable {
    pub entries: BTreeMap<String, (String, Vec<String>)>,
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl DepTable {
    pub fn parse(text: &str) -> DepTable {
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let Some((module, deps)) = line.split_once(':') else { continue };
            let module = module.trim();
            if module.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries.insert(name_of(module), (module.to_string(), deps));
        }
        DepTable { entries }
    }

    /// The paths to load for `name`, in load order (dependencies first), or `None` if unknown.
    pub fn load_order(&self, name: &str) -> Option<Vec<String>> {
        let (path, deps) = self.entries.get(&name.replace('-', "_"))?;
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(path.clone());
        Some(order)
    }
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    AlreadyLoaded,
    NoDevice,
    Failed(String),
}

/// Loads one module file.
pub fn load_file(path: &Path) -> Outcome {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("open: {e}")),
    };
    let params = CString::default();
    match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) => Outcome::Loaded,
        Err(nix::errno::Errno::EEXIST) => Outcome::AlreadyLoaded,
        Err(nix::errno::Errno::ENODEV | nix::errno::Errno::ENXIO) => Outcome::NoDevice,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The folder of the running kernel's modules.
pub fn module_dir() -> PathBuf {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    PathBuf::from("/lib/modules").join(release)
}

/// Loads every module of the list; returns `(loaded count, problems)`.
pub fn load_all(moddir: &Path, list: &[String]) -> (usize, Vec<String>) {
    let table = match std::fs::read_to_string(moddir.join("modules.dep")) {
        Ok(t) => DepTable::parse(&t),
        Err(e) => return (0, vec![format!("{}: {e}", moddir.join("modules.dep").display())]),
    };
    let builtin: BTreeSet<String> = std::fs::read_to_string(moddir.join("modules.builtin"))
        .map(|t| t.lines().map(name_of).collect())
        .unwrap_or_default();
    let mut done = BTreeSet::new();
    let mut loaded = 0;
    let mut problems = Vec::new();
    for name in list {
        if builtin.contains(&name.replace('-', "_")) {
            continue;
        }
        let Some(order) = table.load_order(name) else {
            problems.push(format!("{name}: not in modules.dep"));
            continue;
        };
        for path in order {
            if !done.insert(path.clone()) {
                continue;
            }
            match load_file(&moddir.join(&path)) {
                Outcome::Loaded => loaded += 1,
                Outcome::AlreadyLoaded | Outcome::NoDevice => {}
                Outcome::Failed(e) => problems.push(format!("{}: {e}", name_of(&path))),
            }
        }
    }
    (loaded, problems)
}

/// The module list file: one name a line, `#` comments.
pub fn read_list(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    #[test]
    fn load_order_puts_dependencies_first() {
        let t = DepTable::parse(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\nkernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n",
        );
        assert_eq!(
            t.load_order("virtio_net").unwrap(),
            vec![
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko"
            ]
        );
        assert_eq!(t.load_order("virtio-net"), t.load_order("virtio_net"));
        assert_eq!(t.load_order("nope"), None);
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_of("kernel/drivers/md/raid10.ko"), "raid10");
        assert_eq!(name_of("kernel/x/i2c-piix4.ko.xz"), "i2c_piix4");
    }
}
