//! Helpers of the install tests (`install`, `install_steps`): a lab host posing as a live
//! installer with a stand-in disk, running `hbdeploy install`, and the stable text of a run.

use hbdeploy_lab::{Lab, Medium, Run, SystemSpec};

use super::{bin, host};

/// A lab of `names` whose `desktop` declares one disko disk, `nvme1n1` on `/dev/nvme1n1`, as
/// the fleet's real desktop does.
pub fn lab(names: &[&str]) -> Lab {
    let mut lab = Lab::start(names).expect("lab starts (needs root, nix-bin, openssh-server)");
    let spec = SystemSpec {
        disks: [("nvme1n1".to_owned(), "/dev/nvme1n1".to_owned())].into(),
        ..SystemSpec::default()
    };
    lab.set_system("desktop", spec).expect("flake");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    lab
}

pub fn install(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    lab.hbdeploy(bin(), &all).expect("hbdeploy runs")
}

/// `hbdeploy install desktop --disk DISK --target <its installer login> EXTRA…`: a push
/// install of the lab's desktop onto the live installer's stand-in `disk`.
pub fn install_desktop(lab: &Lab, disk: &str, extra: &[&str]) -> Run {
    let target = target(lab, "desktop");
    let mut args = vec!["desktop", "--disk", disk, "--target", &target];
    args.extend_from_slice(extra);
    install(lab, &args)
}

/// `root@<address>:2222`, the lab host's installer login.
pub fn target(lab: &Lab, name: &str) -> String {
    format!(
        "root@{}:{}",
        host(lab, name).address,
        hbdeploy_lab::SSH_PORT
    )
}

/// Turns a lab host into a live installer with a stand-in `nvme1n1`; returns the disk's path.
pub fn live_installer(lab: &Lab, name: &str) -> String {
    let h = host(lab, name);
    h.make_installer(Medium::LiveInstaller).expect("installer");
    h.add_disk("nvme1n1").expect("disk")
}

/// Exit code and both streams, with the lab's paths, addresses, hashes and times made stable.
pub fn snapshot_text(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

pub fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"path:\S*/hbdeploy-lab/slot-\d+/flake", "path:[LAB]/flake");
    settings.add_filter(r"127\.77\.\d+\.\d+", "[ADDRESS]");
    settings.add_filter(r"/nix/store/[0-9a-z]{32}-", "/nix/store/[HASH]-");
    settings.add_filter(r"/nix/store/[0-9a-z]{8}…-", "/nix/store/[HASH]…-");
    settings.add_filter(r"\b\d+\.\ds\b", "[TIME]");
    settings
}

/// The lines of `run`'s stderr that announce a step, in order.
pub fn steps(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[desktop] "))
        .filter(|l| !l.contains(' '))
        .map(str::to_owned)
        .collect()
}

/// Runs `hbdeploy install` on a pseudo-terminal and types `answer` at the wipe prompt.
pub fn on_a_terminal(lab: &Lab, args: &[&str], answer: &str) -> Run {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    lab.hbdeploy_on_a_terminal(bin(), &all, "anything else to stop: ", &[answer])
        .expect("hbdeploy runs on a terminal")
}
