//! What one admin Queue page costs the router at a large queue: `list_page`'s filter, order
//! and page over N queued messages (default 100,000), and the answer's size, beside `list`
//! (the whole queue as JSON, what the admin fetched before `list_page`).
//!
//! ```text
//! cargo run --release -p hermes-svc-router --example queue_page [-- MESSAGES [RUNS]]
//! ```
//!
//! The summaries are built in memory as the router's index holds them (arrivals spread over
//! five days, one sender in ten a list, one message in a thousand held); each run clones them
//! first, as `Runner::summaries` does under the index lock, and that clone is timed too.

#![allow(clippy::unwrap_used, reason = "a benchmark: a panic is the failure report")]

use hermes_svc_router::control::page_of;
use hermes_svc_router::deliver::Summary;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let index: Vec<Summary> = (0..n)
        .map(|i| {
            let k = i.wrapping_mul(7919) % n.max(1);
            Summary {
                id: format!("01J{k:017}"),
                from: if k.is_multiple_of(10) {
                    format!("owner-list{k}@lists.example.edu")
                } else {
                    format!("user{k}@dept3.example.edu")
                },
                size: 20_000 + u64::from(k % 50_000),
                arrival: 1_780_000_000 + i64::from(k) * 4,
                recipients: 1 + (k % 3) as usize,
                pending: 1,
                attempts: k % 12,
                next_retry: 1_780_500_000 + i64::from(k),
                hold: k.is_multiple_of(1000),
                last_reply: "451 4.7.1 greylisted, try again later (mx1.dept3.example.edu)".into(),
            }
        })
        .collect();
    let cases: [(&str, &str, usize); 4] = [
        ("first page", "", 1),
        ("page 1,000", "", 1000),
        ("last page", "", usize::MAX),
        ("search `lists.`", "lists.", 1),
    ];
    println!("{n} queued messages, {runs} runs each; median and worst, milliseconds");
    println!("{:<22} {:>10} {:>10} {:>12}", "list_page", "median", "max", "answer bytes");
    for (name, q, page) in cases {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let (messages, info) = page_of(index.clone(), q, page, 50);
            let json =
                serde_json::to_vec(&serde_json::json!({"ok": true, "messages": messages, "page": info})).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = json.len();
        }
        times.sort_by(f64::total_cmp);
        println!("{name:<22} {:>10.2} {:>10.2} {bytes:>12}", times[times.len() / 2], times[times.len() - 1]);
    }
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs.min(5) {
        let t = Instant::now();
        let json = serde_json::to_vec(&serde_json::json!({"ok": true, "messages": index.clone()})).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = json.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<22} {:>10.2} {:>10.2} {bytes:>12}",
        "list (whole queue)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
