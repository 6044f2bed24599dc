//! Safe activation: the lock that keeps two deployments off one host, the restore script that
//! puts the previous generation back, and magic rollback — a watchdog on the host that restores
//! the previous generation by itself unless the deployer confirms, over a new connection, that the
//! host can still be reached.
//!
//! The watchdog is fully detached from the SSH session that starts it (`setsid`, stdio to a log
//! file, SIGHUP ignored; a transient unit where the host runs systemd), so it survives the very
//! failures it exists for. The watchdog and the deployer race for one decision with an atomic
//! `mkdir`: whoever creates `decided-<token>` first either confirms or rolls back, never both.

use std::time::{Duration, Instant};

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{Connection, Held};

use crate::remote::{RUN_DIR, SYSTEM_PROFILE};
use crate::state::{Generation, HostState};
use crate::{Goal, HostError, HostPlan, Stage};

/// A held lock on a host. Released explicitly, or when the connection ends for any reason.
#[derive(Debug)]
pub struct Lock(Option<Held>);

impl Lock {
    /// Lets other deployments at the host again.
    pub async fn release(self) {
        if let Some(held) = self.0 {
            held.release().await;
        }
    }
}

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
        crate::time::utc(since)
    );
    // The description travels inside single quotes on the host's shell command line.
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " @()-._:".contains(*c))
        .collect()
}

