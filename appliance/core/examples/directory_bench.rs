//! Directory scaling benchmark (not a timed test): imports 50,000 accounts into a temporary
//! data folder, then measures `lookup` and `authenticate` latency for random accounts when the
//! directory holds 1,000, 10,000 and 50,000 of them, to show both stay flat (one file read per
//! lookup; authenticate is dominated by the argon2id verification, m=19456 KiB, t=2, p=1).
//!
//! Run: `cargo run --release -p hermes-core --example directory_bench [-- ACCOUNTS [SAMPLES]]`
//! (defaults 50000 and 200). Set `TMPDIR` to put the data folder on the disk you want to measure.
//!
//! What it is not: a measure of argon2 itself, nor of the IMAP login path around it.

use hermes_core::directory::{Directory, ImportEntry, hash_password};
use hermes_core::paths::DataDir;
use hermes_core::secret::Secret;
use rand::Rng;
use std::time::{Duration, Instant};

const DOMAINS: usize = 10;
const BATCH: usize = 5_000;

fn address(i: usize) -> String {
    format!("user{i:06}@bench{}.example", i % DOMAINS)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn measure(samples: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), times.iter().sum::<Duration>() / samples as u32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50_000);
    let samples: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let checkpoints: Vec<usize> = [1_000, 10_000, 50_000].into_iter().filter(|&c| c <= total).collect();

    let tmp = tempfile::tempdir()?;
    let dir = Directory::open(&DataDir::new(tmp.path()))?;
    for d in 0..DOMAINS {
        dir.add_domain(&format!("bench{d}.example"))?;
    }
    let password = Secret::new("correct horse battery staple".to_string());
    let hash = hash_password(&password)?;

    println!("data folder: {}", tmp.path().display());
    println!(
        "{:>9} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "accounts", "import/s", "lookup p50", "lookup p99", "auth p50", "auth p99", "unknown p50"
    );
    let mut rng = rand::thread_rng();
    let mut loaded = 0;
    for &target in &checkpoints {
        let t = Instant::now();
        let added = target - loaded;
        while loaded < target {
            let n = BATCH.min(target - loaded);
            let batch: Vec<ImportEntry> = (loaded..loaded + n)
                .map(|i| ImportEntry { address: address(i), phc_hash: hash.expose().clone(), quota_bytes: None })
                .collect();
            for r in dir.import_accounts(&batch)? {
                r?;
            }
            loaded += n;
        }
        let rate = added as f64 / t.elapsed().as_secs_f64();

        let (l50, l99, _) = measure(samples * 10, || {
            let a = address(rng.gen_range(0..loaded));
            assert!(dir.lookup(&a).ok().flatten().is_some(), "{a} missing");
        });
        let (a50, a99, _) = measure(samples, || {
            let a = address(rng.gen_range(0..loaded));
            assert!(dir.authenticate(&a, &password).is_ok(), "{a} did not authenticate");
        });
        let (u50, _, _) = measure(samples / 4 + 1, || {
            let _ = dir.authenticate("nobody@bench0.example", &password);
        });
        println!(
            "{:>9} {:>10.0} {:>12.1?} {:>12.1?} {:>12.1?} {:>12.1?} {:>12.1?}",
            loaded, rate, l50, l99, a50, a99, u50
        );
    }
    Ok(())
}
