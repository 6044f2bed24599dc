//! Build and transfer placement against the lab (issue 8): building on the target, signed
//! copies to a host that requires signatures, substitution on the destination, and separate copy
//! and activation parallelism.

use std::process::Command;

use crate::support::{hbdeploy, host, row, system_path};
use hbdeploy_lab::{Activation, Lab, NIX_CONFIG, SystemSpec};

fn nix(args: &[&str]) -> std::process::Output {
    Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix runs")
}

fn locally_valid(path: &str) -> bool {
    let out = Command::new("nix-store")
        .args(["--check-validity", path])
        .output()
        .expect("nix-store runs");
    out.status.success()
}

#[test]
fn a_host_can_build_its_own_system() {
    let mut lab = Lab::start(&["builder9", "local9"]).expect("lab");
    lab.write_fleet(&[], "build-on = \"target\"\n")
        .expect("fleet");
    // A generation no other test builds, so the local store cannot have it from elsewhere.
    let unique = SystemSpec {
        generation: 90_001,
        ..SystemSpec::default()
    };
    lab.set_system("builder9", unique).expect("flake");
    let path = system_path(&lab, "builder9");
    let fleet = lab.fleet_toml(&[], "").replace(
        "[hosts.builder9]\n",
        "[hosts.builder9]\nbuild-on = \"target\"\n",
    );
    std::fs::write(lab.dir().join("fleet.toml"), fleet).expect("write");

    let run = hbdeploy(&lab, &["apply", "--all", "-v"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let h = host(&lab, "builder9");
    assert_eq!(h.current_system().expect("read"), Some(path.clone()));
    assert!(h.has_store_path(&path).expect("query"));
    assert!(
        run.stderr
            .contains("[builder9] building the system on the host"),
        "{}",
        run.both()
    );
    assert!(
        !locally_valid(&path),
        "built locally although build-on = \"target\""
    );
    assert!(
        host(&lab, "local9")
            .current_system()
            .expect("read")
            .is_some()
    );
}

#[test]
fn signed_copies_pass_a_host_that_requires_signatures_and_unsigned_ones_do_not() {
    let lab = Lab::start(&["strict"]).expect("lab");
    let secret = lab.dir().join("deploy-key.sec");
    let generated = nix(&["key", "generate-secret", "--key-name", "hbdeploy-lab-1"]);
    assert!(generated.status.success());
    std::fs::write(&secret, &generated.stdout).expect("write key");
    let public = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "key",
            "convert-secret-to-public",
        ])
        .stdin(std::fs::File::open(&secret).expect("open key"))
        .output()
        .expect("nix runs");
    let public = String::from_utf8_lossy(&public.stdout).trim().to_owned();
    host(&lab, "strict")
        .append_nix_conf(&format!(
            "require-sigs = true\ntrusted-public-keys = {public}"
        ))
        .expect("nix.conf");

    // Unsigned, and the fleet says the user is not to skip checks: refused, nothing changed.
    let fleet = lab.fleet_toml(&[], "trusted = false\n");
    std::fs::write(lab.dir().join("fleet.toml"), &fleet).expect("write");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "strict")[1..3],
        ["FAILED", "copy"],
        "{}",
        run.both()
    );
    assert!(refused_unsigned(&run.stdout), "{}", run.both());
    assert!(
        run.stdout
            .contains("hint: the host's nix accepts unsigned paths only from a user it trusts"),
        "{}",
        run.both()
    );
    assert_eq!(host(&lab, "strict").current_system().expect("read"), None);
    // `plan --copy` sends closures exactly as apply does: refused the same way.
    let plan = hbdeploy(&lab, &["plan", "strict", "--copy"]);
    assert_eq!(plan.code, 1, "{}", plan.both());
    assert!(refused_unsigned(&plan.both()), "{}", plan.both());

    // Signed with the key the host trusts: accepted, by plan --copy and by apply.
    let signed = fleet.replace(
        "[fleet]\n",
        &format!("[fleet]\nsigning-key = \"{}\"\n", secret.display()),
    );
    std::fs::write(lab.dir().join("fleet.toml"), signed).expect("write");
    let plan = hbdeploy(&lab, &["plan", "strict", "--copy"]);
    assert_eq!(plan.code, 0, "{}", plan.both());
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        host(&lab, "strict")
            .current_system()
            .expect("read")
            .is_some()
    );
}

#[test]
fn substitution_on_the_destination_works_with_an_empty_substituter_list() {
    let lab = Lab::start(&["a", "b"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    // The lab hosts have `substituters =` (empty): asking them to substitute must not fail.
    let run = hbdeploy(&lab, &["apply", "a"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let run = hbdeploy(&lab, &["apply", "b", "--no-substitute"]);
    assert_eq!(run.code, 0, "{}", run.both());
}

#[test]
fn a_compressed_connection_carries_the_copy() {
    // `compress = true` compresses the host's one connection (zlib@openssh.com, switched on
    // after authentication), which carries nix copy too.
    let lab = Lab::start(&["slow"]).expect("lab");
    let fleet = lab
        .fleet_toml(&[], "")
        .replace("[hosts.slow]\n", "[hosts.slow]\ncompress = true\n");
    std::fs::write(lab.dir().join("fleet.toml"), fleet).expect("write");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(row(&run, "slow")[5], "3/3", "{}", run.both());
    let path = system_path(&lab, "slow");
    assert_eq!(
        host(&lab, "slow").current_system().expect("read"),
        Some(path)
    );
    assert_eq!(host(&lab, "slow").accepted_logins(), 1, "{}", run.both());
}

#[test]
fn copy_and_activation_parallelism_are_bounded_separately() {
    let mut lab = Lab::start(&["a", "b", "c", "d"]).expect("lab");
    for name in ["a", "b", "c", "d"] {
        let spec = SystemSpec {
            payload_bytes: 4 << 20,
            // The first two activations wait for each other: they must overlap.
            activation: Activation::Barrier(2),
            ..SystemSpec::default()
        };
        lab.set_system(name, spec).expect("flake");
    }
    let fleet = lab.fleet_toml(&[], "").replace(
        "parallel = 10\n",
        "parallel = 10\nparallel-copy = 1\nparallel-activate = 2\n",
    );
    std::fs::write(lab.dir().join("fleet.toml"), fleet).expect("write");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 0, "{}", run.both());
    // Replay the plain progress: a host copies from `[h] copy` to `[h] copied …`, and activates
    // from `[h] activate` until `[h] done`.
    let (mut copying, mut activating, mut max_copy, mut max_activate) = (0i32, 0i32, 0, 0);
    for line in run.stderr.lines() {
        if line.ends_with("] copy") {
            copying += 1;
        } else if line.contains("] copied ") {
            copying -= 1;
        } else if line.ends_with("] activate") {
            activating += 1;
        } else if line.ends_with("] done") {
            activating -= 1;
        }
        max_copy = max_copy.max(copying);
        max_activate = max_activate.max(activating);
    }
    assert_eq!(max_copy, 1, "{}", run.both());
    assert_eq!(max_activate, 2, "{}", run.both());
}

/// Whether nix's output says a path was refused for lacking a signature, as nix 2.8 words it
/// ("lacks a valid signature") or as later versions do ("lacks a signature by a trusted key").
fn refused_unsigned(output: &str) -> bool {
    output.contains("lacks a valid signature")
        || output.contains("lacks a signature by a trusted key")
}
