//! Identity files decrypted once per run, and an in-process ssh-agent that lends their keys to
//! OpenSSH.
//!
//! This crate never asks for a passphrase. The caller finds out which identity files are
//! encrypted ([`KeyFile::inspect`]), asks for their passphrases its own way, decrypts them
//! ([`decrypt`]) and hands the keys over as one [`Identities`] store, shared (an `Arc`) by every
//! [`Target`](crate::Target) of the run: a connection takes a file's key from the store instead
//! of reading the file. For the `ssh` that other programs run (`nix copy`), [`KeyAgent`] serves
//! the same keys, and only those, on a unix socket in a private temporary directory that goes
//! away with it. Keys stay in memory; only their public halves are written, next to the socket,
//! for `ssh -i` to name the agent's key by.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::server::{self, MessageType};
use russh::keys::{PrivateKey, PublicKey};

/// The largest identity file that is read, in bytes (a 16384-bit RSA key is about 13 KiB).
pub const MAX_IDENTITY_BYTES: u64 = hbdeploy_files::MIB;

/// What can go wrong while reading or decrypting identity files, or lending their keys to `ssh`.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The identity file cannot be read, or holds no key russh can use.
    #[error("cannot load identity file {}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// The identity file is not a regular file (a FIFO, a device, …) or is too large, so it was
    /// not read.
    #[error("cannot use identity file {}", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        #[source]
        source: hbdeploy_files::FileError,
    },
    /// The passphrase given does not decrypt the identity file.
    #[error("the passphrase does not decrypt identity file {}", path.display())]
    Passphrase {
        /// The file.
        path: PathBuf,
        /// What decrypting it said.
        #[source]
        source: russh::keys::Error,
    },
    /// The in-process agent that lends decrypted keys to `ssh` (for `nix copy`) did not start.
    #[error("cannot start the key agent for ssh in {}", dir.display())]
    Agent {
        /// Its directory (or the temporary directory it was to be made in).
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl IdentityError {
    /// Advice for the user.
    pub fn hint(&self) -> String {
        match self {
            IdentityError::Unreadable { .. } => {
                "check `identity-file` in fleet.toml: it must name a private key file".to_owned()
            }
            IdentityError::NotAFile { .. } => "set `identity-file` in fleet.toml to your private \
                 key: a regular file (or a symlink to one), as ssh-keygen writes it"
                .to_owned(),
            IdentityError::Passphrase { path, .. } => format!(
                "check the passphrase: `ssh-keygen -y -f {}` asks for it too",
                path.display()
            ),
            IdentityError::Agent { .. } => "the temporary directory ($TMPDIR) must be \
                 writable, and short enough a path for a unix socket"
                .to_owned(),
        }
    }
}

/// What an identity file holds, as far as can be told without its passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFile {
    /// A key that can be used as it is.
    Plain,
    /// A key that needs its passphrase.
    Encrypted {
        /// Its public key, when it can be read without the passphrase (the OpenSSH format
        /// keeps it in clear; otherwise `FILE.pub`): to find the key in ssh-agent.
        public: Option<PublicKey>,
    },
}

/// The PEM header of an encrypted PKCS#8 key, which russh reports as unreadable rather than as
/// encrypted when no passphrase is given.
const PKCS8_ENCRYPTED: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

impl KeyFile {
    /// Reads `path` and tells whether it is encrypted. An unreadable file or an unsupported key
    /// is an error naming the file.
    pub fn inspect(path: &Path) -> Result<KeyFile, IdentityError> {
        let unreadable = |source| IdentityError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        let text = read_identity(path)?;
        match russh::keys::decode_secret_key(&text, None) {
            Ok(_) => Ok(KeyFile::Plain),
            Err(russh::keys::Error::KeyIsEncrypted) => Ok(KeyFile::Encrypted {
                public: public_key(path, &text),
            }),
            Err(_) if text.contains(PKCS8_ENCRYPTED) => Ok(KeyFile::Encrypted {
                public: public_key(path, &text),
            }),
            Err(source) => Err(unreadable(source)),
        }
    }
}

/// The public half of the encrypted key `text` read from `path`: from the OpenSSH format
/// itself, or from `path.pub`.
fn public_key(path: &Path, text: &str) -> Option<PublicKey> {
    if let Ok(key) = PrivateKey::from_openssh(text) {
        return Some(key.public_key().clone());
    }
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let line = hbdeploy_files::read_to_string(Path::new(&public), MAX_IDENTITY_BYTES).ok()?;
    PublicKey::from_openssh(line.trim()).ok()
}

