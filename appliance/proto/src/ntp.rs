//! SNTPv4 client packets (RFC 4330; RFC 5905 client mode), sans-I/O.
//!
//! [`request`] builds a 48-byte client request whose transmit timestamp is a random cookie the
//! caller supplies (RFC 5905 §15 and draft-ietf-ntp-data-minimization: the server echoes it in
//! the origin field, and the real send time never leaves the box). [`parse_reply`] checks an
//! answer and [`measure`] computes offset and round-trip delay from the four timestamps.
//!
//! What it is not: no sockets, no clock, no randomness; the caller reads its clock at send
//! (T1) and receipt (T4), draws the cookie and does the UDP exchange. No symmetric or
//! broadcast modes, no authentication (MAC or NTS), no clock filter or selection beyond what the
//! client does with one sample per server.
//!
//! Invariants: every input is checked against its length before it is read, and any byte
//! string gets an answer (`Ok` or an [`NtpError`]), never a panic; a reply is accepted only if
//! its origin timestamp equals our cookie (so an off-path spoofer must guess 64 random bits),
//! it is mode 4 (server), version 1 to 4, stratum 1 to 15 and not "unsynchronised" (leap 3);
//! stratum 0 is a kiss-o'-death, reported with its code so the client can honour RATE and DENY.

/// Length of an NTP header without extension fields or MAC.
pub const PACKET_LEN: usize = 48;
/// The NTP era 0 epoch (1900-01-01) is this many seconds before the Unix epoch.
pub const UNIX_OFFSET: u64 = 2_208_988_800;
/// The version we send.
pub const VERSION: u8 = 4;
/// Mode 3: client.
pub const MODE_CLIENT: u8 = 3;
/// Mode 4: server.
pub const MODE_SERVER: u8 = 4;
/// Leap indicator 3: the server's clock is not synchronised.
pub const LEAP_UNSYNCHRONISED: u8 = 3;
/// Highest stratum a usable server may have (16 means unsynchronised).
pub const MAX_STRATUM: u8 = 15;

/// A 64-bit NTP timestamp: seconds since 1900 (mod 2^32) in the high half, fraction in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From Unix time (seconds and nanoseconds). Era-wrapping: 2036 wraps to 0 like NTP does.
    pub fn from_unix(secs: u64, nanos: u32) -> Timestamp {
        let s = secs.wrapping_add(UNIX_OFFSET) & 0xffff_ffff;
        let frac = (u64::from(nanos.min(999_999_999)) << 32) / 1_000_000_000;
        Timestamp((s << 32) | frac)
    }

    /// `self - earlier` in nanoseconds, as a signed difference modulo 2^64 (correct whenever
    /// the two are within 68 years of each other, across era boundaries too).
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        let d = self.0.wrapping_sub(earlier.0) as i64; // 32.32 fixed point, signed
        ((i128::from(d) * 1_000_000_000) >> 32) as i64
    }
}

/// Why an answer was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtpError {
    #[error("answer too short ({0} bytes; an NTP packet has 48)")]
    TooShort(usize),
    #[error("not a server answer (mode {0})")]
    NotServer(u8),
    #[error("unsupported NTP version {0}")]
    Version(u8),
    #[error("answer to another request (origin timestamp does not match ours)")]
    OriginMismatch,
    #[error("the server's clock is not synchronised")]
    Unsynchronised,
    #[error("the server has stratum {0} (usable: 1 to 15)")]
    Stratum(u8),
    #[error("the server sent no transmit or receive timestamp")]
    NoTimestamp,
    #[error("kiss-o'-death {}", kiss_text(.0))]
    Kiss(Kiss),
}

/// A kiss-o'-death (stratum 0) and what the client must do about it (RFC 5905 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kiss {
    /// `RATE`: poll this server less often.
    Rate,
    /// `DENY` or `RSTR`: stop using this server.
    Deny,
    /// Any other code: this answer is not usable.
    Other([u8; 4]),
}

