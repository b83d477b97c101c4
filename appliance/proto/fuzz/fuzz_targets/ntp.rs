//! Fuzz target: the SNTP answer parser (`hermes_proto::ntp`) on arbitrary bytes.
//!
//! Everything is in `hermes_proto::ntp::fuzz::run` (shared with the unit tests): the first 8
//! bytes are the request's cookie, the rest the answer; an accepted answer must match the
//! cookie and measure a non-negative delay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    hermes_proto::ntp::fuzz::run(input);
});
