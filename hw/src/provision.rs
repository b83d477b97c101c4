//! Creating, assembling and repairing md arrays: the data array (RAID10 over the chosen bays, with
//! hot spares, ext4 labelled `hermes-data`), boot-time assembly, and member removal and re-adding.
//!
//! What it is: pure planning ([`plan`]: bays → devices, with every refusal reason at once), the
//! exact argument vectors for Debian's `mdadm` and `mke2fs` ([`create_args`], [`mkfs_args`],
//! [`assemble_args`], [`add_args`]), a runner with a deadline ([`run`]), and the sysfs writes
//! that mark a member faulty and remove it ([`fail_member`], [`remove_member`]). The decision to
//! ship mdadm rather than write 1.2 superblocks ourselves is docs/adr/0003-raid-provisioning.md.
//!
//! What it is not: a policy (the health service decides when to remove or re-add) or a
//! confirmation prompt (the CLI asks for `--yes`).
//!
//! Invariants: nothing destructive runs before [`plan`] has accepted every disk (present in its
//! bay, not a member of any array, not mounted, no partitions, no filesystem or md superblock
//! unless `force` says the admin confirmed overwriting it); every external program runs with a
//! deadline and its output is captured for the error text; array and device names are validated
//! before any path or argument is built.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::discover::{BayMap, BlockDevice};
use crate::md::{MdError, Snapshot, control::validate_name};
use crate::sysfs::{list_dir, under, write_attr};

/// The ext4 label init looks for to mount `/data` (`hermes_svc_init::mounts::DATA_LABEL`).
pub const DATA_LABEL: &str = "hermes-data";
/// The md array name stored in the superblock (with homehost `any`, so any box assembles it).
pub const ARRAY_NAME: &str = "hermes-data";
/// Where the image carries Debian's mdadm and mke2fs (`[image] tools` in image/manifest.toml).
pub const MDADM: &str = "/sbin/mdadm";
pub const MKE2FS: &str = "/sbin/mke2fs";
/// Creating the array returns at once (the resync runs in the kernel); 2 minutes is generous.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(120);
/// mke2fs with lazy inode-table init writes little: minutes even on 16 large disks.
pub const MKFS_TIMEOUT: Duration = Duration::from_secs(600);
/// Assembly reads superblocks only.
pub const ASSEMBLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Fewest active members of a RAID10 (two mirrored pairs).
pub const MIN_RAID10_DEVICES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("{program} did not finish within {secs} s")]
    Timeout { program: String, secs: u64 },
    #[error("{program} failed ({status}): {output}")]
    Failed { program: String, status: String, output: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error(transparent)]
    Md(#[from] MdError),
}

/// What provisioning will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `/dev/mdN` to create.
    pub array: String,
    /// Active members, in bay order: (bay, device name).
    pub active: Vec<(u16, String)>,
    /// Hot spares: the highest bays chosen.
    pub spares: Vec<(u16, String)>,
    /// Use only this much of each disk (mdadm `--size`); `None`: the whole disk.
    pub size_mib: Option<u64>,
}

