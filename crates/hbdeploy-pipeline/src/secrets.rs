//! Secrets (keys) uploaded to hosts out of the store (issue 19): their content, read on the
//! workstation from a file or a command's stdout, goes to a root command's stdin over the host's
//! own connection and is written there atomically (`remote/secret.sh`).
//!
//! A secret's content lives in one [`SecretContent`], shared by every host that gets it and
//! overwritten with zeros when the last holder drops it. It never goes into an event, an error,
//! the report or a command line: reports carry its name and SHA-256 only ([`SecretRecord`]),
//! and the host answers for what it holds with the same hash (`remote/secret-state.sh`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbdeploy_ssh::Exit;

use crate::port::{Dial, Host, Reach};
pub use crate::remote::secret::SecretOnHost;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::event::EventSender;
use crate::fanout::each_host;
use crate::remote::secret::{self as remote, Refusal, Written};
use crate::report::HostReport;
use crate::{Goal, HostError, HostPlan, Stage};

mod load;

pub use load::{SecretError, load};

/// The largest secret read: far more than any key or password; a larger file is a mistake.
pub const MAX_SECRET_BYTES: u64 = 16 * hbdeploy_files::MIB;

/// When a secret is uploaded during `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUpload {
    /// After the copy, before the activation: a secret that cannot be written stops the host
    /// before its system changes.
    PreActivation,
    /// After a successful activation, for owners the new system creates.
    PostActivation,
}

impl SecretUpload {
    /// The word in fleet.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretUpload::PreActivation => "pre-activation",
            SecretUpload::PostActivation => "post-activation",
        }
    }
}

/// Where a secret's content comes from, on the workstation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretSource {
    /// A file, read whole.
    File(PathBuf),
    /// A program and its arguments, run without a shell; its stdout is the content.
    Command(Vec<String>),
}

/// A secret's content: never printed (`Debug` shows its hash), shared by every host that gets
/// it, zeroed when the last clone is dropped.
#[derive(Clone)]
pub struct SecretContent {
    bytes: Arc<Zeroizing<Vec<u8>>>,
    sha256: String,
}

impl SecretContent {
    /// Takes `bytes` as a secret's content (they are zeroed when it is dropped).
    pub fn new(bytes: Vec<u8>) -> SecretContent {
        SecretContent::from_buffer(Zeroizing::new(bytes))
    }

    pub(crate) fn from_buffer(bytes: Zeroizing<Vec<u8>>) -> SecretContent {
        let digest = Sha256::digest(bytes.as_slice());
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        SecretContent {
            bytes: Arc::new(bytes),
            sha256,
        }
    }

    /// The SHA-256 of the content, in hex (what `sha256sum` prints).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
}

impl std::fmt::Debug for SecretContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretContent(sha256 {})", self.sha256)
    }
}

impl PartialEq for SecretContent {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}

impl Eq for SecretContent {}

/// One secret of a host, with its content read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name in fleet.toml.
    pub name: String,
    /// The absolute path on the host.
    pub dest: String,
    /// The owning user on the host.
    pub owner: String,
    /// The owning group on the host.
    pub group: String,
    /// Its permission bits.
    pub mode: u32,
    /// When `apply` uploads it.
    pub upload: SecretUpload,
    /// The content.
    pub content: SecretContent,
}

/// What a report says of one uploaded secret: its name and hash, never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// The secret's name.
    pub name: String,
    /// The SHA-256 of what was written.
    pub sha256: String,
}

impl SecretOnHost {
    /// Whether `secret` would change this file: absent, another content, owner, group or mode.
    pub fn differs_from(&self, secret: &Secret) -> bool {
        match self {
            SecretOnHost::File {
                sha256,
                owner,
                group,
                mode,
            } => {
                *sha256 != secret.content.sha256()
                    || *owner != secret.owner
                    || *group != secret.group
                    || *mode != secret.mode
            }
            SecretOnHost::Absent | SecretOnHost::Unreadable => true,
        }
    }
}

/// Why one secret could not be written on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// Its owner is not a user of the host.
    UnknownOwner(String),
    /// Its group is not a group of the host.
    UnknownGroup(String),
    /// Its destination is a directory.
    DestIsDirectory,
    /// Writing failed.
    Failed(Exit),
}

impl std::fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretProblem::UnknownOwner(owner) => {
                write!(f, "its owner `{owner}` is not a user of the host")
            }
            SecretProblem::UnknownGroup(group) => {
                write!(f, "its group `{group}` is not a group of the host")
            }
            SecretProblem::DestIsDirectory => f.write_str("a directory is in its place"),
            SecretProblem::Failed(exit) => write!(f, "writing it failed ({exit})"),
        }
    }
}

