//! The repository's own `fleet.toml`, and the example in `docs/fleet.md`, must parse to what
//! they say.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hbdeploy_inventory::{FlakeRef, Fleet, Selector};

const FLEET_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fleet.toml");
const FLEET_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md");

fn real_fleet() -> Fleet {
    let text = std::fs::read_to_string(FLEET_TOML).expect("fleet.toml is readable");
    Fleet::parse(&text, Path::new(FLEET_TOML), Some(Path::new("/home/test")))
        .unwrap_or_else(|e| panic!("fleet.toml does not parse: {e}"))
}

#[test]
fn the_real_fleet_has_three_sane_hosts() {
    let fleet = real_fleet();
    let names: Vec<&str> = fleet.hosts.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["desktop", "laptop", "server"]);
    assert_eq!(fleet.parallel.get(), 10);

    let repo = Path::new(FLEET_TOML)
        .parent()
        .expect("fleet.toml has a directory");
    let FlakeRef::Path(flake) = &fleet.flake else {
        panic!("the flake is a local path, got {}", fleet.flake);
    };
    assert!(flake.is_absolute(), "{}", flake.display());
    assert!(flake.ends_with("nixos"), "{}", flake.display());
    assert!(
        flake.join("flake.nix").is_file(),
        "{} has no flake.nix",
        flake.display()
    );
    assert_eq!(
        flake.canonicalize().ok(),
        repo.join("nixos").canonicalize().ok()
    );

    for host in fleet.hosts.values() {
        assert_eq!(host.attr, host.name.as_str());
        assert_eq!(host.address, format!("{}.home.arpa", host.name));
        assert!(!host.tags.is_empty(), "{} has no tags", host.name);
        assert_eq!(host.ssh.user, "root");
        assert_eq!(host.ssh.port, 22);
        assert_eq!(host.ssh.identity_file, None, "keys come from the agent");
        assert_eq!(
            host.ssh.known_hosts,
            PathBuf::from("/home/test/.ssh/known_hosts")
        );
        assert_eq!(host.ssh.connect_timeout, Duration::from_secs(10));
    }
}

#[test]
fn the_real_fleet_selects_by_tag() {
    let fleet = real_fleet();
    let args = ["@workstation".to_owned()];
    let selectors = Selector::parse_args(false, &args).expect("valid arguments");
    let chosen: Vec<&str> = fleet
        .select(&selectors)
        .expect("workstation is a tag")
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(chosen, ["desktop", "laptop"]);
}

#[test]
fn the_real_fleet_loads_from_disk() {
    let loaded = Fleet::load(Path::new(FLEET_TOML));
    // `load` takes `~` from $HOME; without a usable one, `~/.ssh/known_hosts` is an error.
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute());
    match home {
        Some(home) => {
            let fleet = loaded.unwrap_or_else(|e| panic!("fleet.toml does not load: {e}"));
            assert_eq!(fleet.hosts.len(), 3);
            assert!(fleet.path.is_absolute());
            let known = fleet
                .hosts
                .values()
                .map(|h| h.ssh.known_hosts.clone())
                .next();
            assert_eq!(known, Some(home.join(".ssh/known_hosts")));
        }
        None => assert!(loaded.is_err(), "no $HOME, yet ~ was expanded"),
    }
}

/// Every ```toml block of docs/fleet.md marked as a complete file parses.
#[test]
fn the_documented_examples_parse() {
    let doc = std::fs::read_to_string(FLEET_DOC).expect("docs/fleet.md is readable");
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n# complete fleet.toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```").expect("the block is closed");
        let path = Path::new("/srv/fleet/fleet.toml");
        if let Err(e) = Fleet::parse(&body[..end], path, Some(Path::new("/home/me"))) {
            panic!(
                "example {} of docs/fleet.md does not parse: {e}",
                blocks + 1
            );
        }
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 1, "docs/fleet.md has no complete example");
}
