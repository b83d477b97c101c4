//! The appliance manifest: which services the image runs, as whom, with which privileges.
//!
//! One TOML file (`image/manifest.toml`) declares, for each service, its user and group ids,
//! the ports it binds, the unix sockets it serves and which services may connect to them, the
//! data paths it writes and reads, its Linux capabilities and the services it starts after.
//! It also lists the kernel modules the image carries. The image builder reads it at build
//! time (to pick modules, write `/etc/passwd` and embed a copy at [`MANIFEST_PATH`]) and
//! `hermes init` reads that copy at boot to start the services (Postfix's `master.cf`,
//! Hubris' `app.toml`).
//!
//! What it is not: the configuration (ports here are the appliance's standard ports, used by
//! the privilege check and the image's port forwards; the services bind what `hermes.toml` says)
//! and not a policy engine: [`Manifest::check_privileges`] states the rules of
//! `docs/SECURITY.md` as code, and init enforces what the manifest says.
//!
//! Invariants (checked by [`Manifest::parse`], every error reported at once with its path):
//! - unknown keys are refused (`deny_unknown_fields`);
//! - service names are unique, `[a-z][a-z0-9-]*`; uids and gids are unique and in
//!   [`SERVICE_ID_MIN`]..=[`SERVICE_ID_MAX`] (never root, never a login user's range);
//! - `after` names existing services and has no cycle, so [`Manifest::start_order`] exists;
//! - every socket client is a declared service; paths are relative to the data folder and
//!   never contain `..`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where the image keeps its copy of the manifest; init reads it from there.
pub const MANIFEST_PATH: &str = "/etc/hermes/manifest.toml";
/// Lowest uid/gid a service may have: below 100 are Debian's static system ids.
pub const SERVICE_ID_MIN: u32 = 100;
/// Highest uid/gid a service may have: 1000 and up are login users on Debian.
pub const SERVICE_ID_MAX: u32 = 999;
/// First port that needs no privilege to bind (Linux `ip_unprivileged_port_start` default).
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub image: ImageSpec,
    /// Services, in the order they are declared (start order comes from `after`).
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceSpec>,
    /// What init itself serves to the services (`[init]`).
    #[serde(default)]
    pub init: InitSpec,
}

/// `[init]`: init's own control socket, [`CONTROL_SOCKET`] (root's by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    /// Services that may connect to init's control socket (through the group
    /// `hermes-s-control`): the admin UI, for reboot, factory reset, provisioning and firmware
    /// updates. What a non-root client may ask is narrowed by init itself (docs/SECURITY.md).
    #[serde(default)]
    pub control_clients: Vec<String>,
}

/// Init's control socket, relative to the data folder.
pub const CONTROL_SOCKET: &str = "run/control.sock";

/// What the image carries besides the services.
///
/// `[image]` also takes `tools` (programs from Debian packages, see [`Tool`]); they matter only
/// to the image builder, which reads them with [`image_tools`], so they are accepted (and
/// checked) here but not kept in this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ImageSection")]
pub struct ImageSpec {
    /// Hostname before the config names one.
    pub hostname: String,
    /// Kernel modules to ship and load at boot (module names; dependencies are added from
    /// the modules' own `depends=`). A module the kernel does not have is a build error.
    pub modules: Vec<String>,
    /// Modules shipped but loaded only if present on this kernel build (optional drivers).
    #[serde(default)]
    pub optional_modules: Vec<String>,
}

/// A program the image carries from a Debian package (`apt-get download` + `dpkg-deb -x`), copied
/// with its shared libraries to the same path in the image (`{ package = "mdadm", path =
/// "sbin/mdadm" }` → `/sbin/mdadm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// The Debian binary package (`mdadm`, `e2fsprogs`).
    pub package: String,
    /// The file's path inside the package, relative (`sbin/mke2fs`); also its path in the image.
    pub path: String,
}

/// `[image]` as written in the file: [`ImageSpec`]'s keys and `tools`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageSection {
    hostname: String,
    modules: Vec<String>,
    #[serde(default)]
    optional_modules: Vec<String>,
    #[serde(default)]
    tools: Vec<Tool>,
}

