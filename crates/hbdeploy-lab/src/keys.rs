//! A second deployer key protected by a passphrase, for tests of encrypted identity files. It is
//! opt-in: the lab's own key stays unencrypted and authorised as before.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::files::run;
use crate::{Lab, LabError};

impl Lab {
    /// Makes an ed25519 key encrypted with `passphrase` in the lab's directory (as `name`, with
    /// `name.pub` beside it) and authorises it for root on every host. Returns the private key's
    /// path.
    pub fn encrypted_identity(&self, name: &str, passphrase: &str) -> Result<PathBuf, LabError> {
        let key = self.dir().join(name);
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f"])
                .arg(&key),
            "ssh-keygen (encrypted deployer key)",
        )?;
        let public = self.dir().join(format!("{name}.pub"));
        let line = std::fs::read_to_string(&public).map_err(|source| LabError::Io {
            what: format!("read {}", public.display()),
            source,
        })?;
        for host in self.hosts() {
            let keys = host.dir.join("root/.ssh/authorized_keys");
            let io = |source| LabError::Io {
                what: format!("append to {}", keys.display()),
                source,
            };
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&keys)
                .map_err(io)?;
            write!(file, "\n{}", line.trim_end()).map_err(io)?;
            writeln!(file).map_err(io)?;
        }
        Ok(key)
    }
}
