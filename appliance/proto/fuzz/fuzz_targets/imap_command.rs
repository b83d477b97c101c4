//! Fuzz target for the IMAP command path: arbitrary bytes through `CommandReader` (limits and
//! chunk size chosen by the first byte), `parse_command`, raw-line mode and the response writers'
//! round trips. Not a correctness test: it asserts no panic and the invariants checked in
//! `hermes_proto::imap::fuzz::run_command_path`, which `cargo test -p hermes-proto` also runs on
//! pseudo-random inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hermes_proto::imap::fuzz::run_command_path(data);
});