impl TryFrom<ImageSection> for ImageSpec {
    type Error = String;
    fn try_from(s: ImageSection) -> Result<ImageSpec, String> {
        let problems = check_tools(&s.tools);
        if !problems.is_empty() {
            return Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
        }
        Ok(ImageSpec { hostname: s.hostname, modules: s.modules, optional_modules: s.optional_modules })
    }
}

fn check_tools(tools: &[Tool]) -> Vec<ManifestError> {
    let mut errors = Vec::new();
    let mut paths = BTreeSet::new();
    for (i, t) in tools.iter().enumerate() {
        let package_ok = t.package.len() <= 64
            && t.package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && t.package.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
        if !package_ok {
            err(
                &mut errors,
                format!("image.tools[{i}].package"),
                format!("`{}` is not a Debian package name", t.package),
            );
        }
        if !relative_clean(&t.path) || !paths.insert(t.path.as_str()) {
            err(
                &mut errors,
                format!("image.tools[{i}].path"),
                format!("`{}` is not a clean relative path, or repeated", t.path),
            );
        }
    }
    errors
}

/// The `[image] tools` of a manifest file (checked: package names, clean unique paths). For the
/// image builder; [`Manifest::parse`] accepts and checks the key too.
pub fn image_tools(text: &str) -> Result<Vec<Tool>, ManifestErrors> {
    #[derive(Deserialize)]
    struct File {
        image: Section,
    }
    #[derive(Deserialize)]
    struct Section {
        #[serde(default)]
        tools: Vec<Tool>,
    }
    let file: File = toml::from_str(text)
        .map_err(|e| ManifestErrors(vec![ManifestError { path: "manifest".into(), message: e.to_string() }]))?;
    let errors = check_tools(&file.image.tools);
    if errors.is_empty() { Ok(file.image.tools) } else { Err(ManifestErrors(errors)) }
}

/// One service process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service name (`hermes serve NAME`), also its endpoints file name.
    pub name: String,
    /// What the service does, for people.
    pub description: String,
    /// The user it runs as (one per service), and its uid.
    pub user: String,
    pub uid: u32,
    /// Its primary group id (a group of the same name as the user).
    pub gid: u32,
    /// Arguments after the `hermes` executable; `--data DIR` is appended by init.
    pub command: Vec<String>,
    /// Services that must be up (listening) before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Linux capabilities kept across the switch to `user` (ambient).
    pub capabilities: Vec<Capability>,
    /// TCP ports it binds on the appliance (the standard ports).
    pub ports: Vec<Port>,
    /// Unix sockets it serves.
    pub sockets: Vec<SocketSpec>,
    /// Data paths it may write (owned by its user).
    pub writes: Vec<DataPath>,
    /// Data paths it may read (through a per-path group).
    pub reads: Vec<DataPath>,
    /// Whether `hermes: ready` waits for it (among the services the box's state runs).
    #[serde(default = "default_true")]
    pub required: bool,
    /// Whether it runs while `/data` is RAM (a box whose disks are not provisioned): what it
    /// writes there is lost at the next boot, so only services that acknowledge no mail may
    /// (the admin UI and the disk service, so the admin can provision). Default `false`.
    #[serde(default)]
    pub on_ram_data: bool,
}

fn default_true() -> bool {
    true
}

/// One TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The protocol name as in `run/endpoints.json` (`imap`, `smtp`, ...).
    pub name: String,
    pub port: u16,
}

/// One unix socket a service serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSpec {
    /// Path relative to the data folder (`run/lmtp.sock`).
    pub path: String,
    /// Services allowed to connect; an explicit empty list means only init (root).
    pub clients: Vec<String>,
}

/// The Linux capabilities a service may keep. Deliberately few: a service that wants another
/// one needs a change here and a reason in `docs/SECURITY.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Bind TCP/UDP ports below 1024.
    NetBindService,
    /// Raw block-device ioctls (SMART over SG_IO: ATA PASS-THROUGH); `hw` only.
    SysRawio,
    /// NVMe admin passthrough (SMART/Health log, self-tests) and md array control; `hw` only.
    SysAdmin,
    /// Opening the root-owned disk nodes in devtmpfs and writing md's root-owned sysfs
    /// attributes (fail, remove, scrub); `hw` only.
    DacOverride,
}

