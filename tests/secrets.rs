//! Secrets uploaded out of the store (issue 19, part 1), on lab hosts of both kinds, the
//! namespace host reached as a user who is not root (`deploy`, passwordless sudo): content, owner and mode as fleet.toml
//! says; the file replaced atomically (a reader on the host only ever sees the whole old or the
//! whole new content, with the right owner and mode); an unknown owner before activation
//! (host not activated) and after it (reported failed); a missing file, a missing and a failing
//! command (exit 2, no host contacted); and no secret in any output, JSON, ledger or log.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use hbdeploy_lab::{HostKind, Lab, LabUser, Run, Sudo};
use support::{hbdeploy, host, system_path};

/// Both kinds of host.
const HOSTS: [(&str, HostKind); 2] = [("alpha", HostKind::Namespace), ("beta", HostKind::Systemd)];

/// A content no other run could contain.
fn marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("hbdeploy-test-secret-{what}-{}-{nanos}", std::process::id())
}

/// A directory for the secrets' sources, outside the lab (the scan for leaks reads the lab's).
fn sources(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("hbdeploy-secrets-tests")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("sources dir");
    dir
}

/// A lab of both kinds of host with a `deploy` user (passwordless sudo) that fleet.toml logs in
/// as, and `secrets` (TOML) appended to fleet.toml.
fn lab(secrets: &str) -> Lab {
    let mut lab = Lab::start_hosts(&HOSTS).expect("lab starts");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo: Sudo::Passwordless,
        trusted: true,
    })
    .expect("user added");
    write_fleet(&lab, secrets);
    lab
}

fn write_fleet(lab: &Lab, secrets: &str) {
    // The systemd hosts' nix-daemon socket is root's only in the lab's Debian root, so a user
    // who is not root cannot copy there: those hosts are reached as root.
    let text = lab
        .fleet_toml(&[], secrets)
        .replace("user = \"root\"", "user = \"deploy\"")
        .replace("[hosts.beta]\n", "[hosts.beta]\nuser = \"root\"\n");
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("fleet written");
}

/// `stat` of `path` on `name`: `OWNER GROUP MODE`.
fn stat(lab: &Lab, name: &str, path: &str) -> String {
    host(lab, name)
        .sh(&format!("stat -c '%U %G %a' {path}"))
        .expect("stat")
        .trim()
        .to_owned()
}

fn content(lab: &Lab, name: &str, path: &str) -> String {
    host(lab, name).sh(&format!("cat {path}")).expect("cat")
}

/// The secrets' destinations, where they belong (a systemd host's disk is in the lab directory).
const DESTS: [&str; 3] = [
    "/run/keys/wifi",
    "/run/keys/k",
    "/var/lib/hbdeploy-test/tls.pem",
];

/// Every place a run could have left a secret, searched for each of `secrets`: the run's
/// stdout and stderr, every file of the lab directory but fleet.toml and the secrets'
/// destinations (ledger records, the hosts' logs and state), and on each host its store,
/// /run/hbdeploy and (systemd hosts) /var/log and the journal.
fn assert_nowhere(lab: &Lab, runs: &[&Run], secrets: &[&str]) {
    for secret in secrets {
        for run in runs {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} in the output of hbdeploy:\n{}",
                run.both()
            );
        }
        let mut files = Vec::new();
        walk(lab.dir(), &mut files);
        let mut scanned = 0;
        let scanned_file = |f: &&PathBuf| {
            let text = f.display().to_string();
            !f.ends_with("fleet.toml") && !DESTS.iter().any(|d| text.ends_with(d))
        };
        for file in files.iter().filter(scanned_file) {
            let Ok(bytes) = std::fs::read(file) else {
                continue;
            };
            scanned += 1;
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                file.display()
            );
        }
        assert!(scanned > 0, "nothing scanned in {}", lab.dir().display());
        for (name, kind) in HOSTS {
            let mut places = "/nix/store /run/hbdeploy".to_owned();
            if kind == HostKind::Systemd {
                places.push_str(" /var/log");
            }
            let found = host(lab, name)
                .sh(&format!(
                    "grep -rlaF -e '{secret}' {places} 2>/dev/null; \
                     journalctl --no-pager 2>/dev/null | grep -caF -e '{secret}'; true"
                ))
                .expect("grep");
            let found: Vec<&str> = found
                .lines()
                .filter(|l| !l.trim().is_empty() && l.trim() != "0")
                .collect();
            assert!(found.is_empty(), "{secret} on {name}: {found:?}");
        }
    }
    // The ledger was written, so it was scanned.
    assert!(
        lab.dir().join(".hbdeploy/deployments").is_dir(),
        "no ledger in {}",
        lab.dir().display()
    );
}

