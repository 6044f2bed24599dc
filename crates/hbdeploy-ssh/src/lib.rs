//! The SSH transport of hbdeploy, built on russh.
//!
//! One [`Connection`] per host: connect with a bounded timeout, check the host key strictly against
//! a known_hosts file, authenticate with an identity file or ssh-agent, then run any number of
//! commands on that one authenticated connection, streaming their output line by line, or lend a
//! channel to a program that runs `ssh` ([`relay`]). Encrypted identity files are decrypted by
//! the caller once per run and handed over as [`Identities`]; this crate never asks for a
//! passphrase.
//!
//! The machine hbdeploy runs on can be a host of the fleet too (`address = "local"`): a
//! [`Local`] runs the same command lines there, without SSH ([`local`](crate::Local)).
//!
//! This crate knows nothing of nix: it runs command lines and reports what they printed and how
//! they exited.

mod auth;
mod error;
mod escalate;
mod exec;
mod hold;
mod hostcert;
mod hostkey;
mod identity;
mod known_hosts;
mod local;
pub mod relay;
mod scan;
mod session;
mod socket;
mod verdict;
mod window;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;

pub use error::SshError;
pub use escalate::{Escalation, Password, shell_line, shell_quote};
pub use exec::{CommandOutput, Exit, OutputLine, Stream};
pub use hold::Held;
pub use identity::{
    Identities, IdentityError, KeyFile, MAX_IDENTITY_BYTES, agent_keys, decrypt, holds,
};
pub use known_hosts::host_pattern;
pub use known_hosts::{KNOWN_HOSTS_ADVICE, MAX_KNOWN_HOSTS_BYTES, read_known_hosts};
pub use local::{LOCAL_ADDRESS, Local, local_user};
pub use russh::keys::{PrivateKey, PublicKey};
pub use scan::scan;
pub use session::Session;
pub use verdict::{HostKeyVerdict, key_text};

/// Where and how to reach one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// DNS name or IP address.
    pub address: String,
    /// TCP port of the host's sshd.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// Private key to authenticate with; `None` means ssh-agent (`SSH_AUTH_SOCK`).
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file the host key is checked against.
    pub known_hosts: PathBuf,
    /// Host keys pinned in fleet.toml (`TYPE BASE64`), trusted besides the known_hosts file.
    pub pinned_keys: Vec<String>,
    /// Trust a key the host has never been seen with, and add it to the known_hosts file (as
    /// OpenSSH's `accept-new`); a changed or revoked key is still refused. Off by default.
    pub accept_new: bool,
    /// Upper bound for TCP connect plus SSH handshake plus authentication.
    pub connect_timeout: Duration,
    /// Reach the host through this one (SSH `ProxyJump`): a direct-tcpip channel of an
    /// authenticated connection to it carries this connection.
    pub jump: Option<Box<Target>>,
    /// How commands that need root run when `user` is not root (`sudo`); `None`: as is.
    pub escalation: Option<Escalation>,
    /// The time between keepalives, and how many may go unanswered before the connection is
    /// declared dead; `None` sends none.
    pub keepalive: Option<(Duration, usize)>,
    /// Ask for zlib compression of the connection (which also carries `nix copy`): for slow
    /// links; sshd may still refuse it, and then the connection is not compressed.
    pub compress: bool,
}

impl Target {
    /// `user@address:port`, as shown in messages (`user@local` for this machine).
    pub fn display(&self) -> String {
        if self.is_local() {
            return format!("{}@{}", self.user, self.address);
        }
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// Sets [`Target::accept_new`] on this target and on every jump host on the way to it, so a
    /// run-wide `--accept-new` reaches the whole chain, however long.
    pub fn set_accept_new(&mut self, accept: bool) {
        let mut hop = Some(self);
        while let Some(target) = hop {
            target.accept_new = accept;
            hop = target.jump.as_deref_mut();
        }
    }
}

/// An authenticated SSH connection to one host. Commands run on channels of this one connection.
pub struct Connection {
    handle: client::Handle<Client>,
    target: Target,
    /// The run's credentials.
    session: Session,
    /// The jump host's connection, kept open for as long as this one.
    _jump: Option<Box<Connection>>,
    /// Whether the escalation command wants the password here (`escalate.rs`).
    escalation_probe: escalate::Probe,
    /// The windows the host grants this connection's channels (`window.rs`).
    windows: Arc<window::Windows>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The russh event handler: it only checks the server's host key, and remembers its verdict so a
/// refused key is reported with its fingerprint rather than as a bare protocol error.
struct Client {
    target: Target,
    verdict: Arc<Mutex<Option<HostKeyVerdict>>>,
    windows: Arc<window::Windows>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = hostkey::check(&self.target, key, now);
        let accepted = matches!(verdict, HostKeyVerdict::Trusted);
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        Ok(accepted)
    }