/// Takes the host's deployment lock (`flock` on `/run/hbdeploy/lock`, held by a command that
/// lives as long as this connection's channel). Refused with the holder's description when
/// another deployment holds it.
pub async fn lock(conn: &Connection, holder: &str) -> Result<Lock, HostError> {
    let command = format!(
        "mkdir -p {RUN_DIR} && exec 9>>{RUN_DIR}/lock && \
         if flock -n 9; then printf '%s\\n' '{holder}' > {RUN_DIR}/lock.info; echo locked; \
         exec cat > /dev/null; else echo \"busy $(cat {RUN_DIR}/lock.info 2>/dev/null)\"; fi"
    );
    let (line, held) = conn
        .hold_root(&command)
        .await
        .map_err(|source| match source {
            source @ hbdeploy_ssh::SshError::Escalation { .. } => HostError::Privilege(source),
            source => HostError::Channel {
                stage: Stage::Connect,
                source,
            },
        })?;
    match (line.as_str(), held) {
        ("locked", held) => Ok(Lock(held)),
        (busy, held) => {
            if let Some(held) = held {
                held.release().await;
            }
            Err(HostError::Locked {
                holder: busy.strip_prefix("busy").unwrap_or(busy).trim().to_owned(),
            })
        }
    }
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

/// The script that puts the host back on `previous` after a `goal` activation: for `switch` and
/// `boot`, the profile goes back to the previous generation, the new one is deleted (so it is not
/// left as the profile's newest), and the previous system is activated (`boot`: made the boot
/// default); for `test`, the previously running system is activated again. `None` when there
/// is nothing to go back to.
pub fn restore_script(previous: &Previous, goal: Goal) -> Option<String> {
    match goal {
        Goal::Switch | Goal::Boot => {
            let Generation { number, path, .. } = previous.profile.as_ref()?;
            Some(format!(
                "cur=$(readlink {SYSTEM_PROFILE}); cur=${{cur#system-}}; cur=${{cur%-link}}; \
                 nix-env -p {SYSTEM_PROFILE} --switch-generation {number} && \
                 {{ [ \"$cur\" = {number} ] || nix-env -p {SYSTEM_PROFILE} --delete-generations \"$cur\"; }} && \
                 {path}/bin/switch-to-configuration {goal}"
            ))
        }
        Goal::Test => {
            let running = previous.running.as_ref()?;
            Some(format!("{running}/bin/switch-to-configuration test"))
        }
        Goal::DryActivate | Goal::Build | Goal::Push => None,
    }
}

/// What the arm command prints, instead of arming, when the path is not a NixOS system.
const NOT_NIXOS: &str = "not-nixos";

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

/// The watchdog's script: wait, then — unless the deployer decided first — restore.
fn watchdog_script(token: &str, timeout: Duration, restore: &str) -> String {
    format!(
        "trap \"\" HUP; sleep {secs}; \
         if mkdir {RUN_DIR}/decided-{token} 2>/dev/null; then \
           echo \"no confirmation within {secs}s: restoring the previous generation\"; \
           if {restore}; then echo rolled-back > {RUN_DIR}/result-{token}; \
           else echo \"rollback-failed $?\" > {RUN_DIR}/result-{token}; fi; \
         fi",
        secs = timeout.as_secs().max(1)
    )
}

/// Starts the watchdog on the host, detached from this session — after checking, in the same
/// command, that `path` is a NixOS system to switch to (so arming costs no extra round trip).
pub async fn arm(
    conn: &Connection,
    path: &StorePath,
    token: &str,
    timeout: Duration,
    restore: &str,
    systemd: bool,
) -> Result<(), HostError> {
    let script = watchdog_script(token, timeout, restore);
    let check = format!(
        "if ! test -x {path}/bin/switch-to-configuration; then echo {NOT_NIXOS}; exit 0; fi; "
    );
    let command = if systemd {
        format!(
            "{check}mkdir -p {RUN_DIR} && systemd-run --unit=hbdeploy-watchdog-{token} \
             --collect --no-block --quiet sh -c '{script}'"
        )
    } else {
        format!(
            "{check}mkdir -p {RUN_DIR} && cd / && \
             {{ setsid sh -c '{script}' < /dev/null >> {RUN_DIR}/watchdog-{token}.log 2>&1 & }} && \
             echo $! > {RUN_DIR}/watchdog-{token}.pid"
        )
    };
    let output = conn
        .run_root(&command, |_| {})
        .await
        .map_err(|source| HostError::Channel {
            stage: Stage::Activate,
            source,
        })?;
    if output.stdout.lines().any(|l| l == NOT_NIXOS) {
        return Err(HostError::NotNixos { path: path.clone() });
    }
    if output.exit.success() {
        Ok(())
    } else {
        Err(HostError::Remote {
            command: "arming the magic-rollback watchdog".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail.iter().map(|l| l.text.clone()).collect(),
        })
    }
}

/// Claims the decision on a connection that is already open (after a failed activation, the
/// deployer rolls back itself): true if the watchdog had not decided yet, and is now stopped.
pub async fn disarm(conn: &Connection, token: &str, systemd: bool) -> bool {
    match conn.run_root(&decide_command(token, systemd), |_| {}).await {
        Ok(output) => output.stdout.lines().any(|l| l == "confirmed"),
        Err(_) => false,
    }
}

fn decide_command(token: &str, systemd: bool) -> String {
    let stop = if systemd {
        format!("systemctl stop hbdeploy-watchdog-{token}.service 2>/dev/null")
    } else {
        format!("kill -- -$(cat {RUN_DIR}/watchdog-{token}.pid) 2>/dev/null")
    };
    format!(
        "if mkdir {RUN_DIR}/decided-{token} 2>/dev/null; then {stop}; echo confirmed; \
         else cat {RUN_DIR}/result-{token} 2>/dev/null || echo rolling-back; fi"
    )
}

/// How the confirmation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Confirmed over a new connection; the watchdog is stopped.
    Confirmed,
    /// The host rolled itself back; the text says why the deployer could not confirm.
    RolledBack(String),
    /// The watchdog's restore script failed on the host.
    RollbackFailed(String),
    /// The host could not be reached to confirm, nor afterwards to learn its fate.
    Pending(String),
}

