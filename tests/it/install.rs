//! `hbdeploy install` against the lab (issue 7): a lab host poses as a machine booted into the
//! NixOS installer, with a stand-in disk (a file) and a stand-in `nixos-install`; the real binary
//! evaluates and builds with real nix, copies with `nix copy` and runs the toy disko script over
//! real SSH. Every test starts its own lab, stopped when dropped.

use std::path::Path;

use crate::support::{HBDEPLOY, host, system_path};
use hbdeploy_lab::{Disko, Lab, Medium, Run, SystemSpec};

fn bin() -> &'static Path {
    Path::new(HBDEPLOY)
}

/// A lab of `names` whose `desktop` declares one disko disk, `nvme1n1` on `/dev/nvme1n1`, as
/// the fleet's real desktop does.
fn lab(names: &[&str]) -> Lab {
    let mut lab = Lab::start(names).expect("lab starts (needs root, nix-bin, openssh-server)");
    let spec = SystemSpec {
        disks: [("nvme1n1".to_owned(), "/dev/nvme1n1".to_owned())].into(),
        ..SystemSpec::default()
    };
    lab.set_system("desktop", spec).expect("flake");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    lab
}

fn install(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    lab.hbdeploy(bin(), &all).expect("hbdeploy runs")
}

/// `root@<address>:2222`, the lab host's installer login.
fn target(lab: &Lab, name: &str) -> String {
    format!(
        "root@{}:{}",
        host(lab, name).address,
        hbdeploy_lab::SSH_PORT
    )
}

/// Turns a lab host into a live installer with a stand-in `nvme1n1`; returns the disk's path.
fn live_installer(lab: &Lab, name: &str) -> String {
    let h = host(lab, name);
    h.make_installer(Medium::LiveInstaller).expect("installer");
    h.add_disk("nvme1n1").expect("disk")
}

/// Exit code and both streams, with the lab's paths, addresses, hashes and times made stable.
fn snapshot_text(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"path:\S*/hbdeploy-lab/slot-\d+/flake", "path:[LAB]/flake");
    settings.add_filter(r"127\.77\.\d+\.\d+", "[ADDRESS]");
    settings.add_filter(r"/nix/store/[0-9a-z]{32}-", "/nix/store/[HASH]-");
    settings.add_filter(r"/nix/store/[0-9a-z]{8}…-", "/nix/store/[HASH]…-");
    settings.add_filter(r"\b\d+\.\ds\b", "[TIME]");
    settings
}

/// The lines of `run`'s stderr that announce a step, in order.
fn steps(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[desktop] "))
        .filter(|l| !l.contains(' '))
        .map(str::to_owned)
        .collect()
}

#[test]
fn print_shows_the_disko_install_command_and_touches_nothing() {
    let lab = lab(&["desktop"]);
    let run = install(&lab, &["desktop", "--disk", "/dev/nvme1n1", "--print"]);
    assert_eq!(run.code, 0, "{}", run.both());
    settings().bind(|| insta::assert_snapshot!(snapshot_text(&run)));
    assert_eq!(host(&lab, "desktop").accepted_logins(), 0);

    // The disk is named by the configuration, not by the device.
    let run = install(&lab, &["desktop", "--disk", "/dev/sdb", "--print"]);
    assert!(
        run.stdout.ends_with("--disk nvme1n1 /dev/sdb\n"),
        "{}",
        run.both()
    );
}