/// Decrypts the identity file `path` with `passphrase`. A passphrase that does not decrypt it is
/// [`IdentityError::Passphrase`]; a file that cannot be read, [`IdentityError::Unreadable`].
pub fn decrypt(path: &Path, passphrase: &str) -> Result<PrivateKey, IdentityError> {
    let text = read_identity(path)?;
    russh::keys::decode_secret_key(&text, Some(passphrase)).map_err(|source| {
        IdentityError::Passphrase {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The text of the identity file `path`: only a regular file (or a symlink to one) of at most
/// [`MAX_IDENTITY_BYTES`] is read.
pub(crate) fn read_identity(path: &Path) -> Result<String, IdentityError> {
    hbdeploy_files::read_to_string(path, MAX_IDENTITY_BYTES).map_err(|err| match err {
        hbdeploy_files::FileError::Io { source, .. } => IdentityError::Unreadable {
            path: path.to_path_buf(),
            source: russh::keys::Error::IO(source),
        },
        refused => IdentityError::NotAFile {
            path: path.to_path_buf(),
            source: refused,
        },
    })
}

/// The public keys ssh-agent (`SSH_AUTH_SOCK`) holds; none when there is no usable agent.
pub async fn agent_keys() -> Vec<PublicKey> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|v| v.is_empty()) {
        return Vec::new();
    }
    let Ok(mut agent) = AgentClient::connect_env().await else {
        return Vec::new();
    };
    agent
        .request_identities()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|identity| match identity {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect()
}

/// Whether `keys` hold `key` (comments aside).
pub fn holds(keys: &[PublicKey], key: &PublicKey) -> bool {
    keys.iter().any(|k| k.key_data() == key.key_data())
}

/// Decrypted identity files, by path, shared by every target of a run; empty by default. Cloning
/// shares the store. Two stores are equal when they are the same store (or both empty): keys are
/// never compared, printed or written anywhere.
#[derive(Clone, Default)]
pub struct Identities {
    store: Option<Arc<Store>>,
}

struct Store {
    keys: BTreeMap<PathBuf, Arc<PrivateKey>>,
    agent: Option<Served>,
}

/// Where an agent serves the store's keys to `ssh`.
struct Served {
    socket: PathBuf,
    /// Each identity file's public key file, in the agent's directory.
    public_files: BTreeMap<PathBuf, PathBuf>,
}

impl Identities {
    /// A store of these decrypted keys, by the identity file each came from.
    pub fn new(keys: impl IntoIterator<Item = (PathBuf, PrivateKey)>) -> Identities {
        let keys: BTreeMap<PathBuf, Arc<PrivateKey>> = keys
            .into_iter()
            .map(|(path, key)| (path, Arc::new(key)))
            .collect();
        if keys.is_empty() {
            return Identities::default();
        }
        Identities {
            store: Some(Arc::new(Store { keys, agent: None })),
        }
    }

    /// The identity files whose keys the store holds.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.store
            .iter()
            .flat_map(|store| store.keys.keys().map(PathBuf::as_path))
    }

    /// The decrypted key of the identity file `path`, if the store holds it.
    pub(crate) fn key(&self, path: &Path) -> Option<Arc<PrivateKey>> {
        self.store.as_ref()?.keys.get(path).cloned()
    }

    /// The socket of the agent serving these keys (for `SSH_AUTH_SOCK`), once one was started.
    pub fn agent_socket(&self) -> Option<&Path> {
        Some(self.store.as_ref()?.agent.as_ref()?.socket.as_path())
    }

    /// For an identity file the agent serves: the file holding its public key, which `ssh -i`
    /// takes to use the agent's key without reading (and asking for the passphrase of) the
    /// identity file itself.
    pub fn agent_public_file(&self, identity: &Path) -> Option<&Path> {
        let served = self.store.as_ref()?.agent.as_ref()?;
        served.public_files.get(identity).map(PathBuf::as_path)
    }
}

impl PartialEq for Identities {
    fn eq(&self, other: &Identities) -> bool {
        match (&self.store, &other.store) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Identities {}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("paths", &self.paths().collect::<Vec<_>>())
            .field("agent", &self.agent_socket())
            .finish()
    }
}

/// An ssh-agent in this process, serving the keys of an [`Identities`] store on a unix socket
/// in a private (0700) temporary directory. It accepts nothing but listing and signing once the
/// keys are in. Dropping it stops it and removes the directory.
pub struct KeyAgent {
    dir: PathBuf,
    identities: Identities,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KeyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAgent")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The agent's policy: keys are added while it starts, then only listed and used.
#[derive(Clone)]
struct Sealed(Arc<AtomicBool>);

impl server::Agent for Sealed {
    fn confirm_request(&self, request: MessageType) -> impl Future<Output = bool> + Send {
        let allowed = match request {
            MessageType::RequestKeys | MessageType::Sign => true,
            MessageType::AddKeys => !self.0.load(Ordering::SeqCst),
            MessageType::RemoveKeys
            | MessageType::RemoveAllKeys
            | MessageType::Lock
            | MessageType::Unlock => false,
        };
        std::future::ready(allowed)
    }
}

/// Removes a directory on drop unless disarmed: the agent's directory while it starts.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl KeyAgent {
    /// Starts an agent holding every key of `identities` (on the current tokio runtime), in a
    /// new directory under the temporary directory (`$TMPDIR`).
    pub async fn start(identities: &Identities) -> Result<KeyAgent, IdentityError> {
        let dir = private_dir()?;
        let mut guard = DirGuard(Some(dir.clone()));
        let failed = |source: std::io::Error| IdentityError::Agent {
            dir: dir.clone(),
            source,
        };
        let socket = dir.join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&socket).map_err(failed)?;
        let sealed = Arc::new(AtomicBool::new(false));
        let incoming = Box::pin(futures::stream::unfold(listener, |listener| async move {
            let next = listener.accept().await.map(|(stream, _)| stream);
            Some((next, listener))
        }));
        let policy = Sealed(Arc::clone(&sealed));
        let server = tokio::spawn(async move {
            let _ = server::serve(incoming, policy).await;
        });
        let loaded = load(identities, &dir, &socket).await;
        sealed.store(true, Ordering::SeqCst);
        let public_files = match loaded {
            Ok(files) => files,
            Err(source) => {
                server.abort();
                return Err(failed(source));
            }
        };
        guard.0 = None;
        let keys = identities
            .store
            .as_ref()
            .map(|store| store.keys.clone())
            .unwrap_or_default();
        Ok(KeyAgent {
            identities: Identities {
                store: Some(Arc::new(Store {
                    keys,
                    agent: Some(Served {
                        socket,
                        public_files,
                    }),
                })),
            },
            dir,
            server,
        })
    }

    /// The keys it serves, with the agent's socket and public key files: what every target of
    /// the run should carry.
    pub fn identities(&self) -> Identities {
        self.identities.clone()
    }

    /// Its private directory (socket and public keys), removed when it is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds every key to the agent at `socket` and writes each public key into `dir`; returns the
/// public key file of each identity file.
async fn load(
    identities: &Identities,
    dir: &Path,
    socket: &Path,
) -> Result<BTreeMap<PathBuf, PathBuf>, std::io::Error> {
    let mut client = AgentClient::connect_uds(socket)
        .await
        .map_err(std::io::Error::other)?;
    let mut files = BTreeMap::new();
    let keys = identities.store.iter().flat_map(|store| store.keys.iter());
    for (index, (path, key)) in keys.enumerate() {
        client
            .add_identity(key, &[])
            .await
            .map_err(std::io::Error::other)?;
        let public = dir.join(format!("id-{index}.pub"));
        let line = key
            .public_key()
            .to_openssh()
            .map_err(std::io::Error::other)?;
        std::fs::write(&public, format!("{line}\n"))?;
        files.insert(path.clone(), public);
    }
    Ok(files)
}

/// A new directory only this user can enter: `$TMPDIR/hbdeploy-agent-<pid>-<random>`.
fn private_dir() -> Result<PathBuf, IdentityError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "hbdeploy-agent-{}-{:016x}",
            std::process::id(),
            random()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                // The mode given to mkdir is masked by the umask: make sure of it.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                    |source| IdentityError::Agent {
                        dir: dir.clone(),
                        source,
                    },
                )?;
                return Ok(dir);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => last = Some(err),
            Err(source) => return Err(IdentityError::Agent { dir, source }),
        }
    }
    Err(IdentityError::Agent {
        dir: base,
        source: last.unwrap_or_else(|| std::io::Error::other("no free directory name")),
    })
}