impl Capability {
    /// The kernel's capability number (`linux/capability.h`).
    pub fn number(self) -> u32 {
        match self {
            Capability::NetBindService => 10,
            Capability::SysRawio => 17,
            Capability::SysAdmin => 21,
            Capability::DacOverride => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetBindService => "net_bind_service",
            Capability::SysRawio => "sys_rawio",
            Capability::SysAdmin => "sys_admin",
            Capability::DacOverride => "dac_override",
        }
    }
}

/// A folder of the data folder (`hermes_core::paths`) that services may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    Config,
    Directory,
    Store,
    Queue,
    Tls,
    Log,
    Lists,
    /// The admin service's own state: admin accounts, sessions, audit log.
    Admin,
    /// The disk health service's state: daily SMART history, last scrub times.
    Hw,
}

impl DataPath {
    pub const ALL: [DataPath; 9] = [
        DataPath::Config,
        DataPath::Directory,
        DataPath::Store,
        DataPath::Queue,
        DataPath::Tls,
        DataPath::Log,
        DataPath::Lists,
        DataPath::Admin,
        DataPath::Hw,
    ];
    /// The folder name under the data root.
    pub fn dir_name(self) -> &'static str {
        match self {
            DataPath::Config => "config",
            DataPath::Directory => "directory",
            DataPath::Store => "store",
            DataPath::Queue => "queue",
            DataPath::Tls => "tls",
            DataPath::Log => "log",
            DataPath::Lists => "lists",
            DataPath::Admin => "admin",
            DataPath::Hw => "hw",
        }
    }
}

/// One problem in a manifest, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

fn err(errors: &mut Vec<ManifestError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(ManifestError { path: path.into(), message: message.into() });
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        && name.len() <= 32
}

