//! A fake host for unit tests of the deployment's decisions. It answers the remote protocol's
//! scripts from a model of one host — its profile's generations, the running system, each
//! deployment's activation and watchdog — instead of running them, so that confirming,
//! restoring, stopping and following a lost session run in milliseconds (with tokio's paused
//! clock, the watchdog's windows pass at once). What the scripts do on a real host is tested by
//! the lab; this model only has to answer as they answer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{CommandOutput, Exit, OutputLine, SshError, Stream, Target};
use tokio::time::Instant;

use crate::event::EventSender;
use crate::port::{Dial, Host, Transport};
use crate::remote::{Script, quote};
use crate::report::CopyStats;
use crate::{HostError, HostPlan};

/// What goes wrong on the fake host.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// `switch-to-configuration` of a new system exits 1 (the profile was set first).
    pub fail_activation: bool,
    /// The activation never ends until it is stopped.
    pub hang_activation: bool,
    /// The session that started the activation breaks; the activation itself ends well.
    pub cut_session: bool,
    /// As `cut_session`, but before any of the starting script's answer arrives: the deployer
    /// never hears whether the watchdog was armed.
    pub cut_silently: bool,
    /// While the host runs anything but its first generation's system (the new system broke
    /// sshd), it accepts no new connection.
    pub unreachable_on_new_system: bool,
    /// Command health checks exit 1.
    pub unhealthy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Running,
    Ended(u32),
    Stopped,
}

#[derive(Debug)]
struct Armed {
    armed_at: Instant,
    confirm: Duration,
    activation: Duration,
    restore: Vec<String>,
}

#[derive(Debug, Default)]
struct Deployment {
    armed: Option<Armed>,
    activation: Option<(Job, Instant)>,
    decided: Option<String>,
}

/// The host's state, shared by every session with it.
#[derive(Debug)]
pub(crate) struct World {
    /// The profile's generations: number → system.
    pub generations: BTreeMap<u32, String>,
    /// The generation the profile points at.
    pub profile: u32,
    /// `/run/current-system`.
    pub running: String,
    /// Whether the host runs systemd.
    pub systemd: bool,
    pub faults: Faults,
    /// What happened, a word or two per step, in order.
    pub log: Vec<String>,
    /// Sessions opened.
    pub connections: usize,
    /// The scripts run on the host, one per round trip on a channel of its own, in order (the
    /// user's own commands and health checks' command lines as `-`).
    pub round_trips: Vec<&'static str>,
    /// The scripts run by the lock's holder ([`Host::ask`]), in order.
    pub asked: Vec<&'static str>,
    deployments: HashMap<String, Deployment>,
}

impl World {
    /// A host on generation 1, running `system`.
    pub(crate) fn running(system: &str) -> Arc<Mutex<World>> {
        Arc::new(Mutex::new(World {
            generations: BTreeMap::from([(1, system.to_owned())]),
            profile: 1,
            running: system.to_owned(),
            systemd: true,
            faults: Faults::default(),
            log: Vec::new(),
            connections: 0,
            round_trips: Vec::new(),
            asked: Vec::new(),
            deployments: HashMap::new(),
        }))
    }

    /// An earlier deployment (`dir`) whose watchdog was armed and never decided: its deployer
    /// died before confirming.
    pub(crate) fn left_undecided(&mut self, dir: &str) {
        let armed = Armed {
            armed_at: Instant::now(),
            confirm: Duration::from_secs(3600),
            activation: Duration::from_secs(3600),
            restore: Vec::new(),
        };
        let deployment = Deployment {
            armed: Some(armed),
            activation: Some((Job::Running, Instant::now())),
            decided: None,
        };
        self.deployments.insert(dir.to_owned(), deployment);
    }

    fn state(&self) -> String {
        let mut text = format!(
            "link /run/current-system {}\nprofile system-{}-link\n",
            self.running, self.profile
        );
        for (number, path) in &self.generations {
            text.push_str(&format!(
                "gen /nix/var/nix/profiles/system-{number}-link 1700000000 {path}\n"
            ));
        }
        if self.systemd {
            text.push_str("systemd\n");
        }
        text
    }

