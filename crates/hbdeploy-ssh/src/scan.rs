//! `keyscan`: fetch a host's public keys without trusting or authenticating, one handshake per
//! key type, so that first contact is an explicit step the user reviews.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::SshError;

/// Records the offered key and refuses it: the handshake ends right there.
struct Recorder(Arc<Mutex<Option<PublicKey>>>);

impl client::Handler for Recorder {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let (PublicKeyOrCertificate::PublicKey { key, .. }, Ok(mut slot)) = (key, self.0.lock())
        {
            *slot = Some(key.clone());
        }
        Ok(false)
    }
}

/// The host's keys of the usual types (ed25519, ECDSA P-256, RSA), each fetched with its own
/// handshake bounded by `timeout`. Types the host lacks are skipped; no key at all is an error.
pub async fn scan(address: &str, port: u16, timeout: Duration) -> Result<Vec<PublicKey>, SshError> {
    let target = format!("{address}:{port}");
    let mut keys = Vec::new();
    let mut last_error = None;
    for algorithm in [
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
    ] {
        let mut config = client::Config::default();
        config.preferred.key = std::borrow::Cow::Owned(vec![algorithm]);
        let slot = Arc::new(Mutex::new(None));
        let attempt = async {
            let socket = crate::socket::dial(address, port).await?;
            let _ =
                client::connect_stream(Arc::new(config), socket, Recorder(Arc::clone(&slot))).await;
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                last_error = Some(SshError::Connect {
                    target: target.clone(),
                    source,
                });
                break;
            }
            Err(_) => {
                last_error = Some(SshError::Timeout {
                    target: target.clone(),
                    after: timeout,
                });
                break;
            }
        }
        if let Some(key) = slot.lock().ok().and_then(|mut s| s.take()) {
            keys.push(key);
        }
    }
    match (keys.is_empty(), last_error) {
        (true, Some(error)) => Err(error),
        (true, None) => Err(SshError::NoAgent {
            target,
            reason: "the host offered no key of a known type".to_owned(),
        }),
        (false, _) => Ok(keys),
    }
}
