//! Secrets on a host: writing one (`secret.sh`, its content on the command's stdin, never on its
//! command line) and reading what each destination holds, as a hash with owner, group and mode
//! (`secret-state.sh`), so that nothing of the content comes back.

use hbdeploy_ssh::Exit;

use crate::port::Host;

use super::{Script, step};
use crate::{HostError, Stage};

/// Why `secret.sh` refused before it wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The owner is not a user of the host.
    UnknownOwner,
    /// The group is not a group of the host.
    UnknownGroup,
    /// The destination is a directory.
    DestIsDirectory,
}

/// How writing one secret ended.
#[derive(Debug)]
pub(crate) enum Written {
    /// The new file is in place.
    Done,
    /// Refused before anything was written.
    Refused(Refusal),
    /// It failed on the way; the destination is as it was.
    Failed {
        /// How the script ended.
        exit: Exit,
        /// Its last lines (never the content: the script prints none of it).
        tail: Vec<String>,
    },
}

/// What a host holds at a secret's destination (read as root; the content never comes back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOnHost {
    /// No file there.
    Absent,
    /// Something there that could not be hashed (not a regular file, or unreadable).
    Unreadable,
    /// A file with this hash, owner, group and mode.
    File {
        /// SHA-256 of its content, hex.
        sha256: String,
        /// Owning user.
        owner: String,
        /// Owning group.
        group: String,
        /// Permission bits.
        mode: u32,
    },
}

/// Writes `content` to `dest` on the host, as root, atomically, owned by `owner`:`group` with
/// `mode` set before the content is there.
pub(crate) async fn write(
    conn: &impl Host,
    (dest, owner, group, mode): (&str, &str, &str, u32),
    content: &[u8],
) -> Result<Written, HostError> {
    let mode = format!("{mode:04o}");
    let command = Script::Secret.command(&[dest, owner, group, mode.as_str()]);
    let output = step(
        Stage::Activate,
        "writing a secret",
        conn.run_root_with_stdin(&command, content, |_| {}),
    )
    .await?;
    if output.exit.success() {
        return Ok(Written::Done);
    }
    let refusal = output.stdout.lines().find_map(|line| match line.trim() {
        "hbdeploy-secret unknown-owner" => Some(Refusal::UnknownOwner),
        "hbdeploy-secret unknown-group" => Some(Refusal::UnknownGroup),
        "hbdeploy-secret dest-is-directory" => Some(Refusal::DestIsDirectory),
        _ => None,
    });
    Ok(match refusal {
        Some(refusal) => Written::Refused(refusal),
        None => Written::Failed {
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        },
    })
}

/// What the host holds at each of `dests`, in order.
pub(crate) async fn state(
    conn: &impl Host,
    dests: &[&str],
    stage: Stage,
) -> Result<Vec<SecretOnHost>, HostError> {
    let command = Script::SecretState.command(dests);
    let output = step(
        stage,
        "reading the hosts' secrets",
        conn.run_root(&command, |_| {}),
    )
    .await?;
    let parsed = output
        .exit
        .success()
        .then(|| parse_state(&output.stdout, dests.len()))
        .flatten();
    parsed.ok_or_else(|| HostError::Remote {
        command: "sha256sum of the secrets' files".to_owned(),
        exit: output.exit.clone(),
        tail: output.tail_lines(),
    })
}

/// The reply of `secret-state.sh`: one line per path, in order; `None` unless every path has
/// exactly one well-formed line.
fn parse_state(stdout: &str, count: usize) -> Option<Vec<SecretOnHost>> {
    let mut found: Vec<Option<SecretOnHost>> = vec![None; count];
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("secret") {
            continue;
        }
        let index: usize = words.next()?.parse().ok()?;
        let rest: Vec<&str> = words.collect();
        let state = match rest.as_slice() {
            ["absent"] => SecretOnHost::Absent,
            ["unreadable"] => SecretOnHost::Unreadable,
            [sha256, owner, group, mode] if sha256.len() == 64 => SecretOnHost::File {
                sha256: (*sha256).to_owned(),
                owner: (*owner).to_owned(),
                group: (*group).to_owned(),
                mode: u32::from_str_radix(mode, 8).ok()?,
            },
            _ => return None,
        };
        *found.get_mut(index)? = Some(state);
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reply_is_read_line_by_line() {
        let sum = "a".repeat(64);
        let reply = format!("secret 1 absent\nsecret 0 {sum} root keys 440\nnoise\n");
        assert_eq!(
            parse_state(&reply, 2),
            Some(vec![
                SecretOnHost::File {
                    sha256: sum.clone(),
                    owner: "root".to_owned(),
                    group: "keys".to_owned(),
                    mode: 0o440,
                },
                SecretOnHost::Absent,
            ])
        );
        assert_eq!(
            parse_state("secret 0 unreadable\n", 1),
            Some(vec![SecretOnHost::Unreadable])
        );
        // A path without its line, or a line that is not understood, is no answer.
        assert_eq!(parse_state("secret 0 absent\n", 2), None);
        assert_eq!(parse_state("secret 0 x y\n", 1), None);
        assert_eq!(parse_state("secret 5 absent\n", 1), None);
    }
}
