//! `--ask-sudo-password`: the one sudo password of a run, asked once on the terminal before any
//! host is contacted, and kept in the run's `Session`, which every connection shares.

use hbdeploy_pipeline::HostPlan;
use hbdeploy_ssh::Session;

use crate::error::AppError;
use crate::secret::{Typed, interactive, read_hidden};

/// `--ask-sudo-password`: asks once, on the terminal, and puts the password in `session`, for every host
/// whose login is not root. Refuses, before contacting any host, when there is no terminal.
pub(crate) async fn ask(hosts: &[HostPlan], session: &mut Session) -> Result<(), AppError> {
    let users: std::collections::BTreeSet<&str> = hosts
        .iter()
        .map(|h| h.target.user.as_str())
        .filter(|user| *user != "root")
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    if !interactive() {
        return Err(AppError::Usage(
            "--ask-sudo-password needs a terminal to ask on; nothing was changed".to_owned(),
            Some(
                "run it on a terminal, or give the login user passwordless sudo (NOPASSWD) on \
                 the hosts"
                    .to_owned(),
            ),
        ));
    }
    let prompt = format!(
        "sudo password for {} on the hosts: ",
        users.into_iter().collect::<Vec<_>>().join(", ")
    );
    let typed = tokio::task::spawn_blocking(move || read_hidden(&prompt))
        .await
        .map_err(|_| AppError::Usage("the password prompt ended abnormally".to_owned(), None))?
        .map_err(|err| {
            AppError::Usage(
                format!("cannot read the sudo password from the terminal: {err}"),
                None,
            )
        })?;
    let Typed::Line(typed) = typed else {
        return Err(AppError::Interrupted(
            "interrupted at the sudo password prompt; nothing was changed".to_owned(),
        ));
    };
    session.sudo_password = Some(hbdeploy_ssh::Password::new(&typed));
    Ok(())
}
