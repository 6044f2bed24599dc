//! `hbdeploy install` against the lab, continued from `install`: a push install's steps in
//! order, the refusal of this machine and of unfit targets, typing the device again on a
//! terminal, and `--print` matching the commands in docs/nixos.md.

use crate::support::install::{
    install, install_desktop, lab, live_installer, on_a_terminal, steps, target,
};
use std::path::Path;

use crate::support::{host, system_path};

#[test]
fn push_install_builds_copies_formats_then_installs() {
    let lab = lab(&["desktop", "server"]);
    let disk = live_installer(&lab, "desktop");
    let system = system_path(&lab, "desktop");
    let run = install_desktop(&lab, &disk, &["--yes-wipe-disk"]);
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