#[test]
fn push_install_builds_copies_formats_then_installs() {
    let lab = lab(&["desktop", "server"]);
    let disk = live_installer(&lab, "desktop");
    let system = system_path(&lab, "desktop");
    let run = install(
        &lab,
        &[
            "desktop",
            "--disk",
            &disk,
            "--target",
            &target(&lab, "desktop"),
            "--yes-wipe-disk",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.both());
    assert_eq!(
        steps(&run),
        [
            "evaluate",
            "connect",
            "build",
            "copy",
            "disko",
            "nixos-install"
        ],
        "{}",
        run.both()
    );
    let desktop = host(&lab, "desktop");
    // The disko script ran with the device from --disk (disk.nix says /dev/nvme1n1), then
    // nixos-install found the system in the installer's store.
    assert_eq!(
        desktop.install_log(),
        [
            format!("formatted nvme1n1 {disk}"),
            format!(
                "nixos-install --no-root-passwd --no-channel-copy --root /mnt --system {system}"
            ),
        ]
    );
    assert!(desktop.has_store_path(&system).expect("query"));
    assert!(
        desktop
            .store_entries()
            .expect("ls")
            .iter()
            .any(|e| e.ends_with("-disko-desktop"))
    );
    assert!(
        desktop
            .disk_content("nvme1n1")
            .expect("read")
            .contains("by disko")
    );
    assert!(
        run.stdout.contains(&format!(
            "installed desktop on {}: {system}; reboot the machine into it",
            target(&lab, "desktop")
        )),
        "{}",
        run.both()
    );
    // Nothing else was touched: the installer's running system, the other host.
    assert_eq!(desktop.profile_system().expect("read"), None);
    assert_eq!(host(&lab, "server").accepted_logins(), 0);
}

#[test]
fn without_a_terminal_or_yes_wipe_disk_nothing_is_touched() {
    let lab = lab(&["desktop"]);
    let disk = live_installer(&lab, "desktop");
    let run = install(
        &lab,
        &[
            "desktop",
            "--disk",
            &disk,
            "--target",
            &target(&lab, "desktop"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.both());
    settings().bind(|| insta::assert_snapshot!("refused_without_consent", snapshot_text(&run)));
    let desktop = host(&lab, "desktop");
    assert_eq!(desktop.accepted_logins(), 0, "the target was contacted");
    assert!(desktop.store_entries().expect("ls").is_empty());
    assert!(desktop.install_log().is_empty());
    assert_eq!(
        desktop.disk_content("nvme1n1").expect("read"),
        "precious data on nvme1n1\n"
    );

    // The same on the machine itself: refused before anything is evaluated.
    let run = install(&lab, &["desktop", "--disk", "/dev/nvme1n1"]);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr
            .starts_with("error: refusing to wipe /dev/nvme1n1 without a confirmation"),
        "{}",
        run.both()
    );
}

#[test]
fn an_installed_system_is_refused_unless_forced() {
    let lab = lab(&["desktop"]);
    let desktop = host(&lab, "desktop");
    desktop
        .make_installer(Medium::InstalledSystem)
        .expect("installed system");
    let disk = desktop.add_disk("nvme1n1").expect("disk");
    let args = [
        "desktop",
        "--disk",
        &disk,
        "--target",
        &target(&lab, "desktop"),
        "--yes-wipe-disk",
    ];
    let run = install(&lab, &args);
    assert_eq!(run.code, 2, "{}", run.both());
    settings()
        .bind(|| insta::assert_snapshot!("refused_on_an_installed_system", snapshot_text(&run)));
    assert!(desktop.install_log().is_empty());
    assert!(
        desktop.store_entries().expect("ls").is_empty(),
        "copied despite the refusal"
    );
    assert_eq!(
        desktop.disk_content("nvme1n1").expect("read"),
        "precious data on nvme1n1\n"
    );

    let mut forced = args.to_vec();
    forced.push("--force");
    let run = install(&lab, &forced);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stderr.contains("[desktop] not a live installer (its /etc/os-release says ID=nixos without VARIANT_ID=installer"),
        "{}",
        run.both()
    );
    assert_eq!(
        desktop.install_log().len(),
        2,
        "{:?}",
        desktop.install_log()
    );
}

#[test]
fn this_machine_is_refused_when_it_is_no_live_installer() {
    // The tests run on a workstation or CI machine, not on the NixOS installer: disko-install
    // must not be started here.
    let lab = lab(&["desktop"]);
    let run = install(
        &lab,
        &["desktop", "--disk", "/dev/nvme1n1", "--yes-wipe-disk"],
    );
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr.contains(
            "\nerror: this machine is not a NixOS live installer: its /etc/os-release says"
        ),
        "{}",
        run.both()
    );
    assert!(
        run.stderr
            .contains("hint: boot the machine into the NixOS installer")
    );
    assert!(!run.stderr.contains("running nix run"), "{}", run.both());
}

