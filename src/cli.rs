//! The command line, as clap declares it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hbdeploy_pipeline::Goal;

/// Push-model NixOS fleet deployer: one build for every host, then copy and activate them all
/// in parallel over SSH.
#[derive(Debug, Parser)]
#[command(name = "hbdeploy", version, propagate_version = true)]
pub struct Cli {
    /// The inventory file.
    #[arg(
        long,
        global = true,
        env = "HBDEPLOY_FLEET",
        default_value = "fleet.toml",
        value_name = "PATH"
    )]
    pub fleet: PathBuf,

    /// Stream the output of nix and of activations.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the selected hosts' systems, copy them to the hosts and activate them.
    Apply(ApplyArgs),
    /// Put hosts back on their previous (or a named) system generation.
    Rollback(RollbackArgs),
    /// List a host's system generations.
    Generations(GenerationsArgs),
    /// Show what each host runs, and whether it is what the flake builds.
    Status(StatusArgs),
}

/// Which hosts: `--all`, names and `@tags`.
#[derive(Debug, Args)]
pub struct Selection {
    /// Every host of the fleet.
    #[arg(long)]
    pub all: bool,

    /// Hosts by name, or `@TAG` for every host with that tag; may be mixed.
    #[arg(value_name = "HOST|@TAG")]
    pub selectors: Vec<String>,
}

/// Options of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Switch to this generation instead of the one before the current one.
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,

    /// `switch` activates the generation now and at boot; `boot` only makes it the boot default.
    #[arg(long, value_enum, default_value_t = RollbackGoal::Switch)]
    pub goal: RollbackGoal,

    /// Hosts handled at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
}

/// `rollback --goal` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RollbackGoal {
    /// Activate now and make it the boot default.
    Switch,
    /// Make it the boot default only.
    Boot,
}

impl From<RollbackGoal> for Goal {
    fn from(goal: RollbackGoal) -> Goal {
        match goal {
            RollbackGoal::Switch => Goal::Switch,
            RollbackGoal::Boot => Goal::Boot,
        }
    }
}

/// Options of `generations`.
#[derive(Debug, Args)]
pub struct GenerationsArgs {
    /// The host.
    pub host: String,

    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which hosts (default: all).
    #[command(flatten)]
    pub selection: Selection,

    /// Evaluate and build the flake to tell whether each host runs what it builds now.
    #[arg(long)]
    pub build: bool,

    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Hosts queried at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// What to do with the new systems (NixOS semantics; `build` and `push` stop early).
    #[arg(long, value_enum, default_value_t = GoalArg::Switch)]
    pub goal: GoalArg,

    /// Hosts copied to and activated at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// Activate hosts that already run the new system too (otherwise they are `unchanged`).
    #[arg(long)]
    pub reactivate: bool,

    /// After the results, show where each host's time went: build (shared), connect, copy,
    /// activate.
    #[arg(long)]
    pub timings: bool,
}

/// `--goal` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GoalArg {
    /// Activate now and make it the boot default.
    Switch,
    /// Make it the boot default only.
    Boot,
    /// Activate now only.
    Test,
    /// Show what activation would do.
    DryActivate,
    /// Stop after building.
    Build,
    /// Stop after copying.
    Push,
}

impl From<GoalArg> for Goal {
    fn from(goal: GoalArg) -> Goal {
        match goal {
            GoalArg::Switch => Goal::Switch,
            GoalArg::Boot => Goal::Boot,
            GoalArg::Test => Goal::Test,
            GoalArg::DryActivate => Goal::DryActivate,
            GoalArg::Build => Goal::Build,
            GoalArg::Push => Goal::Push,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn goal_names_match_the_pipeline() {
        for goal in GoalArg::value_variants() {
            let name = goal.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(Goal::from(*goal).as_str()));
        }
    }
}
