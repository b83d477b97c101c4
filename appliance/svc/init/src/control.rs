//! Init's control socket, `DATA/run/control.sock` (root only, 0600): one JSON object per line,
//! one answer line each, like the host-mode supervisor's, so `hermes status` works on the
//! appliance too.
//!
//! ```text
//! {"op":"status"}                       -> hermes_core::ipc::ControlResponse
//! {"op":"firmware_status"}              -> {"ok":true,"firmware":{slots, running, ...}}
//! {"op":"firmware_install","path":"/dev/vdb","force":false,"reboot":true}
//!                                       -> {"ok":true,"installed":{...},"rebooting":true}
//! {"op":"reboot"}                       -> {"ok":true,"rebooting":true}, then the reboot
//! {"op":"factory_reset"}                -> {"ok":true,"rebooting":true}: /data erased at the next boot
//! {"op":"provision","bays":[0,...],"spares":2,"size_mib":null}
//!                                       -> {"ok":true,"output":"...","rebooting":true}
//! {"op":"time_status"}                  -> {"ok":true,"time":{now, servers, last_sync, offset_ms, ...}}
//! {"op":"time_sync"}                    -> the same after polling the NTP servers now
//! {"op":"time_set","unix":N}            -> {"ok":true,...}; refused while NTP servers are configured
//! {"op":"network_status"}               -> {"ok":true,"network":{interfaces, dns, config_text, pending}}
//! {"op":"network_apply"}                -> {"ok":true,"changes":[...],"confirm_before":N}
//! {"op":"network_confirm"}              -> {"ok":true}; else the change is rolled back at confirm_before
//! anything else                         -> {"ok":false,"error":"..."}
//! ```
//!
//! What it is not: an admin API. It answers root on the box (the console, and later the admin
//! service once the manifest grants it the socket); accounts and settings are the admin UI's.
//!
//! Invariants: a request line is bounded ([`MAX_LINE`]) and an idle connection closed after
//! [`IDLE`]; a bad request is answered, never a reason to drop the socket or panic; one firmware
//! operation runs at a time ([`FIRMWARE_LOCK`]); an install that reboots answers first.

use crate::Halt;
use crate::firmware::{self, FirmwareError, InstallOptions, Installed, Running};
use crate::services::{State, Supervisor};
use hermes_core::ipc::{ControlResponse, ServiceState, ServiceStatus};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest request line.
pub const MAX_LINE: u64 = 4096;
/// An idle connection is closed after this.
pub const IDLE: Duration = Duration::from_secs(30);
/// One firmware operation at a time (console, socket and the trial watch).
pub static FIRMWARE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    FirmwareStatus,
    FirmwareInstall {
        /// A bundle file or a block device holding one.
        path: PathBuf,
        #[serde(default)]
        force: bool,
        #[serde(default = "yes")]
        reboot: bool,
    },
    /// Reboot now (answered first). See [`crate::system_ops`].
    Reboot,
    /// Erase everything on `/data` at the next boot, then reboot (disks stay provisioned).
    FactoryReset,
    /// Provision the data disks as the console's `hermes hw provision` would, then reboot.
    Provision {
        bays: Vec<u16>,
        #[serde(default)]
        spares: u16,
        #[serde(default)]
        size_mib: Option<u64>,
    },
    /// The clock and NTP state ([`crate::ntp`]).
    TimeStatus,
    /// Poll the NTP servers now and apply the result.
    TimeSync,
    /// Set the clock by hand (only with no NTP server configured).
    TimeSet {
        unix: i64,
    },
    /// Interfaces, addresses, routes, resolvers and `network.toml` ([`crate::net`]).
    NetworkStatus,
    /// Re-apply `network.toml` now, rolled back unless confirmed within 120 s.
    NetworkApply,
    /// Keep the settings of the last `network_apply`.
    NetworkConfirm,
}

fn yes() -> bool {
    true
}

/// Why the ESP cannot be used, if it cannot.
fn esp_ready() -> Result<&'static Path, FirmwareError> {
    let esp = Path::new(firmware::ESP_MOUNT);
    if !crate::mounts::is_mounted(firmware::ESP_MOUNT) {
        return Err(FirmwareError::Other(format!(
            "no EFI system partition is mounted on {} (this boot did not come from the Hermes disk image)",
            esp.display()
        )));
    }
    Ok(esp)
}

