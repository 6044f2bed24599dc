//! The command line, as clap declares it.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hbdeploy_pipeline::Goal;
use hbdeploy_pipeline::install::DiskArg;

mod target;

pub use target::TargetArg;

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

    /// When to use colour on the terminal (`NO_COLOR` set means never, unless `always`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

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
    /// Run the hosts' health checks now (changes nothing).
    Check(CheckArgs),
    /// Fetch hosts' SSH host keys for review (trusts nothing); --pin writes them into fleet.toml.
    Keyscan(KeyscanArgs),
    /// Install a host's system on a machine booted into the NixOS installer, wiping its disks.
    Install(InstallArgs),
    /// Build the selected hosts' systems and show what applying them would change.
    Plan(PlanArgs),
    /// Build the selected hosts' systems here (no host is contacted); --systems-out writes
    /// them into a file for `apply --systems` on another machine.
    Build(BuildArgs),
    /// Run a command on the selected hosts in parallel.
    Exec(ExecArgs),
    /// Show the deployment history recorded by apply and rollback.
    History(HistoryArgs),
    /// Reboot hosts and check that each comes back, with the same host key, into the system its
    /// profile points at, and passes its health checks.
    Reboot(RebootArgs),
    /// Upload the selected hosts' secrets (fleet.toml `secrets`) without deploying.
    Secrets(SecretsArgs),
    /// Print a shell completion script for bash, zsh or fish.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per subcommand into a directory.
    Man(ManArgs),
}

/// Options of `secrets`.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// What to do with the secrets.
    #[command(subcommand)]
    pub command: SecretsCommand,
}

/// The subcommands of `secrets`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Write every secret of the selected hosts now (pre- and post-activation ones alike).
    Upload(SecretsUploadArgs),
}

/// Options of `secrets upload`.
#[derive(Debug, Args)]
pub struct SecretsUploadArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Hosts written to at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// Ask once, on the terminal, for the password `sudo` wants on hosts whose login user is not
    /// root; it is passed to sudo on stdin, never on a command line.
    #[arg(long)]
    pub ask_sudo_password: bool,

    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Which hosts: `--all`, names and `@tags`.
#[derive(Debug, Args)]
pub struct Selection {
    /// Every host of the fleet.
    #[arg(long)]
    pub all: bool,

    /// Hosts by name, or `@TAG` for every host with that tag; patterns ('web-*', '@eu-?',
    /// 'db-[12]') choose every matching host, and `!` excludes ('!server', '!@mobile'); may be
    /// mixed. Quote patterns and `!` for the shell.
    #[arg(value_name = "HOST|@TAG|PATTERN|!EXCLUDE")]
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
    #[arg(long, default_value = "switch", value_parser = goals(&ROLLBACK_GOALS))]
    pub goal: Goal,

    /// Hosts handled at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// Put the host back on what this deployment (an ID from `hbdeploy history`) gave it.
    #[arg(long, value_name = "ID", conflicts_with = "to")]
    pub to_deploy: Option<String>,

    /// Ask once, on the terminal, for the password `sudo` wants on hosts whose login user is not
    /// root; it is passed to sudo on stdin, never on a command line.
    #[arg(long)]
    pub ask_sudo_password: bool,

    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Options of `keyscan`.
#[derive(Debug, Args)]
pub struct KeyscanArgs {
    /// Which hosts (default: all).
    #[command(flatten)]
    pub selection: Selection,

    /// Write the keys into fleet.toml as `host-key` of each host.
    #[arg(long)]
    pub pin: bool,
}

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which hosts (default: all).
    #[command(flatten)]
    pub selection: Selection,

    /// Hosts checked at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,
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

    /// Evaluation limits.
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// What to do with the new systems (NixOS semantics; `build` and `push` stop early).
    #[arg(long, default_value = "switch", value_parser = goals(&Goal::ALL))]
    pub goal: Goal,

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

    /// Do not arm the on-host watchdog that restores the previous generation unless hbdeploy
    /// confirms the new system over a new connection (armed by default for switch and test).
    #[arg(long)]
    pub no_magic_rollback: bool,

    /// Seconds the watchdog waits for the confirmation once the activation has finished
    /// (default: `confirm-timeout` in fleet.toml, 30).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub confirm_timeout: Option<u64>,

