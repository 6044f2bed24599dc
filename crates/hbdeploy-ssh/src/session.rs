//! What one run of hbdeploy shares across all its connections: the identity files decrypted for
//! it and the sudo password typed for it. A run makes one [`Session`] before it contacts any host
//! and passes it to every [`Connection::connect`](crate::Connection::connect); per-host settings
//! stay in each host's [`Target`](crate::Target). Clones share one copy of each secret, and the
//! password (like the decrypted keys) is wiped from memory when the last clone is dropped.

use crate::{Identities, Password};

/// A run's credentials, shared by all its connections.
#[derive(Clone, Default)]
pub struct Session {
    /// Identity files decrypted for this run: a target's encrypted `identity_file` is used
    /// through its key here.
    pub identities: Identities,
    /// The password of the hosts' escalation command (`--ask-sudo-password`): written to its
    /// stdin, and only where it asks for one.
    pub sudo_password: Option<Password>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("identities", &self.identities)
            .field(
                "sudo_password",
                &self.sudo_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}