/// Whether `goal` uploads secrets: the goals that activate a system (not `dry-activate`).
fn uploads(goal: Goal) -> bool {
    matches!(goal, Goal::Switch | Goal::Boot | Goal::Test)
}

/// `apply`'s upload of `plan`'s secrets of kind `when`, each recorded in `report`. The first
/// secret that cannot be written stops the host (before its activation, for
/// [`SecretUpload::PreActivation`]). A connection lost since (the activation restarted sshd) is
/// replaced by a new one.
pub(crate) async fn upload<D: Dial>(
    (dial, conn): (&D, &D::Host),
    plan: &HostPlan,
    (goal, when): (Goal, SecretUpload),
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    let secrets: Vec<&Secret> = plan.secrets.iter().filter(|s| s.upload == when).collect();
    if secrets.is_empty() || !uploads(goal) {
        return Ok(());
    }
    let fresh;
    let conn = if conn.is_closed() {
        fresh = dial
            .connect(&plan.target)
            .await
            .map_err(HostError::Connect)?;
        &fresh
    } else {
        conn
    };
    report.stage = Stage::Activate;
    let result = write_all(conn, &secrets, &mut report.secrets, true).await;
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    if result.is_ok() {
        events.note(
            &plan.name,
            format!("{} secrets uploaded: {}", when.as_str(), names.join(", ")),
        );
    }
    result
}

/// `apply`'s upload of every secret of a host that already runs its system (it is not
/// activated, so both kinds go now).
pub(crate) async fn upload_unchanged<D: Dial>(
    (dial, conn): (&D, &D::Host),
    plan: &HostPlan,
    goal: Goal,
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    for when in [SecretUpload::PreActivation, SecretUpload::PostActivation] {
        upload((dial, conn), plan, (goal, when), events, report).await?;
    }
    Ok(())
}

/// Writes `secrets` in order, recording each; stops at the first that fails. `apply` says
/// whether this is a deployment's upload (whose failure says where the activation was left).
async fn write_all(
    conn: &impl Host,
    secrets: &[&Secret],
    records: &mut Vec<SecretRecord>,
    apply: bool,
) -> Result<(), HostError> {
    for secret in secrets {
        let target = (
            secret.dest.as_str(),
            secret.owner.as_str(),
            secret.group.as_str(),
            secret.mode,
        );
        let (problem, tail) = match remote::write(conn, target, secret.content.bytes()).await? {
            Written::Done => {
                records.push(SecretRecord {
                    name: secret.name.clone(),
                    sha256: secret.content.sha256().to_owned(),
                });
                continue;
            }
            Written::Refused(Refusal::UnknownOwner) => (
                SecretProblem::UnknownOwner(secret.owner.clone()),
                Vec::new(),
            ),
            Written::Refused(Refusal::UnknownGroup) => (
                SecretProblem::UnknownGroup(secret.group.clone()),
                Vec::new(),
            ),
            Written::Refused(Refusal::DestIsDirectory) => {
                (SecretProblem::DestIsDirectory, Vec::new())
            }
            Written::Failed { exit, tail } => (SecretProblem::Failed(exit), tail),
        };
        return Err(HostError::Secret {
            name: secret.name.clone(),
            dest: secret.dest.clone(),
            upload: apply.then_some(secret.upload),
            problem,
            tail,
        });
    }
    Ok(())
}

/// One host's secrets compared with what it holds (`plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretChange {
    /// The secret's name.
    pub name: String,
    /// Where it goes.
    pub dest: String,
    /// The hash of the content that would be written.
    pub sha256: String,
    /// The owner it would have.
    pub owner: String,
    /// The group it would have.
    pub group: String,
    /// The mode it would have.
    pub mode: u32,
    /// What the host has there now.
    pub on_host: SecretOnHost,
    /// Whether uploading would change the file (content, owner, group or mode).
    pub changes: bool,
}

/// Compares `plan`'s secrets with what the host holds, reading hashes only.
pub(crate) async fn compare(
    conn: &impl Host,
    plan: &HostPlan,
) -> Result<Vec<SecretChange>, HostError> {
    if plan.secrets.is_empty() {
        return Ok(Vec::new());
    }
    let dests: Vec<&str> = plan.secrets.iter().map(|s| s.dest.as_str()).collect();
    let held = remote::state(conn, &dests, Stage::Connect).await?;
    Ok(plan
        .secrets
        .iter()
        .zip(held)
        .map(|(secret, on_host)| SecretChange {
            name: secret.name.clone(),
            dest: secret.dest.clone(),
            sha256: secret.content.sha256().to_owned(),
            owner: secret.owner.clone(),
            group: secret.group.clone(),
            mode: secret.mode,
            changes: on_host.differs_from(secret),
            on_host,
        })
        .collect())
}