    /// Applies a change's arguments (`switch.sh`'s): returns the lines of its job and its exit.
    fn apply(&mut self, args: &[String], activation: bool) -> (Vec<String>, u32) {
        let mut lines = Vec::new();
        match args {
            [op, path, goal, rest @ ..] => {
                match (op.as_str(), rest) {
                    ("set", []) => {
                        let next = self.generations.keys().max().map_or(1, |n| n + 1);
                        self.generations.insert(next, path.clone());
                        self.profile = next;
                    }
                    ("restore", [number]) => {
                        let number: u32 = number.parse().unwrap_or(0);
                        let newer: Vec<u32> = self
                            .generations
                            .keys()
                            .copied()
                            .filter(|n| *n > number)
                            .collect();
                        for n in newer {
                            self.generations.remove(&n);
                        }
                        self.profile = number;
                    }
                    _ => {}
                }
                lines.push(format!("hbdeploy-generation:system-{}-link", self.profile));
                if activation && self.faults.fail_activation {
                    lines.push("switch-to-configuration: a unit failed".to_owned());
                    return (lines, 1);
                }
                if goal != "boot" {
                    self.running = path.clone();
                }
                (lines, 0)
            }
            _ => (vec!["bad arguments".to_owned()], 2),
        }
    }

    /// A watchdog whose time has come acts before anyone else is answered.
    pub(crate) fn run_watchdogs(&mut self) {
        let now = Instant::now();
        let mut restores = Vec::new();
        for (dir, deployment) in &mut self.deployments {
            let (Some(armed), None) = (&deployment.armed, &deployment.decided) else {
                continue;
            };
            let fire = match deployment.activation {
                Some((Job::Ended(_), ended)) => now >= ended + armed.confirm,
                Some((Job::Running, _)) => now >= armed.armed_at + armed.activation,
                Some((Job::Stopped, _)) | None => false,
            };
            if fire {
                let timeout = matches!(deployment.activation, Some((Job::Running, _)));
                if timeout {
                    deployment.activation = Some((Job::Stopped, now));
                }
                deployment.decided = Some(
                    if timeout {
                        "rolled-back:activation-timeout"
                    } else {
                        "rolled-back"
                    }
                    .to_owned(),
                );
                restores.push((dir.clone(), armed.restore.clone()));
            }
        }
        for (dir, restore) in restores {
            self.log.push(format!("watchdog restores {dir}"));
            self.apply(&restore, false);
        }
    }
}

/// A session with the fake host.
#[derive(Debug)]
pub(crate) struct FakeHost {
    world: Arc<Mutex<World>>,
}

/// Opens sessions with the fake host; copies succeed at once.
#[derive(Debug, Clone)]
pub(crate) struct FakeTransport {
    pub world: Arc<Mutex<World>>,
}

fn lock(world: &Arc<Mutex<World>>) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn broken(command: &str) -> SshError {
    SshError::Channel {
        target: "fake".to_owned(),
        command: command.to_owned(),
        source: None,
    }
}

/// The words of a command line as `sh` reads them (single quotes and backslashes only: all
/// that [`quote`] writes).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                started = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                started = true;
                word.extend(chars.next());
            }
            ' ' => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Which script a command line runs, and its arguments: `sh -c SCRIPT hbdeploy ARG…`, or as a
/// lock's holder is asked to run a script without a host limit ([`Script::asked`]), `set --
/// ARG…`, a newline, then the script's text.
fn script_of(command: &str) -> Option<(Script, Vec<String>)> {
    if let Some(rest) = command.strip_prefix("set --") {
        return Script::ALL.into_iter().find_map(|script| {
            let args = rest.strip_suffix(script.text())?.strip_suffix('\n')?;
            Some((script, words(args)))
        });
    }
    Script::ALL
        .into_iter()
        .filter_map(|script| {
            let text = format!("sh -c {} hbdeploy", quote(script.text()));
            let at = command.find(&text)?;
            Some((at, script, at + text.len()))
        })
        .min_by_key(|(at, ..)| *at)
        .map(|(_, script, end)| (script, words(&command[end..])))
}

