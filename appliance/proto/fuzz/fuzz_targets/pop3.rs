//! Fuzz target: the POP3 codec (`hermes_proto::pop3`) on arbitrary bytes.
//!
//! Everything is in `hermes_proto::pop3::fuzz::run` (shared with the unit tests): the first
//! byte picks the line limit, the chunking and the TOP line count; the rest is both the
//! client's input (framing, command and SASL parsing) and a stored message (RETR and TOP
//! encoding, checked to decode back to the message).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    hermes_proto::pop3::fuzz::run(input);
});
