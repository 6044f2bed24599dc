//! Systems built on one machine and deployed from another: `hbdeploy build --systems-out FILE`
//! writes each host's system store path, `hbdeploy apply --systems FILE` deploys exactly those
//! paths, neither evaluating nor building (docs/systems.md).
//!
//! The file is a JSON object from host name (fleet.toml's) to system. A system is a store path
//! (`"/nix/store/…-nixos-system-web-…"`), or what `nix build --json` prints for that one
//! toplevel: its object (`{"drvPath": …, "outputs": {"out": "/nix/store/…"}}`) or the array of
//! that one object. A bare array, as `nix build --json` prints for several toplevels, is refused:
//! it names no host, and guessing the host from the store name (`nixos-system-<hostName>-…`,
//! which is the system's hostName, not fleet.toml's name) could put one host's system on
//! another.

use std::path::{Path, PathBuf};

use hbdeploy_files::{FileError, Hint};
use hbdeploy_inventory::{Fleet, SelectError, Selector};
use hbdeploy_nix::StorePath;
use hbdeploy_pipeline::{HostPlan, Outcome, Report};
use serde_json::Value;

/// A systems file larger than this is refused (a fleet of thousands is well under it).
const LIMIT: u64 = 16 << 20;

/// A systems file that cannot be used, or not for this selection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SystemsError {
    /// Not readable.
    #[error("cannot read the systems file")]
    Read(#[source] FileError),
    /// Not JSON.
    #[error("{}:{line}:{column}: not valid JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
        /// serde_json's message, without its position.
        message: String,
    },
    /// JSON, but not an object of host names.
    #[error("{} is not an object from host name to system: {detail}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        detail: &'static str,
    },
    /// One host's system is not a store path in any accepted form.
    #[error("{}: the system of `{host}` is not a store path{}", path.display(), reason(.detail))]
    BadSystem {
        /// The file.
        path: PathBuf,
        /// The host.
        host: String,
        /// What is wrong.
        detail: String,
    },
    /// A host the fleet does not have.
    #[error("{} has a system for a host that is not in the fleet", path.display())]
    UnknownHost {
        /// The file.
        path: PathBuf,
        /// The selection error for that name (with the fleet's names and the closest).
        #[source]
        source: Box<SelectError>,
    },
    /// Selected hosts without a system in the file.
    #[error("{} has no system for {}", path.display(), hosts.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The selected hosts it lacks, in fleet order.
        hosts: Vec<String>,
    },
    /// The file could not be written.
    #[error("cannot write the systems file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn reason(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Hint for SystemsError {
    fn hint(&self) -> Option<String> {
        match self {
            SystemsError::Read(err) => err.hint(),
            SystemsError::Json { .. }
            | SystemsError::Shape { .. }
            | SystemsError::BadSystem { .. } => Some(
                "write it as {\"HOST\": \"/nix/store/…\", …}, as hbdeploy build \
                     --systems-out FILE does; a value may also be what nix build --json printed \
                     for that host's toplevel (docs/systems.md)"
                    .to_owned(),
            ),
            SystemsError::UnknownHost { source, .. } => source.hint(),
            SystemsError::Missing { .. } => Some(
                "build them into the file (hbdeploy build … --systems-out FILE), or leave them \
                 out of the selection (e.g. '!HOST')"
                    .to_owned(),
            ),
            SystemsError::Write { .. } => {
                Some("check that the directory exists and is writable".to_owned())
            }
        }
    }
}

/// The systems of the file at `path`, by host name (sorted).
pub(crate) fn read(path: &Path) -> Result<Vec<(String, StorePath)>, SystemsError> {
    let text = hbdeploy_files::read_to_string(path, LIMIT).map_err(SystemsError::Read)?;
    parse(&text, path)
}

/// Parses a systems file's text; `path` is for messages.
fn parse(text: &str, path: &Path) -> Result<Vec<(String, StorePath)>, SystemsError> {
    let value: Value = serde_json::from_str(text).map_err(|err| {
        let message = err.to_string();
        let message = match message.rsplit_once(" at line ") {
            Some((message, _)) => message.to_owned(),
            None => message,
        };
        SystemsError::Json {
            path: path.to_owned(),
            line: err.line(),
            column: err.column(),
            message,
        }
    })?;
    let shape = |detail| SystemsError::Shape {
        path: path.to_owned(),
        detail,
    };
    let map = match value {
        Value::Object(map) => map,
        Value::Array(_) => {
            return Err(shape(
                "an array (as nix build --json prints) names no host; put each host's entry \
                 under its name",
            ));
        }
        _ => return Err(shape("neither an object nor an array")),
    };
    if map.is_empty() {
        return Err(shape("it is empty"));
    }
    map.into_iter()
        .map(|(host, value)| {
            let system = system(&value).map_err(|detail| SystemsError::BadSystem {
                path: path.to_owned(),
                host: host.clone(),
                detail,
            })?;
            Ok((host, system))
        })
        .collect()
}

