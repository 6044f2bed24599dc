//! Deploying prebuilt systems (issue 19, part 4): `hbdeploy build --systems-out FILE` on one
//! side, `hbdeploy apply --systems FILE [--from STORE-URL]` on the other, in the lab with a
//! local file-based binary cache; and the errors for files that cannot be used (snapshots).

use std::path::Path;
use std::process::Command;

use crate::support::{hbdeploy, host, row, untouched};
use hbdeploy_lab::{Lab, SystemSpec};

/// A generation no other test (of this run, or of another process) uses, so the systems' store
/// paths are the test's own and may be deleted from the local store: the toy systems are
/// input-addressed by host and generation, and tests run at once.
fn unique_generation(test: u32) -> u32 {
    700_000 + (std::process::id() % 20_000) * 10 + test
}

/// Runs `nix` (flakes on, no substituters, as the lab's deployer) and asserts it succeeded.
fn nix(args: &[&str]) -> String {
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(args)
        .env("NIX_CONFIG", hbdeploy_lab::NIX_CONFIG)
        .output()
        .expect("nix runs");
    assert!(
        out.status.success(),
        "nix {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes `path` from the local store (it must be this test's own).
fn delete_locally(path: &str) {
    let out = Command::new("nix-store")
        .args(["--delete", path])
        .output()
        .expect("nix-store runs");
    assert!(
        out.status.success(),
        "nix-store --delete {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(path).exists(), "{path} still in the local store");
}

/// The lab with systems for `names` that are test number `test`'s own, and its fleet.toml.
fn lab(test: u32, names: &[&str]) -> Lab {
    let mut lab = Lab::start(names).expect("lab starts (needs root, nix-bin, openssh-server)");
    let generation = unique_generation(test);
    lab.set_systems(names.iter().map(|n| {
        (
            *n,
            SystemSpec {
                generation,
                ..SystemSpec::default()
            },
        )
    }))
    .expect("systems set");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    lab
}

/// Points fleet.toml at a flake that does not exist: from here on, any evaluation fails.
fn break_the_flake(lab: &Lab) {
    let text = lab.fleet_toml(&[], "").replace(
        &lab.flake_ref(),
        &format!("path:{}/no-flake", lab.dir().display()),
    );
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("fleet.toml written");
}

fn systems_of(file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(file).expect("systems file");
    match serde_json::from_str(&text).expect("JSON") {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn build_systems_out_then_apply_systems_from_a_file_cache_evaluates_nothing() {
    let lab = lab(1, &["desktop", "laptop"]);
    let file = lab.dir().join("systems.json");
    let file_arg = file.to_str().unwrap();
    let built = hbdeploy(&lab, &["build", "--all", "--systems-out", file_arg]);
    assert_eq!(built.code, 0, "{}", built.both());
    assert!(
        built.stderr.contains("wrote the systems of 2 hosts"),
        "{}",
        built.both()
    );
    let systems = systems_of(&file);
    let path = |name: &str| systems[name].as_str().unwrap().to_owned();
    assert_eq!(systems.len(), 2);
    for name in ["desktop", "laptop"] {
        assert!(
            path(name).contains(&format!("nixos-system-{name}-toy-")),
            "{systems:?}"
        );
        assert!(
            !host(&lab, name).has_store_path(&path(name)).expect("query"),
            "build contacted {name}"
        );
    }
    // The other machine's half: the systems are in a binary cache, not in the local store.
    let cache = format!("file://{}/cache", lab.dir().display());
    nix(&["copy", "--to", &cache, &path("desktop"), &path("laptop")]);
    delete_locally(&path("desktop"));
    delete_locally(&path("laptop"));
    break_the_flake(&lab);

    let run = hbdeploy(
        &lab,
        &["apply", "--all", "--systems", file_arg, "--from", &cache],
    );
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["desktop", "laptop"] {
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        let h = host(&lab, name);
        assert_eq!(h.current_system().expect("read"), Some(path(name)));
        assert_eq!(h.profile_system().expect("read"), Some(path(name)));
    }
    assert!(
        !run.stderr.contains("evaluate"),
        "evaluated: {}",
        run.both()
    );
    // Fetched into the local store on the way.
    assert!(Path::new(&path("laptop")).exists());
}

#[test]
fn a_system_in_no_store_fails_only_its_host_and_changes_nothing_on_it() {
    let lab = lab(2, &["desktop", "laptop"]);
    let file = lab.dir().join("systems.json");
    let built = hbdeploy(
        &lab,
        &["build", "--all", "--systems-out", file.to_str().unwrap()],
    );
    assert_eq!(built.code, 0, "{}", built.both());
    let systems = systems_of(&file);
    let laptop = systems["laptop"].as_str().unwrap().to_owned();
    delete_locally(&laptop);
    let empty_cache = format!("file://{}/empty-cache", lab.dir().display());
    std::fs::create_dir_all(lab.dir().join("empty-cache")).unwrap();
    let before = untouched(host(&lab, "laptop"));

    let run = hbdeploy(
        &lab,
        &[
            "apply",
            "--all",
            "--systems",
            file.to_str().unwrap(),
            "--from",
            &empty_cache,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "desktop")[1], "ok", "{}", run.both());
    assert_eq!(row(&run, "laptop")[1], "FAILED", "{}", run.both());
    let said = format!(
        "laptop: {laptop} is in none of the places looked in: the local store; {empty_cache} ("
    );
    assert!(run.stdout.contains(&said), "{}", run.both());
    assert!(
        run.stdout.contains("the host's binary caches ("),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("the host was not changed"),
        "{}",
        run.both()
    );
    assert_eq!(untouched(host(&lab, "laptop")), before);
    assert!(!host(&lab, "laptop").has_store_path(&laptop).expect("query"));
}

#[test]
fn a_host_fetches_a_system_from_its_own_binary_cache() {
    let lab = lab(3, &["server"]);
    let file = lab.dir().join("systems.json");
    let built = hbdeploy(
        &lab,
        &["build", "server", "--systems-out", file.to_str().unwrap()],
    );
    assert_eq!(built.code, 0, "{}", built.both());
    let server = systems_of(&file)["server"].as_str().unwrap().to_owned();
    let cache_dir = lab.dir().join("host-cache");
    let cache = format!("file://{}", cache_dir.display());
    nix(&["copy", "--to", &cache, &server]);
    delete_locally(&server);
    host(&lab, "server")
        .append_nix_conf(&format!("substituters = {cache}\nrequire-sigs = false"))
        .expect("nix.conf");
    break_the_flake(&lab);

    let run = hbdeploy(
        &lab,
        &["apply", "server", "--systems", file.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr.contains("fetches it from its own binary caches"),
        "{}",
        run.both()
    );
    assert_eq!(
        host(&lab, "server").current_system().expect("read"),
        Some(server.clone())
    );
    // Nothing came through this machine.
    assert!(!Path::new(&server).exists());
}

const FLEET: &str = r#"[fleet]
flake = "./nixos"

[hosts.web-1]
address = "web-1.home.arpa"

[hosts.web-2]
address = "web-2.home.arpa"

[hosts.db]
address = "db.home.arpa"
"#;

const WEB1: &str = "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-web-1-24.05";

/// Runs hbdeploy with [`FLEET`] and `systems` as systems.json in a fresh directory; the exit
/// code and both streams, for a snapshot. Every case fails before any host is contacted.
fn run(test: &str, systems: &str, args: &[&str]) -> String {
    let files = [("fleet.toml", FLEET), ("systems.json", systems)];
    crate::support::answer("systems", test, &files, args)
}

#[test]
fn selected_hosts_missing_from_the_file_are_listed_before_anything_starts() {
    insta::assert_snapshot!(run(
        "missing",
        &format!(r#"{{"web-1": "{WEB1}"}}"#),
        &["apply", "--all", "--systems", "systems.json"]
    ));
}

#[test]
fn a_host_of_the_file_not_in_the_fleet_is_named_with_the_closest() {
    insta::assert_snapshot!(run(
        "unknown",
        &format!(r#"{{"web-1": "{WEB1}", "web-3": "{WEB1}"}}"#),
        &["apply", "web-1", "--systems", "systems.json"]
    ));
}

#[test]
fn a_nix_build_json_array_is_refused_with_the_reason() {
    insta::assert_snapshot!(run(
        "array",
        &format!(r#"[{{"drvPath": "/nix/store/x.drv", "outputs": {{"out": "{WEB1}"}}}}]"#),
        &["apply", "web-1", "--systems", "systems.json"]
    ));
}

#[test]
fn bad_json_names_the_line_and_column() {
    insta::assert_snapshot!(run(
        "json",
        "{\n  \"web-1\": \"/nix/store/x\"\n  \"db\": 1\n}",
        &["apply", "web-1", "--systems", "systems.json"]
    ));
}

#[test]
fn a_value_that_is_not_a_store_path_names_the_host() {
    insta::assert_snapshot!(run(
        "not-a-path",
        r#"{"web-1": "result/bin"}"#,
        &["apply", "web-1", "--systems", "systems.json"]
    ));
}

#[test]
fn from_needs_systems_and_systems_excludes_ask() {
    let from = run("from", "{}", &["apply", "--all", "--from", "file:///tmp/c"]);
    let ask = run(
        "ask",
        "{}",
        &["apply", "--all", "--systems", "systems.json", "--ask"],
    );
    insta::assert_snapshot!(format!("{from}\n{ask}"));
}