/// Turns a bay selection into a plan. `devices` and `map` come from [`crate::discover`];
/// `snapshot` is the current md state; `mounted` lists the device names with a mounted
/// filesystem (from `/proc/self/mounts`); `signature` reports what a disk already carries
/// ([`read_signature`]). Every problem is reported at once.
#[allow(clippy::too_many_arguments, reason = "each input is a separate fact the caller gathers")]
pub fn plan(
    bays: &[u16],
    spares: u16,
    devices: &[BlockDevice],
    map: &BayMap,
    snapshot: &Snapshot,
    mounted: &[String],
    signature: &dyn Fn(&str) -> Option<String>,
    force: bool,
) -> Result<Plan, ProvisionError> {
    let mut why = Vec::new();
    let mut chosen: Vec<u16> = bays.to_vec();
    chosen.sort_unstable();
    chosen.dedup();
    if chosen.len() != bays.len() {
        why.push("a bay is listed twice".to_string());
    }
    let active_count = chosen.len().saturating_sub(usize::from(spares));
    if active_count < MIN_RAID10_DEVICES {
        why.push(format!(
            "RAID10 needs at least {MIN_RAID10_DEVICES} active disks; {} bays with {spares} spares leave {active_count}",
            chosen.len()
        ));
    }
    let in_arrays: Vec<(&str, &str)> = snapshot
        .arrays
        .values()
        .flat_map(|a| a.members.iter().map(move |m| (a.name.as_str(), m.name.as_str())))
        .collect();
    let mut picked = Vec::new();
    for &bay in &chosen {
        let Some((name, _)) = map.bays.get(&bay) else {
            why.push(format!("bay {bay} is empty"));
            continue;
        };
        let is_part = |m: &str| {
            m == name
                || m.strip_prefix(name.as_str()).is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit() || b == b'p'))
        };
        if let Some((array, _)) = in_arrays.iter().find(|(_, m)| is_part(m)) {
            why.push(format!("bay {bay} ({name}) is a member of {array}"));
        }
        if mounted.iter().any(|m| is_part(m)) {
            why.push(format!("bay {bay} ({name}) has a mounted filesystem"));
        }
        if devices.iter().all(|d| &d.name != name) {
            why.push(format!("bay {bay} ({name}) disappeared"));
        }
        if !force && let Some(sig) = signature(name) {
            why.push(format!("bay {bay} ({name}) carries {sig} (confirm overwriting it)"));
        }
        picked.push((bay, name.clone()));
    }
    if !why.is_empty() {
        return Err(ProvisionError::Refused(why));
    }
    let free = (0..1000u32).map(|n| format!("md{n}")).find(|n| !snapshot.arrays.contains_key(n)).unwrap_or_default();
    let spares_at = picked.len() - usize::from(spares);
    let spare_list = picked.split_off(spares_at);
    Ok(Plan { array: format!("/dev/{free}"), active: picked, spares: spare_list, size_mib: None })
}

/// `mdadm --create`: metadata 1.2 on whole disks (no partition table), RAID10 near-2 layout,
/// homehost `any` and name [`ARRAY_NAME`] so the array assembles on any box, an internal bitmap
/// so a briefly missing disk resyncs only what changed.
pub fn create_args(plan: &Plan, dev_root: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "--create",
        plan.array.as_str(),
        "--run",
        "--metadata=1.2",
        "--level=10",
        "--layout=n2",
        "--bitmap=internal",
        "--homehost=any",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    a.push(format!("--name={ARRAY_NAME}"));
    a.push(format!("--raid-devices={}", plan.active.len()));
    a.push(format!("--spare-devices={}", plan.spares.len()));
    if let Some(mib) = plan.size_mib {
        a.push(format!("--size={mib}M"));
    }
    for (_, d) in plan.active.iter().chain(&plan.spares) {
        a.push(dev_root.join(d).display().to_string());
    }
    a
}

/// `mke2fs` for the data volume: ext4, label [`DATA_LABEL`], inode tables initialised lazily by the
/// kernel after mount, so creation takes seconds on a big array.
pub fn mkfs_args(array: &str) -> Vec<String> {
    ["-q", "-F", "-t", "ext4", "-L", DATA_LABEL, "-E", "lazy_itable_init=1,lazy_journal_init=1", array]
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// `mdadm --assemble --scan`: every array whose members are present, with no mdadm.conf.
pub fn assemble_args() -> Vec<String> {
    ["--assemble", "--scan", "--homehost=any", "--run"].iter().map(ToString::to_string).collect()
}

/// `mdadm /dev/mdN --add /dev/sdX`: a replacement disk becomes a spare; md rebuilds onto it.
pub fn add_args(array: &str, dev_root: &Path, device: &str) -> Result<Vec<String>, MdError> {
    validate_name(array)?;
    validate_device(device)?;
    Ok(vec![format!("/dev/{array}"), "--add".into(), dev_root.join(device).display().to_string()])
}

/// A kernel disk name (`sda`, `nvme0n1`, `vdb`): letters and digits only.
pub fn validate_device(name: &str) -> Result<(), MdError> {
    if !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(MdError::BadName(name.to_string()))
    }
}

