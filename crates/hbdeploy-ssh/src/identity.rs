//! Identity files decrypted once per run.
//!
//! This crate never asks for a passphrase. The caller finds out which identity files are
//! encrypted ([`KeyFile::inspect`]), asks for their passphrases its own way, decrypts them
//! ([`decrypt`]) and hands the keys over as one [`Identities`] store, shared (an `Arc`) by every
//! [`Target`](crate::Target) of the run: a connection takes a file's key from the store instead
//! of reading the file. Keys stay in memory and are never written anywhere; `nix copy` needs
//! none of its own, since it rides a connection (see `relay.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PublicKey};

/// The largest identity file that is read, in bytes (a 16384-bit RSA key is about 13 KiB).
pub const MAX_IDENTITY_BYTES: u64 = hbdeploy_files::MIB;

/// What can go wrong while reading or decrypting identity files.
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
}

impl hbdeploy_files::Hint for IdentityError {
    /// Advice for the user.
    fn hint(&self) -> Option<String> {
        Some(match self {
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
        })
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
            store: Some(Arc::new(Store { keys })),
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
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Scratch;

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

    /// A directory of the test's own, removed when the guard drops.
    fn dir(name: &str) -> Scratch {
        Scratch::fresh(&format!("hbdeploy-identity-test-{name}")).expect("dir")
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
    }

    #[test]
    fn stores_are_equal_only_to_themselves_and_never_show_keys() {
        let key = russh::keys::decode_secret_key(PLAIN, None).expect("key");
        let store = Identities::new([(PathBuf::from("/k"), key.clone())]);
        assert_eq!(store, store.clone());
        assert_ne!(store, Identities::new([(PathBuf::from("/k"), key)]));
        assert_eq!(Identities::new([]), Identities::default());
        assert_eq!(format!("{store:?}"), r#"Identities { paths: ["/k"] }"#);
    }
}
