//! Safe-activation settings: magic rollback and its confirmation timeout, set in `[fleet]` for
//! every host and overridable per host, and a host's rollout `wave`.

use std::time::Duration;

use crate::error::InventoryError;
use crate::reader::Table;
use crate::schema::{
    DEFAULT_ACTIVATION_TIMEOUT_SECS, DEFAULT_CONFIRM_TIMEOUT_SECS, DEFAULT_REBOOT_TIMEOUT_SECS,
    MAX_ACTIVATION_TIMEOUT_SECS, MAX_CONFIRM_TIMEOUT_SECS, MAX_REBOOT_TIMEOUT_SECS,
};

/// How a host is protected while it switches, fully resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Safety {
    /// Arm a watchdog on the host that restores the previous generation unless the deployer
    /// confirms, over a new connection, that the host is still reachable (`switch` and `test`).
    pub magic_rollback: bool,
    /// How long the watchdog waits for that confirmation, counted from the end of the
    /// activation.
    pub confirm_timeout: Duration,
    /// How long an activation may run before it is stopped and the previous generation
    /// restored.
    pub activation_timeout: Duration,
    /// How long a checked reboot (`hbdeploy reboot`, `apply --reboot`) waits for the host to
    /// answer SSH from its new boot.
    pub reboot_timeout: Duration,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            magic_rollback: true,
            confirm_timeout: Duration::from_secs(DEFAULT_CONFIRM_TIMEOUT_SECS),
            activation_timeout: Duration::from_secs(DEFAULT_ACTIVATION_TIMEOUT_SECS),
            reboot_timeout: Duration::from_secs(DEFAULT_REBOOT_TIMEOUT_SECS),
        }
    }
}

/// The safety keys set in one table; unset keys are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SafetyOverrides {
    magic_rollback: Option<bool>,
    confirm_timeout: Option<Duration>,
    activation_timeout: Option<Duration>,
    reboot_timeout: Option<Duration>,
}

impl SafetyOverrides {
    /// Reads `magic-rollback`, `confirm-timeout`, `activation-timeout` and `reboot-timeout` of
    /// `table` (`[fleet]` or a host table).
    pub(crate) fn read(table: &Table<'_>) -> Result<Self, InventoryError> {
        Ok(SafetyOverrides {
            magic_rollback: table.boolean("magic-rollback")?,
            confirm_timeout: table
                .integer::<u64>("confirm-timeout", 1, MAX_CONFIRM_TIMEOUT_SECS)?
                .map(Duration::from_secs),
            activation_timeout: table
                .integer::<u64>("activation-timeout", 1, MAX_ACTIVATION_TIMEOUT_SECS)?
                .map(Duration::from_secs),
            reboot_timeout: table
                .integer::<u64>("reboot-timeout", 1, MAX_REBOOT_TIMEOUT_SECS)?
                .map(Duration::from_secs),
        })
    }

    /// A host's settings: its own table over `[fleet]` over the defaults.
    pub(crate) fn resolve(&self, fleet: &SafetyOverrides) -> Safety {
        let default = Safety::default();
        Safety {
            magic_rollback: self
                .magic_rollback
                .or(fleet.magic_rollback)
                .unwrap_or(default.magic_rollback),
            confirm_timeout: self
                .confirm_timeout
                .or(fleet.confirm_timeout)
                .unwrap_or(default.confirm_timeout),
            activation_timeout: self
                .activation_timeout
                .or(fleet.activation_timeout)
                .unwrap_or(default.activation_timeout),
            reboot_timeout: self
                .reboot_timeout
                .or(fleet.reboot_timeout)
                .unwrap_or(default.reboot_timeout),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::test_fleet::parse;

    #[test]
    fn host_overrides_fleet_overrides_defaults() {
        let fleet = parse(
            "[fleet]\nflake = \".\"\nconfirm-timeout = 12\nactivation-timeout = 600\n\
             reboot-timeout = 900\n\
             [hosts.a]\naddress = \"a\"\n\
             [hosts.b]\naddress = \"b\"\nmagic-rollback = false\nconfirm-timeout = 5\n\
             activation-timeout = 7\nwave = 2\nreboot-timeout = 60\n",
        )
        .expect("valid");
        let a = fleet.host("a").expect("a");
        assert_eq!(
            a.safety,
            Safety {
                magic_rollback: true,
                confirm_timeout: Duration::from_secs(12),
                activation_timeout: Duration::from_secs(600),
                reboot_timeout: Duration::from_secs(900),
            }
        );
        assert_eq!(a.wave, 0);
        let b = fleet.host("b").expect("b");
        assert!(!b.safety.magic_rollback);
        assert_eq!(b.safety.confirm_timeout, Duration::from_secs(5));
        assert_eq!(b.safety.activation_timeout, Duration::from_secs(7));
        assert_eq!(b.safety.reboot_timeout, Duration::from_secs(60));
        let default = parse("[fleet]\nflake = \".\"\n[hosts.c]\naddress = \"c\"\n").expect("valid");
        assert_eq!(
            default.host("c").expect("c").safety.activation_timeout,
            Duration::from_secs(DEFAULT_ACTIVATION_TIMEOUT_SECS)
        );
        assert_eq!(b.wave, 2);
    }

    #[test]
    fn bad_values_are_located() {
        let err =
            parse("[fleet]\nflake = \".\"\nmagic-rollback = \"yes\"\n[hosts.a]\naddress = \"a\"\n")
                .expect_err("string is not a boolean");
        assert!(err.contains("fleet.toml:3:18"), "{err}");
        assert!(err.contains("must be a boolean"), "{err}");
        let err =
            parse("[fleet]\nflake = \".\"\n[hosts.a]\naddress = \"a\"\nconfirm-timeout = 0\n")
                .expect_err("zero");
        assert!(err.contains("fleet.toml:5:19"), "{err}");
        let err = parse(
            "[fleet]\nflake = \".\"\n[hosts.a]\naddress = \"a\"\nactivation-timeout = 86401\n",
        )
        .expect_err("more than a day");
        assert!(err.contains("fleet.toml:5:22"), "{err}");
        assert!(err.contains("between 1 and 86400"), "{err}");
        let err = parse("[fleet]\nflake = \".\"\nreboot-timeout = 0\n[hosts.a]\naddress = \"a\"\n")
            .expect_err("zero");
        assert!(err.contains("fleet.toml:3:18"), "{err}");
        assert!(err.contains("reboot-timeout"), "{err}");
    }
}