impl Manifest {
    /// Parses and validates a manifest (structure only; [`Manifest::check_privileges`] applies
    /// the security rules).
    pub fn parse(text: &str) -> Result<Manifest, ManifestErrors> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|e| ManifestErrors(vec![ManifestError { path: "manifest".into(), message: e.to_string() }]))?;
        let errors = manifest.validate();
        if errors.is_empty() { Ok(manifest) } else { Err(ManifestErrors(errors)) }
    }

    /// The structural checks of [`Manifest::parse`].
    pub fn validate(&self) -> Vec<ManifestError> {
        let mut errors = Vec::new();
        if self.image.hostname.is_empty() || self.image.hostname.len() > 64 {
            err(&mut errors, "image.hostname", "must be 1 to 64 characters");
        }
        for (i, m) in self.image.modules.iter().chain(&self.image.optional_modules).enumerate() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                err(&mut errors, format!("image.modules[{i}]"), format!("`{m}` is not a module name"));
            }
        }
        let names: BTreeSet<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        let mut seen_names = BTreeSet::new();
        let mut seen_users = BTreeSet::new();
        let mut seen_uids = BTreeSet::new();
        let mut seen_gids = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |field: &str| format!("service[{i}] ({}).{field}", s.name);
            if !valid_name(&s.name) {
                err(&mut errors, at("name"), "must match [a-z][a-z0-9_-]*, at most 32 characters");
            }
            if !seen_names.insert(s.name.as_str()) {
                err(&mut errors, at("name"), "declared twice");
            }
            if !valid_name(&s.user) {
                err(&mut errors, at("user"), "must match [a-z][a-z0-9_-]*, at most 32 characters");
            }
            if !seen_users.insert(s.user.as_str()) {
                err(&mut errors, at("user"), "shared with another service");
            }
            for (field, id, seen) in [("uid", s.uid, &mut seen_uids), ("gid", s.gid, &mut seen_gids)] {
                if !(SERVICE_ID_MIN..=SERVICE_ID_MAX).contains(&id) {
                    err(&mut errors, at(field), format!("must be in {SERVICE_ID_MIN}..={SERVICE_ID_MAX}"));
                }
                if !seen.insert(id) {
                    err(&mut errors, at(field), "shared with another service");
                }
            }
            if s.command.is_empty() {
                err(&mut errors, at("command"), "must not be empty");
            }
            for a in &s.after {
                if !names.contains(a.as_str()) {
                    err(&mut errors, at("after"), format!("`{a}` is not a declared service"));
                }
                if a == &s.name {
                    err(&mut errors, at("after"), "a service cannot start after itself");
                }
            }
            let mut ports = BTreeSet::new();
            for p in &s.ports {
                if p.port == 0 || !ports.insert(p.port) {
                    err(&mut errors, at("ports"), format!("port {} is zero or repeated", p.port));
                }
            }
            for (j, sock) in s.sockets.iter().enumerate() {
                if !relative_clean(&sock.path) || !sock.path.starts_with("run/") {
                    err(&mut errors, format!("{}[{j}].path", at("sockets")), "must be a clean path under run/");
                }
                for c in &sock.clients {
                    if !names.contains(c.as_str()) {
                        err(
                            &mut errors,
                            format!("{}[{j}].clients", at("sockets")),
                            format!("`{c}` is not a declared service"),
                        );
                    }
                }
            }
        }
        for c in &self.init.control_clients {
            if !names.contains(c.as_str()) {
                err(&mut errors, "init.control_clients", format!("`{c}` is not a declared service"));
            }
        }
        // Ports are bound by one service each.
        let mut owners: BTreeMap<u16, &str> = BTreeMap::new();
        for s in &self.services {
            for p in &s.ports {
                if let Some(other) = owners.insert(p.port, &s.name)
                    && other != s.name
                {
                    err(
                        &mut errors,
                        format!("service ({}).ports", s.name),
                        format!("port {} also bound by {other}", p.port),
                    );
                }
            }
        }
        if errors.is_empty() && self.start_order().is_none() {
            err(&mut errors, "service.after", "the dependencies form a cycle");
        }
        errors
    }

    /// Service indices in an order where each starts after everything in its `after`
    /// (declaration order among equals, so the order is stable). `None` on a cycle.
    pub fn start_order(&self) -> Option<Vec<usize>> {
        let mut done: Vec<bool> = vec![false; self.services.len()];
        let mut order = Vec::with_capacity(self.services.len());
        while order.len() < self.services.len() {
            let next = self.services.iter().enumerate().find(|(i, s)| {
                !done[*i]
                    && s.after.iter().all(|a| self.services.iter().position(|o| &o.name == a).is_some_and(|j| done[j]))
            });
            let (i, _) = next?;
            done[i] = true;
            order.push(i);
        }
        Some(order)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Whether service `name` runs in this state of `/data`: every declared service on disks,
    /// only those with `on_ram_data` on RAM.
    pub fn runs(&self, name: &str, ram_data: bool) -> bool {
        self.service(name).is_some_and(|s| !ram_data || s.on_ram_data)
    }

    /// The privilege rules of `docs/SECURITY.md` ("Privilege (appliance)"), as code:
    /// 1. each service runs as its own non-root user (structural, [`Manifest::validate`]);
    /// 2. no capabilities beyond binding its ports: `net_bind_service` only when it binds a
    ///    port below 1024, `sys_rawio`, `sys_admin` and `dac_override` only for `hw` (the disk health service), nothing else exists;
    /// 3. each data path has at most one writer, and the named paths have the named writer:
    ///    store → `store`, queue → `router`, config → `admin`; nobody writes `tls` or `log`
    ///    (init owns them), and a service never reads what it does not need (`reads` and
    ///    `writes` do not overlap, and secrets in `directory` are read, not written, except by
    ///    `admin`);
    /// 4. services talk over unix sockets: every socket names its clients, and no socket is
    ///    open to everyone;
    /// 5. acknowledged mail survives power loss: the store and the router, and any service
    ///    writing the `store` or the `queue`, never run on a RAM-backed `/data`
    ///    (`on_ram_data`).
    ///
    /// Returns every violation.
    pub fn check_privileges(&self) -> Vec<ManifestError> {
        let mut errors = Vec::new();
        let mut writers: BTreeMap<DataPath, Vec<&str>> = BTreeMap::new();
        for s in &self.services {
            let at = |field: &str| format!("service ({}).{field}", s.name);
            let low_port = s.ports.iter().any(|p| p.port < FIRST_UNPRIVILEGED_PORT);
            for c in &s.capabilities {
                match c {
                    Capability::NetBindService if !low_port => {
                        err(&mut errors, at("capabilities"), "net_bind_service without a port below 1024")
                    }
                    Capability::SysRawio | Capability::SysAdmin | Capability::DacOverride if s.name != "hw" => err(
                        &mut errors,
                        at("capabilities"),
                        format!("{} is for the disk health service (hw) only", c.name()),
                    ),
                    _ => {}
                }
            }
            if low_port && !s.capabilities.contains(&Capability::NetBindService) {
                err(&mut errors, at("capabilities"), "binds a port below 1024 but lacks net_bind_service");
            }
            let caps: BTreeSet<_> = s.capabilities.iter().collect();
            if caps.len() != s.capabilities.len() {
                err(&mut errors, at("capabilities"), "repeated capability");
            }
            if s.on_ram_data
                && (matches!(s.name.as_str(), "store" | "router")
                    || s.writes.iter().any(|w| matches!(w, DataPath::Store | DataPath::Queue)))
            {
                err(
                    &mut errors,
                    at("on_ram_data"),
                    "takes mail: it never runs on a RAM-backed /data (acknowledged mail would be lost at the next boot)",
                );
            }
            for w in &s.writes {
                writers.entry(*w).or_default().push(&s.name);
                if s.reads.contains(w) {
                    err(&mut errors, at("reads"), format!("`{}` is also in writes", w.dir_name()));
                }
            }
        }
        for (path, who) in &writers {
            if who.len() > 1 {
                err(
                    &mut errors,
                    format!("writes.{}", path.dir_name()),
                    format!("written by several services: {}", who.join(", ")),
                );
            }
            let expected = match path {
                DataPath::Store => Some("store"),
                DataPath::Queue => Some("router"),
                DataPath::Config | DataPath::Directory | DataPath::Admin => Some("admin"),
                DataPath::Lists => Some("lists"),
                DataPath::Hw => Some("hw"),
                DataPath::Tls | DataPath::Log => None,
            };
            for w in who {
                if expected != Some(*w) {
                    let allowed = expected.map_or_else(|| "only init".to_string(), |e| format!("only {e}"));
                    err(
                        &mut errors,
                        format!("writes.{}", path.dir_name()),
                        format!("{w} may not write it ({allowed} does)"),
                    );
                }
            }
        }
        for s in &self.services {
            for sock in &s.sockets {
                if sock.clients.contains(&s.name) {
                    err(
                        &mut errors,
                        format!("service ({}).sockets", s.name),
                        format!("{} lists itself as a client", sock.path),
                    );
                }
            }
        }
        errors
    }

    /// Groups the image's `/etc/group` needs: one per service (its primary group) plus, for
    /// each data path some service reads, a group `hermes-r-PATH` whose members are its
    /// readers, and `hermes-run` (every service: the shared `run/` folder for sockets).
    /// Returns `(name, gid, members)`, sorted by gid.
    pub fn groups(&self) -> Vec<(String, u32, Vec<String>)> {
        let mut groups: Vec<(String, u32, Vec<String>)> =
            self.services.iter().map(|s| (s.user.clone(), s.gid, Vec::new())).collect();
        groups.push(("hermes-run".into(), RUN_GID, self.services.iter().map(|s| s.user.clone()).collect()));
        for path in DataPath::ALL {
            let members: Vec<String> =
                self.services.iter().filter(|s| s.reads.contains(&path)).map(|s| s.user.clone()).collect();
            if !members.is_empty() {
                groups.push((format!("hermes-r-{}", path.dir_name()), read_gid(path), members));
            }
        }
        for s in &self.services {
            for sock in &s.sockets {
                let members: Vec<String> =
                    sock.clients.iter().filter_map(|c| self.service(c).map(|svc| svc.user.clone())).collect();
                if let Some(gid) = socket_gid(&sock.path) {
                    groups.push((socket_group_name(&sock.path), gid, members));
                }
            }
        }
        if !self.init.control_clients.is_empty()
            && let Some(gid) = socket_gid(CONTROL_SOCKET)
        {
            let members = self
                .services
                .iter()
                .filter(|s| self.init.control_clients.contains(&s.name))
                .map(|s| s.user.clone())
                .collect();
            groups.push((socket_group_name(CONTROL_SOCKET), gid, members));
        }
        groups.sort_by_key(|g| g.1);
        groups.dedup_by_key(|g| g.1);
        groups
    }

    /// The supplementary groups of a service: readers' groups of what it reads, `hermes-run`,
    /// and the client group of every socket it may connect to.
    pub fn supplementary_gids(&self, service: &ServiceSpec) -> Vec<u32> {
        let mut gids = vec![RUN_GID];
        gids.extend(service.reads.iter().map(|p| read_gid(*p)));
        for s in &self.services {
            for sock in &s.sockets {
                if sock.clients.contains(&service.name)
                    && let Some(gid) = socket_gid(&sock.path)
                {
                    gids.push(gid);
                }
            }
        }
        if self.init.control_clients.contains(&service.name)
            && let Some(gid) = socket_gid(CONTROL_SOCKET)
        {
            gids.push(gid);
        }
        gids.sort_unstable();
        gids.dedup();
        gids
    }
}

