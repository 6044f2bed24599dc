//! Encrypted identity files: before any host is contacted, find the identity files the selected
//! hosts will use that need a passphrase, ask for each once on the terminal, and hand the
//! decrypted keys to every target of the run (every connection, also the confirmation
//! reconnect). `nix copy` needs no key of its own: it rides a host's connection.
//!
//! A passphrase is asked only when it is needed:
//! - a configured `identity-file` that is encrypted, unless ssh-agent already holds its key
//!   (then the agent's key is used);
//! - with no `identity-file`: never when ssh-agent holds any key (the agent is tried first, as
//!   `ssh` does), nor when one of OpenSSH's default files (`~/.ssh/id_ed25519`, `id_ecdsa`,
//!   `id_rsa`) is unencrypted; otherwise, the first of those files that exists, when it is
//!   encrypted, is asked for and used as that host's identity file.
//!
//! Without a terminal, a needed passphrase is an error (exit 2) and nothing is contacted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use console::Term;
use hbdeploy_pipeline::HostPlan;
use hbdeploy_ssh::{Identities, IdentityError, KeyFile, PrivateKey, PublicKey, Session, Target};

use crate::secret::{self, Typed};

/// How many times a passphrase is asked before giving up.
const TRIES: usize = 3;

/// OpenSSH's default identity files, in the order `ssh` tries them (and hbdeploy's russh too).
const DEFAULT_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Why the run could not get the keys it needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PassphraseError {
    /// A passphrase is needed and there is no terminal to ask on.
    #[error(
        "identity file {} is encrypted and there is no terminal to ask for its passphrase on; \
         no host was contacted",
        path.display()
    )]
    NoTerminal {
        /// The first file that needs one.
        path: PathBuf,
    },
    /// Every try was a wrong passphrase.
    #[error(
        "wrong passphrase for identity file {} ({TRIES} tries); no host was contacted",
        path.display()
    )]
    Wrong {
        /// The file.
        path: PathBuf,
    },
    /// Ctrl-C at the prompt.
    #[error("interrupted while asking for the passphrase of {}; no host was contacted", path.display())]
    Interrupted {
        /// The file.
        path: PathBuf,
    },
    /// The terminal could not be read.
    #[error("cannot read the passphrase of {} from the terminal", path.display())]
    Terminal {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or decrypting the file failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl hbdeploy_files::Hint for PassphraseError {
    /// Advice for the user.
    fn hint(&self) -> Option<String> {
        match self {
            PassphraseError::NoTerminal { path } => Some(format!(
                "run hbdeploy on a terminal: it asks once per run and uses the key for every \
                 host; or add the key to ssh-agent first (ssh-add {})",
                path.display()
            )),
            PassphraseError::Wrong { path } => Some(format!(
                "check the passphrase: `ssh-keygen -y -f {}` asks for it too",
                path.display()
            )),
            PassphraseError::Interrupted { .. } | PassphraseError::Terminal { .. } => None,
            PassphraseError::Identity(err) => err.hint(),
        }
    }
}

/// The keys decrypted for this run.
struct Unlocked {
    identities: Identities,
    /// The default identity file asked for, given to targets that configure none.
    default: Option<PathBuf>,
}

impl Unlocked {
    /// No keys: nothing needed unlocking.
    fn nothing() -> Unlocked {
        Unlocked {
            identities: Identities::default(),
            default: None,
        }
    }

    /// Gives `target` and its jump hosts the default identity file asked for, where they name
    /// none.
    fn give(&self, target: &mut Target) {
        if target.identity_file.is_none() {
            target.identity_file.clone_from(&self.default);
        }
        if let Some(jump) = target.jump.as_deref_mut() {
            self.give(jump);
        }
    }

    /// Gives every plan's target the default identity file, and the run its keys.
    fn give_all(self, plans: &mut [HostPlan]) -> Session {
        for plan in plans {
            self.give(&mut plan.target);
        }
        self.session()
    }

    /// The run's credentials: these keys (no sudo password yet).
    fn session(self) -> Session {
        Session {
            identities: self.identities,
            sudo_password: None,
        }
    }
}

/// Unlocks what the plans' targets need (asking on the terminal): the run's [`Session`].
pub(crate) async fn unlock(plans: &mut [HostPlan]) -> Result<Session, PassphraseError> {
    let unlocked = unlock_for(plans.iter().map(|plan| &plan.target)).await?;
    Ok(unlocked.give_all(plans))
}

/// Unlocks what `target` needs: the run's [`Session`].
pub(crate) async fn unlock_target(target: &mut Target) -> Result<Session, PassphraseError> {
    let unlocked = unlock_for(std::iter::once(&*target)).await?;
    unlocked.give(target);
    Ok(unlocked.session())
}

/// Finds the encrypted identity files these targets (and their jump hosts) need, asks for their
/// passphrases.
async fn unlock_for<'a>(
    targets: impl Iterator<Item = &'a Target>,
) -> Result<Unlocked, PassphraseError> {
    let mut configured = BTreeSet::new();
    let mut uses_defaults = false;
    // The machine hbdeploy runs on is reached without SSH, so without a key.
    for target in targets.filter(|t| !t.is_local()) {
        let mut next = Some(target);
        while let Some(t) = next {
            match &t.identity_file {
                Some(path) => {
                    configured.insert(path.clone());
                }
                None => uses_defaults = true,
            }
            next = t.jump.as_deref();
        }
    }
    let defaults = if uses_defaults {
        default_files()
    } else {
        Vec::new()
    };
    let files: Vec<(PathBuf, KeyFile)> = configured
        .iter()
        .chain(&defaults)
        .filter_map(|path| Some((path.clone(), KeyFile::inspect(path).ok()?)))
        .collect();
    if !files
        .iter()
        .any(|(_, file)| matches!(file, KeyFile::Encrypted { .. }))
    {
        return Ok(Unlocked::nothing());
    }
    let agent_keys = hbdeploy_ssh::agent_keys().await;
    let need = needed(
        &configured,
        uses_defaults.then_some(defaults.as_slice()),
        &agent_keys,
        &files,
    );
    if need.files.is_empty() {
        return Ok(Unlocked::nothing());
    }
    if !secret::interactive() {
        return Err(PassphraseError::NoTerminal {
            path: need.files[0].clone(),
        });
    }
    let mut keys = Vec::new();
    for path in need.files {
        let asked = path.clone();
        let key = tokio::task::spawn_blocking(move || {
            ask(
                &asked,
                &mut |prompt| secret::read_hidden(prompt),
                &mut |path, passphrase| hbdeploy_ssh::decrypt(path, passphrase),
                &mut |line| {
                    let _ = Term::stderr().write_line(line);
                },
            )
        })
        .await
        .map_err(|err| PassphraseError::Terminal {
            path: path.clone(),
            source: std::io::Error::other(err),
        })??;
        keys.push((path, key));
    }
    Ok(Unlocked {
        identities: Identities::new(keys),
        default: need.default,
    })
}

