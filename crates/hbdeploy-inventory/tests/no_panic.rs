//! Property-style test: no text, however mangled, makes parsing or rendering the error panic.
//!
//! A valid file is truncated at every character, has each line dropped, and is mutated many
//! times by a small deterministic generator (no dependency on a random-number crate, and the
//! same cases on every run). Every error must also point inside the file.

use std::path::Path;

use hbdeploy_files::Hint as _;
use hbdeploy_inventory::{Fleet, Selector};

const FLEET_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fleet.toml"));

/// Characters that matter to TOML and to our checks, plus multi-byte ones for span handling.
const ALPHABET: &[char] = &[
    '[', ']', '{', '}', '"', '\'', '=', ',', '.', '#', '\n', ' ', '0', '9', '-', '_', '@', '~',
    '/', 'a', 'z', 'é', '😀', '\\', '+', 'x', 't', 'e', '\t', '\r',
];

/// xorshift64*: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        // n is small, so the modulo bias does not matter here.
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Parses `text`, renders any error, and checks its location lies within the text.
fn parse_never_panics(text: &str) {
    let result = Fleet::parse(
        text,
        Path::new("/fleet/fleet.toml"),
        Some(Path::new("/home/me")),
    );
    match result {
        Ok(fleet) => {
            // A parsed fleet must also select without trouble.
            assert!(!fleet.hosts.is_empty());
            let all = fleet.select(&[Selector::All]).map(|h| h.len());
            assert_eq!(all, Ok(fleet.hosts.len()));
        }
        Err(e) => {
            let _ = (e.to_string(), e.hint());
            if let Some(at) = e.location() {
                let lines = text.split('\n').count();
                assert!(
                    at.line >= 1 && at.line <= lines,
                    "line {} of {lines}: {e}",
                    at.line
                );
                assert!(at.column >= 1, "{e}");
            }
        }
    }
}

#[test]
fn truncations_never_panic() {
    for (i, _) in FLEET_TOML.char_indices() {
        parse_never_panics(&FLEET_TOML[..i]);
        parse_never_panics(&FLEET_TOML[i..]);
    }
}

#[test]
fn dropped_lines_never_panic() {
    let lines: Vec<&str> = FLEET_TOML.lines().collect();
    for skip in 0..lines.len() {
        let text: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        parse_never_panics(&text.join("\n"));
    }
}

#[test]
fn mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4000 {
        let mut chars: Vec<char> = FLEET_TOML.chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(chars.len() + 1);
            let c = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 => chars.insert(at, c),
                1 if at < chars.len() => chars[at] = c,
                _ if at < chars.len() => {
                    chars.remove(at);
                }
                _ => chars.push(c),
            }
        }
        parse_never_panics(&chars.into_iter().collect::<String>());
    }
}

#[test]
fn odd_whole_files_never_panic() {
    for text in [
        "",
        "\n",
        "\u{feff}",
        "[hosts]\n",
        "hosts = []",
        "[hosts.a]\n",
        "[fleet]\nflake = \"~\"\n[hosts.a]\naddress = \"a\"\n",
        "[fleet]\nflake = \"/\"\nparallel = 9223372036854775807\n",
        "[fleet]\nflake = \".\"\n[hosts.\"\"]\naddress = \"a\"\n",
        "[fleet]\nflake = \".\"\n[hosts.\"😀\"]\naddress = \"a\"\n",
        "a = 0o777\nb = 0b1\nc = 1979-05-27T07:32:00Z\nd = inf\ne = nan\n",
    ] {
        parse_never_panics(text);
    }
}
