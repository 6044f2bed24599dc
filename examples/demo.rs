//! The demo: starts a lab of three simulated NixOS hosts (`laptop`, `desktop`, `server`), writes
//! a fleet.toml for it, and runs the three commands of the job against it: `hbdeploy apply --all`
//! twice (once to deploy new systems, once more to show that an unchanged fleet is left alone),
//! `hbdeploy apply laptop` after a change to laptop's configuration, and `hbdeploy rollback
//! laptop` back to the generation before. Then it shows what each host runs, from inside the
//! host, and stops the lab.
//!
//! Run it with `scripts/demo.sh` (which installs nix and sshd and builds everything), or, once
//! those are there, `cargo build && cargo run --example demo`.

use std::process::{Command, ExitCode};

use hbdeploy_lab::{Lab, NIX_CONFIG};

fn main() -> ExitCode {
    match demo() {
        Ok(code) => code,
        Err(message) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("demo: {message}\n").as_bytes(),
            );
            ExitCode::FAILURE
        }
    }
}

fn say(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("\n==> {text}\n").as_bytes());
}

fn demo() -> Result<ExitCode, String> {
    // target/debug/examples/demo → target/debug/hbdeploy
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let hbdeploy = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("hbdeploy"))
        .filter(|p| p.exists())
        .ok_or("the hbdeploy binary is not built: run `cargo build` first")?;

    say("starting a lab of 3 simulated NixOS hosts (own /nix, own sshd each)");
    let mut lab = Lab::start(&["desktop", "laptop", "server"]).map_err(|e| e.to_string())?;
    let fleet = lab
        .write_fleet(
            &[
                ("desktop", &["workstation"]),
                ("laptop", &["workstation", "mobile"]),
                ("server", &["infra"]),
            ],
            "",
        )
        .map_err(|e| e.to_string())?;
    for host in lab.hosts() {
        let _ = std::io::Write::write_all(
            &mut std::io::stdout(),
            format!(
                "    {:<8} {}:{}\n",
                host.name,
                host.address,
                hbdeploy_lab::SSH_PORT
            )
            .as_bytes(),
        );
    }

    let run = |title: &str, args: &[&str]| -> Result<ExitCode, String> {
        say(title);
        let status = Command::new(&hbdeploy)
            .args(["--fleet"])
            .arg(&fleet)
            .args(args)
            .env("NIX_CONFIG", NIX_CONFIG)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", hbdeploy.display()))?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    };
    let mut codes = vec![run("hbdeploy apply --all", &["apply", "--all"])?];
    codes.push(run(
        "hbdeploy apply --all (again: nothing changed, so every host is unchanged)",
        &["apply", "--all"],
    )?);

    // A change to one host's configuration, as an edit in the flake would make it.
    let mut laptop = lab.system("laptop").map_err(|e| e.to_string())?.clone();
    laptop.generation += 1;
    lab.set_system("laptop", laptop)
        .map_err(|e| e.to_string())?;
    codes.push(run(
        "hbdeploy apply laptop (its configuration changed: a new generation)",
        &["apply", "laptop"],
    )?);
    codes.push(run(
        "hbdeploy rollback laptop (back to the generation before)",
        &["rollback", "laptop"],
    )?);
    codes.push(run(
        "hbdeploy generations laptop",
        &["generations", "laptop"],
    )?);

    say("what each host runs now, seen from inside the host");
    for host in lab.hosts() {
        let current = host.current_system().map_err(|e| e.to_string())?;
        let _ = std::io::Write::write_all(
            &mut std::io::stdout(),
            format!(
                "    {:<8} /run/current-system -> {}\n",
                host.name,
                current.as_deref().unwrap_or("(none)")
            )
            .as_bytes(),
        );
    }
    say("stopping the lab");
    drop(lab);
    Ok(codes
        .into_iter()
        .find(|code| *code != ExitCode::SUCCESS)
        .unwrap_or(ExitCode::SUCCESS))
}