/// Runs `program args` with stdin closed and a deadline; stdout and stderr (at most 64 KiB) are
/// returned, or made the error's text.
pub fn run(program: &str, args: &[String], timeout: Duration) -> Result<String, ProvisionError> {
    let mut child = Command::new(program)
        .args(args)
        .env("MDADM_NO_UDEV", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProvisionError::Spawn { program: program.to_string(), source })?;
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(64 * 1024).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = collect(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = collect(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProvisionError::Timeout { program: program.to_string(), secs: timeout.as_secs() });
            }
        }
    };
    let mut text = out.join().unwrap_or_default();
    text.extend(err.join().unwrap_or_default());
    let text = String::from_utf8_lossy(&text).trim().to_string();
    if status.success() {
        Ok(text)
    } else {
        Err(ProvisionError::Failed { program: program.to_string(), status: status.to_string(), output: text })
    }
}

/// What a disk already carries, from its first 8 KiB: an md 1.x superblock (magic `a92b4efc`
/// at 4096 for 1.2, at 0 for 1.1), an ext2/3/4 filesystem (magic `ef53` at 1080), or a partition
/// table (the `55 aa` MBR signature, which a GPT's protective MBR also has). `None`: blank, or
/// unreadable (the create step will report that).
pub fn read_signature(node: &Path) -> Option<String> {
    let mut f = std::fs::File::open(node).ok()?;
    let mut buf = vec![0u8; 8192];
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    signature_of(&buf[..n])
}

/// The pure part of [`read_signature`].
pub fn signature_of(head: &[u8]) -> Option<String> {
    let md_magic = 0xa92b_4efc_u32.to_le_bytes();
    if head.get(4096..4100) == Some(&md_magic[..]) || head.get(0..4) == Some(&md_magic[..]) {
        return Some("an md RAID superblock".into());
    }
    if head.get(1080..1082) == Some(&[0x53, 0xEF][..]) {
        return Some("an ext2/3/4 filesystem".into());
    }
    if head.get(510..512) == Some(&[0x55, 0xAA][..]) {
        return Some("a partition table".into());
    }
    None
}

/// Device names with a mounted filesystem, from `ROOT/proc/self/mounts` (`/dev/sda1` → `sda1`).
pub fn mounted_devices(root: &Path) -> Vec<String> {
    let text =
        crate::sysfs::read_bounded(&under(root, "/proc/self/mounts"), 1 << 20).ok().flatten().unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("/dev/").map(str::to_string))
        .collect()
}

/// Marks a member faulty (`dev-X/state` ← `faulty`), as `mdadm --fail` does.
pub fn fail_member(root: &Path, array: &str, device: &str) -> Result<(), MdError> {
    let p = member_state(root, array, device)?;
    write_attr(&p, "faulty").map_err(|source| MdError::Io { path: p, source })
}