/// Every regular file under `dir`, not following symlinks (the hosts' stores hold many).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

#[test]
fn secrets_arrive_with_owner_and_mode_atomically_and_leak_nowhere() {
    let dir = sources("arrive");
    let wifi = marker("wifi");
    let tls = marker("tls");
    std::fs::write(dir.join("wifi"), &wifi).unwrap();
    std::fs::write(dir.join("tls"), &tls).unwrap();
    let secrets = format!(
        "\n[secrets.wifi]\nfile = \"{}\"\nowner = \"deploy\"\n\
         \n[secrets.tls]\ncommand = [\"cat\", \"{}\"]\ndest = \"/var/lib/hbdeploy-test/tls.pem\"\n\
         group = \"deploy\"\nmode = \"0440\"\nupload = \"post-activation\"\n",
        dir.join("wifi").display(),
        dir.join("tls").display()
    );
    let lab = lab(&secrets);

    let run = hbdeploy(&lab, &["-v", "apply", "--all", "--json"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    for (name, _) in HOSTS {
        assert_eq!(content(&lab, name, "/run/keys/wifi"), wifi, "{name}");
        assert_eq!(
            stat(&lab, name, "/run/keys/wifi"),
            "deploy root 400",
            "{name}"
        );
        let pem = "/var/lib/hbdeploy-test/tls.pem";
        assert_eq!(content(&lab, name, pem), tls, "{name}");
        assert_eq!(stat(&lab, name, pem), "root deploy 440", "{name}");
        // The new system is active (the post-activation secret came after it).
        assert_eq!(
            host(&lab, name).current_system().unwrap(),
            Some(system_path(&lab, name))
        );
        let report = doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .expect("host in JSON");
        let names: Vec<&str> = report["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["wifi", "tls"], "{name}");
        assert_eq!(report["secrets"][0]["sha256"].as_str().unwrap().len(), 64);
    }
    // The ledger has each secret's name and hash.
    let ledger = std::fs::read_dir(lab.dir().join(".hbdeploy/deployments"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(ledger.contains("\"sha256\""), "{ledger}");

    // The same system again: the host is unchanged, its changed secret is written all the same.
    let wifi2 = marker("wifi2");
    std::fs::write(dir.join("wifi"), &wifi2).unwrap();
    let plan = hbdeploy(&lab, &["plan", "--all"]);
    assert_eq!(plan.code, 0, "{}", plan.both());
    assert!(
        plan.stdout
            .contains("secret     wifi → /run/keys/wifi: changes: content (sha256 "),
        "{}",
        plan.both()
    );
    assert!(
        plan.stdout
            .contains("secret     tls → /var/lib/hbdeploy-test/tls.pem: unchanged"),
        "{}",
        plan.both()
    );
    let again = hbdeploy(&lab, &["-v", "apply", "--all"]);
    assert_eq!(again.code, 0, "{}", again.both());
    for (name, _) in HOSTS {
        assert_eq!(content(&lab, name, "/run/keys/wifi"), wifi2, "{name}");
        assert!(
            support::row(&again, name).contains(&"unchanged".to_owned()),
            "{}",
            again.both()
        );
    }

    // Atomicity: a reader loops over the file while `secrets upload` replaces 8 MiB of it;
    // every read is the whole old or the whole new file, always owned and moded as it should.
    let big_old = format!("{}\n", marker("big-old")).repeat(8 << 20 >> 6);
    let big_new = format!("{}\n", marker("big-new")).repeat(8 << 20 >> 6);
    let sum = |text: &str| {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(text.as_bytes())?;
                child.wait_with_output()
            })
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)[..64].to_owned()
    };
    std::fs::write(dir.join("wifi"), &big_old).unwrap();
    let up = hbdeploy(&lab, &["secrets", "upload", "--all"]);
    assert_eq!(up.code, 0, "{}", up.both());
    std::fs::write(dir.join("wifi"), &big_new).unwrap();
    for (name, _) in HOSTS {
        host(&lab, name).sh("rm -f /tmp/reader-*").unwrap();
    }
    let (upload, reads) = std::thread::scope(|scope| {
        let readers: Vec<_> = HOSTS
            .iter()
            .map(|(name, _)| {
                let h = host(&lab, name);
                scope.spawn(move || {
                    h.sh("touch /tmp/reader-started; i=0; \
                         while [ ! -e /tmp/reader-stop ] && [ $i -lt 100000 ]; do \
                           echo \"$(sha256sum < /run/keys/wifi | cut -c1-64) \
                         $(stat -c '%U %G %a' /run/keys/wifi)\"; i=$((i+1)); done")
                        .expect("reader")
                })
            })
            .collect();
        for (name, _) in HOSTS {
            let started = || {
                let out = host(&lab, name).sh("ls /tmp/reader-started 2>/dev/null; true");
                !out.unwrap().trim().is_empty()
            };
            while !started() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let upload = hbdeploy(&lab, &["-v", "secrets", "upload", "--all", "--json"]);
        for (name, _) in HOSTS {
            host(&lab, name).sh("touch /tmp/reader-stop").unwrap();
        }
        let reads: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (upload, reads)
    });
    assert_eq!(upload.code, 0, "{}", upload.both());
    let (old, new) = (sum(&big_old), sum(&big_new));
    for ((name, _), lines) in HOSTS.iter().zip(reads) {
        let mut seen = (0, 0);
        for line in lines.lines() {
            let (hash, meta) = line.split_at(64);
            assert_eq!(meta.trim(), "deploy root 400", "{name}: {line}");
            if hash == old {
                seen.0 += 1;
            } else if hash == new {
                seen.1 += 1;
            } else {
                panic!("{name}: a read saw neither the old nor the new file: {line}");
            }
        }
        assert!(
            seen.0 > 0 && seen.1 > 0,
            "{name}: the reads did not span the upload: {seen:?}"
        );
        // No temporary file is left behind.
        let left = host(&lab, name).sh("ls -A /run/keys").unwrap();
        assert_eq!(left.trim(), "wifi", "{name}");
    }

    assert_nowhere(
        &lab,
        &[&run, &plan, &again, &up, &upload],
        &[&wifi, &tls, &wifi2],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_owner_stops_the_host_before_activation_and_fails_it_after() {
    let dir = sources("owner");
    let key = marker("owner");
    std::fs::write(dir.join("k"), &key).unwrap();
    let file = dir.join("k").display().to_string();
    // alpha (no systemd) writes before activating, beta (systemd) after.
    let secrets = format!(
        "\n[hosts.alpha.secrets.k]\nfile = \"{file}\"\nowner = \"nosuchuser\"\n\
         \n[hosts.beta.secrets.k]\nfile = \"{file}\"\ngroup = \"nosuchgroup\"\n\
         upload = \"post-activation\"\n"
    );
    let lab = lab(&secrets);
    let before = support::untouched(host(&lab, "alpha"));
    let run = hbdeploy(&lab, &["-v", "apply", "--all", "--json"]);
    assert_eq!(run.code, 1, "{}", run.both());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let of = |name: &str| -> serde_json::Value {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .expect("host")
    };

    let alpha = of("alpha");
    assert_eq!(alpha["outcome"], "failed", "{alpha}");
    assert_eq!(
        alpha["error"],
        "secret `k` was not written to /run/keys/k: its owner `nosuchuser` is not a user of \
         the host; the host was not activated (the file at that path is as it was)"
    );
    assert!(alpha["hint"].as_str().unwrap().contains("post-activation"));
    assert_eq!(support::untouched(host(&lab, "alpha")), before);
    assert_eq!(
        host(&lab, "alpha")
            .sh("ls -A /run/keys 2>/dev/null; true")
            .unwrap()
            .trim(),
        "",
        "no file, not even a temporary one"
    );

    let beta = of("beta");
    assert_eq!(beta["outcome"], "failed", "{beta}");
    assert_eq!(
        beta["error"],
        "secret `k` was not written to /run/keys/k: its group `nosuchgroup` is not a group \
         of the host; the new system is active, but this secret was not updated (the file at \
         that path is as it was)"
    );
    assert_eq!(
        host(&lab, "beta").current_system().unwrap(),
        Some(system_path(&lab, "beta"))
    );
    assert_eq!(
        host(&lab, "beta")
            .sh("ls -A /run/keys 2>/dev/null; true")
            .unwrap()
            .trim(),
        ""
    );
    assert_nowhere(&lab, &[&run], &[&key]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs hbdeploy in `dir` (holding fleet.toml) with no lab: the secrets are read before any
/// host is contacted, so the hosts need not exist.
fn offline(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(support::HBDEPLOY)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("hbdeploy runs");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_secret_that_cannot_be_read_stops_the_run_before_any_host() {
    let dir = sources("unreadable");
    let head = "[fleet]\nflake = \"./nixos\"\n[hosts.server]\naddress = \"192.0.2.1\"\n";
    let shown = "content-that-must-not-be-shown";
    let cases = [
        ("missing_file", "[secrets.wifi]\nfile = \"keys/wifi.psk\"\n"),
        (
            "missing_command",
            "[secrets.wifi]\ncommand = [\"hbdeploy-no-such-pass\", \"show\", \"wifi\"]\n",
        ),
        (
            "failing_command",
            "[secrets.wifi]\ncommand = [\"sh\", \"-c\", \"echo content-that-must-not-be-shown; \
             echo 'Error: wifi is not in the password store.' >&2; exit 1\"]\n",
        ),
    ];
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&dir.display().to_string(), "[dir]");
    settings.bind(|| {
        for (name, secret) in cases {
            std::fs::write(dir.join("fleet.toml"), format!("{head}{secret}")).unwrap();
            for args in [
                &["apply", "--all"][..],
                &["plan", "--all"],
                &["secrets", "upload", "--all"],
            ] {
                let out = offline(&dir, args);
                assert!(out.starts_with("exit: 2\n"), "{args:?}: {out}");
                assert!(!out.contains(shown), "{out}");
                if args[0] == "apply" {
                    insta::assert_snapshot!(format!("secret_{name}"), out);
                }
            }
        }
    });
    // A secret table that is not right is an error of fleet.toml, located.
    std::fs::write(
        dir.join("fleet.toml"),
        format!("{head}[secrets.wifi]\ncommand = \"pass show wifi\"\n"),
    )
    .unwrap();
    settings.bind(|| {
        insta::assert_snapshot!(
            "secret_command_not_an_array",
            offline(&dir, &["apply", "--all"])
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through `sudo` that wants a password (typed at `--ask-sudo-password`): the password goes
/// first on the root command's stdin and sudo reads only its line, so the file holds exactly the
/// secret, and the password is in no output either.
#[test]
fn secrets_go_through_sudo_with_a_password_and_the_file_holds_only_the_secret() {
    let dir = sources("sudo");
    let key = marker("sudo");
    std::fs::write(
        dir.join("k"),
        format!("{key}\nsecond line, no newline at the end"),
    )
    .unwrap();
    let mut lab = Lab::start(&["gamma"]).expect("lab starts");
    let password = marker("password");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo: Sudo::Password(password.clone()),
        trusted: true,
    })
    .expect("user added");
    let text = lab
        .fleet_toml(
            &[],
            &format!(
                "\n[secrets.k]\nfile = \"{}\"\nowner = \"deploy\"\nmode = \"0600\"\n",
                dir.join("k").display()
            ),
        )
        .replace("user = \"root\"", "user = \"deploy\"");
    std::fs::write(lab.dir().join("fleet.toml"), text).unwrap();
    let run = hbdeploy_lab::hbdeploy_on_a_terminal(
        Path::new(support::HBDEPLOY),
        Some(&lab.dir().join("fleet.toml")),
        &["secrets", "upload", "--all", "--ask-sudo-password"],
        "sudo password for deploy on the hosts: ",
        &[password.as_str()],
    )
    .expect("runs on a terminal");
    assert_eq!(run.code, 0, "{}", run.both());
    let written = std::fs::read(dir.join("k")).unwrap();
    let on_host = host(&lab, "gamma").sh("cat /run/keys/k").unwrap();
    assert_eq!(on_host.as_bytes(), written.as_slice());
    assert_eq!(stat(&lab, "gamma", "/run/keys/k"), "deploy root 600");
    assert!(!run.stdout.contains(&key) && !run.stderr.contains(&key));
    assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password));
    let _ = std::fs::remove_dir_all(&dir);
}