/// OpenSSH's default identity files that exist, in order.
fn default_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Vec::new();
    };
    let dir = Path::new(&home).join(".ssh");
    DEFAULT_FILES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// The files to ask passphrases for, and the default file among them.
#[derive(Debug, PartialEq, Eq)]
struct Need {
    files: Vec<PathBuf>,
    default: Option<PathBuf>,
}

/// Which files need a passphrase: each configured file that is encrypted and whose key
/// ssh-agent does not hold; and, for hosts without an identity file (`defaults` is the list of
/// default files that exist), the first default file when it is encrypted, the agent holds no
/// key and no default file is unencrypted. `files` says what each readable file is.
fn needed(
    configured: &BTreeSet<PathBuf>,
    defaults: Option<&[PathBuf]>,
    agent_keys: &[PublicKey],
    files: &[(PathBuf, KeyFile)],
) -> Need {
    let kind = |path: &Path| files.iter().find(|(p, _)| p == path).map(|(_, file)| file);
    let mut need = Vec::new();
    for path in configured {
        if let Some(KeyFile::Encrypted { public }) = kind(path) {
            let in_agent = public
                .as_ref()
                .is_some_and(|key| hbdeploy_ssh::holds(agent_keys, key));
            if !in_agent {
                need.push(path.clone());
            }
        }
    }
    let default = defaults
        .filter(|_| agent_keys.is_empty())
        .filter(|defaults| {
            !defaults
                .iter()
                .any(|path| kind(path) == Some(&KeyFile::Plain))
        })
        .and_then(|defaults| {
            defaults
                .iter()
                .find(|path| matches!(kind(path), Some(KeyFile::Encrypted { .. })))
                .cloned()
        });
    if let Some(path) = &default
        && !need.contains(path)
    {
        need.push(path.clone());
    }
    Need {
        files: need,
        default,
    }
}

