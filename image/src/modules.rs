//! Kernel modules for the image: find each module the manifest names in an unpacked Debian
//! kernel package, add its dependencies (read from the module's own ELF `.modinfo` section, as
//! `depmod` does), and write a `modules.dep` for exactly that set.
//!
//! What it is not: depmod. No symbol resolution, aliases or soft dependencies: the manifest
//! names the drivers, and `depends=` (which the kernel build computed from symbols) gives the
//! rest. Debian ships no `modules.dep` in the package (its postinst runs depmod), hence this.
//!
//! Invariants: the closure is sorted by module path; `modules.dep` lists, for each module, its
//! transitive dependencies ordered so that loading them from the last to the first (what
//! modprobe and `hermes init` do) loads every module after its own dependencies.

use anyhow::{Context, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module found in the kernel tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module name (`virtio_net`): `-` in file names becomes `_`.
    pub name: String,
    /// Path relative to `lib/modules/VERSION` (`kernel/drivers/net/virtio_net.ko`).
    pub rel_path: String,
    /// Direct dependencies (module names), from `.modinfo`.
    pub depends: Vec<String>,
}

/// Module name from a file name: `virtio-net.ko` → `virtio_net`.
pub fn module_name(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".ko")?;
    Some(stem.replace('-', "_"))
}

/// Every `*.ko` under `moddir` (`lib/modules/VERSION`), by module name → relative path.
pub fn index(moddir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                let rel = path.strip_prefix(moddir)?.to_string_lossy().into_owned();
                out.insert(name, rel);
            }
        }
    }
    Ok(out)
}

/// The `key=value` strings of an ELF64 little-endian object's `.modinfo` section.
pub fn modinfo(elf: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| elf.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |o: usize| elf.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        bail!("not a little-endian ELF64 object");
    }
    let shoff = u64_at(0x28).ok_or_else(|| anyhow!("truncated ELF header"))? as usize;
    let shentsize = u16_at(0x3A).ok_or_else(|| anyhow!("truncated ELF header"))? as usize;
    let shnum = u16_at(0x3C).ok_or_else(|| anyhow!("truncated ELF header"))? as usize;
    let shstrndx = u16_at(0x3E).ok_or_else(|| anyhow!("truncated ELF header"))? as usize;
    if shentsize < 64 {
        bail!("bad section header size {shentsize}");
    }
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(base)?, u64_at(base + 24)? as usize, u64_at(base + 32)? as usize))
    };
    let (_, str_off, str_size) = section(shstrndx).ok_or_else(|| anyhow!("bad section string table"))?;
    let strtab =
        elf.get(str_off..str_off.saturating_add(str_size)).ok_or_else(|| anyhow!("bad section string table"))?;
    for i in 0..shnum {
        let Some((name_off, off, size)) = section(i) else { bail!("truncated section header {i}") };
        let Some(name) = strtab.get(name_off as usize..) else { continue };
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if name != b".modinfo" {
            continue;
        }
        let data = elf.get(off..off.saturating_add(size)).ok_or_else(|| anyhow!(".modinfo out of bounds"))?;
        return Ok(data
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = std::str::from_utf8(kv).ok()?;
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect());
    }
    bail!("no .modinfo section")
}

/// Reads a module file and returns its direct dependencies.
pub fn read_depends(path: &Path) -> anyhow::Result<Vec<String>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let info = modinfo(&data).with_context(|| format!("{}", path.display()))?;
    Ok(info
        .iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(',').filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")))
        .collect())
}

/// The wanted modules and everything they depend on. A wanted module that is neither a file
/// nor built in (`modules.builtin`) is an error; a built-in one is skipped (nothing to load).
pub fn closure(moddir: &Path, wanted: &[String], builtin: &BTreeSet<String>) -> anyhow::Result<Vec<Module>> {
    let index = index(moddir)?;
    let mut found: BTreeMap<String, Module> = BTreeMap::new();
    let mut queue: Vec<String> = wanted.iter().map(|w| w.replace('-', "_")).collect();
    while let Some(name) = queue.pop() {
        if found.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        let Some(rel) = index.get(&name) else {
            bail!("module `{name}` is not in {} (neither a .ko nor built in)", moddir.display());
        };
        let depends = read_depends(&moddir.join(rel))?;
        queue.extend(depends.iter().cloned());
        found.insert(name.clone(), Module { name, rel_path: rel.clone(), depends });
    }
    let mut out: Vec<Module> = found.into_values().collect();
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(out)
}

