//! Public-key authentication: the configured identity file; or else every key ssh-agent holds,
//! then OpenSSH's default identity files (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`), as `ssh`
//! (and so `nix copy`) would try them. An identity file's key comes from the run's decrypted
//! [`Identities`](crate::Identities) when it holds it; an encrypted file it does not hold is
//! used through ssh-agent if the agent has its key, and is otherwise
//! [`SshError::PassphraseNeeded`].

use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;

use crate::identity::read_identity;
use crate::{Client, KeyFile, SshError, Target};

/// Authenticates `handle` as `target.user`. One authentication per connection: a passphrase-less
/// identity file is used as is; with no identity file, each agent key is offered in turn.
pub(crate) async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    identities: &crate::Identities,
) -> Result<(), SshError> {
    match &target.identity_file {
        Some(path) => with_file(handle, target, identities, path).await,
        None => {
            let agent = authenticate_with_agent(handle, target).await;
            if agent.is_ok() {
                return agent;
            }
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let Some(path) = home.as_ref().map(|h| h.join(".ssh").join(name)) else {
                    break;
                };
                if path.exists() && with_file(handle, target, identities, &path).await.is_ok() {
                    return Ok(());
                }
            }
            agent
        }
    }
}

/// Authenticates with the private key in `path`: decrypted for this run, unencrypted, or, for an
/// encrypted one, in ssh-agent.
async fn with_file(
    handle: &mut Handle<Client>,
    target: &Target,
    identities: &crate::Identities,
    path: &std::path::Path,
) -> Result<(), SshError> {
    let key = match identities.key(path) {
        Some(key) => key,
        None => match russh::keys::decode_secret_key(&read_identity(path)?, None) {
            Ok(key) => Arc::new(key),
            Err(russh::keys::Error::KeyIsEncrypted) => {
                return with_agent_key(handle, target, path).await;
            }
            Err(source) => {
                return Err(SshError::IdentityFile {
                    path: path.to_path_buf(),
                    source,
                });
            }
        },
    };
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|source| auth_error(target, source))?
        .flatten();
    let key = PrivateKeyWithHashAlg::new(key, hash);
    let result = handle
        .authenticate_publickey(target.user.clone(), key)
        .await
        .map_err(|source| auth_error(target, source))?;
    match result {
        AuthResult::Success => Ok(()),
        AuthResult::Failure { .. } => Err(SshError::AuthRejected {
            target: target.display(),
            offered: format!("identity file {}", path.display()),
        }),
    }
}

/// The encrypted identity file `path`, used through ssh-agent when the agent holds its key (as
/// `ssh -i FILE` does); without that, a passphrase is needed.
async fn with_agent_key(
    handle: &mut Handle<Client>,
    target: &Target,
    path: &std::path::Path,
) -> Result<(), SshError> {
    let needed = || SshError::PassphraseNeeded {
        path: path.to_path_buf(),
    };
    let Ok(KeyFile::Encrypted {
        public: Some(public),
    }) = KeyFile::inspect(path)
    else {
        return Err(needed());
    };
    if !crate::holds(&crate::agent_keys().await, &public) {
        return Err(needed());
    }
    let Ok(mut agent) = AgentClient::connect_env().await else {
        return Err(needed());
    };
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|source| auth_error(target, source))?
        .flatten();
    match handle
        .authenticate_publickey_with(target.user.clone(), public, hash, &mut agent)
        .await
    {
        Ok(AuthResult::Success) => Ok(()),
        Ok(AuthResult::Failure { .. }) => Err(SshError::AuthRejected {
            target: target.display(),
            offered: format!("identity file {} (from ssh-agent)", path.display()),
        }),
        // The agent would not sign after all.
        Err(_) => Err(needed()),
    }
}

async fn authenticate_with_agent(
    handle: &mut Handle<Client>,
    target: &Target,
) -> Result<(), SshError> {
    let no_agent = |reason: String| SshError::NoAgent {
        target: target.display(),
        reason,
    };
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return Err(no_agent("SSH_AUTH_SOCK is not set".to_owned()));
    }
    let mut agent = AgentClient::connect_env()
        .await
        .map_err(|err| no_agent(format!("cannot connect to the agent: {err}")))?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|err| no_agent(format!("the agent did not list its keys: {err}")))?;
    if identities.is_empty() {
        return Err(no_agent("the agent holds no keys".to_owned()));
    }
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|source| auth_error(target, source))?
        .flatten();
    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        match handle
            .authenticate_publickey_with(target.user.clone(), key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            // A refused key or an agent that declines to sign: try the next key.
            Ok(AuthResult::Failure { .. }) | Err(_) => continue,
        }
    }
    Err(SshError::AuthRejected {
        target: target.display(),
        offered: "every key in ssh-agent".to_owned(),
    })
}

fn auth_error(target: &Target, source: russh::Error) -> SshError {
    SshError::Auth {
        target: target.display(),
        source,
    }
}
