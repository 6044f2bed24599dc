//! Jobs: everything that changes a host's system, run detached from the SSH session from script
//! files in the deployment's own directory on the host (`/run/hbdeploy/TOKEN/`). Where the host
//! runs systemd a job is the transient unit `hbdeploy-JOB-TOKEN` (one name per deployment); else
//! a `setsid` process. A unit's command line is `/bin/sh FILE ARG…` and every argument is built
//! from a store path, a number, a goal, a profile operation or the hex token, so it holds
//! neither `$` nor `%` for systemd to expand (`unit_safe` checks it).

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{Exit, OutputLine};
use tokio::time::Instant;

use crate::port::Host;

use super::reply::JobLine;
use super::settled::Before;
use super::{RUN_DIR, Script, channel_error, step};
use crate::event::EventSender;
use crate::port::Lock;
use crate::{Goal, HostError, Stage};

/// How a job moves the system profile (see `switch.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A new generation for the job's path.
    Set,
    /// To this generation.
    Generation(u32),
    /// Back to this generation, deleting the one the profile pointed at.
    Restore(u32),
    /// Not at all.
    Keep,
}

/// One change of a host's system: the profile operation and the system to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub op: Op,
    pub path: StorePath,
    pub goal: Goal,
}

impl Change {
    /// `switch.sh`'s arguments after DIR and JOB.
    pub(super) fn args(&self) -> Vec<String> {
        let (op, number) = match self.op {
            Op::Set => ("set", None),
            Op::Generation(n) => ("generation", Some(n)),
            Op::Restore(n) => ("restore", Some(n)),
            Op::Keep => ("keep", None),
        };
        let mut args = vec![
            op.to_owned(),
            self.path.to_string(),
            self.goal.as_str().to_owned(),
        ];
        args.extend(number.map(|n| n.to_string()));
        args
    }

    /// Reads back what [`Change::args`] wrote (space-separated, as in a deployment's
    /// `previous` file); `None` for anything else.
    pub(super) fn parse(text: &str) -> Option<Change> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |n: &str| n.parse::<u32>().ok();
        let (op, path, goal) = match words.as_slice() {
            ["set", path, goal] => (Op::Set, path, goal),
            ["keep", path, goal] => (Op::Keep, path, goal),
            ["generation", path, goal, n] => (Op::Generation(number(n)?), path, goal),
            ["restore", path, goal, n] => (Op::Restore(number(n)?), path, goal),
            _ => return None,
        };
        let goal = [Goal::Switch, Goal::Boot, Goal::Test]
            .into_iter()
            .find(|g| g.as_str() == *goal)?;
        Some(Change {
            op,
            path: StorePath::new(*path).ok()?,
            goal,
        })
    }
}

/// What a job is for: its name on the host (the unit is `hbdeploy-NAME-TOKEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// `apply`'s activation.
    Activate,
    /// The automatic restore after a failed activation or health check.
    Restore,
    /// `hbdeploy rollback`.
    Rollback,
}

impl JobKind {
    fn name(self) -> &'static str {
        match self {
            JobKind::Activate => "activate",
            JobKind::Restore => "restore",
            JobKind::Rollback => "rollback",
        }
    }
}

/// What became of a job.
#[derive(Debug)]
pub(crate) struct JobOutcome {
    /// How `switch-to-configuration` ended; `Unknown` when the job ended without saying.
    pub exit: Exit,
    /// The profile's generation after the job moved it.
    pub generation: Option<u32>,
    /// Moving the profile failed (nothing was activated).
    pub profile_failed: bool,
    /// A restore left the profile alone because it had moved since the deployment (it points
    /// at this link); nothing was activated.
    pub profile_moved: Option<String>,
    /// The last lines of output.
    pub tail: Vec<String>,
}

/// Magic rollback's watchdog, as armed by [`Deployment::start`]: it starts the activation once
/// armed, and unless the deployer decides first, it applies `restore` once `confirm` has passed
/// since the activation ended, or once `activation` has passed since arming with the activation
/// still running (stopped first).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arm<'a> {
    pub confirm: Duration,
    pub activation: Duration,
    pub restore: &'a Change,
}