/// The group of the shared `run/` folder (services create sockets and endpoint files there).
pub const RUN_GID: u32 = 900;
/// First gid of the per-path reader groups (`hermes-r-PATH`), one per [`DataPath`].
pub const READ_GID_BASE: u32 = 910;
/// First gid of the per-socket client groups (`hermes-s-NAME`).
pub const SOCKET_GID_BASE: u32 = 930;

/// The gid of the readers of `path`.
pub fn read_gid(path: DataPath) -> u32 {
    let index = DataPath::ALL.iter().position(|p| *p == path).unwrap_or(0);
    READ_GID_BASE + index as u32
}

/// The known sockets and their client groups: a fixed table, so the gid of a socket never
/// depends on declaration order.
const SOCKETS: [&str; 7] = [
    "run/lmtp.sock",
    "run/store.sock",
    "run/router.sock",
    "run/lists.sock",
    "run/admin.sock",
    "run/hw.sock",
    CONTROL_SOCKET,
];

/// The gid of the clients of socket `path`; `None` for a socket not in the table (which
/// [`Manifest::check_privileges`] callers treat as init-only).
pub fn socket_gid(path: &str) -> Option<u32> {
    SOCKETS.iter().position(|p| *p == path).map(|i| SOCKET_GID_BASE + i as u32)
}

