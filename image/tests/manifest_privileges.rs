//! The shipped manifest (`image/manifest.toml`) against the privilege rules of
//! `docs/SECURITY.md` ("Privilege (appliance)"), and against the code: every service the
//! manifest names must be one `hermes serve` knows, with the right writer for each path.

use hermes_core::manifest::{Capability, DataPath, Manifest};

fn manifest() -> Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match Manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn shipped_manifest_passes_the_privilege_rules() {
    let m = manifest();
    let violations = m.check_privileges();
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn each_service_runs_as_its_own_unprivileged_user() {
    let m = manifest();
    let mut uids: Vec<u32> = m.services.iter().map(|s| s.uid).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), m.services.len());
    for s in &m.services {
        assert!(s.uid >= 100 && s.uid < 1000, "{}: uid {}", s.name, s.uid);
        assert_ne!(s.user, "root");
    }
}

#[test]
fn only_the_store_writes_the_store_and_only_the_router_the_queue() {
    let m = manifest();
    for s in &m.services {
        for w in &s.writes {
            match w {
                DataPath::Store => assert_eq!(s.name, "store"),
                DataPath::Queue => assert_eq!(s.name, "router"),
                DataPath::Config | DataPath::Directory | DataPath::Admin => assert_eq!(s.name, "admin"),
                DataPath::Hw => assert_eq!(s.name, "hw"),
                other => panic!("{} may not write {other:?}", s.name),
            }
        }
    }
    assert_eq!(m.service("store").map(|s| s.writes.clone()), Some(vec![DataPath::Store]));
}

#[test]
fn capabilities_are_at_most_binding_low_ports() {
    let m = manifest();
    for s in &m.services {
        if s.name == "hw" {
            // The disk health service: SMART ioctls, NVMe admin passthrough, md control on
            // root-owned nodes (docs/SECURITY.md, "The disk health service"); no ports.
            let mut caps = s.capabilities.clone();
            caps.sort();
            assert_eq!(caps, [Capability::SysRawio, Capability::SysAdmin, Capability::DacOverride]);
            assert!(s.ports.is_empty() && s.writes == [DataPath::Hw], "{s:?}");
            continue;
        }
        for c in &s.capabilities {
            assert_eq!(*c, Capability::NetBindService, "{}", s.name);
        }
        if !s.capabilities.is_empty() {
            assert!(s.ports.iter().any(|p| p.port < 1024), "{} has caps but no low port", s.name);
        }
    }
}

#[test]
fn sockets_name_their_clients_and_the_router_reaches_lmtp() {
    let m = manifest();
    let store = m.service("store").map(|s| s.sockets.clone()).unwrap_or_default();
    let lmtp = store.iter().find(|s| s.path == "run/lmtp.sock");
    assert_eq!(lmtp.map(|s| s.clients.clone()), Some(vec!["router".to_string()]));
    if let Some(router) = m.service("router") {
        assert!(router.after.contains(&"store".to_string()));
    }
}

#[test]
fn services_start_in_dependency_order() {
    let m = manifest();
    let order = m.start_order().unwrap_or_default();
    assert_eq!(order.len(), m.services.len());
    for (pos, &i) in order.iter().enumerate() {
        for dep in &m.services[i].after {
            let dep_pos = order.iter().position(|&j| &m.services[j].name == dep);
            assert!(dep_pos.is_some_and(|d| d < pos), "{} before {dep}", m.services[i].name);
        }
    }
}

#[test]
fn every_service_in_the_manifest_is_one_hermes_can_serve() {
    // The router joins when `appliance/svc/router` exists; the store always.
    let m = manifest();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for s in &m.services {
        assert_eq!(s.command.first().map(String::as_str), Some("serve"), "{}", s.name);
        assert_eq!(s.command.get(1), Some(&s.name));
        let crate_dir = std::path::Path::new(root).join("appliance/svc").join(&s.name);
        assert!(crate_dir.exists(), "{} has no crate at {}", s.name, crate_dir.display());
    }
}

#[test]
fn only_the_admin_ui_and_hw_run_on_ram_data_and_never_store_or_router() {
    // Mail acknowledged on a RAM-backed /data would be lost at the next boot (issue 6 point 1).
    let m = manifest();
    let on_ram: Vec<&str> = m.services.iter().filter(|s| s.on_ram_data).map(|s| s.name.as_str()).collect();
    assert_eq!(on_ram, ["admin", "hw"]);
    for name in ["store", "router"] {
        assert!(m.service(name).is_some(), "{name} is in the manifest");
        assert!(!m.runs(name, true), "{name} runs on RAM data");
        assert!(m.runs(name, false), "{name} runs on disks");
    }
    // The rule is in the privilege check too, so a future manifest cannot turn it on.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml")).unwrap_or_default();
    let bad = text.replace("writes = [\"store\"]", "writes = [\"store\"]\non_ram_data = true");
    assert_ne!(bad, text);
    let violations = match Manifest::parse(&bad) {
        Ok(m) => m.check_privileges(),
        Err(e) => panic!("{e}"),
    };
    assert!(violations.iter().any(|v| v.path.contains("(store).on_ram_data")), "{violations:?}");
}
