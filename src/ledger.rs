//! The deployment ledger: one record per `apply` and `rollback`, kept on this machine.
//!
//! Where: `$HBDEPLOY_STATE_DIR/deployments/` when that is set, else `.hbdeploy/deployments/`
//! next to fleet.toml, so each fleet has its own history wherever hbdeploy is started from.
//!
//! How: one file per record, `<id>.json`, where the ID is the run's start time (UTC) and process
//! ID. A record is written to a hidden temporary file (`.<id>.json.tmp`, created exclusively),
//! flushed to disk with `fsync`, and only then renamed to its final name, which is atomic; the
//! directory is synced after the rename. A run killed while writing leaves at most a temporary
//! file, which readers ignore; a record that was renamed is complete. Earlier records are never
//! opened for writing, so no crash can damage them, and two runs at once write two different
//! files, so their records cannot interleave. No lock is needed.

use std::io::Write;
use std::path::{Path, PathBuf};

use hbdeploy_pipeline::OutcomeKind;
use serde::{Deserialize, Serialize};

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "HBDEPLOY_STATE_DIR";

/// For tests only: stall this many seconds halfway through writing a record, so a test can kill
/// the process mid-write.
const STALL_ENV: &str = "HBDEPLOY_TEST_STALL_LEDGER_WRITE";

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file operation failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file named like a record is not a regular file (a FIFO, a device, …) or is too large:
    /// hbdeploy never wrote it.
    #[error("{} is not a deployment record", path.display())]
    NotARecord {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        #[source]
        source: hbdeploy_files::FileError,
    },
    /// A record could not be turned into JSON (a bug).
    #[error("cannot encode the deployment record")]
    Encode(#[source] serde_json::Error),
}

impl hbdeploy_files::Hint for LedgerError {
    /// What to do.
    fn hint(&self) -> Option<String> {
        Some(match self {
            LedgerError::NotARecord { path, .. } => format!(
                "hbdeploy writes every record as a regular file of its own: move {} out of the \
                 ledger's directory (or delete it)",
                path.display()
            ),
            _ => format!(
                "check the state directory's permissions, or choose another with {STATE_DIR_ENV}"
            ),
        })
    }
}

/// The largest record that is read, in bytes (a run of a thousand hosts writes well under 1 MiB).
const MAX_RECORD_BYTES: u64 = 16 * hbdeploy_files::MIB;

/// Where the flake came from, when it was deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlakeInfo {
    /// The flake reference, as passed to nix.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `git rev-parse HEAD` of a local flake in a git work tree, else `null`.
    pub rev: Option<String>,
    /// Whether that work tree had uncommitted changes (`git status --porcelain`), else `null`.
    pub dirty: Option<bool>,
}

/// One host in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host: String,
    /// How it ended, in the words of the JSON result (`succeeded`, `unchanged`, `failed`, …;
    /// `unfinished` while the run has not recorded it).
    pub outcome: OutcomeKind,
    /// The last stage it entered.
    pub stage: String,
    /// What it ran before.
    pub old_path: Option<String>,
    /// What the run built for it (or rolled it back to).
    pub new_path: Option<String>,
    /// The profile generation it was left on, when known.
    pub generation: Option<u32>,
    /// What settling found of earlier deployments on the host and did, before this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled: Vec<String>,
    /// The secrets written to it, by name and SHA-256 of the content (never the content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretEntry>,
    /// Why it failed, on one line.
    pub error: Option<String>,
}

/// A secret written to a host, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    /// The secret's name in fleet.toml.
    pub name: String,
    /// SHA-256 of what was written, hex.
    pub sha256: String,
}

/// One `apply` or `rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's ID: `<start time, to the millisecond>-<pid>`, sortable by time.
    pub id: String,
    /// When the run started, RFC 3339 in UTC.
    pub time: String,
    /// Who ran it (`$USER`).
    pub user: String,
    /// On which machine.
    pub machine: String,
    /// The command line, without the program name and `--fleet`.
    pub command: String,
    /// The flake and its revision.
    pub flake: FlakeInfo,
    /// Each selected host.
    pub hosts: Vec<HostRecord>,
}

impl Record {
    /// Whether `host` is in this record.
    pub fn host(&self, host: &str) -> Option<&HostRecord> {
        self.hosts.iter().find(|h| h.host == host)
    }
}

/// What reading the ledger found.
#[derive(Debug, Default)]
pub struct Contents {
    /// The records, oldest first.
    pub records: Vec<Record>,
    /// Files named like records that could not be read or parsed.
    pub unreadable: Vec<PathBuf>,
}