    /// Seconds an activation may run before it is stopped and the previous generation restored
    /// (default: `activation-timeout` in fleet.toml, 300).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub activation_timeout: Option<u64>,

    /// Leave a host whose activation failed on the failed generation instead of putting the
    /// previous one back.
    #[arg(long)]
    pub no_auto_rollback: bool,

    /// After a host's deployment succeeded, reboot it and check that it booted the new system
    /// (with --goal boot or switch).
    #[arg(long)]
    pub reboot: bool,

    /// With --reboot: seconds to wait for a host to answer from its new boot (default:
    /// `reboot-timeout` in fleet.toml, 600).
    #[arg(long, value_name = "SECONDS", requires = "reboot", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reboot_timeout: Option<u64>,

    /// Deploy these hosts (names or @tags) first, and the others only if they all succeed.
    #[arg(long, value_name = "HOST|@TAG")]
    pub canary: Vec<String>,

    /// At most N hosts per wave; a failed wave stops the next ones.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: Option<u16>,

    /// Trust hosts whose key is not known yet, and add their key to the known_hosts file (a
    /// changed or revoked key is still refused). Prefer `hbdeploy keyscan` and a review.
    #[arg(long)]
    pub accept_new: bool,

    /// Copy everything from here instead of letting hosts fetch from their binary caches.
    #[arg(long)]
    pub no_substitute: bool,

    /// Build every selected host's system on the host itself (copy the derivation, realise it).
    #[arg(long)]
    pub build_on_target: bool,

    /// Nix remote builders for the local build (as nix's `builders` setting; default:
    /// `builders` in fleet.toml).
    #[arg(long, value_name = "SPEC", value_parser = builders_spec)]
    pub builders: Option<String>,

    /// Show the plan first and ask for confirmation on the terminal before changing any host.
    #[arg(long)]
    pub ask: bool,

    /// With --ask: show the plan and apply without asking (also without a terminal).
    #[arg(long, requires = "ask")]
    pub yes: bool,

    /// Ask once, on the terminal, for the password `sudo` wants on hosts whose login user is not
    /// root; it is passed to sudo on stdin, never on a command line.
    #[arg(long)]
    pub ask_sudo_password: bool,

    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Evaluation limits.
    #[command(flatten)]
    pub eval: EvalArgs,

    /// Deploy the systems in this JSON file (host name → store path, as `hbdeploy build
    /// --systems-out` writes) as they are, without evaluating or building anything.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["ask", "build_on_target", "builders"]
    )]
    pub systems: Option<PathBuf>,

    /// With --systems: fetch systems the local store lacks from this nix store (e.g.
    /// file:///srv/cache, https://cache.example.org) before sending them to the hosts.
    #[arg(long, value_name = "STORE-URL", requires = "systems", value_parser = store_url)]
    pub from: Option<String>,
}

