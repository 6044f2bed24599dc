//! The nix driver of hbdeploy.
//!
//! Builds the argument vectors for `nix eval`, `nix build --json`, `nix copy` and `nix-store`
//! queries, runs them as child processes, and parses what they print; it also holds the nix
//! expressions and the `disko-install` command line that installing a host needs. It knows
//! nothing of russh or of hosts: callers pass flake attributes, store paths and SSH destinations.
//!
//! nix 2.8 (Debian's `nix-bin`) is the oldest version supported; where newer versions differ
//! (the installable syntax for a derivation's output) the detected [`NixVersion`] decides.

mod build;
mod closure;
mod command;
mod copy;
mod disko;
mod error;
mod eval;
mod expr;
mod fetch;
mod sizes;
mod store_path;

use std::path::PathBuf;

pub use build::BuildResults;
pub use closure::closures_from_graph;
pub use command::{OutputSink, resident_bytes};
pub use copy::{CopyOptions, SshDest};
pub use disko::{DISKO_INSTALL, DiskDevice, InstallDrvs, disko_install_argv};
pub use error::NixError;
pub use eval::{
    DEFAULT_MEMORY_PERCENT, EvalLimits, EvalResults, LineSink, MAX_CHUNK, ResultSink, Toplevel,
    available_memory, nix_string,
};
pub use sizes::{SizedClosure, pair_sizes};
pub use store_path::{StorePath, StorePathError};

/// The experimental features every `nix` call needs; passed explicitly so a stock nix.conf works.
const FEATURES: [&str; 2] = ["--extra-experimental-features", "nix-command flakes"];

/// A nix version as `nix --version` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NixVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl NixVersion {
    /// Parses the output of `nix --version`, e.g. `nix (Nix) 2.8.0`.
    pub fn parse(text: &str) -> Option<NixVersion> {
        let version = text.split_whitespace().last()?;
        let mut parts = version.split(['.', 'p', 'r', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(NixVersion { major, minor })
    }
}

impl std::fmt::Display for NixVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Handle on the local nix installation.
#[derive(Debug, Clone)]
pub struct Nix {
    nix: PathBuf,
    nix_store: PathBuf,
    /// `nix --version`'s answer, asked in the background by [`Nix::detect`]: only building
    /// needs it, so evaluation does not wait for it.
    version: std::sync::Arc<tokio::sync::OnceCell<NixVersion>>,
    /// Closure requests waiting to be asked together ([`Nix::closure`]).
    closures: std::sync::Arc<closure::Batcher>,
}

impl Nix {
    /// Finds `nix` and `nix-store` on `PATH`. Nothing runs yet: a command that builds nothing
    /// (`apply --systems`, `rollback`, `status`, ...) never starts `nix --version`, a nix
    /// start-up of about 30 ms of CPU (a nix that cannot be run fails at its first command).
    pub async fn detect() -> Result<Nix, NixError> {
        Ok(Nix {
            nix: PathBuf::from("nix"),
            nix_store: PathBuf::from("nix-store"),
            version: std::sync::Arc::default(),
            closures: std::sync::Arc::default(),
        })
    }

    /// Starts asking nix its version in the background, without waiting for the answer, for the
    /// builds to come ([`Nix::version`] waits for it): called where an evaluation starts, so the
    /// answer comes while nix evaluates.
    pub fn ask_version(&self) {
        if self.version.initialized() {
            return;
        }
        let asking = self.clone();
        tokio::spawn(async move {
            // An error is asked again, and returned, by the caller that needs the version.
            let _ = asking.version().await;
        });
    }

    /// The version of nix, asked once (`nix --version`).
    pub async fn version(&self) -> Result<NixVersion, NixError> {
        self.version
            .get_or_try_init(|| query_version(&self.nix))
            .await
            .copied()
    }
}

async fn query_version(nix: &std::path::Path) -> Result<NixVersion, NixError> {
    let output = command::run(
        command::cmd(nix, ["--version"]),
        "nix --version",
        &mut |_| {},
    )
    .await?;
    if !output.success {
        return Err(NixError::failed("nix --version", &output));
    }
    NixVersion::parse(&output.stdout).ok_or_else(|| NixError::Unexpected {
        command: "nix --version".to_owned(),
        detail: format!("cannot read a version from {:?}", output.stdout.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that builds nothing starts no `nix --version`; an evaluation asks for it in
    /// the background. Needs nix on `PATH`.
    #[tokio::test]
    async fn the_version_is_asked_only_once_an_evaluation_starts() {
        let nix = Nix::detect().await.expect("nix found");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(
            !nix.version.initialized(),
            "nix --version ran although nothing asked for it"
        );
        nix.ask_version();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !nix.version.initialized() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(nix.version.initialized(), "the version was not asked");
    }

    #[test]
    fn versions_parse() {
        let check = |text: &str, expected: Option<(u32, u32)>| {
            let got = NixVersion::parse(text).map(|v| (v.major, v.minor));
            assert_eq!(got, expected, "{text}");
        };
        check("nix (Nix) 2.8.0\n", Some((2, 8)));
        check("nix (Nix) 2.24.10", Some((2, 24)));
        check("nix (Lix, like Nix) 2.91.1", Some((2, 91)));
        check("nix (Nix) 2.18.1pre20231010_abcdef", Some((2, 18)));
        check("garbage", None);
        check("", None);
    }
}