fn output(code: u32, lines: Vec<String>, on_line: &mut impl FnMut(&OutputLine)) -> CommandOutput {
    let mut stdout = String::new();
    let mut tail = Vec::new();
    for text in lines {
        let line = OutputLine {
            stream: Stream::Stdout,
            text,
        };
        on_line(&line);
        stdout.push_str(&line.text);
        stdout.push('\n');
        tail.push(line);
    }
    CommandOutput {
        exit: Exit::Code(code),
        stdout,
        stdout_truncated: false,
        tail,
    }
}

impl FakeHost {
    async fn answer(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine) + Send,
    ) -> Result<CommandOutput, SshError> {
        self.answer_by(command, false, on_line).await
    }

    /// Answers `command`, run on a channel of its own or, `asked`, by the lock's holder.
    async fn answer_by(
        &self,
        command: &str,
        asked: bool,
        mut on_line: impl FnMut(&OutputLine) + Send,
    ) -> Result<CommandOutput, SshError> {
        let Some((script, args)) = script_of(command) else {
            // A health check's own command line is inside check.sh's arguments; anything else
            // is the user's own command.
            lock(&self.world).round_trips.push("-");
            return Ok(output(0, Vec::new(), &mut on_line));
        };
        let answer = {
            let mut world = lock(&self.world);
            world.run_watchdogs();
            if asked {
                world.asked.push(script.file());
            } else {
                world.round_trips.push(script.file());
            }
            self.script(&mut world, script, &args)
        };
        match answer {
            Answer::Now(code, lines) => Ok(output(code, lines, &mut on_line)),
            Answer::Cut(lines) => {
                output(0, lines, &mut on_line);
                Err(broken(command))
            }
            Answer::Hang(lines) => {
                output(0, lines, &mut on_line);
                std::future::pending::<()>().await;
                Err(broken(command))
            }
        }
    }

    fn script(&self, world: &mut World, script: Script, args: &[String]) -> Answer {
        match script {
            Script::State => {
                world.log.push("state".to_owned());
                Answer::Now(0, world.state().lines().map(str::to_owned).collect())
            }
            Script::Settle => {
                world.log.push("settle".to_owned());
                Answer::Now(0, Vec::new())
            }
            Script::Prepare => prepare(world, args),
            Script::Launch => launch(world, args),
            Script::Decide => decide(world, args),
            Script::Stop => {
                let dir = args.first().cloned().unwrap_or_default();
                world.log.push("stop".to_owned());
                if let Some(deployment) = world.deployments.get_mut(&dir) {
                    deployment.activation = Some((Job::Stopped, Instant::now()));
                }
                Answer::Now(0, Vec::new())
            }
            Script::Check => {
                world.log.push("check".to_owned());
                Answer::Now(u32::from(world.faults.unhealthy), Vec::new())
            }
            other => {
                world.log.push(format!("unexpected {}", other.file()));
                Answer::Now(0, Vec::new())
            }
        }
    }
}

/// An answer: whole, with an exit code; or these lines, then the session breaks or hangs.
enum Answer {
    Now(u32, Vec<String>),
    Cut(Vec<String>),
    Hang(Vec<String>),
}