/// The firmware status of this box.
pub async fn firmware_status() -> Result<firmware::Status, String> {
    let _guard = FIRMWARE_LOCK.lock().await;
    tokio::task::spawn_blocking(|| esp_ready().and_then(|esp| firmware::status(esp, &Running::here())))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Verifies and installs the bundle at `path` (a file or a block device).
pub async fn firmware_install(path: PathBuf, force: bool) -> Result<Installed, String> {
    firmware_install_from(path, None, force).await
}

/// [`firmware_install`] from `file` when given (a service's upload, opened and checked by
/// [`open_upload`]; `path` then only names it), else from `path`.
async fn firmware_install_from(path: PathBuf, file: Option<std::fs::File>, force: bool) -> Result<Installed, String> {
    let _guard = FIRMWARE_LOCK.lock().await;
    tokio::task::spawn_blocking(move || {
        let esp = esp_ready()?;
        let key = firmware::trusted_key()?;
        let bytes = match file {
            Some(f) => firmware::read_bundle_from(f, &path)?,
            None => firmware::read_bundle(&path)?,
        };
        firmware::install(esp, &bytes, &key, &Running::here(), InstallOptions { force })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Marks the running slot good by hand.
pub async fn firmware_mark_good() -> Result<Option<String>, String> {
    let _guard = FIRMWARE_LOCK.lock().await;
    tokio::task::spawn_blocking(|| esp_ready().and_then(|esp| firmware::mark_good(esp, &Running::here())))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The status answer, in the host-mode supervisor's shape.
pub fn status_response(sup: &Supervisor, started_at: i64) -> ControlResponse {
    let services = sup
        .statuses()
        .into_iter()
        .map(|s| ServiceStatus {
            name: s.name,
            pid: s.pid,
            state: match s.state {
                State::Waiting | State::Starting => ServiceState::Starting,
                State::Running => ServiceState::Running,
                State::Backoff => ServiceState::Backoff,
                State::Stopping => ServiceState::Stopping,
                State::Failed | State::Stopped | State::NotStarted => ServiceState::Stopped,
            },
            restarts: s.restarts,
            started_at: s.started_at,
            last_exit: match (s.state, s.last_exit) {
                (State::Failed, Some(e)) => Some(format!("{e}; failed: left stopped after its start limit")),
                (State::NotStarted, _) => Some(sup.not_started_reason()),
                (_, e) => e,
            },
        })
        .collect();
    ControlResponse {
        ok: true,
        error: None,
        supervisor_pid: std::process::id(),
        started_at,
        services,
        endpoints: sup.endpoints(),
    }
}

fn error(text: impl Into<String>) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": text.into()})
}

/// Who sent a request, from the socket's peer credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Root on the box: the console's `hermes` commands.
    Root,
    /// A service the manifest lets connect (`[init] control_clients`: the admin UI).
    Service { uid: u32 },
}

/// The folder a service's firmware upload must sit in (`DATA/admin/uploads`): a client that
/// is not root names a file there, never a device or another path (init reads it as root).
pub const UPLOADS: &str = "admin/uploads";

/// Opens a service's upload: `path` must be a regular file that the caller `uid` owns, under
/// `DATA/admin/uploads`. The checks are made on the open file (`fstat`, and the path the kernel
/// gives for the descriptor), so swapping the file or a folder for a link, a FIFO or a device
/// between the check and the read changes nothing: what is read is what was checked. Opened
/// with `O_NOFOLLOW` (a link is refused) and `O_NONBLOCK` (a FIFO cannot hang init).
pub fn open_upload(data_root: &Path, path: &Path, uid: u32) -> Result<(PathBuf, std::fs::File), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let uploads = data_root.join(UPLOADS);
    let uploads = uploads.canonicalize().map_err(|e| format!("{}: {e}", uploads.display()))?;
    let refused = || {
        format!(
            "{} is not an uploaded file: a service may install only a bundle it stored under {}",
            path.display(),
            uploads.display()
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(
            |e| if e.raw_os_error() == Some(libc::ELOOP) { refused() } else { format!("{}: {e}", path.display()) },
        )?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_file() || !real.starts_with(&uploads) || meta.uid() != uid {
        return Err(refused());
    }
    Ok((real, file))
}

/// Answers one request line; `Some(halt)` when the box should go down after the answer.
pub async fn answer(
    line: &[u8],
    sup: &Supervisor,
    started_at: i64,
    caller: Caller,
) -> (serde_json::Value, Option<Halt>) {
    let mut request = match serde_json::from_slice::<Request>(line) {
        Ok(r) => r,
        Err(e) => return (error(format!("bad request: {e}")), None),
    };
    let mut upload = None;
    if let (Caller::Service { uid }, Request::FirmwareInstall { path, .. }) = (caller, &mut request) {
        match open_upload(sup.data.root(), path, uid) {
            Ok((real, file)) => {
                *path = real;
                upload = Some(file);
            }
            Err(e) => {
                crate::log::say(&format!("firmware: install refused to uid {uid}: {e}"));
                return (error(e), None);
            }
        }
    }
    match request {
        Request::Status => {
            (serde_json::to_value(status_response(sup, started_at)).unwrap_or_else(|e| error(e.to_string())), None)
        }
        Request::FirmwareStatus => match firmware_status().await {
            Ok(s) => (serde_json::json!({"ok": true, "firmware": s}), None),
            Err(e) => (error(e), None),
        },
        Request::FirmwareInstall { path, force, reboot } => match firmware_install_from(path, upload, force).await {
            Ok(installed) => {
                crate::log::say(&format!(
                    "firmware: installed {} as {}{}",
                    installed.version,
                    installed.file,
                    if reboot { "; rebooting into it" } else { "; it boots at the next reboot" }
                ));
                (
                    serde_json::json!({"ok": true, "installed": installed, "rebooting": reboot}),
                    reboot.then_some(Halt::Reboot),
                )
            }
            Err(e) => {
                crate::log::say(&format!("firmware: install refused: {e}"));
                (error(e), None)
            }
        },
        Request::Reboot => crate::system_ops::reboot(sup, caller),
        Request::FactoryReset => crate::system_ops::factory_reset(sup, caller),
        Request::Provision { bays, spares, size_mib } => {
            crate::system_ops::provision(sup, caller, &bays, spares, size_mib).await
        }
        Request::TimeStatus => (crate::ntp::op_status(&sup.data), None),
        Request::TimeSync => (crate::ntp::op_sync(&sup.data).await, None),
        Request::TimeSet { unix } => (crate::ntp::op_set(&sup.data, unix).await, None),
        Request::NetworkStatus => (crate::net::op_status().await, None),
        Request::NetworkApply => (crate::net::op_apply().await, None),
        Request::NetworkConfirm => (crate::net::op_confirm(), None),
    }
}

/// Serves the control socket until the runtime ends.
pub async fn serve(sup: Arc<Supervisor>, started_at: i64, halt: mpsc::UnboundedSender<Halt>) {
    let path = sup.data.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            crate::log::say(&format!("control: cannot listen on {}: {e}", path.display()));
            return;
        }
    };
    // Root's alone, unless the manifest names clients (`[init] control_clients`, the admin UI):
    // then its group too. What a client that is not root may ask is narrowed per request
    // ([`Caller`]).
    let shared = !sup.manifest.init.control_clients.is_empty();
    if shared && let Some(gid) = hermes_core::manifest::socket_gid(hermes_core::manifest::CONTROL_SOCKET) {
        let _ = nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(gid)));
    }
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(if shared { 0o660 } else { 0o600 }));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(session(stream, sup.clone(), started_at, halt.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn session(
    stream: tokio::net::UnixStream,
    sup: Arc<Supervisor>,
    started_at: i64,
    halt: mpsc::UnboundedSender<Halt>,
) {
    // Who is asking: the kernel's word (SO_PEERCRED), not the request's.
    let caller = match stream.peer_cred() {
        Ok(c) if c.uid() == 0 => Caller::Root,
        Ok(c) => Caller::Service { uid: c.uid() },
        Err(_) => return,
    };
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE);
        match tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let too_long = !line.ends_with(b"\n");
        let (value, then) =
            if too_long { (error("request too long"), None) } else { answer(&line, &sup, started_at, caller).await };
        let Ok(mut json) = serde_json::to_vec(&value) else { return };
        json.push(b'\n');
        let written = write.write_all(&json).await.is_ok();
        if let Some(h) = then {
            let _ = write.shutdown().await;
            let _ = halt.send(h);
            return;
        }
        if !written || too_long {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use hermes_core::manifest::Manifest;
    use hermes_core::paths::DataDir;
    use tokio::io::AsyncBufReadExt;

    #[test]
    fn requests_parse() {
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(), Request::Status);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"firmware_status"}"#).unwrap(), Request::FirmwareStatus);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"firmware_install","path":"/dev/vdb"}"#).unwrap(),
            Request::FirmwareInstall { path: "/dev/vdb".into(), force: false, reboot: true }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"firmware_install"}"#).is_err());
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).unwrap(), Request::Reboot);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"factory_reset"}"#).unwrap(), Request::FactoryReset);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"provision","bays":[0,1,2,3],"spares":0,"size_mib":null}"#)
                .unwrap(),
            Request::Provision { bays: vec![0, 1, 2, 3], spares: 0, size_mib: None }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"provision","bays":[0,1,2,3,4],"spares":1,"size_mib":256}"#)
                .unwrap(),
            Request::Provision { bays: vec![0, 1, 2, 3, 4], spares: 1, size_mib: Some(256) }
        );
        for bad in [
            r#"{"op":"provision"}"#,
            r#"{"op":"provision","bays":[-1]}"#,
            r#"{"op":"provision","bays":[70000]}"#,
            r#"{"op":"provision","bays":"0-15"}"#,
            r#"{"op":"provision","bays":[0,1,2,3],"spares":-2}"#,
            r#"{"op":"reboot_now"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    /// A service may install only a regular file it owns under DATA/admin/uploads: not a
    /// device, a FIFO, a path outside, a link (even one pointing inside), or another's file.
    #[test]
    fn a_service_installs_only_uploaded_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let uploads = dir.path().join(UPLOADS);
        std::fs::create_dir_all(&uploads).unwrap();
        std::fs::write(uploads.join("u1.bundle"), b"x").unwrap();
        std::fs::write(dir.path().join("elsewhere"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), uploads.join("link")).unwrap();
        std::os::unix::fs::symlink(uploads.join("u1.bundle"), uploads.join("inner-link")).unwrap();
        std::fs::create_dir(uploads.join("sub")).unwrap();
        nix::unistd::mkfifo(&uploads.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let me = std::fs::metadata(uploads.join("u1.bundle")).unwrap().uid();
        let (real, _file) = open_upload(dir.path(), &uploads.join("u1.bundle"), me).unwrap();
        assert_eq!(real, uploads.canonicalize().unwrap().join("u1.bundle"));
        for bad in [
            uploads.join("../elsewhere"),
            uploads.join("link"),
            uploads.join("inner-link"),
            uploads.join("sub"),
            uploads.join("fifo"),
            uploads.join("missing"),
            PathBuf::from("/dev/null"),
        ] {
            assert!(open_upload(dir.path(), &bad, me).is_err(), "{}", bad.display());
        }
        // Another uid's file in the folder is not this caller's upload.
        assert!(open_upload(dir.path(), &uploads.join("u1.bundle"), me + 1).is_err());
    }

    /// A real socket: `status` in the supervisor's shape (so `hermes status` reads it), bad
    /// requests answered, firmware ops refused clearly where no ESP is mounted.
    #[tokio::test]
    async fn socket_answers() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.run_dir()).unwrap();
        let manifest = Manifest::parse(include_str!("../../../../image/manifest.toml")).unwrap();
        let sup = Supervisor::new(
            manifest,
            data.clone(),
            PathBuf::from("/bin/false"),
            Arc::new(crate::reaper::Reaper::default()),
            std::time::Instant::now(),
            None,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(sup, 1234, tx));
        let path = data.control_socket();
        let stream = loop {
            if let Ok(s) = tokio::net::UnixStream::connect(&path).await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mode = std::fs::metadata(&path).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions())).unwrap();
        // The manifest lets the admin UI connect: root's, group hermes-s-control, 0660.
        assert_eq!(mode & 0o777, 0o660);
        if nix::unistd::geteuid().is_root() {
            let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&path).unwrap());
            assert_eq!(Some(gid), hermes_core::manifest::socket_gid(hermes_core::manifest::CONTROL_SOCKET));
        }
        let (r, mut w) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(r).lines();
        let mut ask = async |req: &str| -> serde_json::Value {
            w.write_all(format!("{req}\n").as_bytes()).await.unwrap();
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap()
        };
        let status: ControlResponse = serde_json::from_value(ask(r#"{"op":"status"}"#).await).unwrap();
        assert!(status.ok);
        assert_eq!(status.started_at, 1234);
        assert!(status.services.iter().any(|s| s.name == "store" && s.state == ServiceState::Starting));
        let bad = ask("nonsense").await;
        assert_eq!(bad["ok"], false);
        assert!(bad["error"].as_str().unwrap().contains("bad request"));
        if !crate::mounts::is_mounted(firmware::ESP_MOUNT) {
            let fw = ask(r#"{"op":"firmware_status"}"#).await;
            assert!(fw["error"].as_str().unwrap().contains("no EFI system partition"), "{fw}");
            let inst = ask(r#"{"op":"firmware_install","path":"/nonexistent"}"#).await;
            assert_eq!(inst["ok"], false);
        }
        assert!(rx.try_recv().is_err(), "nothing asked for a reboot");
    }
}