fn kiss_text(k: &Kiss) -> String {
    match k {
        Kiss::Rate => "RATE (polling too often)".into(),
        Kiss::Deny => "DENY (access refused)".into(),
        Kiss::Other(code) => {
            let printable: String = code.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect();
            printable
        }
    }
}

/// A checked server answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub leap: u8,
    pub version: u8,
    pub stratum: u8,
    /// log2 seconds the server suggests between polls.
    pub poll: i8,
    pub precision: i8,
    /// Round trip to the server's reference, in 16.16 seconds.
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub reference_id: [u8; 4],
    /// T2: when the server received our request.
    pub receive: Timestamp,
    /// T3: when the server sent its answer.
    pub transmit: Timestamp,
}

/// A client request carrying `cookie` as its transmit timestamp.
pub fn request(cookie: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = (VERSION << 3) | MODE_CLIENT; // leap 0
    p[40..48].copy_from_slice(&cookie.to_be_bytes());
    p
}

fn be32(p: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = p.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

fn be64(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = p.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

/// Checks `p` as the answer to the request that carried `cookie`.
pub fn parse_reply(p: &[u8], cookie: u64) -> Result<Reply, NtpError> {
    if p.len() < PACKET_LEN {
        return Err(NtpError::TooShort(p.len()));
    }
    let leap = p[0] >> 6;
    let version = (p[0] >> 3) & 7;
    let mode = p[0] & 7;
    if mode != MODE_SERVER {
        return Err(NtpError::NotServer(mode));
    }
    if !(1..=VERSION).contains(&version) {
        return Err(NtpError::Version(version));
    }
    // Origin first: nothing else in an answer to somebody else's request is worth believing,
    // a kiss-o'-death included (a spoofed DENY must not silence a server).
    if be64(p, 24) != cookie {
        return Err(NtpError::OriginMismatch);
    }
    let stratum = p[1];
    let reference_id = [p[12], p[13], p[14], p[15]];
    if stratum == 0 {
        return Err(NtpError::Kiss(match &reference_id {
            b"RATE" => Kiss::Rate,
            b"DENY" | b"RSTR" => Kiss::Deny,
            other => Kiss::Other(*other),
        }));
    }
    if leap == LEAP_UNSYNCHRONISED {
        return Err(NtpError::Unsynchronised);
    }
    if stratum > MAX_STRATUM {
        return Err(NtpError::Stratum(stratum));
    }
    let receive = Timestamp(be64(p, 32));
    let transmit = Timestamp(be64(p, 40));
    if receive.0 == 0 || transmit.0 == 0 {
        return Err(NtpError::NoTimestamp);
    }
    Ok(Reply {
        leap,
        version,
        stratum,
        poll: p[2] as i8,
        precision: p[3] as i8,
        root_delay: be32(p, 4),
        root_dispersion: be32(p, 8),
        reference_id,
        receive,
        transmit,
    })
}

/// Offset of our clock from the server's and the round-trip delay, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Add this to our clock to match the server's.
    pub offset_nanos: i64,
    /// Time on the wire, not counting the server's processing; never negative.
    pub delay_nanos: i64,
}

/// RFC 5905 §8: offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) - (T3 - T2), where T1
/// is our send time, T2 and T3 the server's receive and transmit times, T4 our receive time.
pub fn measure(t1: Timestamp, reply: &Reply, t4: Timestamp) -> Sample {
    let a = i128::from(reply.receive.nanos_since(t1));
    let b = i128::from(reply.transmit.nanos_since(t4));
    let offset = (a + b) / 2;
    let rtt = i128::from(t4.nanos_since(t1)) - i128::from(reply.transmit.nanos_since(reply.receive));
    Sample {
        offset_nanos: offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        delay_nanos: rtt.clamp(0, i128::from(i64::MAX)) as i64,
    }
}

/// Shared by the fuzz target (`fuzz/fuzz_targets/ntp.rs`) and the unit tests: the first 8
/// bytes are the cookie, the rest an answer; whatever it is, parsing answers without panicking,
/// and an accepted answer is consistent with the bytes (mode 4, origin = cookie) and measures.
pub mod fuzz {
    use super::*;

    pub fn run(input: &[u8]) {
        let cookie = be64(input, 0);
        let packet = input.get(8..).unwrap_or(&[]);
        if let Ok(r) = parse_reply(packet, cookie) {
            assert_eq!(packet[0] & 7, MODE_SERVER);
            assert_eq!(be64(packet, 24), cookie);
            assert!((1..=MAX_STRATUM).contains(&r.stratum));
            let s = measure(Timestamp(cookie), &r, Timestamp(cookie.wrapping_add(1 << 30)));
            assert!(s.delay_nanos >= 0);
        }
        let q = request(cookie);
        assert_eq!(be64(&q, 40), cookie);
        assert_eq!(q[0] & 7, MODE_CLIENT);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    const COOKIE: u64 = 0x0123_4567_89ab_cdef;

    /// A server answer as a real server builds it (chrony's layout): leap 0, version 4, mode 4.
    fn answer(stratum: u8, refid: &[u8; 4], t2: Timestamp, t3: Timestamp) -> Vec<u8> {
        let mut p = vec![0u8; PACKET_LEN];
        p[0] = (4 << 3) | MODE_SERVER;
        p[1] = stratum;
        p[2] = 6;
        p[3] = (-20i8) as u8;
        p[4..8].copy_from_slice(&0x0000_0010u32.to_be_bytes());
        p[12..16].copy_from_slice(refid);
        p[16..24].copy_from_slice(&t2.0.to_be_bytes());
        p[24..32].copy_from_slice(&COOKIE.to_be_bytes());
        p[32..40].copy_from_slice(&t2.0.to_be_bytes());
        p[40..48].copy_from_slice(&t3.0.to_be_bytes());
        p
    }

    fn ts(secs: u64, nanos: u32) -> Timestamp {
        Timestamp::from_unix(secs, nanos)
    }

    #[test]
    fn request_is_a_v4_client_packet_with_the_cookie_as_transmit() {
        let q = request(COOKIE);
        assert_eq!(q.len(), 48);
        assert_eq!(q[0], 0x23); // LI 0, VN 4, mode 3
        assert_eq!(&q[40..48], &COOKIE.to_be_bytes());
        assert!(q[1..40].iter().all(|&b| b == 0), "nothing about the box leaks");
    }

    #[test]
    fn timestamps_convert_and_subtract_across_the_2036_era() {
        assert_eq!(Timestamp::from_unix(0, 0).0 >> 32, UNIX_OFFSET);
        assert_eq!(Timestamp::from_unix(0, 500_000_000).0 & 0xffff_ffff, 1 << 31);
        let before = ts(2_085_978_495, 0); // 2036-02-07 06:28:15, the last second of era 0
        let after = ts(2_085_978_497, 250_000_000);
        assert!(after.0 < before.0, "wrapped");
        assert_eq!(after.nanos_since(before), 2_250_000_000);
        assert_eq!(before.nanos_since(after), -2_250_000_000);
    }

    /// RFC 5905 §8 with numbers: we send at 100.0, the server (2 s ahead) receives at 102.1 and
    /// answers at 102.2, we receive at 100.4: delay 0.3 s, offset +1.95 s.
    #[test]
    fn offset_and_delay_follow_rfc_5905() {
        let r =
            parse_reply(&answer(2, b"GPS\0", ts(1_700_000_102, 100_000_000), ts(1_700_000_102, 200_000_000)), COOKIE)
                .unwrap();
        assert_eq!(r.stratum, 2);
        assert_eq!(r.version, 4);
        assert_eq!(r.poll, 6);
        assert_eq!(r.precision, -20);
        let s = measure(ts(1_700_000_100, 0), &r, ts(1_700_000_100, 400_000_000));
        assert!((s.offset_nanos - 1_950_000_000).abs() < 10, "{s:?}");
        assert!((s.delay_nanos - 300_000_000).abs() < 10, "{s:?}");
        // Behind: the server is 3 s slower.
        let r = parse_reply(&answer(3, b"abcd", ts(97, 0), ts(97, 0)), COOKIE).unwrap();
        let s = measure(ts(100, 0), &r, ts(100, 0));
        assert!((s.offset_nanos + 3_000_000_000).abs() < 10, "{s:?}");
        assert!(s.delay_nanos.abs() < 10);
    }

    #[test]
    fn answers_to_somebody_else_are_refused() {
        let p = answer(2, b"GPS\0", ts(100, 0), ts(100, 0));
        assert_eq!(parse_reply(&p, COOKIE ^ 1), Err(NtpError::OriginMismatch));
        // A spoofed kiss-o'-death with the wrong origin is not believed either.
        let k = answer(0, b"DENY", ts(100, 0), ts(100, 0));
        assert_eq!(parse_reply(&k, 7), Err(NtpError::OriginMismatch));
    }

    #[test]
    fn kisses_of_death_are_reported_with_their_code() {
        let t = ts(100, 0);
        assert_eq!(parse_reply(&answer(0, b"RATE", t, t), COOKIE), Err(NtpError::Kiss(Kiss::Rate)));
        assert_eq!(parse_reply(&answer(0, b"DENY", t, t), COOKIE), Err(NtpError::Kiss(Kiss::Deny)));
        assert_eq!(parse_reply(&answer(0, b"RSTR", t, t), COOKIE), Err(NtpError::Kiss(Kiss::Deny)));
        let e = parse_reply(&answer(0, b"IN\x01T", t, t), COOKIE).unwrap_err();
        assert_eq!(e, NtpError::Kiss(Kiss::Other(*b"IN\x01T")));
        assert_eq!(e.to_string(), "kiss-o'-death IN?T");
    }

    #[test]
    fn unusable_answers_are_refused() {
        let t = ts(100, 0);
        let good = answer(2, b"GPS\0", t, t);
        assert!(parse_reply(&good, COOKIE).is_ok());
        let mut unsync = good.clone();
        unsync[0] |= 0xc0;
        assert_eq!(parse_reply(&unsync, COOKIE), Err(NtpError::Unsynchronised));
        let mut s16 = good.clone();
        s16[1] = 16;
        assert_eq!(parse_reply(&s16, COOKIE), Err(NtpError::Stratum(16)));
        let mut client = good.clone();
        client[0] = (4 << 3) | MODE_CLIENT;
        assert_eq!(parse_reply(&client, COOKIE), Err(NtpError::NotServer(3)));
        let mut broadcast = good.clone();
        broadcast[0] = (4 << 3) | 5;
        assert_eq!(parse_reply(&broadcast, COOKIE), Err(NtpError::NotServer(5)));
        let mut v0 = good.clone();
        v0[0] = MODE_SERVER;
        assert_eq!(parse_reply(&v0, COOKIE), Err(NtpError::Version(0)));
        let mut v5 = good.clone();
        v5[0] = (5 << 3) | MODE_SERVER;
        assert_eq!(parse_reply(&v5, COOKIE), Err(NtpError::Version(5)));
        let mut v3 = good.clone();
        v3[0] = (3 << 3) | MODE_SERVER;
        assert_eq!(parse_reply(&v3, COOKIE).unwrap().version, 3);
        let mut no_tx = good.clone();
        no_tx[40..48].fill(0);
        assert_eq!(parse_reply(&no_tx, COOKIE), Err(NtpError::NoTimestamp));
        // Extension fields or a MAC after the header are ignored, not refused.
        let mut longer = good.clone();
        longer.extend_from_slice(&[0u8; 20]);
        assert!(parse_reply(&longer, COOKIE).is_ok());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_answered_without_panic() {
        let good = answer(2, b"GPS\0", ts(100, 0), ts(100, 1));
        for n in 0..good.len() {
            assert_eq!(parse_reply(&good[..n], COOKIE), Err(NtpError::TooShort(n)));
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut p = good.clone();
                p[i] ^= 1 << bit;
                let mut input = COOKIE.to_be_bytes().to_vec();
                input.extend_from_slice(&p);
                fuzz::run(&input);
            }
        }
        fuzz::run(&[]);
        fuzz::run(&[0xff; 3]);
    }
}