/// `prepare.sh PATH DIR N (NAME CONTENT)×N JOB-LAUNCH...`: the job launch is the watchdog's
/// (`FOLLOW` 3: it arms, then starts the job) or the job's own.
fn prepare(world: &mut World, args: &[String]) -> Answer {
    let (Some(dir), Some(files)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        return Answer::Now(2, vec!["bad arguments".to_owned()]);
    };
    let launch_args = &args[(3 + 2 * files).min(args.len())..];
    let mut deployment = Deployment::default();
    let mut lines = vec!["nixos".to_owned()];
    // DIR JOB SYSTEMD 3 watchdog.sh CONFIRM ACTIVATION OP PATH GOAL NUMBER|- JOB SCRIPT ARGS...
    let job = match launch_args {
        [
            dir,
            _,
            systemd,
            follow,
            _,
            confirm,
            activation,
            op,
            path,
            goal,
            number,
            job,
            script,
            change @ ..,
        ] if follow == "3" => {
            let secs = |s: &String| Duration::from_secs(s.parse().unwrap_or(1));
            let mut restore = vec![op.clone(), path.clone(), goal.clone()];
            restore.extend((number != "-").then(|| number.clone()));
            deployment.armed = Some(Armed {
                armed_at: Instant::now(),
                confirm: secs(confirm),
                activation: secs(activation),
                restore,
            });
            world.log.push("armed".to_owned());
            lines.push("hbdeploy-launched".to_owned());
            let mut job_args = vec![dir.clone(), job.clone(), systemd.clone(), "1".to_owned()];
            job_args.push(script.clone());
            job_args.extend(change.iter().cloned());
            job_args
        }
        other => other.to_vec(),
    };
    world.deployments.insert(dir.clone(), deployment);
    lines.push("hbdeploy-starting".to_owned());
    let answer = launch(world, &job);
    if world.faults.cut_silently {
        world.faults.cut_silently = false;
        return Answer::Cut(Vec::new());
    }
    match answer {
        Answer::Now(code, more) => {
            lines.extend(more);
            Answer::Now(code, lines)
        }
        Answer::Cut(more) => {
            lines.extend(more);
            Answer::Cut(lines)
        }
        Answer::Hang(more) => {
            lines.extend(more);
            Answer::Hang(lines)
        }
    }
}

/// `launch.sh DIR JOB SYSTEMD FOLLOW SCRIPT ARGS...`.
fn launch(world: &mut World, args: &[String]) -> Answer {
    let [dir, job, _, follow, _, change @ ..] = args else {
        return Answer::Now(2, vec!["bad arguments".to_owned()]);
    };
    if follow == "2" {
        world.log.push(format!("follow {job}"));
        return match world.deployments.get(dir).and_then(|d| d.activation) {
            Some((Job::Ended(code), _)) => Answer::Now(
                0,
                vec![
                    format!("hbdeploy-generation:system-{}-link", world.profile),
                    format!("hbdeploy-exit:{code}"),
                ],
            ),
            _ => Answer::Hang(Vec::new()),
        };
    }
    world.log.push(format!("{job} {}", change.join(" ")));
    if job == "activate" && world.faults.hang_activation {
        if let Some(deployment) = world.deployments.get_mut(dir) {
            deployment.activation = Some((Job::Running, Instant::now()));
        }
        return Answer::Hang(Vec::new());
    }
    let (mut lines, code) = world.apply(change, job == "activate");
    if job == "activate"
        && let Some(deployment) = world.deployments.get_mut(dir)
    {
        deployment.activation = Some((Job::Ended(code), Instant::now()));
    }
    if job == "activate" && world.faults.cut_session {
        world.faults.cut_session = false;
        return Answer::Cut(Vec::new());
    }
    lines.push(format!("hbdeploy-exit:{code}"));
    Answer::Now(0, lines)
}

/// `decide.sh DIR [AFTER]`: claims the decision (no AFTER) or confirms once the
/// activation ended well; answers what was decided.
fn decide(world: &mut World, args: &[String]) -> Answer {
    let Some(deployment) = args.first().and_then(|dir| world.deployments.get_mut(dir)) else {
        return Answer::Now(0, vec!["gone".to_owned()]);
    };
    if let Some(decided) = &deployment.decided {
        return Answer::Now(0, vec![decided.clone()]);
    }
    let confirming = args.len() > 1;
    let answer = match (confirming, deployment.activation) {
        (false, _) | (true, Some((Job::Ended(0), _))) => {
            deployment.decided = Some("confirmed".to_owned());
            "confirmed".to_owned()
        }
        (true, Some((Job::Ended(code), _))) => format!("undecided:the activation exited {code}"),
        (true, _) => "undecided:the activation is still running".to_owned(),
    };
    let word = if confirming { "confirm" } else { "disarm" };
    world.log.push(format!("{word}: {answer}"));
    Answer::Now(0, vec![answer])
}

impl Host for FakeHost {
    type Held = ();

