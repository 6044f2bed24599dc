//! Offline checks of the NixOS flake in `nixos/`, the configuration hbdeploy
//! deploys.
//!
//! nixpkgs and disko cannot be fetched here, so the flake is evaluated with
//! its inputs replaced by the stand-ins in `tests/fixtures/nixos-stubs/`
//! (`--override-input`). The stub `lib.nixosSystem` walks the modules, checks
//! them lightly and exposes `networking.hostName` and the disko disk names.
//! These tests need Nix (`nix` and `nix-instantiate`); without it they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const NIX_FEATURES: &str = "nix-command flakes";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a check and turns its error into a test failure with a readable message.
fn check(result: Result<(), String>) {
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Fails unless `tool` can be run: a missing Nix must not pass silently.
fn require(tool: &str) -> Result<(), String> {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{tool} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(format!(
            "`{tool}` is not installed, and the NixOS flake checks need Nix. \
             Install it (Debian/Ubuntu: `apt-get install nix-bin`) and run the tests again."
        )),
        Err(e) => Err(format!("cannot run `{tool}`: {e}")),
    }
}

/// Every `.nix` file under `dir`, sorted.
fn nix_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .map_err(|e| format!("cannot list {}: {e}", current.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot list {}: {e}", current.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "nix") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `path:` flake reference for a directory (path: copies the directory as
/// it is, tracked by git or not).
fn path_flake(dir: &Path) -> String {
    let mut url = String::from("path:");
    for c in dir.display().to_string().chars() {
        match c {
            ' ' => url.push_str("%20"),
            '#' => url.push_str("%23"),
            '?' => url.push_str("%3F"),
            '%' => url.push_str("%25"),
            _ => url.push(c),
        }
    }
    url
}

/// `nix eval --json` of `nixosConfigurations` with the stub inputs, `apply`
/// being a Nix function of the configurations that returns a list of strings.
fn eval_configurations(apply: &str) -> Result<Vec<String>, String> {
    require("nix")?;
    let nixos = repo().join("nixos");
    let stubs = repo().join("tests/fixtures/nixos-stubs");
    let lock = nixos.join("flake.lock");
    let had_lock = lock.exists();

    let output = Command::new("nix")
        .args(["--extra-experimental-features", NIX_FEATURES])
        .args(["eval", "--json", "--no-write-lock-file"])
        .args(["--override-input", "nixpkgs"])
        .arg(path_flake(&stubs.join("nixpkgs")))
        .args(["--override-input", "disko"])
        .arg(path_flake(&stubs.join("disko")))
        .arg(format!("{}#nixosConfigurations", path_flake(&nixos)))
        .args(["--apply", apply])
        .output()
        .map_err(|e| format!("cannot run nix: {e}"))?;

    // Never leave a lock file behind: nixos/flake.lock must come from a real
    // `nix flake lock`, not from the stubs.
    if !had_lock && lock.exists() {
        let removed = fs::remove_file(&lock);
        return Err(format!(
            "nix wrote {} although --no-write-lock-file was given; removed it ({removed:?})",
            lock.display()
        ));
    }

    if !output.status.success() {
        return Err(format!(
            "nix eval of nixosConfigurations failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // A JSON array of strings is also a TOML array of strings (Nix writes no
    // `\/` escape), so the `toml` crate reads it without a JSON dependency.
    let parsed: toml::Table =
        toml::from_str(&format!("list = {}", stdout.trim())).map_err(|e| {
            format!("nix eval printed something other than a list of strings ({e}):\n{stdout}")
        })?;
    parsed
        .get("list")
        .and_then(|list| list.as_array())
        .ok_or_else(|| format!("nix eval printed no list:\n{stdout}"))?
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("nix eval printed a non-string item: {item}"))
        })
        .collect()
}

/// The fleet's hosts from fleet.toml: host name -> flake attribute (`attr`,
/// defaulting to the host name).
fn fleet_hosts() -> Result<BTreeMap<String, String>, String> {
    let path = repo().join("fleet.toml");
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let fleet: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let hosts = fleet
        .get("hosts")
        .and_then(|hosts| hosts.as_table())
        .ok_or_else(|| format!("{} has no [hosts.*] tables", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, host) in hosts {
        let attr = match host.get("attr") {
            None => name.clone(),
            Some(attr) => attr
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("hosts.{name}.attr in fleet.toml is not a string"))?,
        };
        out.insert(name.clone(), attr);
    }
    if out.is_empty() {
        return Err(format!("{} lists no hosts", path.display()));
    }
    Ok(out)
}

/// `path` relative to the repository, for messages.
fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_nix_file_parses() {
    check((|| {
        require("nix-instantiate")?;
        let files = nix_files(&repo().join("nixos"))?;
        if files.is_empty() {
            return Err("no .nix files under nixos/".to_owned());
        }
        let mut failures = Vec::new();
        for file in &files {
            let output = Command::new("nix-instantiate")
                .arg("--parse")
                .arg(file)
                .output()
                .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
            if !output.status.success() {
                failures.push(format!(
                    "{}:\n{}",
                    relative(file),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "these files do not parse:\n{}",
                failures.join("\n")
            ))
        }
    })());
}

#[test]
fn flake_defines_exactly_the_fleet_hosts() {
    check((|| {
        let hosts = fleet_hosts()?;
        let configurations: BTreeSet<String> = eval_configurations("builtins.attrNames")?
            .into_iter()
            .collect();
        let fleet_names: BTreeSet<String> = hosts.keys().cloned().collect();
        if configurations != fleet_names {
            return Err(format!(
                "nixos/flake.nix defines nixosConfigurations {configurations:?}, \
                 but fleet.toml has hosts {fleet_names:?}"
            ));
        }
        for (name, attr) in &hosts {
            if !configurations.contains(attr) {
                return Err(format!(
                    "fleet.toml host `{name}` deploys nixosConfigurations.{attr}, \
                     which nixos/flake.nix does not define (it has {configurations:?})"
                ));
            }
        }
        Ok(())
    })());
}

/// One line per configuration from the stub nixosSystem:
/// "<attr> <networking.hostName> <disk,disk,...>". Reading `config` makes the
/// stub walk and check every module.
const DESCRIBE: &str = r#"cs: map (n: "${n} ${cs.${n}.config.networking.hostName} ${builtins.concatStringsSep "," (builtins.attrNames cs.${n}.config.disko.devices.disk)}") (builtins.attrNames cs)"#;

/// attr -> (hostName, disko disk names)
fn describe_configurations() -> Result<BTreeMap<String, (String, BTreeSet<String>)>, String> {
    let mut out = BTreeMap::new();
    for line in eval_configurations(DESCRIBE)? {
        let mut fields = line.split(' ');
        let (Some(attr), Some(host_name), Some(disks), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "unexpected line from the stub evaluation: {line:?}"
            ));
        };
        let disks = disks
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        out.insert(attr.to_owned(), (host_name.to_owned(), disks));
    }
    Ok(out)
}

#[test]
fn each_host_sets_its_fleet_name_as_host_name() {
    check((|| {
        let hosts = fleet_hosts()?;
        let configurations = describe_configurations()?;
        for (name, attr) in &hosts {
            let (host_name, _) = configurations
                .get(attr)
                .ok_or_else(|| format!("nixosConfigurations.{attr} (host `{name}`) is missing"))?;
            if host_name != name {
                return Err(format!(
                    "nixosConfigurations.{attr} sets networking.hostName = \"{host_name}\", \
                     but its fleet.toml name is `{name}`"
                ));
            }
        }
        Ok(())
    })());
}

/// The `disko-install ... --flake .#HOST --disk NAME DEVICE ...` commands in
/// docs/nixos.md: HOST -> disk names. Lines ending in `\` are joined.
fn documented_install_disks(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let joined = doc.replace("\\\n", " ");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in joined.lines().filter(|l| l.contains("disko-install")) {
        let tokens: Vec<&str> = line
            .split_whitespace()
            .map(|t| t.trim_matches(|c| c == '\'' || c == '"' || c == '`'))
            .collect();
        let Some(flake_at) = tokens.iter().position(|t| *t == "--flake") else {
            continue;
        };
        let Some(host) = tokens
            .get(flake_at + 1)
            .and_then(|flake| flake.rsplit_once('#'))
            .map(|(_, host)| host.to_owned())
        else {
            continue;
        };
        let disks = out.entry(host).or_default();
        let mut i = 0;
        while i < tokens.len() {
            if tokens[i] == "--disk" {
                if let Some(name) = tokens.get(i + 1) {
                    disks.insert((*name).to_owned());
                }
                i += 3;
            } else {
                i += 1;
            }
        }
    }
    out
}

#[test]
fn documented_install_commands_name_each_hosts_disks() {
    check((|| {
        let hosts = fleet_hosts()?;
        let configurations = describe_configurations()?;
        let doc_path = repo().join("docs/nixos.md");
        let doc = fs::read_to_string(&doc_path)
            .map_err(|e| format!("cannot read {}: {e}", doc_path.display()))?;
        let documented = documented_install_disks(&doc);
        for (name, attr) in &hosts {
            let (_, disks) = configurations
                .get(attr)
                .ok_or_else(|| format!("nixosConfigurations.{attr} (host `{name}`) is missing"))?;
            if disks.is_empty() {
                return Err(format!(
                    "nixosConfigurations.{attr} declares no disko.devices.disk: \
                     disko-install would have nothing to partition"
                ));
            }
            // disko-install needs one `--disk NAME DEVICE` per declared disk,
            // NAME being the attribute under disko.devices.disk.
            let Some(named) = documented.get(attr) else {
                return Err(format!(
                    "docs/nixos.md has no `disko-install ... --flake .#{attr} --disk ...` command"
                ));
            };
            if named != disks {
                return Err(format!(
                    "docs/nixos.md installs `{attr}` with --disk {named:?}, \
                     but its disk.nix declares disko disks {disks:?}"
                ));
            }
        }
        Ok(())
    })());
}