#[test]
fn a_failing_disko_script_stops_before_nixos_install() {
    let mut lab = lab(&["desktop"]);
    let spec = SystemSpec {
        disks: [("nvme1n1".to_owned(), "/dev/nvme1n1".to_owned())].into(),
        disko: Disko::Fails,
        ..SystemSpec::default()
    };
    lab.set_system("desktop", spec).expect("flake");
    let disk = live_installer(&lab, "desktop");
    let run = install(
        &lab,
        &[
            "desktop",
            "--disk",
            &disk,
            "--target",
            &target(&lab, "desktop"),
            "--yes-wipe-disk",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        steps(&run),
        ["evaluate", "connect", "build", "copy", "disko"],
        "{}",
        run.both()
    );
    settings().bind(|| insta::assert_snapshot!("disko_fails", snapshot_text(&run)));
    let desktop = host(&lab, "desktop");
    assert!(
        desktop.install_log().is_empty(),
        "{:?}",
        desktop.install_log()
    );
    assert!(
        run.stdout
            .contains("  | mkfs.btrfs: error: toy disko script of desktop fails on purpose"),
        "{}",
        run.both()
    );
}

#[test]
fn target_checks_refuse_before_anything_is_copied() {
    let lab = lab(&["desktop", "server"]);
    let disk = live_installer(&lab, "desktop");
    let check = |args: &[&str], expected: &str| {
        let mut all = vec!["desktop", "--yes-wipe-disk", "--target"];
        all.extend_from_slice(args);
        let run = install(&lab, &all);
        assert_eq!(run.code, 2, "{}", run.both());
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.both());
    };
    // A device the installer does not have.
    let desktop = target(&lab, "desktop");
    check(
        &[&desktop, "--disk", "/var/lib/hbdeploy-lab/disks/nvme9n9"],
        "error: /var/lib/hbdeploy-lab/disks/nvme9n9 does not exist on root@",
    );
    // A machine without nixos-install (the server is a bare lab host): refused as not live first.
    let server = target(&lab, "server");
    check(&[&server, "--disk", &disk], "is not a NixOS live installer");
    check(
        &[&server, "--disk", &disk, "--force"],
        "has no nixos-install (looked on PATH and in /run/current-system/sw/bin)",
    );
    // Nothing listens there.
    let dead = format!("root@{}:2222", lab.dead_address());
    check(
        &[&dead, "--disk", &disk],
        "error: cannot reach the target; nothing was changed\n  caused by: cannot connect to",
    );
    check(&[&dead, "--disk", &disk], "--target names its address");
    assert!(
        host(&lab, "desktop")
            .store_entries()
            .expect("ls")
            .is_empty()
    );
    assert!(host(&lab, "server").store_entries().expect("ls").is_empty());
    assert!(host(&lab, "desktop").install_log().is_empty());
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let mut lab = lab(&["desktop"]);
    let two = SystemSpec {
        disks: [
            ("data".to_owned(), "/dev/sdb".to_owned()),
            ("sda".to_owned(), "/dev/sda".to_owned()),
        ]
        .into(),
        ..SystemSpec::default()
    };
    lab.set_system("server", two).expect("flake");
    let none = SystemSpec {
        disks: Default::default(),
        ..SystemSpec::default()
    };
    lab.set_system("laptop", none).expect("flake");
    let extra = "\n[hosts.server]\naddress = \"192.0.2.1\"\n\n[hosts.laptop]\naddress = \"192.0.2.2\"\n\n[hosts.ghost]\naddress = \"192.0.2.3\"\n";
    lab.write_fleet(&[], extra).expect("fleet");
    let mut text = String::new();
    for args in [
        &["sever", "--disk", "/dev/sda", "--print"][..],
        &["@workstation", "--disk", "/dev/sda", "--print"],
        &["desktop"],
        &["desktop", "--disk", "nvme1n1", "--print"],
        &["server", "--disk", "/dev/sda", "--print"],
        &["server", "--disk", "sda=/dev/sda", "--print"],
        &[
            "server",
            "--disk",
            "sda=/dev/sda",
            "--disk",
            "data=/dev/sda",
            "--print",
        ],
        &[
            "server",
            "--disk",
            "sda=/dev/sda",
            "--disk",
            "dat=/dev/sdb",
            "--print",
        ],
        &["laptop", "--disk", "/dev/sda", "--print"],
        &["ghost", "--disk", "/dev/sda", "--print"],
        &[
            "desktop",
            "--disk",
            "/dev/sda",
            "--target",
            "root@host:99999",
        ],
        &[
            "desktop",
            "--disk",
            "/dev/sda",
            "--print",
            "--target",
            "root@host",
        ],
    ] {
        let run = install(&lab, args);
        assert_eq!(run.code, 2, "{args:?}\n{}", run.both());
        // nix's own error text (quoted as `  | …`) differs between nix versions: check the line
        // that matters, and snapshot hbdeploy's part around it.
        let mut stderr = run.stderr.clone();
        if args[0] == "ghost" {
            assert!(
                stderr.contains("  | error: attribute 'ghost' missing")
                    || stderr.contains("  |        error: attribute 'ghost' missing"),
                "{stderr}"
            );
            let mut lines: Vec<&str> = Vec::new();
            for line in stderr.lines() {
                match (line.starts_with("  | "), lines.last()) {
                    (true, Some(&"  | [nix's error]")) => {}
                    (true, _) => lines.push("  | [nix's error]"),
                    (false, _) => lines.push(line),
                }
            }
            stderr = format!("{}\n", lines.join("\n"));
        }
        text.push_str(&format!(
            "$ hbdeploy install {}\n{}\n",
            args.join(" "),
            stderr
        ));
    }
    settings().bind(|| insta::assert_snapshot!("usage_errors", text));
}