    async fn run<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer(command, on_line).await
    }

    async fn run_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        _stdin: &[u8],
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer(command, on_line).await
    }

    async fn run_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer(command, on_line).await
    }

    async fn stream_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer(command, on_line).await
    }

    async fn run_root_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        _stdin: &[u8],
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer(command, on_line).await
    }

    fn is_closed(&self) -> bool {
        false
    }

    /// `lock.sh HOLDER [STATE-SCRIPT]`: always locked; with the state script, whether
    /// anything of an earlier deployment may still act on the host (an armed watchdog not
    /// decided, an activation running) and the host's state, on one line as `lock.sh` answers.
    async fn hold_root(&self, command: &str) -> Result<(String, Option<()>), SshError> {
        let mut world = lock(&self.world);
        world.run_watchdogs();
        world.log.push("lock".to_owned());
        world.round_trips.push(Script::Lock.file());
        let reading = matches!(script_of(command), Some((Script::Lock, args)) if args.len() >= 2);
        if !reading {
            return Ok(("locked".to_owned(), Some(())));
        }
        let settle = world.deployments.values().any(|d| {
            (d.armed.is_some() && d.decided.is_none())
                || matches!(d.activation, Some((Job::Running, _)))
        });
        let state = world.state().lines().collect::<Vec<_>>().join("\t");
        let flag = if settle { "settle" } else { "clear" };
        Ok((format!("locked\t{flag}\t{state}"), Some(())))
    }

    async fn release((): ()) {}

    async fn ask<F: FnMut(&OutputLine) + Send>(
        &self,
        (): &mut (),
        command: &str,
        _stdin: &[u8],
        _keep_stdout: bool,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        self.answer_by(command, true, on_line).await
    }

    fn can_ask((): &()) -> bool {
        true
    }

    async fn close(self) {}
}

impl Dial for FakeTransport {
    type Host = FakeHost;

    async fn connect(&self, _target: &Target) -> Result<FakeHost, SshError> {
        let mut world = lock(&self.world);
        world.run_watchdogs();
        let first = world.generations.get(&1).cloned();
        if world.faults.unreachable_on_new_system && first.as_ref() != Some(&world.running) {
            world.log.push("connection refused".to_owned());
            return Err(SshError::Connect {
                target: "fake".to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            });
        }
        world.connections += 1;
        Ok(FakeHost {
            world: Arc::clone(&self.world),
        })
    }
}

impl Transport for FakeTransport {
    fn is_system(&self, _path: &StorePath) -> bool {
        true
    }

    async fn copy_closure(
        &self,
        _host: &FakeHost,
        _lock: Option<&crate::port::Lock<FakeHost>>,
        _plan: &HostPlan,
        _path: &StorePath,
        _signing_key: Option<&Path>,
        _events: &EventSender,
    ) -> Result<CopyStats, HostError> {
        lock(&self.world).log.push("copy".to_owned());
        Ok(CopyStats { sent: 3, total: 3 })
    }

    async fn copy_derivation(
        &self,
        _host: &FakeHost,
        _plan: &HostPlan,
        _drv: &StorePath,
        _events: &EventSender,
    ) -> Result<(), HostError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_read_back_into_their_script_and_arguments() {
        let command = Script::Decide.command(&["/run/hbdeploy/x", "1", "it's"]);
        let (script, args) = script_of(&command).expect("a script");
        assert_eq!(script, Script::Decide);
        assert_eq!(args, ["/run/hbdeploy/x", "1", "it's"]);
        // As a lock's holder is asked to run a script without a host limit.
        let asked = Script::Prepare.asked(&["/nix/store/x", "it's", "", "a\nb"]);
        assert!(asked.starts_with("set -- "), "{asked}");
        let (script, args) = script_of(&asked).expect("a script");
        assert_eq!(script, Script::Prepare);
        assert_eq!(args, ["/nix/store/x", "it's", "", "a\nb"]);
        // A script with a host limit keeps its `timeout`.
        assert_eq!(Script::Stop.asked(&["d"]), Script::Stop.command(&["d"]));
        assert!(Script::Stop.command(&["d"]).starts_with("timeout "));
        assert_eq!(words("a 'b c' d\\ e ''"), ["a", "b c", "d e", ""]);
    }
}