/// A random number for a directory name (uniqueness, not secrecy: the directory is created
/// exclusively and private).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 key without a passphrase (made for the tests with ssh-keygen).
    const PLAIN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/plain_ed25519"
    ));

    /// An ed25519 key encrypted with the passphrase `secret` (ssh-keygen -N secret).
    const ENCRYPTED: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABB2wnboGw
5oMHU72XiSj9hoAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIGj113EX/f11MrfE
DFtM7/0p6RG4OjNxS2B3SgOaqfB4AAAAoAtzONL0BnfNl49YsZBV9oQE4eb6Ut8mDR47Bo
YLpYw9ES83jP9EjFs3eIxq3TxP/w4ZNF3AoGcJ9a1QDWSBbi9xBNbp/X+MuYW/0S7qOkb1
ypA9PV0+P8GkbutMPFpGO2yvjdw2mfDywNlHFwQNS56XRGLkWMFkuCC9+rAYYLK4C4FrB3
HKpgiprEFXDnm6I7SCWj0HKdGK8KXxARUk49g=
-----END OPENSSH PRIVATE KEY-----
";

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hbdeploy-identity-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn encrypted_files_are_told_apart_and_keep_their_public_key() {
        let dir = dir("inspect");
        let plain = dir.join("plain");
        let encrypted = dir.join("encrypted");
        std::fs::write(&plain, PLAIN).expect("write");
        std::fs::write(&encrypted, ENCRYPTED).expect("write");
        assert_eq!(KeyFile::inspect(&plain).expect("read"), KeyFile::Plain);
        let KeyFile::Encrypted {
            public: Some(public),
        } = KeyFile::inspect(&encrypted).expect("read")
        else {
            panic!("not seen as encrypted");
        };
        let key = decrypt(&encrypted, "secret").expect("decrypts");
        assert_eq!(key.public_key().key_data(), public.key_data());
        assert!(matches!(
            decrypt(&encrypted, "wrong"),
            Err(IdentityError::Passphrase { .. })
        ));
        assert!(matches!(
            KeyFile::inspect(&dir.join("missing")),
            Err(IdentityError::Unreadable { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stores_are_equal_only_to_themselves_and_never_show_keys() {
        let key = russh::keys::decode_secret_key(PLAIN, None).expect("key");
        let store = Identities::new([(PathBuf::from("/k"), key.clone())]);
        assert_eq!(store, store.clone());
        assert_ne!(store, Identities::new([(PathBuf::from("/k"), key)]));
        assert_eq!(Identities::new([]), Identities::default());
        assert_eq!(
            format!("{store:?}"),
            r#"Identities { paths: ["/k"], agent: None }"#
        );
    }

    #[tokio::test]
    async fn the_agent_serves_only_the_stores_keys_and_goes_away() {
        let key = russh::keys::decode_secret_key(PLAIN, None).expect("key");
        let public = key.public_key().clone();
        let store = Identities::new([(PathBuf::from("/keys/fleet"), key)]);
        let agent = KeyAgent::start(&store).await.expect("agent");
        let dir = agent.dir().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let served = agent.identities();
        let socket = served.agent_socket().expect("socket").to_path_buf();
        let file = served
            .agent_public_file(Path::new("/keys/fleet"))
            .expect("public file");
        let line = std::fs::read_to_string(file).expect("public key file");
        assert_eq!(
            PublicKey::from_openssh(line.trim())
                .expect("a public key")
                .key_data(),
            public.key_data()
        );

        let mut client = AgentClient::connect_uds(&socket).await.expect("connect");
        let listed = client.request_identities().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].public_key().key_data(), public.key_data());
        // Sealed: nobody else may change what it holds.
        let other = russh::keys::decode_secret_key(ENCRYPTED, Some("secret")).expect("key");
        assert!(client.add_identity(&other, &[]).await.is_err());
        assert!(client.remove_identity(&public).await.is_err());
        assert_eq!(client.request_identities().await.expect("list").len(), 1);

        drop(agent);
        assert!(!dir.exists());
    }
}