/// Removes a faulty member (`dev-X/state` ← `remove`). md refuses (EBUSY) until it has taken the
/// member out of its slot, which it does right after the failure: retried for up to `wait`.
pub fn remove_member(root: &Path, array: &str, device: &str, wait: Duration) -> Result<(), MdError> {
    let p = member_state(root, array, device)?;
    let deadline = Instant::now() + wait;
    loop {
        match write_attr(&p, "remove") {
            Ok(()) => return Ok(()),
            // Already gone (md removed it, or the disk was pulled and cleaned up).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(MdError::Io { path: p, source: e }),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn member_state(root: &Path, array: &str, device: &str) -> Result<PathBuf, MdError> {
    validate_name(array)?;
    validate_device(device)?;
    Ok(under(root, "/sys/block").join(array).join("md").join(format!("dev-{device}")).join("state"))
}

/// Assembles every md array found (boot, before `/data` is looked for). Returns what happened,
/// one line each, for the console; a box without mdadm or without arrays says so and goes on.
pub fn assemble_all(root: &Path) -> Vec<String> {
    let mdadm = under(root, MDADM);
    if !mdadm.exists() {
        return vec![format!("{} is not in the image; no arrays assembled", mdadm.display())];
    }
    let before: Vec<String> = list_dir(&under(root, "/sys/block"), 4096)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("md"))
        .collect();
    let mut out = Vec::new();
    match run(&mdadm.display().to_string(), &assemble_args(), ASSEMBLE_TIMEOUT) {
        Ok(text) => out.extend(text.lines().map(str::to_string)),
        // Exit status 1 with "No arrays found": a fresh box.
        Err(ProvisionError::Failed { output, .. }) if output.contains("No arrays found") || output.is_empty() => {
            out.push("no md arrays found".to_string())
        }
        Err(e) => out.push(e.to_string()),
    }
    let after: Vec<String> = list_dir(&under(root, "/sys/block"), 4096)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("md"))
        .collect();
    for a in after.iter().filter(|a| !before.contains(a)) {
        out.push(format!("{a} assembled"));
    }
    out
}