    async fn channel_open_confirmation(
        &mut self,
        id: russh::ChannelId,
        _max_packet_size: u32,
        window_size: u32,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.windows.opened(u32::from(id), window_size);
        Ok(())
    }

    async fn window_adjusted(
        &mut self,
        id: russh::ChannelId,
        new_size: u32,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.windows.adjusted(u32::from(id), new_size);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        id: russh::ChannelId,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.windows.forget(u32::from(id));
        Ok(())
    }
}

/// The russh client settings for `target`.
fn config(target: &Target) -> client::Config {
    let mut config = client::Config {
        // A host that stops answering is noticed within interval × count instead of hanging
        // the run.
        keepalive_interval: target.keepalive.map(|(interval, _)| interval),
        keepalive_max: target.keepalive.map_or(0, |(_, count)| count),
        ..client::Config::default()
    };
    // Host certificates only where known_hosts names a CA for the host (and no key is pinned).
    config.preferred.host_key_certificates = hostcert::algorithms(target);
    config.preferred.cipher = std::borrow::Cow::Borrowed(ciphers(hardware_aes()));
    if target.compress {
        // OpenSSH's sshd offers only the delayed form (after authentication) by default.
        config.preferred.compression = std::borrow::Cow::Borrowed(&[
            russh::compression::ZLIB_LEGACY,
            russh::compression::ZLIB,
            russh::compression::NONE,
        ]);
    }
    config
}

/// The ciphers offered, most preferred first: russh's own order (ChaCha20-Poly1305 first), except
/// that AES-GCM comes first where the processor has AES instructions. Every byte `nix copy` sends
/// is encrypted here and decrypted by the host's sshd; with AES-NI, AES-256-GCM costs both ends
/// well under half of what ChaCha20-Poly1305 does (measured on the lab: OpenSSH's sshd took 0.47–0.52
/// s of CPU for 200 MiB against 0.71–0.75 s, and russh's ChaCha20-Poly1305 0.14 s per 100 MiB).
/// Both are AEAD ciphers OpenSSH offers by default; without AES instructions ChaCha20 is the
/// faster one, and stays first.
fn ciphers(hardware_aes: bool) -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    const AES_FIRST: &[russh::cipher::Name] = &[
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    const CHACHA_FIRST: &[russh::cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    if hardware_aes {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}

/// The ciphers hbdeploy offers, most preferred first, by their SSH names: what a plain `ssh`
/// must be offered to negotiate the cipher hbdeploy does (the benchmark's "same algorithms").
pub fn cipher_names() -> Vec<&'static str> {
    ciphers(hardware_aes()).iter().map(|c| c.as_ref()).collect()
}

/// Whether this processor has the instructions that make AES-GCM fast (AES and carry-less
/// multiplication).
fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl Connection {
    /// Connects, checks the host key and authenticates (with `session`'s credentials), all
    /// within `target.connect_timeout`.
    pub async fn connect(target: &Target, session: &Session) -> Result<Connection, SshError> {
        let limit = target.connect_timeout;
        match tokio::time::timeout(limit, Self::connect_unbounded(target, session)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                target: target.display(),
                after: limit,
            }),
        }
    }

