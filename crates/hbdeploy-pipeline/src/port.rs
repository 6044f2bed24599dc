//! The host port: what orchestration asks of a host and of the way to it, and nothing more.
//!
//! [`Host`] runs the remote protocol's command lines on one session with the host (as the login
//! user or as root, collected or streamed, or held open like the lock) and ends the session.
//! [`Dial`] opens sessions; [`Transport`] adds what comes from the workstation's store. The real
//! ones are the SSH connection ([`hbdeploy_ssh::Connection`], opened by [`Ssh`]) and
//! `transfer::SshCopy`, which pairs it with the nix wrapper. The deployment's decisions
//! (confirming, restoring, following a lost session) are written against the traits, so unit
//! tests drive them with a fake host (`fake.rs`) in milliseconds.

use std::future::Future;
use std::path::Path;

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{CommandOutput, Connection, Held, OutputLine, Session, SshError, Target};

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

    /// Ends the session.
    fn close(self) -> impl Future<Output = ()> + Send;
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

    /// Sends what `host` lacks of the closure of `path`, signed with `signing_key` when set.
    fn copy_closure(
        &self,
        host: &Self::Host,
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

    fn close(self) -> impl Future<Output = ()> + Send {
        Connection::close(self)
    }
}

/// SSH sessions: a [`Connection`] each, made with the run's credentials.
#[derive(Debug, Clone, Default)]
pub struct Ssh {
    /// The run's credentials, shared by every connection.
    pub session: Session,
}

impl Ssh {
    /// SSH sessions with the run's credentials `session`.
    pub fn with(session: &Session) -> Ssh {
        Ssh {
            session: session.clone(),
        }
    }
}

impl Dial for Ssh {
    type Host = Connection;

    fn connect(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Connection, SshError>> + Send {
        Connection::connect(target, &self.session)
    }
}