/// `--from`: a nix store URL, passed to `nix copy --from` as one argument.
fn store_url(text: &str) -> Result<String, String> {
    if text.is_empty() || text.starts_with('-') {
        return Err("a nix store URL, e.g. file:///srv/cache or https://cache.example.org".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a store URL has no spaces or control characters".into());
    }
    Ok(text.to_owned())
}

/// Options of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Write each built host's system store path into this JSON file, for `hbdeploy apply
    /// --systems FILE`.
    #[arg(long, value_name = "FILE")]
    pub systems_out: Option<PathBuf>,

    /// Nix remote builders for the build (as nix's `builders` setting; default: `builders` in
    /// fleet.toml).
    #[arg(long, value_name = "SPEC", value_parser = builders_spec)]
    pub builders: Option<String>,

    /// Evaluation limits.
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Options of `reboot`.
#[derive(Debug, Args)]
pub struct RebootArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Seconds to wait for a host to answer from its new boot (default: `reboot-timeout` in
    /// fleet.toml, 600).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reboot_timeout: Option<u64>,

    /// Hosts rebooted at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// Ask once, on the terminal, for the password `sudo` wants on hosts whose login user is not
    /// root; it is passed to sudo on stdin, never on a command line.
    #[arg(long)]
    pub ask_sudo_password: bool,

    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Copy each changed host's closure to it (its running system stays as it is) to show what
    /// `switch-to-configuration dry-activate` would restart.
    #[arg(long)]
    pub copy: bool,

    /// With --copy: ask once, on the terminal, for the password `sudo` wants on hosts whose
    /// login user is not root (dry-activate runs as root).
    #[arg(long, requires = "copy")]
    pub ask_sudo_password: bool,

    /// Print the plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Hosts read at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// Evaluation limits.
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// How much evaluation runs at once (`apply`, `plan`, `status --build`).
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// nix evaluator processes at once (default: `eval-workers` in fleet.toml, else one per
    /// core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub eval_workers: Option<u16>,

    /// Memory all evaluators together may hold, e.g. 8GiB (default: `eval-memory` in
    /// fleet.toml, else 75% of the memory available); an evaluator that passes its share is
    /// stopped.
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub eval_memory: Option<u64>,

    /// Hosts per evaluator process (default: decided as the work goes); for the benchmark.
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub eval_chunk: Option<u16>,
}

fn memory_size(text: &str) -> Result<u64, String> {
    hbdeploy_inventory::parse_size(text)
}

/// Options of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Which hosts.
    #[command(flatten)]
    pub selection: Selection,

    /// Print each host's output together once it finished, instead of line by line as it comes.
    #[arg(long)]
    pub group: bool,

    /// Hosts running the command at once (default: `parallel` in fleet.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: Option<u16>,

    /// The command, after `--`; run by each host's login shell, as `ssh HOST COMMAND…` does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Options of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this host's entries.
    #[arg(value_name = "HOST")]
    pub host: Option<String>,

    /// Only the last N deployments.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write hbdeploy.1 and a page per subcommand (hbdeploy-apply.1, …) into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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

/// The goals `rollback --goal` takes: those that set the profile.
const ROLLBACK_GOALS: [Goal; 2] = [Goal::Switch, Goal::Boot];

/// A `--goal` parser taking `choices`, each by the pipeline's name for it, with its help line.
fn goals(choices: &'static [Goal]) -> impl TypedValueParser<Value = Goal> {
    PossibleValuesParser::new(
        choices
            .iter()
            .map(|goal| PossibleValue::new(goal.as_str()).help(goal_help(*goal))),
    )
    // The parser lets only the names of `choices` through, so the search always finds one.
    .map(move |name| {
        choices
            .iter()
            .copied()
            .find(|goal| goal.as_str() == name)
            .unwrap_or_default()
    })
}

/// What a goal does, in `--help`.
fn goal_help(goal: Goal) -> &'static str {
    match goal {
        Goal::Switch => "Activate now and make it the boot default",
        Goal::Boot => "Make it the boot default only",
        Goal::Test => "Activate now only",
        Goal::DryActivate => "Show what activation would do",
        Goal::Build => "Stop after building",
        Goal::Push => "Stop after copying",
    }
}

/// `--builders`: checked as `builders` in fleet.toml is, for what nix would misread.
fn builders_spec(spec: &str) -> Result<String, String> {
    hbdeploy_inventory::check_builders(spec).map(|()| spec.to_owned())
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
    fn every_goal_parses_by_its_name_and_rollback_takes_only_those_setting_the_profile() {
        for goal in Goal::ALL {
            let cli = Cli::try_parse_from(["hbdeploy", "apply", "--all", "--goal", goal.as_str()])
                .expect("parses");
            let Command::Apply(args) = cli.command else {
                panic!("not apply");
            };
            assert_eq!(args.goal, goal);
            let rollback =
                Cli::try_parse_from(["hbdeploy", "rollback", "a", "--goal", goal.as_str()]);
            match rollback.map(|cli| cli.command) {
                Ok(Command::Rollback(args)) => {
                    assert_eq!(args.goal, goal);
                    assert!(goal.sets_profile(), "{goal:?}");
                }
                Ok(_) => panic!("not rollback"),
                Err(_) => assert!(!ROLLBACK_GOALS.contains(&goal), "{goal:?}"),
            }
        }
        let defaults = Cli::try_parse_from(["hbdeploy", "apply", "--all"]).expect("parses");
        let Command::Apply(args) = defaults.command else {
            panic!("not apply");
        };
        assert_eq!(args.goal, Goal::Switch);
    }
}
