//! The host port: what orchestration asks of a host and of the way to it, and nothing more.
//!
//! [`Host`] runs the remote protocol's command lines on one session with the host (as the login
//! user or as root, collected or streamed, or held open like the lock) and ends the session.
//! [`Dial`] opens sessions; [`Transport`] adds what comes from the workstation's store. The real
//! ones are the SSH connection ([`hbdeploy_ssh::Connection`]) or, for a host whose address is
//! `local`, the machine hbdeploy runs on ([`hbdeploy_ssh::Local`]), one [`Link`] either way,
//! opened by [`Reach`]; and `transfer::SshCopy`, which pairs it with the nix wrapper (and has
//! nothing to send to this machine: its store is the one the system was built in). The deployment's decisions
//! (confirming, restoring, following a lost session) are written against the traits, so unit
//! tests drive them with a fake host (`fake.rs`) in milliseconds.

use std::future::Future;
use std::path::Path;

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{CommandOutput, Connection, Held, Local, OutputLine, Session, SshError, Target};

use crate::event::EventSender;
use crate::report::CopyStats;
use crate::{HostError, HostPlan};

/// One session with a host.
pub trait Host: Send + Sync + Sized + 'static {
    /// What keeps a held command (the deployment lock) running; it ends when released or when
    /// the session ends.
    type Held: Send + 'static;

    /// Runs `command` as the login user; each output line goes to `on_line` as it arrives. A
    /// non-zero exit is in the output, not an error.
    fn run<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Runs `command` as the login user with `stdin` as its standard input, then end of input:
    /// for input of any size, which a command line could not carry.
    fn run_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Runs `command` as root (escalating as the host's settings say).
    fn run_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Like [`Host::run_root`] for output that is followed, not parsed: only its tail is kept.
    fn stream_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Runs `command` as root with `stdin` as its standard input (after the escalation
    /// command's password, where it wants one), then end of input.
    fn run_root_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Whether the session has ended (the host closed it, or it broke).
    fn is_closed(&self) -> bool;

    /// Starts `command` as root and returns its first line, keeping the command running (and
    /// so whatever it holds) until released; `None` when it ended at once.
    fn hold_root(
        &self,
        command: &str,
    ) -> impl Future<Output = Result<(String, Option<Self::Held>), SshError>> + Send;

    /// Ends a held command.
    fn release(held: Self::Held) -> impl Future<Output = ()> + Send;

    /// Runs `command` as root in `held`, a held command that serves requests (the lock's
    /// holder, `lock.sh`), with `stdin` as its input: no channel or login shell of its own.
    /// With `keep_stdout` false only the output's tail is kept ([`Host::stream_root`]).
    fn ask<F: FnMut(&OutputLine) + Send>(
        &self,
        held: &mut Self::Held,
        command: &str,
        stdin: &[u8],
        keep_stdout: bool,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;

    /// Whether `held` takes a request ([`Host::ask`]): none was left unanswered.
    fn can_ask(held: &Self::Held) -> bool;

    /// Ends the session.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A held lock on a host. Released explicitly, or when the connection ends for any reason.
/// Its holder also runs the steps under it that ask it to ([`Lock::holder`]). Taken by
/// `safe::lock`.
pub struct Lock<H: Host>(tokio::sync::Mutex<Option<H::Held>>);

impl<H: Host> Lock<H> {
    pub(crate) fn new(held: Option<H::Held>) -> Lock<H> {
        Lock(tokio::sync::Mutex::new(held))
    }

    /// Lets other deployments at the host again.
    pub async fn release(self) {
        if let Some(held) = self.0.into_inner() {
            H::release(held).await;
        }
    }

    /// The lock's holder, to run a step under the lock as root without a channel of its own
    /// ([`Host::ask`]), one step at a time; `None` when it cannot take one (the lock command
    /// ended at once, or an earlier step was left unanswered).
    pub(crate) async fn holder(&self) -> Option<tokio::sync::MappedMutexGuard<'_, H::Held>> {
        let guard = self.0.lock().await;
        tokio::sync::MutexGuard::try_map(guard, |held| held.as_mut().filter(|h| H::can_ask(h))).ok()
    }

    /// [`Lock::holder`] of `lock`, where a step runs under one; `None` without a lock.
    pub(crate) async fn holder_of(
        lock: Option<&Lock<H>>,
    ) -> Option<tokio::sync::MappedMutexGuard<'_, H::Held>> {
        match lock {
            Some(lock) => lock.holder().await,
            None => None,
        }
    }
}

/// The way to hosts: new sessions.
pub trait Dial: Send + Sync + 'static {
    /// A session this opens.
    type Host: Host;

    /// Opens a new session (a fresh connection, handshake and login).
    fn connect(&self, target: &Target)
    -> impl Future<Output = Result<Self::Host, SshError>> + Send;
}

/// The way to hosts for a deployment: sessions, and closures sent from the workstation's store.
pub trait Transport: Dial {
    /// Whether `path`, in the workstation's store, is a NixOS system (it has
    /// `bin/switch-to-configuration`): what is not is refused before anything is copied.
    fn is_system(&self, path: &StorePath) -> bool;