/// One host's system: a store path, a `nix build --json` entry, or an array of one entry.
fn system(value: &Value) -> Result<StorePath, String> {
    let text = match value {
        Value::String(text) => text.as_str(),
        Value::Array(entries) => match entries.as_slice() {
            [one] => return system(one),
            _ => {
                return Err(format!(
                    "an array of {} entries; one host has one system",
                    entries.len()
                ));
            }
        },
        Value::Object(entry) => match entry.get("outputs").and_then(|o| o.get("out")) {
            Some(Value::String(out)) => out.as_str(),
            _ => return Err("an object without outputs.out".to_owned()),
        },
        _ => return Err(String::new()),
    };
    StorePath::new(text).map_err(|err| err.to_string())
}

/// Gives each of `hosts` its system from `systems` (read from `path`): every host of the file
/// must be in the fleet, and every selected host in the file; hosts of the file that are not
/// selected are left out. A given system is never built on the host.
pub(crate) fn assign(
    fleet: &Fleet,
    hosts: &mut [HostPlan],
    systems: &[(String, StorePath)],
    path: &Path,
) -> Result<(), SystemsError> {
    for (name, _) in systems {
        if fleet.host(name).is_none() {
            let err = fleet.select(&[Selector::Host(name.clone())]).err();
            if let Some(source) = err {
                return Err(SystemsError::UnknownHost {
                    path: path.to_owned(),
                    source: Box::new(source),
                });
            }
        }
    }
    let missing: Vec<String> = hosts
        .iter()
        .filter(|h| !systems.iter().any(|(name, _)| *name == h.name))
        .map(|h| h.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(SystemsError::Missing {
            path: path.to_owned(),
            hosts: missing,
        });
    }
    for host in hosts {
        host.system = systems
            .iter()
            .find(|(name, _)| *name == host.name)
            .map(|(_, system)| system.clone());
        host.transfer.build_on_target = false;
    }
    Ok(())
}

/// Writes the systems of the hosts of `report` that were built into `path` (atomically: a
/// temporary file in the same directory, then renamed); returns how many.
pub(crate) fn write(report: &Report, path: &Path) -> Result<usize, SystemsError> {
    let map: serde_json::Map<String, Value> = report
        .hosts
        .iter()
        .filter(|h| matches!(h.outcome, Outcome::Succeeded))
        .filter_map(|h| {
            let path = h.new_path.as_ref()?;
            Some((h.host.clone(), Value::String(path.to_string())))
        })
        .collect();
    let count = map.len();
    let text = format!("{:#}\n", Value::Object(map));
    let error = |source| SystemsError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "systems.json".to_owned());
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, text).map_err(error)?;
    std::fs::rename(&temporary, path).map_err(|err| {
        let _ = std::fs::remove_file(&temporary);
        error(err)
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-web-24.05";
    const DB: &str = "/nix/store/2j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-db-24.05";

    fn check(text: &str, expected: &str) {
        let got = match parse(text, Path::new("/x/systems.json")) {
            Ok(systems) => systems
                .iter()
                .map(|(h, p)| format!("{h}={p}"))
                .collect::<Vec<_>>()
                .join(" "),
            Err(err) => err.to_string(),
        };
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn a_plain_map_and_nix_build_json_entries_are_accepted() {
        check(
            &format!(r#"{{"web": "{WEB}", "db": "{DB}"}}"#),
            &format!("db={DB} web={WEB}"),
        );
        let entry = format!(r#"{{"drvPath": "/nix/store/x.drv", "outputs": {{"out": "{WEB}"}}}}"#);
        check(&format!(r#"{{"web": {entry}}}"#), &format!("web={WEB}"));
        check(&format!(r#"{{"web": [{entry}]}}"#), &format!("web={WEB}"));
    }

    #[test]
    fn other_shapes_say_what_is_wrong() {
        check(
            &format!(r#"[{{"outputs": {{"out": "{WEB}"}}}}]"#),
            "/x/systems.json is not an object from host name to system: an array (as nix build \
             --json prints) names no host; put each host's entry under its name",
        );
        check(
            "{}",
            "/x/systems.json is not an object from host name to system: it is empty",
        );
        check(
            "{\"web\": \"/tmp/x\"}",
            "/x/systems.json: the system of `web` is not a store path: `/tmp/x` is not a nix \
             store path (/nix/store/<hash>-<name>)",
        );
        check(
            "{\"web\": 3}",
            "/x/systems.json: the system of `web` is not a store path",
        );
        check(
            "{\"web\": {\"out\": \"x\"}}",
            "/x/systems.json: the system of `web` is not a store path: an object without \
             outputs.out",
        );
        check(
            "{\"web\": \n \"x\",}",
            "/x/systems.json:2:6: not valid JSON: trailing comma",
        );
    }
}