/// Names in `modules.builtin` (`kernel/drivers/md/md-mod.ko` → `md_mod`).
pub fn builtin(moddir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let path = moddir.join("modules.builtin");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().filter_map(|l| l.rsplit('/').next().and_then(module_name)).collect())
}

/// `modules.dep` text for a closure: `path: dep-path dep-path ...`, deps ordered so that the
/// last has no dependency among them.
pub fn modules_dep(modules: &[Module]) -> String {
    let by_name: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut out = String::new();
    for m in modules {
        // Post-order DFS gives dependencies before dependents; reversed, dependents first.
        let mut order: Vec<&str> = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit<'a>(
            name: &'a str,
            by_name: &BTreeMap<&'a str, &'a Module>,
            seen: &mut BTreeSet<&'a str>,
            order: &mut Vec<&'a str>,
        ) {
            if !seen.insert(name) {
                return;
            }
            if let Some(m) = by_name.get(name) {
                for d in &m.depends {
                    visit(d, by_name, seen, order);
                }
                order.push(m.rel_path.as_str());
            }
        }
        seen.insert(m.name.as_str());
        for d in &m.depends {
            visit(d, &by_name, &mut seen, &mut order);
        }
        order.reverse();
        out.push_str(&m.rel_path);
        out.push(':');
        for d in order {
            out.push(' ');
            out.push_str(d);
        }
        out.push('\n');
    }
    out
}

/// The `lib/modules/VERSION` folder of an unpacked kernel package (the only version there).
pub fn find_moddir(root: &Path) -> anyhow::Result<(String, PathBuf)> {
    let base = root.join("lib/modules");
    let mut versions: Vec<String> = std::fs::read_dir(&base)
        .with_context(|| format!("cannot read {}", base.display()))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    versions.sort();
    match versions.as_slice() {
        [one] => Ok((one.clone(), base.join(one))),
        [] => bail!("no kernel in {}", base.display()),
        many => bail!("several kernels in {}: {}", base.display(), many.join(", ")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn m(name: &str, deps: &[&str]) -> Module {
        Module {
            name: name.into(),
            rel_path: format!("kernel/{name}.ko"),
            depends: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn dep_lines_load_in_reverse() {
        // raid10 needs md_mod? (built in here) — model: a → b → c, a → c.
        let mods = vec![m("a", &["b", "c"]), m("b", &["c"]), m("c", &[])];
        let dep = modules_dep(&mods);
        assert_eq!(dep.lines().next().unwrap(), "kernel/a.ko: kernel/b.ko kernel/c.ko");
        assert!(dep.contains("kernel/c.ko:\n"));
    }

    #[test]
    fn names_from_files() {
        assert_eq!(module_name("virtio-net.ko").as_deref(), Some("virtio_net"));
        assert_eq!(module_name("README"), None);
    }

    #[test]
    fn modinfo_rejects_garbage() {
        assert!(modinfo(b"not elf").is_err());
        assert!(modinfo(b"\x7fELF\x02\x01").is_err());
    }

    #[test]
    fn modinfo_of_a_real_object() {
        // Build a tiny ELF64 object with a .modinfo section: the host's `as`/`cc` make one.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.s");
        std::fs::write(&src, ".section .modinfo,\"a\"\n.asciz \"name=demo\"\n.asciz \"depends=x,y-z\"\n").unwrap();
        let obj = dir.path().join("m.o");
        let Ok(status) = std::process::Command::new("as").arg("-o").arg(&obj).arg(&src).status() else { return };
        assert!(status.success());
        let deps = read_depends(&obj).unwrap();
        assert_eq!(deps, vec!["x".to_string(), "y_z".to_string()]);
    }
}