/// Creates the array and its filesystem. Run as root (mdadm refuses anyone else).
pub fn provision(plan: &Plan, dev_root: &Path, root: &Path) -> Result<String, ProvisionError> {
    let mdadm = under(root, MDADM).display().to_string();
    let mke2fs = under(root, MKE2FS).display().to_string();
    let mut log = run(&mdadm, &create_args(plan, dev_root), CREATE_TIMEOUT)?;
    log.push('\n');
    log.push_str(&run(&mke2fs, &mkfs_args(&plan.array), MKFS_TIMEOUT)?);
    Ok(log.trim().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use crate::discover::{BaySource, DiskKind};

    fn disks(n: usize) -> (Vec<BlockDevice>, BayMap) {
        let mut devs = Vec::new();
        let mut map = BayMap::default();
        for i in 0..n {
            let name = format!("sd{}", (b'a' + i as u8) as char);
            devs.push(BlockDevice {
                name: name.clone(),
                kind: DiskKind::Ata,
                vendor: None,
                model: None,
                serial: None,
                size_bytes: None,
                rotational: None,
                removable: false,
                usb: false,
                location: None,
            });
            map.bays.insert(i as u16, (name, BaySource::Default));
        }
        (devs, map)
    }

    #[test]
    fn plan_takes_the_highest_bays_as_spares_and_builds_mdadm_arguments() {
        let (devs, map) = disks(6);
        let p = plan(&[0, 1, 2, 3, 4, 5], 2, &devs, &map, &Snapshot::default(), &[], &|_| None, false).unwrap();
        assert_eq!(p.array, "/dev/md0");
        assert_eq!(p.active.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(p.spares, [(4, "sde".to_string()), (5, "sdf".to_string())]);
        let args = create_args(&p, Path::new("/dev")).join(" ");
        assert_eq!(
            args,
            "--create /dev/md0 --run --metadata=1.2 --level=10 --layout=n2 --bitmap=internal --homehost=any \
             --name=hermes-data --raid-devices=4 --spare-devices=2 /dev/sda /dev/sdb /dev/sdc /dev/sdd /dev/sde /dev/sdf"
        );
        let small = Plan { size_mib: Some(256), ..p.clone() };
        assert!(create_args(&small, Path::new("/dev")).contains(&"--size=256M".to_string()));
        assert_eq!(
            mkfs_args("/dev/md0").join(" "),
            "-q -F -t ext4 -L hermes-data -E lazy_itable_init=1,lazy_journal_init=1 /dev/md0"
        );
    }

    #[test]
    fn plan_refuses_everything_wrong_at_once() {
        let (devs, map) = disks(5);
        let dir = tempfile::tempdir().unwrap();
        let tree = crate::testutil::tree::FakeTree::new(dir.path());
        tree.add_md("md0", "raid1", 2, &[("sda", Some(0), "in_sync"), ("sdb", Some(1), "in_sync")]);
        let snap = crate::md::read_arrays(dir.path()).unwrap();
        let sig = |n: &str| (n == "sdc").then(|| "an ext2/3/4 filesystem".to_string());
        let Err(ProvisionError::Refused(why)) =
            plan(&[0, 1, 2, 3, 9, 3], 1, &devs, &map, &snap, &["sdd1".into()], &sig, false)
        else {
            panic!("accepted")
        };
        let text = why.join("\n");
        for needle in [
            "listed twice",
            "bay 9 is empty",
            "(sda) is a member of md0",
            "(sdb) is a member of md0",
            "(sdc) carries an ext2/3/4",
            "(sdd) has a mounted",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let Err(ProvisionError::Refused(why)) =
            plan(&[2, 3, 4], 0, &devs, &map, &Snapshot::default(), &[], &|_| None, false)
        else {
            panic!("accepted")
        };
        assert!(why[0].contains("at least 4"), "{why:?}");
        // `force` (the admin confirmed) accepts an old signature, never an active member.
        assert!(plan(&[1, 2, 3, 4], 0, &devs, &map, &Snapshot::default(), &[], &sig, true).is_ok());
        assert!(plan(&[0, 2, 3, 4], 0, &devs, &map, &snap, &[], &sig, true).is_err());
    }

    #[test]
    fn signatures() {
        let mut head = vec![0u8; 8192];
        assert_eq!(signature_of(&head), None);
        head[510] = 0x55;
        head[511] = 0xAA;
        assert_eq!(signature_of(&head).as_deref(), Some("a partition table"));
        head[1080] = 0x53;
        head[1081] = 0xEF;
        assert_eq!(signature_of(&head).as_deref(), Some("an ext2/3/4 filesystem"));
        head[4096..4100].copy_from_slice(&0xa92b_4efc_u32.to_le_bytes());
        assert_eq!(signature_of(&head).as_deref(), Some("an md RAID superblock"));
        assert_eq!(signature_of(&head[..100]), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sdz"), &head).unwrap();
        assert_eq!(read_signature(&dir.path().join("sdz")).as_deref(), Some("an md RAID superblock"));
    }

    #[test]
    fn member_fail_and_remove_write_sysfs_and_validate_names() {
        let dir = tempfile::tempdir().unwrap();
        let tree = crate::testutil::tree::FakeTree::new(dir.path());
        tree.add_md("md0", "raid10", 4, &[("sda", Some(0), "in_sync")]);
        fail_member(dir.path(), "md0", "sda").unwrap();
        let state = tree.path("/sys/block/md0/md/dev-sda/state");
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "faulty");
        remove_member(dir.path(), "md0", "sda", Duration::from_millis(10)).unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "remove");
        assert!(fail_member(dir.path(), "md0", "../x").is_err());
        assert!(fail_member(dir.path(), "../md0", "sda").is_err());
        assert!(add_args("md0", Path::new("/dev"), "sd a").is_err());
        assert_eq!(add_args("md0", Path::new("/dev"), "sdq").unwrap().join(" "), "/dev/md0 --add /dev/sdq");
    }

    #[test]
    fn runner_reports_failure_output_and_enforces_the_deadline() {
        let out = run("/bin/sh", &["-c".into(), "echo hi; echo oops >&2; exit 3".into()], Duration::from_secs(10));
        match out {
            Err(ProvisionError::Failed { output, .. }) => assert!(output.contains("hi") && output.contains("oops")),
            other => panic!("{other:?}"),
        }
        let t = Instant::now();
        assert!(matches!(
            run("/bin/sleep", &["30".into()], Duration::from_millis(300)),
            Err(ProvisionError::Timeout { .. })
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(run("/nonexistent/mdadm", &[], Duration::from_secs(1)), Err(ProvisionError::Spawn { .. })));
    }

    #[test]
    fn assembly_without_mdadm_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let lines = assemble_all(dir.path());
        assert!(lines[0].contains("not in the image"), "{lines:?}");
    }
}