/// The ledger of one fleet.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// The ledger of the fleet in `fleet_file`.
    pub fn for_fleet(fleet_file: &Path) -> Ledger {
        let state = match std::env::var_os(STATE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => fleet_file
                .parent()
                .unwrap_or(Path::new("."))
                .join(".hbdeploy"),
        };
        Ledger {
            dir: state.join("deployments"),
        }
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `record` whole into its own file, replacing an earlier version of the same record
    /// (the one a run writes as it begins); returns its path.
    pub fn append(&self, record: &Record) -> Result<PathBuf, LedgerError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| LedgerError::Io { what, path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let mut bytes = serde_json::to_vec_pretty(record).map_err(LedgerError::Encode)?;
        bytes.push(b'\n');
        let temp = self.dir.join(format!(".{}.json.tmp", record.id));
        let done = self.dir.join(format!("{}.json", record.id));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io("create", &temp))?;
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        file.write_all(first).map_err(io("write", &temp))?;
        stall_for_tests(&file);
        file.write_all(rest).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &done).map_err(io("rename into place", &temp))?;
        // Make the rename itself durable; a failure here leaves a complete record anyway.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(done)
    }

    /// Every record, oldest first. A missing directory is an empty ledger; temporary files of
    /// writes that never finished are ignored.
    pub fn read(&self) -> Result<Contents, LedgerError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Contents::default());
            }
            Err(source) => {
                return Err(LedgerError::Io {
                    what: "read",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut contents = Contents::default();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            // A FIFO or a device here would hang the read or fill memory: refuse it.
            let parsed = match hbdeploy_files::read(&path, MAX_RECORD_BYTES) {
                Ok(bytes) => serde_json::from_slice::<Record>(&bytes).ok(),
                Err(source) if source.is_refusal() => {
                    return Err(LedgerError::NotARecord { path, source });
                }
                Err(_) => None,
            };
            match parsed {
                Some(record) => contents.records.push(record),
                None => contents.unreadable.push(path),
            }
        }
        contents.records.sort_by(|a, b| a.id.cmp(&b.id));
        contents.unreadable.sort();
        Ok(contents)
    }
}

fn stall_for_tests(file: &std::fs::File) {
    let Some(secs) = std::env::var(STALL_ENV).ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let _ = file.sync_all();
    std::thread::sleep(std::time::Duration::from_secs(secs));
}

