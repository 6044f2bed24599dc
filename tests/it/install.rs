//! `hbdeploy install` against the lab (issue 7): a lab host poses as a machine booted into the
//! NixOS installer, with a stand-in disk (a file) and a stand-in `nixos-install`; the real binary
//! evaluates and builds with real nix, copies with `nix copy` and runs the toy disko script over
//! real SSH. Every test starts its own lab, stopped when dropped.

use crate::support::host;
use crate::support::install::{
    install, install_desktop, lab, live_installer, settings, snapshot_text, steps, target,
};
use hbdeploy_lab::{Disko, Medium, SystemSpec};

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
fn without_a_terminal_or_yes_wipe_disk_nothing_is_touched() {
    let lab = lab(&["desktop"]);
    let disk = live_installer(&lab, "desktop");
    let run = install_desktop(&lab, &disk, &[]);
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
fn a_failing_disko_script_stops_before_nixos_install() {
    let mut lab = lab(&["desktop"]);
    let spec = SystemSpec {
        disks: [("nvme1n1".to_owned(), "/dev/nvme1n1".to_owned())].into(),
        disko: Disko::Fails,
        ..SystemSpec::default()
    };
    lab.set_system("desktop", spec).expect("flake");
    let disk = live_installer(&lab, "desktop");
    let run = install_desktop(&lab, &disk, &["--yes-wipe-disk"]);
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