/// `hbdeploy secrets upload`: every secret of the selected hosts, without deploying.
#[derive(Debug, Clone)]
pub struct SecretsRequest {
    /// The hosts, with their secrets read.
    pub hosts: Vec<HostPlan>,
    /// Hosts handled at once.
    pub parallel: NonZeroUsize,
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
}

/// One host's result of `secrets upload`.
#[derive(Debug)]
pub struct SecretsResult {
    /// The host.
    pub host: String,
    /// The secrets written, in order (up to the one that failed).
    pub written: Vec<SecretRecord>,
    /// Why the host failed, if it did.
    pub error: Option<HostError>,
    /// Time from connecting until done.
    pub duration: Duration,
}

/// Uploads every secret of every host of `request`, both kinds, at most `parallel` hosts at
/// once; one result per host, in order.
pub async fn upload_secrets(request: &SecretsRequest) -> Vec<SecretsResult> {
    let ssh = Reach {
        session: request.session.clone(),
    };
    let results = each_host(request.hosts.clone(), request.parallel, |plan| {
        let ssh = ssh.clone();
        async move {
            let start = Instant::now();
            let mut written = Vec::new();
            let error = upload_one(&ssh, &plan, &mut written).await.err();
            SecretsResult {
                host: plan.name,
                written,
                error,
                duration: start.elapsed(),
            }
        }
    })
    .await;
    results
        .into_iter()
        .map(|(plan, result)| {
            result.unwrap_or(SecretsResult {
                host: plan.name,
                written: Vec::new(),
                error: Some(HostError::TaskLost),
                duration: Duration::ZERO,
            })
        })
        .collect()
}

async fn upload_one(
    ssh: &Reach,
    plan: &HostPlan,
    written: &mut Vec<SecretRecord>,
) -> Result<(), HostError> {
    // Under the host's deployment lock, like rollback: a secret is not replaced while a
    // deployment (which may be uploading it itself) is under way.
    let secrets: Vec<&Secret> = plan.secrets.iter().collect();
    crate::safe::under_lock(ssh, &plan.target, "secrets upload", async |conn, _| {
        write_all(conn, &secrets, written, false).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(content: &[u8]) -> Secret {
        Secret {
            name: "k".to_owned(),
            dest: "/run/keys/k".to_owned(),
            owner: "root".to_owned(),
            group: "root".to_owned(),
            mode: 0o400,
            upload: SecretUpload::PreActivation,
            content: SecretContent::new(content.to_vec()),
        }
    }

    #[test]
    fn the_content_is_known_by_its_hash_only() {
        let s = secret(b"hunter2\n");
        // What `printf 'hunter2\n' | sha256sum` prints.
        assert_eq!(
            s.content.sha256(),
            "46a9d5bde718bf366178313019f04a753bad00685d38e3ec81c8628f35dfcb1b"
        );
        assert_eq!(s.content.sha256().len(), 64);
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(s.content.sha256()), "{shown}");
    }

    #[test]
    fn a_file_differs_by_content_owner_group_or_mode() {
        let s = secret(b"x");
        let same = SecretOnHost::File {
            sha256: s.content.sha256().to_owned(),
            owner: "root".to_owned(),
            group: "root".to_owned(),
            mode: 0o400,
        };
        assert!(!same.differs_from(&s));
        let SecretOnHost::File {
            sha256,
            owner,
            group,
            mode,
        } = same.clone()
        else {
            unreachable!()
        };
        for changed in [
            SecretOnHost::File {
                sha256: "0".repeat(64),
                owner: owner.clone(),
                group: group.clone(),
                mode,
            },
            SecretOnHost::File {
                sha256: sha256.clone(),
                owner: "nobody".to_owned(),
                group: group.clone(),
                mode,
            },
            SecretOnHost::File {
                sha256: sha256.clone(),
                owner: owner.clone(),
                group: "keys".to_owned(),
                mode,
            },
            SecretOnHost::File {
                sha256,
                owner,
                group,
                mode: 0o440,
            },
            SecretOnHost::Absent,
            SecretOnHost::Unreadable,
        ] {
            assert!(changed.differs_from(&s), "{changed:?}");
        }
    }
}