/// A new record's ID: the run's start time to the millisecond and this process's ID. Two runs
/// started within one second sort by their time, not by their process IDs.
pub fn new_id(started_millis: u64) -> String {
    format!(
        "{}-{}",
        hbdeploy_pipeline::time::compact_millis(started_millis),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Scratch;

    fn record(id: &str) -> Record {
        Record {
            id: id.to_owned(),
            time: "2026-01-01T00:00:00Z".to_owned(),
            user: "me".to_owned(),
            machine: "box".to_owned(),
            command: "apply --all".to_owned(),
            flake: FlakeInfo {
                reference: "/x".to_owned(),
                rev: None,
                dirty: None,
            },
            hosts: Vec::new(),
        }
    }

    /// A ledger in a directory of the test's own, and that directory's guard: keep it for the
    /// whole test (it removes the directory when dropped).
    fn temp_ledger(test: &str) -> (Scratch, Ledger) {
        let dir = Scratch::fresh(&format!("hbdeploy-ledger-tests-{test}")).expect("scratch");
        let ledger = Ledger {
            dir: dir.join("deployments"),
        };
        (dir, ledger)
    }

    #[test]
    fn records_come_back_oldest_first_and_leftovers_are_ignored() {
        let (_dir, ledger) = temp_ledger("order");
        for id in [
            "20260102T000000Z-2",
            "20260101T000000Z-1",
            "20260103T000000Z-3",
        ] {
            ledger.append(&record(id)).expect("append");
        }
        // A write that was killed halfway, and one that was never renamed into place.
        std::fs::write(
            ledger.dir().join(".20260104T000000Z-4.json.tmp"),
            "{\"id\": \"2026",
        )
        .expect("write");
        let contents = ledger.read().expect("read");
        let ids: Vec<&str> = contents.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "20260101T000000Z-1",
                "20260102T000000Z-2",
                "20260103T000000Z-3"
            ]
        );
        assert!(contents.unreadable.is_empty());
    }

    #[test]
    fn runs_started_within_one_second_sort_by_their_time_not_their_pids() {
        let (_dir, ledger) = temp_ledger("same-second");
        // The later run has the smaller-looking pid, as after pid 999 comes 1000.
        let earlier =
            new_id(1_700_000_000_120).replace(&format!("-{}", std::process::id()), "-999");
        let later = new_id(1_700_000_000_860).replace(&format!("-{}", std::process::id()), "-1000");
        for id in [&later, &earlier] {
            ledger.append(&record(id)).expect("append");
        }
        let contents = ledger.read().expect("read");
        let ids: Vec<&str> = contents.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [earlier.as_str(), later.as_str()]);
    }

    #[test]
    fn a_record_that_is_a_symlink_to_dev_zero_is_refused() {
        let (_dir, ledger) = temp_ledger("zero");
        ledger
            .append(&record("20260101T000000Z-1"))
            .expect("append");
        let link = ledger.dir().join("20260102T000000Z-2.json");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = ledger.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.read().map(|c| c.records.len()));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("read returns instead of hanging");
        let err = read.expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("{} is not a deployment record", link.display())
        );
        let hint = hbdeploy_files::Hint::hint(&err).unwrap_or_default();
        assert!(hint.contains("move"), "{hint}");
    }

    /// A record as the ledger has written it since outcomes were strings (before
    /// `OutcomeKind`): it must still read, and write back the same.
    const OLD_RECORD: &str = r#"{
  "id": "20260101T000000Z-7",
  "time": "2026-01-01T00:00:00Z",
  "user": "me",
  "machine": "box",
  "command": "apply --all",
  "flake": {
    "ref": "/x",
    "rev": null,
    "dirty": null
  },
  "hosts": [
    { "host": "a", "outcome": "succeeded", "stage": "activate", "old_path": null,
      "new_path": null, "generation": 3, "error": null },
    { "host": "b", "outcome": "rolled-back", "stage": "activate", "old_path": null,
      "new_path": null, "generation": 2, "error": "activation failed" },
    { "host": "c", "outcome": "rollback-pending", "stage": "confirm", "old_path": null,
      "new_path": null, "generation": null, "error": "x" },
    { "host": "d", "outcome": "unfinished", "stage": "-", "old_path": null,
      "new_path": null, "generation": null, "error": "the run ended" },
    { "host": "e", "outcome": "failed", "stage": "copy", "old_path": null,
      "new_path": null, "generation": null, "error": "y" },
    { "host": "f", "outcome": "unchanged", "stage": "activate", "old_path": null,
      "new_path": null, "generation": 3, "error": null },
    { "host": "g", "outcome": "skipped", "stage": "build", "old_path": null,
      "new_path": null, "generation": null, "error": null },
    { "host": "h", "outcome": "interrupted", "stage": "copy", "old_path": null,
      "new_path": null, "generation": null, "error": null }
  ]
}"#;

    #[test]
    fn a_record_written_with_outcomes_as_strings_still_reads() {
        let record: Record = serde_json::from_str(OLD_RECORD).expect("old record parses");
        let outcomes: Vec<OutcomeKind> = record.hosts.iter().map(|h| h.outcome).collect();
        assert_eq!(
            outcomes,
            [
                OutcomeKind::Succeeded,
                OutcomeKind::RolledBack,
                OutcomeKind::RollbackPending,
                OutcomeKind::Unfinished,
                OutcomeKind::Failed,
                OutcomeKind::Unchanged,
                OutcomeKind::Skipped,
                OutcomeKind::Interrupted,
            ]
        );
        let old: serde_json::Value = serde_json::from_str(OLD_RECORD).expect("json");
        let again = serde_json::to_value(&record).expect("encode");
        assert_eq!(again, old);
    }

    #[test]
    fn a_record_with_a_word_that_is_no_outcome_is_unreadable() {
        let odd = OLD_RECORD.replace("\"rolled-back\"", "\"FAILED\"");
        assert!(serde_json::from_str::<Record>(&odd).is_err());
    }

    #[test]
    fn concurrent_writers_never_mix_records() {
        let (_dir, ledger) = temp_ledger("concurrent");
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let mut r = record(&format!("20260101T000000Z-{n}"));
                    r.command = "x".repeat(10_000 + n);
                    ledger.append(&r).expect("append");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let contents = ledger.read().expect("read");
        assert_eq!(contents.records.len(), 8);
        for r in &contents.records {
            let n: usize =
                r.id.rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("n");
            assert_eq!(r.command.len(), 10_000 + n);
        }
    }
}
