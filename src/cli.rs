//! The command line, as clap declares it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hbdeploy_pipeline::Goal;
use hbdeploy_pipeline::install::{DiskArg, TargetArg};

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
    /// Install a host's system on a machine booted into the NixOS installer, wiping its disks.
    Install(InstallArgs),
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Every host of the fleet.
    #[arg(long)]
    pub all: bool,

    /// Hosts by name, or `@TAG` for every host with that tag; may be mixed.
    #[arg(value_name = "HOST|@TAG")]
    pub selectors: Vec<String>,

    /// What to do with the new systems (NixOS semantics; `build` and `push` stop early).
    #[arg(long, value_enum, default_value_t = GoalArg::Switch)]
    pub goal: GoalArg,

    /// Hosts copied to and activated at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
}

/// Options of `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The host to install, by its name in fleet.toml.
    #[arg(value_name = "HOST")]
    pub host: String,

    /// A disk to wipe: DEVICE for a host with one disko disk, NAME=DEVICE for each of several.
    #[arg(long = "disk", value_name = "[NAME=]DEVICE", required = true)]
    pub disks: Vec<DiskArg>,

    /// Only print the host's disko-install command, to run on the machine to install.
    #[arg(long, conflicts_with_all = ["target", "yes_wipe_disk", "force"])]
    pub print: bool,

    /// Install over SSH onto the machine at this address, booted into the NixOS installer,
    /// instead of onto the machine hbdeploy runs on (user: the host's in fleet.toml; port: 22).
    #[arg(long, value_name = "[USER@]ADDRESS[:PORT]")]
    pub target: Option<TargetArg>,

    /// Wipe the disks without asking; without a terminal to ask on, install refuses otherwise.
    #[arg(long)]
    pub yes_wipe_disk: bool,

    /// Install even on a machine that is not a NixOS live installer.
    #[arg(long)]
    pub force: bool,
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
