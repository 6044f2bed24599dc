//! Safe activation: the lock that keeps two deployments off one host, the restore change that
//! puts the previous generation back, and magic rollback — a watchdog on the host that restores
//! the previous generation by itself unless the deployer confirms, over a new connection, that the
//! host can still be reached.
//!
//! The watchdog is a detached job of the deployment (`remote::Deployment::arm`: a transient unit
//! where the host runs systemd, else `setsid` with SIGHUP ignored), so it survives the very
//! failures it exists for. The watchdog and the deployer race for one decision with an atomic
//! `mkdir`: whoever creates `/run/hbdeploy/TOKEN/decided` first either confirms or rolls back,
//! never both.

use std::time::Duration;

use tokio::time::Instant;

use crate::port::{Dial, Host, Lock};
use hbdeploy_nix::StorePath;

use crate::remote::{self, Change, Decision, Deployment, JobKind, LockReply, Op, Under};
use crate::state::{Generation, HostState};
use crate::{Goal, HostError, HostPlan};

/// Who holds a lock, as shown to the next deployer: user, machine, process and time.
pub fn holder_description(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".to_owned());
    let machine = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown machine".to_owned());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = format!(
        "hbdeploy {command} by {user}@{machine} (pid {}) since {} UTC",
        std::process::id(),
        hbdeploy_files::time::utc(since)
    );
    // Quoted like every argument, but kept to plain characters: it is shown in another
    // deployer's error message.
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " @()-._:".contains(*c))
        .collect()
}

/// Takes the host's deployment lock (`flock` on `/run/hbdeploy/lock`, held by a command that
/// lives as long as this connection's channel). Refused with the holder's description when
/// another deployment holds it.
pub async fn lock<H: Host>(conn: &H, holder: &str) -> Result<Lock<H>, HostError> {
    locked(conn, holder, false).await.map(|(lock, _)| lock)
}

/// [`lock`], and in the same round trip what the holder found under it: whether earlier
/// deployments must be settled first, and the host's state (`state.sh`'s output).
pub(crate) async fn lock_reading<H: Host>(
    conn: &H,
    holder: &str,
) -> Result<(Lock<H>, Under), HostError> {
    locked(conn, holder, true).await
}