    /// Sends what `host` lacks of the closure of `path`, signed with `signing_key` when set;
    /// under the deployment `lock`, its holder checks what the host lacks.
    fn copy_closure(
        &self,
        host: &Self::Host,
        lock: Option<&Lock<Self::Host>>,
        plan: &HostPlan,
        path: &StorePath,
        signing_key: Option<&Path>,
        events: &EventSender,
    ) -> impl Future<Output = Result<CopyStats, HostError>> + Send;

    /// Sends the derivation `drv` (and its inputs' derivations) to `host`, to be built there.
    fn copy_derivation(
        &self,
        host: &Self::Host,
        plan: &HostPlan,
        drv: &StorePath,
        events: &EventSender,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
}

impl Host for Connection {
    type Held = Held;

    fn run<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        Connection::run(self, command, on_line)
    }

    fn run_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        Connection::run_with_stdin(self, command, stdin, on_line)
    }

    fn run_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        Connection::run_root(self, command, on_line)
    }

    fn stream_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        Connection::stream_root(self, command, on_line)
    }

    fn run_root_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        Connection::run_root_with_stdin(self, command, stdin, on_line)
    }

    fn is_closed(&self) -> bool {
        Connection::is_closed(self)
    }

    fn hold_root(
        &self,
        command: &str,
    ) -> impl Future<Output = Result<(String, Option<Held>), SshError>> + Send {
        Connection::hold_root(self, command)
    }

    fn release(held: Held) -> impl Future<Output = ()> + Send {
        held.release()
    }

    fn ask<F: FnMut(&OutputLine) + Send>(
        &self,
        held: &mut Held,
        command: &str,
        stdin: &[u8],
        keep_stdout: bool,
        on_line: F,
    ) -> impl Future<Output = Result<CommandOutput, SshError>> + Send {
        held.ask(command, stdin, keep_stdout, on_line)
    }

    fn can_ask(held: &Held) -> bool {
        held.can_ask()
    }

    fn close(self) -> impl Future<Output = ()> + Send {
        Connection::close(self)
    }
}

/// A session with a host: an SSH connection, or the machine hbdeploy runs on itself
/// (`address = "local"`), where the same command lines run without SSH.
#[derive(Debug)]
pub enum Link {
    /// Over SSH.
    Ssh(Connection),
    /// This machine.
    Local(Local),
}

impl Link {
    /// The host this session reaches.
    pub fn target(&self) -> &Target {
        match self {
            Link::Ssh(conn) => conn.target(),
            Link::Local(local) => local.target(),
        }
    }
}

impl Host for Link {
    type Held = Held;

    async fn run<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Link::Ssh(conn) => conn.run(command, on_line).await,
            Link::Local(local) => local.run(command, on_line).await,
        }
    }

    async fn run_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Link::Ssh(conn) => conn.run_with_stdin(command, stdin, on_line).await,
            Link::Local(local) => local.run_with_stdin(command, stdin, on_line).await,
        }
    }

    async fn run_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Link::Ssh(conn) => conn.run_root(command, on_line).await,
            Link::Local(local) => local.run_root(command, on_line).await,
        }
    }

    async fn stream_root<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Link::Ssh(conn) => conn.stream_root(command, on_line).await,
            Link::Local(local) => local.stream_root(command, on_line).await,
        }
    }

    async fn run_root_with_stdin<F: FnMut(&OutputLine) + Send>(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        match self {
            Link::Ssh(conn) => conn.run_root_with_stdin(command, stdin, on_line).await,
            Link::Local(local) => local.run_root_with_stdin(command, stdin, on_line).await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Link::Ssh(conn) => conn.is_closed(),
            // Nothing stands between hbdeploy and its own machine.
            Link::Local(_) => false,
        }
    }

    async fn hold_root(&self, command: &str) -> Result<(String, Option<Held>), SshError> {
        match self {
            Link::Ssh(conn) => conn.hold_root(command).await,
            Link::Local(local) => local.hold_root(command).await,
        }
    }

    async fn release(held: Held) {
        held.release().await;
    }

    async fn ask<F: FnMut(&OutputLine) + Send>(
        &self,
        held: &mut Held,
        command: &str,
        stdin: &[u8],
        keep_stdout: bool,
        on_line: F,
    ) -> Result<CommandOutput, SshError> {
        held.ask(command, stdin, keep_stdout, on_line).await
    }

    fn can_ask(held: &Held) -> bool {
        held.can_ask()
    }

    async fn close(self) {
        match self {
            Link::Ssh(conn) => conn.close().await,
            Link::Local(_) => {}
        }
    }
}

/// Sessions with the fleet's hosts, made with the run's credentials: an SSH [`Connection`] each,
/// or, for a host whose address is `local`, this machine ([`Local`]).
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The run's credentials, shared by every session.
    pub session: Session,
}

impl Reach {
    /// Sessions with the run's credentials `session`.
    pub fn with(session: &Session) -> Reach {
        Reach {
            session: session.clone(),
        }
    }
}

impl Dial for Reach {
    type Host = Link;

    async fn connect(&self, target: &Target) -> Result<Link, SshError> {
        if target.is_local() {
            return Ok(Link::Local(Local::open(target, &self.session)));
        }
        Connection::connect(target, &self.session)
            .await
            .map(Link::Ssh)
    }
}
