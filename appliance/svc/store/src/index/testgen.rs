//! Generated messages and search strings for the index's equivalence tests: varied headers
//! (encoded words in UTF-8 and ISO-8859-1, address lists, groups, repeated and odd fields),
//! bodies (plain, quoted-printable Latin-1, base64 UTF-8, HTML, multipart, embedded messages,
//! text beyond the index's body bound), all from a seeded generator so failures reproduce.

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

pub const WORDS: &[&str] = &[
    "quarterly",
    "Report",
    "lunch",
    "Grüße",
    "straße",
    "ΣΊΣΥΦΟΣ",
    "naïve",
    "café",
    "invoice",
    "MEETING",
    "zebra",
    "build",
    "failure",
    "hermes",
    "ünïcödé",
    "deadline",
    "Budget",
    "x",
    "ölçü",
    "ΟΔΥΣΣΕΥΣ",
];

const NAMES: &[&str] = &[
    "Alice Example",
    "=?utf-8?q?J=C3=B6rg_M=C3=BCller?=",
    "\"Smith, Bob\"",
    "=?iso-8859-1?q?Fran=E7ois?=",
    "",
    "Σωκράτης",
];

fn words(r: &mut Rng, n: usize) -> String {
    (0..n).map(|_| r.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

fn address(r: &mut Rng) -> String {
    let name = r.pick(NAMES);
    let local = ["alice", "Bob.Smith", "joerg", "list+tag", "ADMIN"][r.below(5)];
    let host = ["example.org", "Example.COM", "mail.test"][r.below(3)];
    if name.is_empty() { format!("{local}@{host}") } else { format!("{name} <{local}@{host}>") }
}

fn latin1_qp(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let cp = c as u32;
        if cp < 128 && c != '=' {
            out.push(c);
        } else if cp < 256 {
            out.push_str(&format!("={cp:02X}"));
        } else {
            out.push('?');
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// Message `i` of the corpus with `seed`.
pub fn message(seed: u64, i: usize) -> Vec<u8> {
    let mut r = Rng::new(seed ^ (i as u64).wrapping_mul(0x1000_0001));
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", address(&mut r)));
    let to: Vec<String> = (0..1 + r.below(3)).map(|_| address(&mut r)).collect();
    m.push_str(&format!("To: {}\r\n", to.join(", ")));
    if r.below(3) == 0 {
        m.push_str(&format!("Cc: team: {};\r\n", address(&mut r)));
    }
    if r.below(4) == 0 {
        m.push_str(&format!("Bcc: {}\r\n", address(&mut r)));
    }
    let subject = match r.below(4) {
        0 => format!("Re: {}", words(&mut r, 3)),
        1 => "=?utf-8?b?R3LDvMOfZSBhdXMgQmVybGlu?=".to_string(),
        2 => format!("=?iso-8859-1?q?{}?=", latin1_qp(&words(&mut r, 2)).replace(' ', "_")),
        _ => words(&mut r, 4),
    };
    m.push_str(&format!("Subject: {subject}\r\n"));
    if r.below(5) != 0 {
        m.push_str(&format!("Date: Mon, {} Jan 2024 1{}:00:00 +0{}00\r\n", 1 + r.below(28), r.below(10), r.below(10)));
    }
    m.push_str(&format!("Message-ID: <{i}.{seed}@example.org>\r\n"));
    if r.below(3) == 0 {
        m.push_str(&format!("X-Label: {}\r\nX-Label: {}\r\n", words(&mut r, 1), words(&mut r, 1)));
    }
    if r.below(7) == 0 {
        m.push_str("X-Folded: first part\r\n  continued ΣΑΣ\r\n");
    }
    m.push_str("MIME-Version: 1.0\r\n");
    match r.below(6) {
        0 => {
            m.push_str(
                "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            );
            m.push_str(&latin1_qp(&words(&mut r, 40)));
            m.push_str("\r\n");
        }
        1 => {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            m.push_str(&base64(words(&mut r, 60).as_bytes()));
        }
        2 => {
            m.push_str("Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
            m.push_str(&words(&mut r, 30));
            m.push_str("\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>");
            m.push_str(&words(&mut r, 10));
            m.push_str(
                "</p>\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            );
            m.push_str(&base64(b"quarterly binary zebra"));
            m.push_str("--b1--\r\n");
        }
        3 => {
            m.push_str("Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n");
            m.push_str(&format!(
                "Subject: inner {}\r\nFrom: {}\r\n\r\n{}\r\n",
                words(&mut r, 2),
                address(&mut r),
                words(&mut r, 8)
            ));
            m.push_str("--o--\r\n");
        }
        4 if r.below(4) == 0 => {
            // Beyond the index's body bound: the tail is only found by reading the message.
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            let line = "filler text without the rare words\r\n";
            while m.len() < 70 * 1024 {
                m.push_str(line);
            }
            m.push_str(&words(&mut r, 10));
            m.push_str("\r\n");
        }
        _ => {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            m.push_str(&words(&mut r, 25));
            m.push_str("\r\n");
        }
    }
    m.into_bytes()
}

/// Search strings: corpus words in other cases, fragments, addresses, and misses.
pub fn needles() -> Vec<String> {
    let mut v: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
    v.extend(WORDS.iter().map(|w| w.chars().take(3).collect::<String>()));
    v.extend(
        [
            "",
            "jörg",
            "JOERG@",
            "smith, bob",
            "@example.org",
            "françois",
            "team",
            "grüße aus",
            "inner",
            "filler",
            "quarterly binary",
            "ς",
            "σας",
            "continued",
            "x-label",
            "nothing-like-this",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v
}