/// Confirms the activation over a **new** connection (a fresh TCP connection and handshake), so
/// that a broken sshd, network or login is noticed; retries until the watchdog's deadline, then
/// waits a while for the host to come back and tell what the watchdog did.
pub async fn confirm(plan: &HostPlan, token: &str, systemd: bool, armed: Instant) -> Confirmation {
    let deadline = armed + plan.safety.confirm_timeout;
    let mut why = String::from("no confirmation was attempted");
    while Instant::now() < deadline {
        match decide(plan, token, systemd, deadline).await {
            Ok(answer) if answer == "confirmed" => return Confirmation::Confirmed,
            Ok(answer) => return wait_for_result(plan, token, answer, why).await,
            Err(err) => why = err,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let grace = Instant::now() + plan.safety.confirm_timeout + Duration::from_secs(30);
    while Instant::now() < grace {
        if let Ok(answer) = decide(plan, token, systemd, grace).await {
            if answer == "confirmed" {
                // Reachable again before the watchdog fired (it fires a moment after the
                // deadline): the activation stands.
                return Confirmation::Confirmed;
            }
            return wait_for_result(plan, token, answer, why).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Confirmation::Pending(why)
}

/// One attempt: connect afresh and run the decision command.
async fn decide(
    plan: &HostPlan,
    token: &str,
    systemd: bool,
    deadline: Instant,
) -> Result<String, String> {
    let mut target = plan.target.clone();
    let left = deadline.saturating_duration_since(Instant::now());
    target.connect_timeout = target.connect_timeout.min(left.max(Duration::from_secs(1)));
    let conn = Connection::connect(&target)
        .await
        .map_err(|err| error_text(&err))?;
    let output = conn.run_root(&decide_command(token, systemd), |_| {}).await;
    conn.close().await;
    let output = output.map_err(|err| error_text(&err))?;
    Ok(output.stdout.lines().next().unwrap_or("").to_owned())
}

/// The watchdog decided: wait (reconnecting) until it wrote its result.
async fn wait_for_result(
    plan: &HostPlan,
    token: &str,
    answer: String,
    why: String,
) -> Confirmation {
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut answer = answer;
    loop {
        match answer.as_str() {
            "rolled-back" => return Confirmation::RolledBack(why),
            failed if failed.starts_with("rollback-failed") => {
                return Confirmation::RollbackFailed(failed.to_owned());
            }
            _ => {}
        }
        if Instant::now() > give_up {
            return Confirmation::Pending(why);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // `decide` cannot confirm any more (the directory exists); it reads the result.
        answer = decide(plan, token, false, give_up)
            .await
            .unwrap_or_default();
    }
}

fn error_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
        let script = restore_script(&previous(), Goal::Switch).expect("something to restore");
        assert!(script.contains("--switch-generation 4"), "{script}");
        assert!(script.contains("--delete-generations \"$cur\""), "{script}");
        assert!(script.ends_with(&format!("{A}/bin/switch-to-configuration switch")));
        let boot = restore_script(&previous(), Goal::Boot).expect("boot");
        assert!(boot.ends_with("switch-to-configuration boot"), "{boot}");
        let test = restore_script(&previous(), Goal::Test).expect("test");
        assert_eq!(test, format!("{A}/bin/switch-to-configuration test"));
        assert_eq!(restore_script(&Previous::default(), Goal::Switch), None);
        assert_eq!(restore_script(&previous(), Goal::DryActivate), None);
    }

    #[test]
    fn scripts_that_run_inside_single_quotes_have_none() {
        let restore = restore_script(&previous(), Goal::Switch).expect("restore");
        let watchdog = watchdog_script("abc", Duration::from_secs(5), &restore);
        assert!(!watchdog.contains('\''), "{watchdog}");
        assert!(watchdog.contains("sleep 5;"), "{watchdog}");
        assert!(
            watchdog.contains("mkdir /run/hbdeploy/decided-abc"),
            "{watchdog}"
        );
        let holder = holder_description("apply");
        assert!(!holder.contains('\''), "{holder}");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 16);
    }
}