async fn locked<H: Host>(
    conn: &H,
    holder: &str,
    read: bool,
) -> Result<(Lock<H>, Under), HostError> {
    // A lock command that ends without answering (a host short of processes or files for a
    // moment) is tried once more before the host is given up.
    let mut tries = 0;
    loop {
        tries += 1;
        match remote::lock(conn, holder, read).await? {
            (LockReply::Locked(under), held) => return Ok((Lock::new(held), under)),
            (LockReply::Busy(holder), held) => {
                if let Some(held) = held {
                    H::release(held).await;
                }
                return Err(HostError::Locked { holder });
            }
            (LockReply::Unanswered(said), _) if tries >= 2 => {
                return Err(HostError::Remote {
                    command: "taking the deployment lock (lock.sh)".to_owned(),
                    exit: hbdeploy_ssh::Exit::Unknown,
                    tail: vec![if said.is_empty() {
                        "it ended without answering".to_owned()
                    } else {
                        said
                    }],
                });
            }
            (LockReply::Unanswered(_), _) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Connects to `target`, takes the host's deployment lock for `command` (`rollback`, `reboot`),
/// runs `work` under it (with the lock, whose holder may run its steps), then lets go of the
/// lock and the connection. Not reaching the host or
/// not getting its lock is the host's error, and `work` does not run.
pub(crate) async fn under_lock<D: Dial, T>(
    dial: &D,
    target: &hbdeploy_ssh::Target,
    command: &str,
    work: impl AsyncFnOnce(&D::Host, &Lock<D::Host>) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let conn = dial.connect(target).await.map_err(HostError::Connect)?;
    let result = match lock(&conn, &holder_description(command)).await {
        Ok(held) => {
            let result = work(&conn, &held).await;
            held.release().await;
            result
        }
        Err(error) => Err(error),
    };
    conn.close().await;
    result
}

/// What the host ran before this activation, to go back to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// The profile's generation.
    pub profile: Option<Generation>,
    /// `/run/current-system`.
    pub running: Option<StorePath>,
}

impl From<&HostState> for Previous {
    fn from(state: &HostState) -> Previous {
        Previous {
            profile: state.profile().cloned(),
            running: state.current.clone(),
        }
    }
}

/// The change that puts the host back on `previous` after a `goal` activation: for `switch` and
/// `boot`, the profile goes back to the previous generation, the new one is deleted (so it is not
/// left as the profile's newest), and the previous system is activated (`boot`: made the boot
/// default); for `test`, the previously running system is activated again. `None` when there
/// is nothing to go back to.
pub(crate) fn restore_change(previous: &Previous, goal: Goal) -> Option<Change> {
    match goal {
        Goal::Switch | Goal::Boot => {
            let Generation { number, path, .. } = previous.profile.as_ref()?;
            Some(Change {
                op: Op::Restore(*number),
                path: path.clone(),
                goal,
            })
        }
        Goal::Test => Some(Change {
            op: Op::Keep,
            path: previous.running.clone()?,
            goal: Goal::Test,
        }),
        Goal::DryActivate | Goal::Build | Goal::Push => None,
    }
}

/// A random token naming one activation's watchdog, log and decision on the host.
pub fn new_token() -> String {
    let mut bytes = [0u8; 8];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if from_urandom.is_err() {
        // Uniqueness, not secrecy, is what matters: time and pid will do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = ((nanos as u64) ^ u64::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims the decision on a connection that is already open (after a failed activation, the
/// deployer rolls back itself): `Confirmed` if the watchdog had not decided yet and is now
/// stopped, else what the watchdog decided (`Restoring` when the answer could not be read).
pub(crate) async fn disarm(conn: &impl Host, deployment: &Deployment) -> Decision {
    deployment
        .decide(conn, None, crate::Stage::Activate, "deciding")
        .await
        .unwrap_or(Decision::Restoring)
}

/// Once a watchdog has decided: waits on an open connection, at most `bound`, until its restore
/// has ended, and returns how (`Restoring` if it still runs at the bound).
pub(crate) async fn watchdog_outcome(
    conn: &impl Host,
    deployment: &Deployment,
    first: Decision,
    bound: Duration,
) -> Decision {
    let give_up = Instant::now() + bound;
    let mut answer = first;
    while answer == Decision::Restoring && Instant::now() < give_up {
        tokio::time::sleep(POLL).await;
        answer = disarm(conn, deployment).await;
    }
    answer
}

/// How often the host is asked again while a decision or a restore is awaited.
const POLL: Duration = Duration::from_millis(500);

/// How the confirmation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Confirmed over a new connection; the watchdog is stopped.
    Confirmed,
    /// The watchdog decided, and this is what it did (never `Confirmed`, `Restoring` or
    /// `Undecided`); the text says why the deployer could not confirm.
    Watchdog(Decision, String),
    /// The host could not be reached to confirm, nor afterwards to learn its fate.
    Pending(String),
}

/// Confirms the activation over a **new** connection (a fresh TCP connection and handshake), so
/// that a broken sshd, network or login is noticed; retries until `deadline` (the watchdog's:
/// `confirm-timeout` after the activation ended), then waits a while for the host to come back
/// and tell what the watchdog did.
pub(crate) async fn confirm(
    dial: &impl Dial,
    plan: &HostPlan,
    deployment: &Deployment,
    deadline: Instant,
) -> Confirmation {
    let mut why = format!(
        "the activation ended too late to confirm within {}s",
        plan.safety.confirm_timeout.as_secs()
    );
    while Instant::now() < deadline {
        match decide(dial, plan, deployment, deadline).await {
            Ok(Decision::Confirmed) => return Confirmation::Confirmed,
            // The activation (whose end this deployer may not have seen) is still running or
            // failed: try again, and the watchdog restores the host if it never succeeds.
            Ok(Decision::Undecided(reason)) => why = reason,
            Ok(answer) => return wait_for_result(dial, plan, deployment, answer, why).await,
            Err(err) => why = err,
        }
        tokio::time::sleep(POLL).await;
    }
    let grace = Instant::now() + plan.safety.confirm_timeout + Duration::from_secs(30);
    while Instant::now() < grace {
        if let Ok(answer) = decide(dial, plan, deployment, grace).await {
            if let Decision::Undecided(reason) = answer {
                why = reason;
                tokio::time::sleep(POLL).await;
                continue;
            }
            if answer == Decision::Confirmed {
                // Reachable again before the watchdog fired (it fires a moment after the
                // deadline): the activation stands.
                return Confirmation::Confirmed;
            }
            return wait_for_result(dial, plan, deployment, answer, why).await;
        }
        tokio::time::sleep(POLL).await;
    }
    Confirmation::Pending(why)
}

/// One attempt: connect afresh and run the decision command.
async fn decide(
    dial: &impl Dial,
    plan: &HostPlan,
    deployment: &Deployment,
    deadline: Instant,
) -> Result<Decision, String> {
    let mut target = plan.target.clone();
    let left = deadline.saturating_duration_since(Instant::now());
    target.connect_timeout = target.connect_timeout.min(left.max(Duration::from_secs(1)));
    let conn = dial
        .connect(&target)
        .await
        .map_err(|err| hbdeploy_files::chain(&err))?;
    let decision = deployment
        .decide(
            &conn,
            Some(JobKind::Activate),
            crate::Stage::Activate,
            "confirming",
        )
        .await;
    conn.close().await;
    decision.map_err(|err| hbdeploy_files::chain(&err))
}

/// The watchdog decided: wait (reconnecting, bounded by the activation's own limit) until it
/// wrote its result.
async fn wait_for_result(
    dial: &impl Dial,
    plan: &HostPlan,
    deployment: &Deployment,
    answer: Decision,
    why: String,
) -> Confirmation {
    let give_up = Instant::now() + plan.safety.activation_timeout + Duration::from_secs(30);
    let mut answer = answer;
    loop {
        match answer {
            Decision::Restoring | Decision::Undecided(_) => {}
            // Read back after the decision directory existed: another deployer confirmed.
            Decision::Confirmed => return Confirmation::Confirmed,
            done => return Confirmation::Watchdog(done, why),
        }
        if Instant::now() > give_up {
            return Confirmation::Pending(why);
        }
        tokio::time::sleep(POLL).await;
        // `decide` cannot confirm any more (the directory exists); it reads the result.
        answer = decide(dial, plan, deployment, give_up)
            .await
            .unwrap_or(Decision::Restoring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";

    fn previous() -> Previous {
        Previous {
            profile: Some(Generation {
                number: 4,
                created: 0,
                path: StorePath::new(A).expect("valid"),
            }),
            running: Some(StorePath::new(A).expect("valid")),
        }
    }

    #[test]
    fn restore_goes_back_to_the_previous_generation_and_drops_the_new_one() {
        let change = restore_change(&previous(), Goal::Switch).expect("something to restore");
        assert_eq!(change.op, Op::Restore(4));
        assert_eq!(change.path.as_str(), A);
        let boot = restore_change(&previous(), Goal::Boot).expect("boot");
        assert_eq!((boot.op, boot.goal), (Op::Restore(4), Goal::Boot));
        let test = restore_change(&previous(), Goal::Test).expect("test");
        assert_eq!((test.op, test.goal), (Op::Keep, Goal::Test));
        assert_eq!(restore_change(&Previous::default(), Goal::Switch), None);
        assert_eq!(restore_change(&previous(), Goal::DryActivate), None);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 16);
    }
}
