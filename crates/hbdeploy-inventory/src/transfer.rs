//! Build and transfer placement: where a host's system is built, whether its closure is signed,
//! whether the host may fetch paths from its own binary caches, and how copies are sent. Fleet-wide
//! settings live in `[fleet]`; `substitute`, `compress` and `trusted` may be overridden per host,
//! and `build-on` and `fast-connection` are per host.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::builders;
use crate::error::InventoryError;
use crate::paths::Resolver;
use crate::reader::Table;
use crate::schema::MAX_PARALLEL;

/// Where a host's system is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildOn {
    /// On the deploying machine (and its remote builders), in the one `nix build`.
    #[default]
    Local,
    /// On the host itself: the derivation is copied there and realised.
    Target,
}

/// How a host's closure travels, fully resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Let the host fetch what its binary caches have (`nix copy --substitute-on-destination`).
    pub substitute: bool,
    /// Compress the SSH stream of `nix copy`.
    pub compress: bool,
    /// Where the system is built.
    pub build_on: BuildOn,
    /// Whether the login user is trusted by the host's nix (unsigned paths are then accepted
    /// with `--no-check-sigs`); `None`: trusted when the user is root.
    pub trusted: Option<bool>,
}

/// Fleet-wide build and transfer settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetTransfer {
    /// Passed to the local `nix build` as `--builders`.
    pub builders: Option<String>,
    /// A nix secret key file: closures are signed with it before they are copied.
    pub signing_key: Option<PathBuf>,
    /// Hosts copied to at once (default: `parallel`).
    pub parallel_copy: Option<NonZeroUsize>,
    /// Hosts activated at once (default: `parallel`).
    pub parallel_activate: Option<NonZeroUsize>,
}

/// The per-host keys as set in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TransferOverrides {
    substitute: Option<bool>,
    compress: Option<bool>,
    trusted: Option<bool>,
}

impl TransferOverrides {
    /// Reads `substitute`, `compress` and `trusted` of `table` (`[fleet]` or a host table).
    pub(crate) fn read(table: &Table<'_>) -> Result<Self, InventoryError> {
        Ok(TransferOverrides {
            substitute: table.boolean("substitute")?,
            compress: table.boolean("compress")?,
            trusted: table.boolean("trusted")?,
        })
    }

    /// A host's settings from its table (`fast-connection`, `build-on` and the overrides) over
    /// `[fleet]` over the defaults.
    pub(crate) fn resolve(
        &self,
        fleet: &TransferOverrides,
        host: &Table<'_>,
    ) -> Result<Transfer, InventoryError> {
        let fast = host.boolean("fast-connection")?.unwrap_or(false);
        let build_on = match host.string("build-on")? {
            None => BuildOn::Local,
            Some(value) => match *value.get_ref() {
                "local" => BuildOn::Local,
                "target" => BuildOn::Target,
                other => {
                    return Err(host.invalid(
                        "build-on",
                        value.span(),
                        format!("is `{other}`, not `local` or `target`"),
                        "write build-on = \"target\" to build on the host, or leave it out",
                    ));
                }
            },
        };
        Ok(Transfer {
            // A fast connection to the deployer beats the host's caches: copy everything.
            substitute: !fast && self.substitute.or(fleet.substitute).unwrap_or(true),
            compress: self.compress.or(fleet.compress).unwrap_or(false),
            build_on,
            trusted: self.trusted.or(fleet.trusted),
        })
    }
}

/// Reads the fleet-wide keys of `[fleet]`.
pub(crate) fn read_fleet(
    fleet: &Table<'_>,
    resolver: &Resolver<'_>,
) -> Result<FleetTransfer, InventoryError> {
    let nonzero = |key: &str| -> Result<Option<NonZeroUsize>, InventoryError> {
        Ok(fleet
            .integer::<usize>(key, 1, MAX_PARALLEL)?
            .and_then(NonZeroUsize::new))
    };
    let signing_key = match fleet.string("signing-key")? {
        None => None,
        Some(value) => Some(
            resolver
                .path(value.get_ref())
                .map_err(|e| fleet.invalid("signing-key", value.span(), e.reason(), e.advice()))?,
        ),
    };
    Ok(FleetTransfer {
        builders: read_builders(fleet)?,
        signing_key,
        parallel_copy: nonzero("parallel-copy")?,
        parallel_activate: nonzero("parallel-activate")?,
    })
}

/// Reads `builders`, refusing what nix would read differently from how it looks.
fn read_builders(fleet: &Table<'_>) -> Result<Option<String>, InventoryError> {
    let Some(value) = fleet.string("builders")? else {
        return Ok(None);
    };
    if let Some(problem) = builders::problem(value.get_ref()) {
        return Err(fleet.invalid("builders", value.span(), problem.reason, problem.hint));
    }
    Ok(Some(value.into_inner().to_owned()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    use crate::test_fleet::parse;

    #[test]
    fn defaults_fleet_settings_and_host_overrides() {
        let fleet = parse(
            "[fleet]\nflake = \".\"\nbuilders = \"ssh://b x86_64-linux\"\nsigning-key = \"keys/deploy.sec\"\n\
             parallel-copy = 2\nparallel-activate = 5\ncompress = true\n\
             [hosts.a]\naddress = \"a\"\n\
             [hosts.b]\naddress = \"b\"\nfast-connection = true\nbuild-on = \"target\"\ncompress = false\ntrusted = false\n",
        )
        .expect("valid");
        assert_eq!(
            fleet.transfer.builders.as_deref(),
            Some("ssh://b x86_64-linux")
        );
        assert_eq!(
            fleet.transfer.signing_key.as_deref(),
            Some(Path::new("/f/keys/deploy.sec"))
        );
        assert_eq!(fleet.transfer.parallel_copy.map(NonZeroUsize::get), Some(2));
        assert_eq!(
            fleet.transfer.parallel_activate.map(NonZeroUsize::get),
            Some(5)
        );
        let a = fleet.host("a").expect("a").transfer;
        assert_eq!(
            a,
            Transfer {
                substitute: true,
                compress: true,
                build_on: BuildOn::Local,
                trusted: None
            }
        );
        let b = fleet.host("b").expect("b").transfer;
        assert!(!b.substitute && !b.compress);
        assert_eq!((b.build_on, b.trusted), (BuildOn::Target, Some(false)));
    }

    #[test]
    fn bad_builders_are_located() {
        let err = parse(
            "[fleet]\nflake = \".\"\nbuilders = \"ssh://b x86_64-linux # big\"\n\
             [hosts.a]\naddress = \"a\"\n",
        )
        .expect_err("a comment");
        assert!(
            err.starts_with("/f/fleet.toml:3:12: `builders` in [fleet] contains `#`"),
            "{err}"
        );
        let ok = parse(
            "[fleet]\nflake = \".\"\nbuilders = \"@/etc/nix/machines\"\n[hosts.a]\naddress = \"a\"\n",
        );
        assert_eq!(
            ok.map(|f| f.transfer.builders),
            Ok(Some("@/etc/nix/machines".to_owned()))
        );
    }

    #[test]
    fn bad_build_on_is_located() {
        let err =
            parse("[fleet]\nflake = \".\"\n[hosts.a]\naddress = \"a\"\nbuild-on = \"remote\"\n")
                .expect_err("unknown value");
        assert!(err.contains("fleet.toml:5:12"), "{err}");
        assert!(err.contains("not `local` or `target`"), "{err}");
    }
}
