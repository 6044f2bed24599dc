//! `hbdeploy completions` and `hbdeploy man` (issue 6): generated from the CLI definition, so
//! they know every subcommand. No lab needed.

use std::process::Command;

use crate::support::{HBDEPLOY, Scratch};

fn run(args: &[&str]) -> String {
    let output = Command::new(HBDEPLOY).args(args).output().expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn completions_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for sub in ["apply", "plan", "exec", "history", "rollback", "status"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
    assert!(run(&["completions", "bash"]).contains("complete -F _hbdeploy"));
}

#[test]
fn man_pages_are_roff_for_the_command_and_each_subcommand() {
    let page = run(&["man"]);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH hbdeploy 1"), "{page}");
    let dir =
        Scratch::new(std::env::temp_dir().join(format!("hbdeploy-man-{}", std::process::id())));
    run(&["man", "--dir", dir.to_str().expect("UTF-8")]);
    for page in [
        "hbdeploy.1",
        "hbdeploy-apply.1",
        "hbdeploy-plan.1",
        "hbdeploy-exec.1",
    ] {
        assert!(dir.join(page).exists(), "{page} missing");
    }
}