    async fn connect_unbounded(target: &Target, session: &Session) -> Result<Connection, SshError> {
        let config = Arc::new(config(target));
        let verdict = Arc::new(Mutex::new(None));
        let windows = Arc::new(window::Windows::default());
        let handler = Client {
            target: target.clone(),
            verdict: Arc::clone(&verdict),
            windows: Arc::clone(&windows),
        };
        let (connected, jump) = match &target.jump {
            None => {
                let socket = socket::dial(target.address.as_str(), target.port)
                    .await
                    .map_err(|source| SshError::Connect {
                        target: target.display(),
                        source,
                    })?;
                (client::connect_stream(config, socket, handler).await, None)
            }
            Some(jump) => {
                let via = Box::pin(Connection::connect_unbounded(jump, session)).await?;
                let channel = via
                    .handle
                    .channel_open_direct_tcpip(
                        target.address.clone(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|source| SshError::Jump {
                        target: target.display(),
                        jump: jump.display(),
                        source,
                    })?;
                let stream = channel.into_stream();
                (
                    client::connect_stream(config, stream, handler).await,
                    Some(Box::new(via)),
                )
            }
        };
        let handle = match connected {
            Ok(handle) => handle,
            Err(source) => {
                let refused = verdict.lock().ok().and_then(|mut slot| slot.take());
                return Err(match refused {
                    Some(verdict) if verdict != HostKeyVerdict::Trusted => SshError::HostKey {
                        target: target.display(),
                        verdict,
                    },
                    _ => SshError::Handshake {
                        target: target.display(),
                        source,
                    },
                });
            }
        };
        let mut connection = Connection {
            handle,
            target: target.clone(),
            session: session.clone(),
            _jump: jump,
            escalation_probe: escalate::Probe::default(),
            windows,
        };
        auth::authenticate(&mut connection.handle, target, &session.identities).await?;
        Ok(connection)
    }

    /// The host this connection reaches.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the connection is gone (the host or the network ended it).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Closes the connection politely; errors are irrelevant at this point and ignored.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str, jump: Option<Target>) -> Target {
        Target {
            address: address.to_owned(),
            port: 22,
            user: "root".to_owned(),
            identity_file: None,
            known_hosts: PathBuf::from("/dev/null"),
            pinned_keys: Vec::new(),
            accept_new: false,
            connect_timeout: Duration::from_secs(1),
            jump: jump.map(Box::new),
            escalation: None,
            keepalive: None,
            compress: false,
        }
    }

    #[test]
    fn compression_is_asked_for_only_when_set() {
        let plain = config(&target("host", None));
        assert_eq!(plain.preferred.compression[0], russh::compression::NONE);
        let mut slow = target("host", None);
        slow.compress = true;
        let compressed = config(&slow);
        assert_eq!(
            compressed.preferred.compression[0],
            russh::compression::ZLIB_LEGACY
        );
    }

    #[test]
    fn aes_gcm_comes_first_only_with_aes_instructions() {
        use russh::cipher::{AES_256_GCM, CHACHA20_POLY1305};
        assert_eq!(ciphers(true)[..2], [AES_256_GCM, CHACHA20_POLY1305]);
        assert_eq!(ciphers(false)[..2], [CHACHA20_POLY1305, AES_256_GCM]);
        // The same ciphers either way, and every one of them is one russh implements.
        let mut with: Vec<&str> = ciphers(true).iter().map(|c| c.as_ref()).collect();
        let mut without: Vec<&str> = ciphers(false).iter().map(|c| c.as_ref()).collect();
        with.sort_unstable();
        without.sort_unstable();
        assert_eq!(with, without);
        let plain = config(&target("host", None));
        assert_eq!(plain.preferred.cipher[..], *ciphers(hardware_aes()));
        for cipher in ciphers(true) {
            assert!(
                client::Config::default().preferred.cipher.contains(cipher),
                "{cipher:?} is one of russh's defaults"
            );
        }
    }

    #[test]
    fn accept_new_reaches_every_hop_of_a_long_chain() {
        let mut chain = None;
        for hop in ["j4", "j3", "j2", "j1"] {
            chain = Some(target(hop, chain));
        }
        let mut host = target("host", chain);
        host.set_accept_new(true);
        let mut hops = Vec::new();
        let mut hop = Some(&host);
        while let Some(t) = hop {
            hops.push((t.address.as_str(), t.accept_new));
            hop = t.jump.as_deref();
        }
        assert_eq!(
            hops,
            [
                ("host", true),
                ("j1", true),
                ("j2", true),
                ("j3", true),
                ("j4", true)
            ]
        );
    }
}