/// Asks for the passphrase of `path` until it decrypts the file, at most [`TRIES`] times.
fn ask(
    path: &Path,
    read: &mut dyn FnMut(&str) -> std::io::Result<Typed>,
    decrypt: &mut dyn FnMut(&Path, &str) -> Result<PrivateKey, IdentityError>,
    say: &mut dyn FnMut(&str),
) -> Result<PrivateKey, PassphraseError> {
    let prompt = format!("Enter passphrase for {}: ", path.display());
    for attempt in 1..=TRIES {
        let typed = read(&prompt).map_err(|source| PassphraseError::Terminal {
            path: path.to_path_buf(),
            source,
        })?;
        let Typed::Line(passphrase) = typed else {
            return Err(PassphraseError::Interrupted {
                path: path.to_path_buf(),
            });
        };
        match decrypt(path, &passphrase) {
            Ok(key) => return Ok(key),
            Err(IdentityError::Passphrase { .. }) if attempt < TRIES => {
                say("wrong passphrase, try again");
            }
            Err(IdentityError::Passphrase { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Err(PassphraseError::Wrong {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Scratch;

    /// An ed25519 key without a passphrase (made for the tests with ssh-keygen).
    const KEY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/plain_ed25519"
    ));

    fn key() -> PrivateKey {
        PrivateKey::from_openssh(KEY).expect("test key")
    }

    fn public() -> PublicKey {
        key().public_key().clone()
    }

    fn other_public() -> PublicKey {
        PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGj113EX/f11MrfEDFtM7/0p6RG4OjNxS2B3SgOaqfB4",
        )
        .expect("test key")
    }

    fn encrypted(public: Option<PublicKey>) -> KeyFile {
        KeyFile::Encrypted { public }
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn configured_files_need_a_passphrase_only_when_encrypted_and_not_in_the_agent() {
        let configured: BTreeSet<PathBuf> =
            paths(&["/k/plain", "/k/locked", "/k/added", "/k/gone"])
                .into_iter()
                .collect();
        let files = [
            (PathBuf::from("/k/plain"), KeyFile::Plain),
            (PathBuf::from("/k/locked"), encrypted(Some(other_public()))),
            (PathBuf::from("/k/added"), encrypted(Some(public()))),
        ];
        assert_eq!(
            needed(&configured, None, &[public()], &files),
            Need {
                files: paths(&["/k/locked"]),
                default: None
            }
        );
        // A key whose public half cannot be read cannot be found in the agent.
        let files = [(PathBuf::from("/k/locked"), encrypted(None))];
        assert_eq!(
            needed(&configured, None, &[public()], &files).files,
            paths(&["/k/locked"])
        );
    }

    #[test]
    fn a_default_file_is_asked_for_only_when_it_is_the_only_way_in() {
        let none = BTreeSet::new();
        let defaults = paths(&["/h/.ssh/id_ed25519", "/h/.ssh/id_rsa"]);
        let both_locked = [
            (defaults[0].clone(), encrypted(Some(public()))),
            (defaults[1].clone(), encrypted(None)),
        ];
        assert_eq!(
            needed(&none, Some(&defaults), &[], &both_locked),
            Need {
                files: paths(&["/h/.ssh/id_ed25519"]),
                default: Some(defaults[0].clone())
            },
            "the first encrypted default file, once"
        );
        assert_eq!(
            needed(&none, Some(&defaults), &[other_public()], &both_locked),
            Need {
                files: Vec::new(),
                default: None
            },
            "ssh-agent has keys: it is tried first, nothing is asked"
        );
        let one_plain = [
            (defaults[0].clone(), encrypted(None)),
            (defaults[1].clone(), KeyFile::Plain),
        ];
        assert_eq!(
            needed(&none, Some(&defaults), &[], &one_plain).files,
            Vec::<PathBuf>::new(),
            "an unencrypted default file logs in without asking"
        );
        assert_eq!(
            needed(&none, None, &[], &both_locked).files,
            Vec::<PathBuf>::new(),
            "no host goes without an identity file"
        );
        let configured: BTreeSet<PathBuf> = [defaults[0].clone()].into_iter().collect();
        assert_eq!(
            needed(&configured, Some(&defaults), &[], &both_locked).files,
            paths(&["/h/.ssh/id_ed25519"]),
            "a file configured and used by default is asked for once"
        );
    }

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

    /// Runs [`ask`] for a key file whose passphrase is `secret`, with these answers typed
    /// (`None`: Ctrl-C); returns the result and the prompt and messages shown.
    fn asking(
        name: &str,
        answers: &[Option<&str>],
    ) -> (Result<PrivateKey, PassphraseError>, Vec<String>) {
        let dir = Scratch::fresh(&format!("hbdeploy-passphrase-test-{name}")).expect("dir");
        let file = dir.join("fleet");
        std::fs::write(&file, ENCRYPTED).expect("write");
        let mut answers = answers.iter();
        let mut shown = Vec::new();
        let mut said = Vec::new();
        let result = ask(
            &file,
            &mut |prompt| {
                shown.push(prompt.replace(&file.display().to_string(), "FILE"));
                Ok(match answers.next().copied().flatten() {
                    Some(text) => Typed::Line(zeroize::Zeroizing::new(text.to_owned())),
                    None => Typed::Interrupted,
                })
            },
            &mut |path, passphrase| hbdeploy_ssh::decrypt(path, passphrase),
            &mut |line| said.push(line.to_owned()),
        );
        drop(dir);
        shown.extend(said);
        let result = result.map_err(|err| match err {
            PassphraseError::Wrong { .. } => PassphraseError::Wrong {
                path: PathBuf::from("FILE"),
            },
            other => other,
        });
        (result, shown)
    }

    #[test]
    fn a_wrong_passphrase_is_asked_again_up_to_three_times() {
        let (result, shown) = asking("right", &[Some("secret")]);
        assert_eq!(
            result.expect("decrypted").public_key().key_data(),
            other_public().key_data()
        );
        assert_eq!(shown, ["Enter passphrase for FILE: "]);

        let (result, shown) = asking("again", &[Some("wrong"), Some("secret")]);
        assert!(result.is_ok());
        assert_eq!(
            shown,
            [
                "Enter passphrase for FILE: ",
                "Enter passphrase for FILE: ",
                "wrong passphrase, try again"
            ]
        );

        let (result, shown) = asking("wrong", &[Some("a"), Some(""), Some("c"), Some("secret")]);
        let err = result.expect_err("three wrong tries");
        assert_eq!(
            err.to_string(),
            "wrong passphrase for identity file FILE (3 tries); no host was contacted"
        );
        assert_eq!(shown.iter().filter(|l| l.starts_with("Enter")).count(), 3);
    }

    #[test]
    fn ctrl_c_at_the_prompt_stops_asking() {
        let (result, shown) = asking("interrupted", &[None, Some("secret")]);
        assert!(matches!(result, Err(PassphraseError::Interrupted { .. })));
        assert_eq!(shown.len(), 1);
    }
}
