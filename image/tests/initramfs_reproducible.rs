//! The initramfs pipeline on a small fake kernel tree: modules found by name, dependencies
//! from `.modinfo`, `modules.dep` written, `/etc` generated from the manifest, libraries from
//! ldd; and the same inputs give the same bytes.

#![allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]

use hermes_core::manifest::Manifest;
use std::path::Path;
use std::process::Command;

/// Assembles a relocatable object with a `.modinfo` section (what a .ko carries).
fn fake_module(dir: &Path, rel: &str, depends: &str) -> bool {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let src = path.with_extension("s");
    std::fs::write(&src, format!(".section .modinfo,\"a\"\n.asciz \"depends={depends}\"\n")).unwrap();
    Command::new("as").arg("-o").arg(&path).arg(&src).status().is_ok_and(|s| s.success())
}

#[test]
fn same_inputs_same_bytes_with_dependencies_and_etc() {
    let tmp = tempfile::tempdir().unwrap();
    let moddir = tmp.path().join("lib/modules/6.1.0-test");
    if !fake_module(&moddir, "kernel/drivers/net/virtio_net.ko", "net_failover")
        || !fake_module(&moddir, "kernel/drivers/net/net_failover.ko", "failover")
        || !fake_module(&moddir, "kernel/net/core/failover.ko", "")
    {
        return; // no assembler on this host
    }
    std::fs::write(moddir.join("modules.builtin"), "kernel/drivers/md/md-mod.ko\n").unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml")).unwrap();
    let mut manifest = Manifest::parse(&text).unwrap();
    manifest.image.modules = vec!["virtio_net".into(), "md_mod".into()];
    let hermes = Path::new("/bin/true");
    // Tools: an executable (/bin/ls: it needs libraries /bin/true does not, libselinux on
    // Debian) and a configuration file.
    let conf = tmp.path().join("mke2fs.conf");
    std::fs::write(&conf, "[defaults]\n").unwrap();
    let tools = vec![
        hermes_image::kernel::ToolFile {
            package: "demo".into(),
            path: "sbin/demo-tool".into(),
            source: "/bin/ls".into(),
        },
        hermes_image::kernel::ToolFile { package: "e2fsprogs".into(), path: "etc/mke2fs.conf".into(), source: conf },
    ];
    let inputs = hermes_image::initramfs::Inputs {
        manifest: &manifest,
        manifest_text: &text,
        hermes,
        moddir: &moddir,
        kernel_version: "6.1.0-test",
        mtime: hermes_image::SOURCE_DATE_EPOCH,
        version: "0.1.0",
        tools: &tools,
    };
    let a = hermes_image::initramfs::build(&inputs, tmp.path()).unwrap();
    let b = hermes_image::initramfs::build(&inputs, tmp.path()).unwrap();
    assert_eq!(a.compressed, b.compressed, "two builds differ");
    let names: Vec<&str> = a.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["net_failover", "virtio_net", "failover"], "sorted by path");

    let cpio = zstd::decode_all(&a.compressed[..]).unwrap();
    let text = String::from_utf8_lossy(&cpio);
    assert!(text.contains("lib/modules/6.1.0-test/modules.dep"));
    assert!(
        text.contains(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko"
        )
    );
    assert!(text.contains("hermes-store:x:201:201:"), "passwd from the manifest");
    assert!(text.contains("hermes-s-lmtp:x:930:hermes-router"), "socket group with its client");
    assert!(text.contains("etc/hermes/manifest.toml"));
    // md_mod is built in: nothing to load, so not in the boot list.
    let list_at = text.find("etc/hermes/modules").unwrap();
    assert!(!text[list_at..list_at + 200].contains("md_mod"));
    assert!(text.contains("sbin/demo-tool") && text.contains("etc/mke2fs.conf\0"), "tools are in");
    assert!(text.contains("[defaults]\n"));
    let ls_libs = hermes_image::initramfs::shared_libraries(Path::new("/bin/ls")).unwrap();
    let true_libs = hermes_image::initramfs::shared_libraries(hermes).unwrap();
    assert!(ls_libs.iter().any(|l| !true_libs.contains(l)), "/bin/ls needs no more than /bin/true: {ls_libs:?}");
    assert!(ls_libs.iter().all(|l| a.libraries.contains(l)), "the tool's libraries came along: {:?}", a.libraries);
    // The dynamic loader came along.
    assert!(a.libraries.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "{:?}", a.libraries);
}