/// Runs `hbdeploy install` on a pseudo-terminal and types `answer` at the wipe prompt.
fn on_a_terminal(lab: &Lab, args: &[&str], answer: &str) -> Run {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    lab.hbdeploy_on_a_terminal(bin(), &all, "anything else to stop: ", &[answer])
        .expect("hbdeploy runs on a terminal")
}

#[test]
fn on_a_terminal_the_user_must_type_the_device_again() {
    let lab = lab(&["desktop"]);
    let disk = live_installer(&lab, "desktop");
    let args = [
        "desktop",
        "--disk",
        &disk,
        "--target",
        &target(&lab, "desktop"),
    ];
    let desktop = host(&lab, "desktop");

    // The disk's name is not its device: no consent.
    let declined = on_a_terminal(&lab, &args, "nvme1n1");
    assert_eq!(declined.code, 2, "{}", declined.stdout);
    assert!(
        declined.stdout.contains(&format!(
            "Installing desktop ERASES EVERYTHING on these disks of {}:\n  {disk}  (disko disk nvme1n1)",
            target(&lab, "desktop")
        )),
        "{}",
        declined.stdout
    );
    assert!(
        declined.stdout.contains(&format!(
            "error: the answer was not {disk}; nothing was changed"
        )),
        "{}",
        declined.stdout
    );
    assert!(desktop.install_log().is_empty());
    assert!(desktop.store_entries().expect("ls").is_empty());
    assert_eq!(
        desktop.disk_content("nvme1n1").expect("read"),
        "precious data on nvme1n1\n"
    );

    let confirmed = on_a_terminal(&lab, &args, &disk);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stdout);
    assert!(
        confirmed.stdout.contains("installed desktop on"),
        "{}",
        confirmed.stdout
    );
    assert_eq!(
        desktop.install_log().len(),
        2,
        "{:?}",
        desktop.install_log()
    );
}

#[test]
fn print_matches_the_install_commands_in_docs_nixos_md() {
    // docs/nixos.md gives each host's disko-install command as the user runs it today, from
    // nixos/ (`--flake .#HOST`). hbdeploy install --print must build exactly that line.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/nixos.md"))
        .expect("read docs/nixos.md");
    let mut seen = 0;
    for line in doc
        .lines()
        .filter(|l| l.contains("disko-install -- --flake"))
    {
        let command = line.trim_start().trim_start_matches("# ");
        let words: Vec<&str> = command.split_whitespace().collect();
        let flake_at = words.iter().position(|w| *w == "--flake").expect("--flake");
        let (flake, attr) = words[flake_at + 1].split_once('#').expect("FLAKE#ATTR");
        let disks: Vec<hbdeploy_nix::DiskDevice> = words
            .windows(3)
            .filter(|w| w[0] == "--disk")
            .map(|w| hbdeploy_nix::DiskDevice {
                name: w[1].to_owned(),
                device: w[2].to_owned(),
            })
            .collect();
        let printed =
            hbdeploy_ssh::shell_line(&hbdeploy_nix::disko_install_argv(flake, attr, &disks));
        assert_eq!(printed, command);
        seen += 1;
    }
    assert_eq!(seen, 3, "one command per host in docs/nixos.md");
}
