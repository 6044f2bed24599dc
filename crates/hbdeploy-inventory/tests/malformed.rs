//! Snapshots of the rendered error for each kind of mistake in `fleet.toml`.
//!
//! Each case edits a valid file and records the file, then the error as the binary renders it
//! (`error: …`, each cause, `hint: …`). Review changed snapshots by reading the `.snap` files;
//! regenerate them with `INSTA_UPDATE=always cargo test -p hbdeploy-inventory`.

use std::fmt::Write as _;
use std::path::Path;

use hbdeploy_files::Hint as _;
use hbdeploy_inventory::{Fleet, InventoryError};

/// A valid fleet that every case starts from.
const VALID: &str = r#"[fleet]
flake = "./nixos"
parallel = 10

[ssh]
user = "root"
port = 22
known-hosts = "~/.ssh/known_hosts"
connect-timeout = 10

[hosts.desktop]
address = "desktop.home.arpa"
tags = ["workstation"]

[hosts.server]
address = "server.home.arpa"
tags = ["infra"]
"#;

/// Renders an error the way the binary does: message, causes, hint.
fn render(error: &InventoryError) -> String {
    let mut out = format!("error: {error}\n");
    for cause in hbdeploy_files::causes(error) {
        let _ = writeln!(out, "cause: {cause}");
    }
    if let Some(hint) = error.hint() {
        let _ = writeln!(out, "hint: {hint}");
    }
    out
}

/// The file with numbered lines, then the outcome of parsing it.
fn outcome(text: &str, home: Option<&Path>) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "{:>3} | {line}", i + 1);
    }
    out.push_str("---\n");
    match Fleet::parse(text, Path::new("fleet.toml"), home) {
        Ok(fleet) => out.push_str(&format!(
            "parsed, unexpectedly: {} hosts\n",
            fleet.hosts.len()
        )),
        Err(e) => out.push_str(&render(&e)),
    }
    out
}

/// `VALID` with each `(from, to)` replacement applied once; panics if `from` is absent, so a
/// case cannot silently stop testing what it says.
fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = VALID.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is not in the valid file");
        text = text.replacen(from, to, 1);
    }
    text
}

/// One snapshot test per case: `name: [(from, to), …];`.
macro_rules! cases {
    ($($name:ident: $edits:expr;)*) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(outcome(&edit(&$edits), Some(Path::new("/home/me"))));
        }
    )*};
}