impl Arm<'_> {
    /// `watchdog.sh`'s arguments after DIR and JOB, up to the job it starts: CONFIRM ACTIVATION
    /// and the restore as `switch.sh` takes it, its NUMBER always there (`-` for none).
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.confirm.as_secs().max(1).to_string(),
            self.activation.as_secs().max(1).to_string(),
        ];
        let mut restore = self.restore.args();
        if restore.len() == 3 {
            restore.push("-".to_owned());
        }
        args.extend(restore);
        args
    }
}

/// Whether `launch.sh` follows a job's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Starts the job and follows it to its end.
    Yes,
    /// Starts magic rollback's watchdog, which starts the job once armed; follows the job.
    Watched,
    /// Follows a job started earlier.
    Only,
}

/// How far [`Deployment::start`] got, kept outside it: when the watchdog was armed and when the
/// job was started, as their markers arrived (a timeout that drops the start still needs them).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    armed: OnceLock<Instant>,
    started: OnceLock<Instant>,
}

impl Progress {
    /// When the host said the watchdog was armed.
    pub(crate) fn armed(&self) -> Option<Instant> {
        self.armed.get().copied()
    }

    /// When the host said the job was being started.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started.get().copied()
    }
}

/// What `prepare.sh` printed before the job it starts: `nixos`, `not-nixos` or `missing`; where
/// the watchdog starts the job, `hbdeploy-launched` once it is armed and has started it (else
/// why not); then `hbdeploy-starting`.
#[derive(Debug)]
struct Preamble<'p> {
    /// Noted when the watchdog is armed.
    armed_note: Option<String>,
    progress: &'p Progress,
    missing: bool,
    not_nixos: bool,
    /// Anything else it printed (a failed watchdog launch says why); the last lines only.
    lines: Vec<String>,
    /// `hbdeploy-starting` came: what follows is the job's.
    done: bool,
}

impl<'p> Preamble<'p> {
    fn new(armed_note: Option<String>, progress: &'p Progress) -> Preamble<'p> {
        Preamble {
            armed_note,
            progress,
            missing: false,
            not_nixos: false,
            lines: Vec::new(),
            done: false,
        }
    }

    fn line(&mut self, text: &str, host: &str, events: &EventSender) {
        match text {
            "nixos" => {}
            "not-nixos" => self.not_nixos = true,
            "missing" => self.missing = true,
            "hbdeploy-launched" => {
                // Set once: a second marker could only repeat it.
                let _ = self.progress.armed.set(Instant::now());
                if let Some(note) = self.armed_note.take() {
                    events.note(host, note);
                }
            }
            "hbdeploy-starting" => {
                let _ = self.progress.started.set(Instant::now());
                self.done = true;
            }
            other => {
                if self.lines.len() == 20 {
                    self.lines.remove(0);
                }
                self.lines.push(other.to_owned());
            }
        }
    }
}

/// Whether systemd leaves `arg` alone on a unit's command line.
fn unit_safe(arg: &str) -> bool {
    !arg.contains(['$', '%'])
}

/// One deployment's directory and jobs on a host.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    dir: String,
    systemd: bool,
}

impl Deployment {
    /// `token` must be the hex token of `safe::new_token`.
    pub(crate) fn new(token: &str, systemd: bool) -> Deployment {
        Deployment {
            dir: format!("{RUN_DIR}/{token}"),
            systemd,
        }
    }

    /// Writes the job scripts again into the directory of a deployment of an earlier boot
    /// (gone with the reboot), with the generation it made, so that its restore can run.
    pub(crate) async fn reinstall(
        &self,
        conn: &impl Host,
        made: Option<&str>,
    ) -> Result<(), HostError> {
        let files = made
            .map(|link| vec![("generation".to_owned(), format!("{link}\n"))])
            .unwrap_or_default();
        self.install_files(conn, files).await
    }

