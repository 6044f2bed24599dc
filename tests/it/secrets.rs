//! Secrets uploaded out of the store (issue 19, part 1), on lab hosts of both kinds, both
//! reached as a user who is not root (`deploy`, passwordless sudo, trusted by the host's nix):
//! content, owner and mode as fleet.toml says; the file replaced atomically (a reader on the host only ever sees the whole old or the
//! whole new content, with the right owner and mode); an unknown owner before activation
//! (host not activated) and after it (reported failed); a missing file, a missing and a failing
//! command (exit 2, no host contacted); and no secret in any output, JSON, ledger or log.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, hbdeploy, host, system_path};
use hbdeploy_lab::{HostKind, Lab, LabUser, Run, Sudo};

/// Both kinds of host.
pub(crate) const HOSTS: [(&str, HostKind); 2] =
    [("alpha", HostKind::Namespace), ("beta", HostKind::Systemd)];

/// A content no other run could contain.
pub(crate) fn marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("hbdeploy-test-secret-{what}-{}-{nanos}", std::process::id())
}

/// A directory for the secrets' sources, outside the lab (the scan for leaks reads the lab's),
/// removed when the guard drops.
pub(crate) fn sources(test: &str) -> Scratch {
    Scratch::fresh(&format!("hbdeploy-secrets-tests-{test}")).expect("sources dir")
}

/// A lab of both kinds of host with a `deploy` user (passwordless sudo) that fleet.toml logs in
/// as, and `secrets` (TOML) appended to fleet.toml.
pub(crate) fn lab(secrets: &str) -> Lab {
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

pub(crate) fn write_fleet(lab: &Lab, secrets: &str) {
    let text = lab
        .fleet_toml(&[], secrets)
        .replace("user = \"root\"", "user = \"deploy\"");
    std::fs::write(lab.dir().join("fleet.toml"), text).expect("fleet written");
}

/// `stat` of `path` on `name`: `OWNER GROUP MODE`.
pub(crate) fn stat(lab: &Lab, name: &str, path: &str) -> String {
    host(lab, name)
        .sh(&format!("stat -c '%U %G %a' {path}"))
        .expect("stat")
        .trim()
        .to_owned()
}

pub(crate) fn content(lab: &Lab, name: &str, path: &str) -> String {
    host(lab, name).sh(&format!("cat {path}")).expect("cat")
}

/// The secrets' destinations, where they belong (a systemd host's disk is in the lab directory).
pub(crate) const DESTS: [&str; 3] = [
    "/run/keys/wifi",
    "/run/keys/k",
    "/var/lib/hbdeploy-test/tls.pem",
];

/// Every place a run could have left a secret, searched for each of `secrets`: the run's
/// stdout and stderr, every file of the lab directory but fleet.toml and the secrets'
/// destinations (ledger records, the hosts' logs and state), and on each host its store,
/// /run/hbdeploy and (systemd hosts) /var/log and the journal.
pub(crate) fn assert_nowhere(lab: &Lab, runs: &[&Run], secrets: &[&str]) {
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
pub(crate) fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
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
            crate::support::row(&again, name).contains(&"unchanged".to_owned()),
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
        host(&lab, name).sh("rm -f /run/reader-*").unwrap();
    }
    let (upload, reads) = std::thread::scope(|scope| {
        let readers: Vec<_> = HOSTS
            .iter()
            .map(|(name, _)| {
                let h = host(&lab, name);
                scope.spawn(move || {
                    h.sh("touch /run/reader-started; i=0; \
                         while [ ! -e /run/reader-stop ] && [ $i -lt 100000 ]; do \
                           echo \"$(sha256sum < /run/keys/wifi | cut -c1-64) \
                         $(stat -c '%U %G %a' /run/keys/wifi)\"; i=$((i+1)); done")
                        .expect("reader")
                })
            })
            .collect();
        for (name, _) in HOSTS {
            let started = || {
                let out = host(&lab, name).sh("ls /run/reader-started 2>/dev/null; true");
                !out.unwrap().trim().is_empty()
            };
            while !started() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let upload = hbdeploy(&lab, &["-v", "secrets", "upload", "--all", "--json"]);
        for (name, _) in HOSTS {
            host(&lab, name).sh("touch /run/reader-stop").unwrap();
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
}