cases! {
    syntax_unclosed_string: [("\"./nixos\"", "\"./nixos")];
    syntax_missing_equals: [("parallel = 10", "parallel 10")];
    duplicate_host_table: [("[hosts.server]", "[hosts.desktop]")];
    duplicate_key: [("port = 22\n", "port = 22\nport = 2222\n")];
    unknown_top_level_table: [("[hosts.server]", "[host.server]")];
    unknown_fleet_key: [("parallel = 10", "paralell = 10")];
    unknown_ssh_key: [("known-hosts =", "known_hosts =")];
    unknown_host_key: [("address = \"server", "adress = \"server")];
    unknown_key_without_suggestion: [("tags = [\"infra\"]", "role = \"infra\"")];
    wrong_type_port: [("port = 22", "port = \"22\"")];
    wrong_type_parallel: [("parallel = 10", "parallel = true")];
    wrong_type_timeout_float: [("connect-timeout = 10", "connect-timeout = 2.5")];
    wrong_type_tags_string: [("tags = [\"infra\"]", "tags = \"infra\"")];
    wrong_type_tag_item: [("tags = [\"infra\"]", "tags = [\"infra\", 3]")];
    wrong_type_flake: [("flake = \"./nixos\"", "flake = [\"./nixos\"]")];
    wrong_type_fleet: [("[fleet]\nflake = \"./nixos\"\nparallel = 10\n", "fleet = \"./nixos\"\n")];
    wrong_type_host: [("[hosts.server]\naddress = \"server.home.arpa\"\ntags = [\"infra\"]\n", "[hosts]\nserver = \"server.home.arpa\"\n")];
    wrong_type_hosts_array: [("[hosts.desktop]", "[[hosts]]"), ("[hosts.server]", "[[hosts]]")];
    invalid_host_name: [("[hosts.server]", "[hosts.\"server.home.arpa\"]")];
    invalid_host_name_start: [("[hosts.server]", "[hosts._server]")];
    invalid_tag: [("[\"infra\"]", "[\"@infra\"]")];
    invalid_tag_with_space: [("[\"infra\"]", "[\"infra servers\"]")];
    duplicate_tag: [("[\"infra\"]", "[\"infra\", \"web\", \"infra\"]")];
    empty_address: [("\"server.home.arpa\"", "\"\"")];
    address_with_user: [("\"server.home.arpa\"", "\"root@server.home.arpa\"")];
    address_as_url: [("\"server.home.arpa\"", "\"ssh://server.home.arpa\"")];
    missing_address: [("address = \"server.home.arpa\"\n", "")];
    missing_fleet: [("[fleet]\nflake = \"./nixos\"\nparallel = 10\n", "")];
    missing_flake: [("flake = \"./nixos\"\n", "")];
    empty_flake: [("flake = \"./nixos\"", "flake = \"\"")];
    flake_with_attribute: [("flake = \"./nixos\"", "flake = \"./nixos#server\"")];
    missing_hosts: [("[hosts.desktop]\naddress = \"desktop.home.arpa\"\ntags = [\"workstation\"]\n\n[hosts.server]\naddress = \"server.home.arpa\"\ntags = [\"infra\"]\n", "")];
    empty_hosts: [("[hosts.desktop]\naddress = \"desktop.home.arpa\"\ntags = [\"workstation\"]\n\n[hosts.server]\naddress = \"server.home.arpa\"\ntags = [\"infra\"]\n", "[hosts]\n")];
    parallel_zero: [("parallel = 10", "parallel = 0")];
    parallel_negative: [("parallel = 10", "parallel = -4")];
    parallel_too_large: [("parallel = 10", "parallel = 100000")];
    port_zero: [("port = 22", "port = 0")];
    port_too_large: [("port = 22", "port = 65536")];
    port_in_host_table: [("tags = [\"infra\"]", "tags = [\"infra\"]\nport = 99999")];
    connect_timeout_zero: [("connect-timeout = 10", "connect-timeout = 0")];
    empty_user: [("user = \"root\"", "user = \"\"")];
    empty_attr: [("tags = [\"infra\"]", "tags = [\"infra\"]\nattr = \"\"")];
    user_with_host: [("user = \"root\"", "user = \"root@server.home.arpa\"")];
    user_with_slash: [("user = \"root\"", "user = \"deploy/admin\"")];
    user_with_question_mark: [("tags = [\"infra\"]", "tags = [\"infra\"]\nuser = \"deploy?x=1\"")];
    builders_with_comment: [("parallel = 10", "parallel = 10\nbuilders = \"ssh://builder x86_64-linux # the fast one\"")];
    builders_with_line_break: [("parallel = 10", "parallel = 10\nbuilders = \"\"\"\nssh://a x86_64-linux\nssh://b aarch64-linux\n\"\"\"")];
    builders_with_quotes: [("parallel = 10", "parallel = 10\nbuilders = \"'ssh://builder x86_64-linux'\"")];
    builders_with_option: [("parallel = 10", "parallel = 10\nbuilders = \"-oProxyCommand=x x86_64-linux\"")];
    home_of_other_user: [("\"~/.ssh/known_hosts\"", "\"~admin/.ssh/known_hosts\"")];
}

#[test]
fn no_home_for_a_tilde_path() {
    insta::assert_snapshot!(outcome(VALID, None));
}

#[test]
fn no_home_for_the_default_known_hosts() {
    let text = edit(&[("known-hosts = \"~/.ssh/known_hosts\"\n", "")]);
    insta::assert_snapshot!(outcome(&text, None));
}

#[test]
fn unreadable_file() {
    let error = Fleet::load(Path::new("/nonexistent/fleet.toml"));
    insta::assert_snapshot!(error.err().as_ref().map_or("loaded".to_owned(), render));
}

#[test]
fn not_utf8() {
    // A Latin-1 "ü" (0xfc) in place of the server address's "e": the error points at it.
    let at = VALID.find("server.home.arpa").map_or(0, |i| i + 1);
    let mut bytes = VALID.as_bytes().to_vec();
    bytes[at] = 0xfc;
    let error = Fleet::parse_bytes(&bytes, Path::new("fleet.toml"), Some(Path::new("/home/me")));
    insta::assert_snapshot!(error.err().as_ref().map_or("parsed".to_owned(), render));
}

#[test]
fn special_file() {
    let error = Fleet::load(Path::new("/dev/zero"));
    insta::assert_snapshot!(error.err().as_ref().map_or("loaded".to_owned(), render));
}

#[test]
fn the_valid_file_is_valid() {
    let fleet = Fleet::parse(
        VALID,
        Path::new("/f/fleet.toml"),
        Some(Path::new("/home/me")),
    );
    assert_eq!(fleet.map(|f| f.hosts.len()).ok(), Some(2));
}