/// `run/lmtp.sock` → `hermes-s-lmtp`.
pub fn socket_group_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    format!("hermes-s-{}", file.trim_end_matches(".sock"))
}

fn relative_clean(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[image]
hostname = "hermes"
modules = ["virtio_net"]

[[service]]
name = "store"
description = "IMAP, POP3 and LMTP over the mail store"
user = "hermes-store"
uid = 201
gid = 201
command = ["serve", "store"]
capabilities = ["net_bind_service"]
ports = [{ name = "imap", port = 143 }]
sockets = [{ path = "run/lmtp.sock", clients = ["router"] }]
writes = ["store"]
reads = ["config", "directory", "tls"]

[[service]]
name = "router"
description = "SMTP"
user = "hermes-router"
uid = 202
gid = 202
command = ["serve", "router"]
after = ["store"]
capabilities = ["net_bind_service"]
ports = [{ name = "smtp", port = 25 }]
sockets = []
writes = ["queue"]
reads = ["config", "directory", "tls"]
"#;

    #[test]
    fn minimal_manifest_parses_orders_and_passes() {
        let m = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(m.start_order().unwrap(), vec![0, 1]);
        assert_eq!(m.check_privileges(), vec![]);
        let router = m.service("router").unwrap();
        assert!(m.supplementary_gids(router).contains(&socket_gid("run/lmtp.sock").unwrap()));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = MINIMAL.replace("hostname = \"hermes\"", "hostname = \"hermes\"\ncolour = \"red\"");
        assert!(Manifest::parse(&text).is_err());
    }

    #[test]
    fn image_tools_are_accepted_and_checked() {
        let tools = "modules = [\"virtio_net\"]\ntools = [{ package = \"mdadm\", path = \"sbin/mdadm\" }]";
        let text = MINIMAL.replace("modules = [\"virtio_net\"]", tools);
        assert!(Manifest::parse(&text).is_ok());
        let got = image_tools(&text).unwrap();
        assert_eq!(got, vec![Tool { package: "mdadm".into(), path: "sbin/mdadm".into() }]);
        assert_eq!(image_tools(MINIMAL).unwrap(), vec![]);
        for bad in ["/sbin/mdadm", "sbin/../etc/shadow", ""] {
            let text = text.replace("path = \"sbin/mdadm\"", &format!("path = \"{bad}\""));
            assert!(Manifest::parse(&text).is_err(), "{bad}");
            assert!(image_tools(&text).is_err(), "{bad}");
        }
        let text = text.replace("package = \"mdadm\"", "package = \"Md adm\"");
        assert!(image_tools(&text).unwrap_err().to_string().contains("not a Debian package name"));
        let text = MINIMAL.replace(
            "modules = [\"virtio_net\"]",
            "modules = []\ntools = [{ package = \"x\", path = \"a\", extra = 1 }]",
        );
        assert!(Manifest::parse(&text).is_err(), "unknown keys in a tool are refused");
    }

    #[test]
    fn every_structural_error_is_reported() {
        let text = MINIMAL.replace("uid = 202", "uid = 0").replace("after = [\"store\"]", "after = [\"nope\"]");
        let errs = Manifest::parse(&text).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
    }

    #[test]
    fn cycles_are_refused() {
        let text = MINIMAL.replace(
            "reads = [\"config\", \"directory\", \"tls\"]\n\n[[service]]",
            "after = [\"router\"]\nreads = [\"config\", \"directory\", \"tls\"]\n\n[[service]]",
        );
        let errs = Manifest::parse(&text).unwrap_err();
        assert!(errs.to_string().contains("cycle"), "{errs}");
    }

    #[test]
    fn privilege_rules_catch_excess() {
        let text = MINIMAL
            .replace("ports = [{ name = \"smtp\", port = 25 }]", "ports = [{ name = \"smtp\", port = 10025 }]")
            .replace("writes = [\"queue\"]", "writes = [\"queue\", \"store\"]");
        let m = Manifest::parse(&text).unwrap();
        let errs = m.check_privileges();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|e| e.contains("net_bind_service without")), "{text:?}");
        assert!(text.iter().any(|e| e.contains("several services")), "{text:?}");
    }

    #[test]
    fn mail_services_never_run_on_ram_data() {
        let m = Manifest::parse(MINIMAL).unwrap();
        assert!(!m.services.iter().any(|s| s.on_ram_data), "the default is off");
        assert!(m.runs("store", false) && !m.runs("store", true) && !m.runs("nope", false));
        for (from, to) in [
            ("writes = [\"store\"]", "writes = [\"store\"]\non_ram_data = true"),
            ("writes = [\"queue\"]", "writes = [\"queue\"]\non_ram_data = true"),
        ] {
            let m = Manifest::parse(&MINIMAL.replace(from, to)).unwrap();
            let errs: Vec<String> = m.check_privileges().iter().map(|e| e.to_string()).collect();
            assert!(errs.iter().any(|e| e.contains("on_ram_data") && e.contains("RAM")), "{errs:?}");
        }
        let text = MINIMAL.replace("writes = [\"queue\"]", "writes = [\"queue\"]\non_ram_data = \"yes\"");
        assert!(Manifest::parse(&text).is_err(), "on_ram_data is a boolean");
    }
}
