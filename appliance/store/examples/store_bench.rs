//! Store throughput benchmark (not a test): LMTP-style deliveries of 10 KB messages with
//! fsync, from several threads, to many users and to one user (group commit).
//!
//! Run: `cargo run --release -p hermes-store --example store_bench -- [threads] [messages] [users]`
//! (defaults 16 threads, 4000 messages, 200 users). The store is created in a temporary
//! folder under `$TMPDIR` and removed afterwards.

use hermes_core::directory::UserId;
use hermes_store::{DeliveryTarget, Store, StoreConfig};
use std::time::Instant;

fn body(n: usize) -> Vec<u8> {
    let mut v = format!("From: bench@example.org\r\nSubject: message {n}\r\n\r\n").into_bytes();
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let words = ["mail ", "store ", "hermes ", "deliver ", "fsync ", "the ", "of ", "and\r\n"];
    while v.len() < 10_240 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    v
}

fn run(label: &str, threads: usize, messages: usize, users: usize) -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("hermes-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = Store::open(&root, StoreConfig::default())?;
    let ids: Vec<UserId> = (0..users).filter_map(|u| UserId::parse(&format!("{:032x}", u + 1))).collect();
    for id in &ids {
        store.user(id)?;
    }
    let bodies: Vec<Vec<u8>> = (0..64).map(body).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            let ids = &ids;
            let bodies = &bodies;
            s.spawn(move || {
                for i in (t..messages).step_by(threads) {
                    let target = DeliveryTarget { user: ids[i % ids.len()].clone(), mailbox: "INBOX".into(), flags: vec![] };
                    for r in store.deliver(&bodies[i % bodies.len()], None, &[target]) {
                        if let Err(e) = r {
                            eprintln!("delivery failed: {e}");
                        }
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{label}: {messages} deliveries of 10 KB, {threads} threads, {users} users: {:.0}/s", messages as f64 / secs);
    drop(store);
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let threads = args.first().copied().unwrap_or(16);
    let messages = args.get(1).copied().unwrap_or(4000);
    let users = args.get(2).copied().unwrap_or(200);
    run("many users", threads, messages, users)?;
    run("one user (group commit)", threads, messages, 1)?;
    Ok(())
}
