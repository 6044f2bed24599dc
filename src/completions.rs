//! `hbdeploy completions SHELL` and `hbdeploy man`: a completion script and the manual pages,
//! both generated from the clap definition in `cli.rs`, so they never disagree with it.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::error::AppError;
use crate::ui::out;

/// Prints the completion script for the shell.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "hbdeploy", &mut script);
    out(&String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}

/// Prints hbdeploy(1), or with `--dir` writes it and one page per subcommand
/// (`hbdeploy-apply.1`, …) into that directory.
pub fn man(args: &ManArgs) -> Result<ExitCode, AppError> {
    let command = Cli::command();
    let failed = |what: String| {
        move |err: std::io::Error| AppError::Usage(format!("cannot {what}: {err}"), None)
    };
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(failed(format!("create {}", dir.display())))?;
            clap_mangen::generate_to(command, dir)
                .map_err(failed(format!("write manual pages into {}", dir.display())))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(failed("render the manual page".to_owned()))?;
            out(&String::from_utf8_lossy(&page));
        }
    }
    Ok(ExitCode::SUCCESS)
}