    /// Writes the job scripts and `files` (name, content) into the deployment's directory.
    async fn install_files(
        &self,
        conn: &impl Host,
        files: Vec<(String, String)>,
    ) -> Result<(), HostError> {
        let mut args = vec![self.dir.clone()];
        for (name, content) in self.files().into_iter().chain(files) {
            args.push(name);
            args.push(content);
        }
        let command = Script::Install.command(&args);
        let output = step(
            Stage::Activate,
            "writing hbdeploy's job scripts",
            conn.run_root(&command, |_| {}),
        )
        .await?;
        if output.exit.success() {
            return Ok(());
        }
        Err(HostError::Remote {
            command: format!("writing hbdeploy's job scripts to {}", self.dir),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        })
    }

    /// Starts `change` as the job `kind` in one round trip (`prepare.sh`) and follows it to its
    /// end: refuses the change's path unless it is a NixOS system in the host's store, writes
    /// the job scripts and the change that puts the host back as it is now (`restore`; `None`:
    /// nothing to go back to), which settling applies if it has to stop this deployment's job,
    /// launches the job (with `arm`, the watchdog does once it is armed: noted, and its time
    /// kept in `progress`) and streams its output (without hbdeploy's markers).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start<H: Host>(
        &self,
        (conn, lock): (&H, Option<&Lock<H>>),
        host: &str,
        kind: JobKind,
        change: &Change,
        restore: Option<&Change>,
        arm: Option<Arm<'_>>,
        events: &EventSender,
        progress: &Progress,
    ) -> Result<JobOutcome, HostError> {
        let mut files = self.files();
        files.push((
            "previous".to_owned(),
            format!("{}\n", Before::record(restore)),
        ));
        files.push((
            Script::Launch.file().to_owned(),
            Script::Launch.text().to_owned(),
        ));
        let mut args = vec![
            change.path.to_string(),
            self.dir.clone(),
            files.len().to_string(),
        ];
        for (name, content) in files {
            args.push(name);
            args.push(content);
        }
        args.extend(match &arm {
            // The watchdog starts the job once armed: `watchdog.sh`'s arguments end with the
            // job's, as `run.sh` takes them.
            Some(arm) => {
                let mut watched = arm.args();
                watched.push(kind.name().to_owned());
                watched.push(Script::Switch.file().to_owned());
                watched.extend(change.args());
                self.launch_args(kind.name(), Follow::Watched, Script::Watchdog, &watched)
            }
            None => self.launch_args(kind.name(), Follow::Yes, Script::Switch, &change.args()),
        });
        let armed_note = arm.as_ref().map(|arm| {
            format!(
                "magic rollback armed ({}s to confirm once the activation has ended)",
                arm.confirm.as_secs()
            )
        });
        let mut preamble = Preamble::new(armed_note, progress);
        let result = self
            .stream(
                (conn, lock),
                host,
                kind,
                (Script::Prepare, &args),
                Some(&mut preamble),
                events,
            )
            .await;
        if preamble.missing {
            return Err(HostError::NotInStore {
                path: change.path.clone(),
            });
        }
        if preamble.not_nixos {
            return Err(HostError::NotNixos {
                path: change.path.clone(),
            });
        }
        match result {
            Err(HostError::Remote { exit, tail, .. }) if !preamble.done => Err(HostError::Remote {
                command: if arm.is_some() && progress.armed().is_none() {
                    "arming the magic-rollback watchdog".to_owned()
                } else {
                    format!("writing hbdeploy's job scripts to {}", self.dir)
                },
                exit,
                tail: preamble.lines.into_iter().chain(tail).collect(),
            }),
            other => other,
        }
    }

    /// The job scripts, as (file, content).
    fn files(&self) -> Vec<(String, String)> {
        [Script::Run, Script::Stop, Script::Switch, Script::Watchdog]
            .into_iter()
            .map(|s| (s.file().to_owned(), s.text().to_owned()))
            .collect()
    }

    /// `launch.sh`'s arguments for `job` running `script` with `args` (run.sh puts the
    /// deployment's directory and the job's name before them).
    fn launch_args(
        &self,
        job: &str,
        follow: Follow,
        script: Script,
        args: &[String],
    ) -> Vec<String> {
        let mut all = vec![
            self.dir.clone(),
            job.to_owned(),
            if self.systemd { "1" } else { "0" }.to_owned(),
            match follow {
                Follow::Yes => "1",
                Follow::Only => "2",
                Follow::Watched => "3",
            }
            .to_owned(),
            script.file().to_owned(),
        ];
        all.extend(args.iter().cloned());
        debug_assert!(all.iter().all(|a| unit_safe(a)), "{all:?}");
        all
    }

    /// Runs `change` as the detached job `kind`, streaming its output (without hbdeploy's
    /// markers) until it ends.
    pub(crate) async fn run(
        &self,
        conn: &impl Host,
        host: &str,
        kind: JobKind,
        change: &Change,
        events: &EventSender,
    ) -> Result<JobOutcome, HostError> {
        self.launched(conn, host, (kind, Follow::Yes), &change.args(), events)
            .await
    }

    /// Follows the job `kind` already started, from the last lines of its log until it ends:
    /// after the connection that started it was lost.
    pub(crate) async fn follow(
        &self,
        conn: &impl Host,
        host: &str,
        kind: JobKind,
        events: &EventSender,
    ) -> Result<JobOutcome, HostError> {
        self.launched(conn, host, (kind, Follow::Only), &[], events)
            .await
    }

    /// `launch.sh` for the job `kind` (`switch.sh` with `args`), as `follow` says, on a channel
    /// of its own (no lock is held), streamed until the job ends.
    async fn launched(
        &self,
        conn: &impl Host,
        host: &str,
        (kind, follow): (JobKind, Follow),
        args: &[String],
        events: &EventSender,
    ) -> Result<JobOutcome, HostError> {
        let args = self.launch_args(kind.name(), follow, Script::Switch, args);
        let script = (Script::Launch, args.as_slice());
        self.stream((conn, None), host, kind, script, None, events)
            .await
    }

    /// Runs `script` with `args` (`launch.sh`, following; or `prepare.sh` with a `preamble` for
    /// the lines it prints before the job starts), passing the job's output on, until it ends;
    /// under a deployment `lock`, its holder runs it ([`Script::asked`]).
    async fn stream<H: Host>(
        &self,
        (conn, lock): (&H, Option<&Lock<H>>),
        host: &str,
        kind: JobKind,
        (script, args): (Script, &[String]),
        mut preamble: Option<&mut Preamble<'_>>,
        events: &EventSender,
    ) -> Result<JobOutcome, HostError> {
        let mut outcome = JobOutcome {
            exit: Exit::Unknown,
            generation: None,
            profile_failed: false,
            profile_moved: None,
            tail: Vec::new(),
        };
        let mut launch_failed = None;
        let mut tail: VecDeque<String> = VecDeque::new();
        // The job's output is streamed, not parsed (its markers are seen line by line): only
        // its last lines are kept, however much it prints.
        let on_line = |line: &OutputLine| {
            if let Some(preamble) = preamble.as_deref_mut().filter(|p| !p.done) {
                preamble.line(&line.text, host, events);
                return;
            }
            match JobLine::parse(&line.text) {
                JobLine::Generation(n) => outcome.generation = n,
                JobLine::Exit(exit) => outcome.exit = exit,
                JobLine::ProfileFailed(exit) => {
                    outcome.profile_failed = true;
                    outcome.exit = exit;
                }
                JobLine::ProfileMoved(link) => outcome.profile_moved = Some(link.to_owned()),
                JobLine::LaunchFailed(why) => launch_failed = Some(why.to_owned()),
                JobLine::Settled { .. }
                | JobLine::Undecided { .. }
                | JobLine::Pending { .. }
                | JobLine::Output(_) => {
                    events.output(Some(host), Stage::Activate, &line.text);
                    if tail.len() == 20 {
                        tail.pop_front();
                    }
                    tail.push_back(line.text.clone());
                }
            }
        };
        let output = match Lock::holder_of(lock).await {
            Some(mut held) => {
                let command = script.asked(args);
                conn.ask(&mut held, &command, &[], false, on_line).await
            }
            None => conn.stream_root(&script.command(args), on_line).await,
        };
        let output = output.map_err(channel_error(Stage::Activate))?;
        outcome.tail = tail.into_iter().collect();
        let unstarted = preamble.is_some_and(|p| !p.done);
        // The session ended without an exit status or the job's own end: it was cut (e.g. the
        // new system killed the session's sshd), not the job, which runs on, detached (if it
        // was started: cut before, nothing started it).
        if launch_failed.is_none()
            && matches!(output.exit, Exit::Unknown)
            && matches!(outcome.exit, Exit::Unknown)
            && outcome.profile_moved.is_none()
        {
            return Err(HostError::JobLost {
                job: kind.name(),
                tail: outcome.tail,
            });
        }
        if unstarted || launch_failed.is_some() || !output.exit.success() {
            return Err(HostError::Remote {
                command: format!("starting hbdeploy's {} job", kind.name()),
                exit: output.exit.clone(),
                tail: launch_failed.into_iter().chain(outcome.tail).collect(),
            });
        }
        Ok(outcome)
    }

    /// Stops the job `kind` if it still runs (its unit and its process group).
    pub(crate) async fn stop(&self, conn: &impl Host, kind: JobKind) -> Result<(), HostError> {
        let output = conn
            .run_root(
                &Script::Stop.command(&[self.dir.as_str(), kind.name()]),
                |_| {},
            )
            .await
            .map_err(channel_error(Stage::Activate))?;
        if output.exit.success() {
            return Ok(());
        }
        Err(HostError::Remote {
            command: format!("stopping hbdeploy's {} job", kind.name()),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        })
    }

    /// `decide.sh`'s command line: claims the decision whatever became of the activation.
    /// Claims the decision (`decide.sh`; the watchdog then no longer acts) or, with
    /// `confirm_after`, confirms once that job ended with success; either way answers what was
    /// decided. `what` names the step in a timeout.
    pub(crate) async fn decide(
        &self,
        conn: &impl Host,
        confirm_after: Option<JobKind>,
        stage: Stage,
        what: &str,
    ) -> Result<super::Decision, HostError> {
        let command = match confirm_after {
            None => self.decide_command(),
            Some(after) => self.confirm_command(after),
        };
        let output = step(stage, what, conn.run_root(&command, |_| {})).await?;
        Ok(super::Decision::parse(&output.stdout))
    }

    fn decide_command(&self) -> String {
        Script::Decide.command(&[self.dir.as_str()])
    }

    /// `decide.sh`'s command line that confirms only once the job `after` ended with success.
    fn confirm_command(&self, after: JobKind) -> String {
        Script::Decide.command(&[self.dir.as_str(), after.name()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";

    #[test]
    fn unit_command_lines_hold_nothing_systemd_expands() {
        let deployment = Deployment::new("0123abcd0123abcd", true);
        let change = Change {
            op: Op::Restore(4),
            path: StorePath::new(A).expect("valid"),
            goal: Goal::Switch,
        };
        assert_eq!(change.args(), ["restore", A, "switch", "4"]);
        for arg in change.args() {
            assert!(unit_safe(&arg), "{arg}");
        }
        assert!(!unit_safe("${cur#system-}") && !unit_safe("100%"));
        let arm = Arm {
            confirm: Duration::from_secs(30),
            activation: Duration::from_secs(600),
            restore: &change,
        };
        let launch = Script::Launch.command(&deployment.launch_args(
            "activate",
            Follow::Watched,
            Script::Watchdog,
            &arm.args(),
        ));
        assert!(
            launch.ends_with(&format!(
                " hbdeploy /run/hbdeploy/0123abcd0123abcd activate 1 3 watchdog.sh 30 600 restore {A} switch 4"
            )),
            "{launch}"
        );
    }
}
