//! The fleet inventory of hbdeploy: parse and validate `fleet.toml`, and select hosts from it.
//!
//! [`Fleet::load`] reads the file and [`Fleet::parse`] turns its text into a [`Fleet`]: the
//! flake, the parallelism, and every [`Host`] with its address, attribute, tags and fully
//! resolved [`SshSettings`]. Every problem in the file is an [`InventoryError`] naming the file,
//! line and column, with a hint saying what to do. [`Selector`]s from the command line (`--all`,
//! `HOST`, `@TAG`) pick hosts with [`Fleet::select`].
//!
//! **Architecture Invariant:** this crate does no IO beyond reading `fleet.toml` (through
//! `hbdeploy_files`: a regular file, bounded), and nothing in
//! it is async. It knows nothing of nix or SSH connections; it only describes where to connect.
//!
//! The format is documented for users in `docs/fleet.md`.

mod builders;
mod doc;
mod error;
mod eval;
mod fleet;
mod glob;
mod health;
mod host;
mod name;
mod paths;
mod reader;
mod safety;
mod schema;
mod secrets;
mod select;
mod ssh;
mod suggest;
#[cfg(test)]
mod test_fleet;
mod transfer;

pub use builders::check_builders;
pub use error::{ConfigError, InventoryError, Location, Problem};
pub use eval::{FleetEval, MAX_EVAL_WORKERS, MIN_EVAL_MEMORY, parse_size};
pub use fleet::Fleet;
pub use health::{HealthCheck, Probe};
pub use host::{Host, LOCAL_ADDRESS};
pub use name::{HostName, MAX_NAME_LEN, NameError, Tag};
pub use paths::FlakeRef;
pub use safety::Safety;
pub use schema::{
    DEFAULT_ACTIVATION_TIMEOUT_SECS, DEFAULT_CONFIRM_TIMEOUT_SECS, DEFAULT_CONNECT_TIMEOUT_SECS,
    DEFAULT_HEALTH_RETRIES, DEFAULT_HEALTH_TIMEOUT_SECS, DEFAULT_KNOWN_HOSTS, DEFAULT_PARALLEL,
    DEFAULT_PORT, DEFAULT_USER, MAX_ACTIVATION_TIMEOUT_SECS, MAX_CONFIRM_TIMEOUT_SECS,
    MAX_CONNECT_TIMEOUT_SECS, MAX_FLEET_BYTES, MAX_PARALLEL, MAX_WAVE,
};
pub use secrets::{DEFAULT_SECRET_DIR, DEFAULT_SECRET_MODE, Secret, SecretSource, Upload};
pub use select::{SelectError, Selector};
pub use ssh::SshSettings;
pub use transfer::{BuildOn, FleetTransfer, Transfer};
