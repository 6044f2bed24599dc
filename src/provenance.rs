//! Where a run came from, for the ledger: who ran it on which machine, the command line, and
//! the flake's git revision and whether its work tree was dirty.

use std::path::PathBuf;

use crate::ledger::FlakeInfo;

/// Who runs hbdeploy: `$USER`, `$LOGNAME`, or `unknown`.
pub fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This machine's name, from `/etc/hostname`.
pub fn machine() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The command line as recorded: the arguments without the program and `--fleet PATH`.
pub fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut kept = Vec::new();
    let mut skip_next = false;
    for arg in args.skip(1) {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg == "--fleet" {
            skip_next = true;
        } else if !arg.starts_with("--fleet=") {
            kept.push(arg);
        }
    }
    kept.join(" ")
}

/// The local directory of a flake reference, when it names one: a plain path, `path:…` or
/// `git+file://…` (without `?query`).
pub fn local_dir(reference: &str) -> Option<PathBuf> {
    let rest = if reference.starts_with('/') {
        reference
    } else if let Some(rest) = reference.strip_prefix("path:") {
        rest
    } else {
        reference.strip_prefix("git+file://")?
    };
    let path = rest.split(['?', '#']).next().unwrap_or(rest);
    path.starts_with('/').then(|| PathBuf::from(path))
}

/// The flake's git revision and whether its work tree is dirty, for a local flake in a git work
/// tree; `null`s otherwise.
pub async fn flake_info(reference: &str) -> FlakeInfo {
    let mut info = FlakeInfo {
        reference: reference.to_owned(),
        rev: None,
        dirty: None,
    };
    let Some(dir) = local_dir(reference) else {
        return info;
    };
    let git = |args: &'static [&'static str]| {
        let dir = dir.clone();
        async move {
            let output = tokio::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
    };
    info.rev = git(&["rev-parse", "HEAD"]).await.filter(|r| !r.is_empty());
    if info.rev.is_some() {
        info.dirty = git(&["status", "--porcelain"]).await.map(|s| !s.is_empty());
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Scratch;

    #[test]
    fn command_lines_drop_the_program_and_the_fleet() {
        let args = [
            "hbdeploy",
            "--fleet",
            "/x/fleet.toml",
            "apply",
            "--all",
            "--fleet=/y",
        ];
        assert_eq!(
            command_line(args.iter().map(|s| s.to_string())),
            "apply --all"
        );
    }

    #[test]
    fn local_flake_directories() {
        assert_eq!(local_dir("/srv/nixos"), Some(PathBuf::from("/srv/nixos")));
        assert_eq!(
            local_dir("path:/srv/nixos?x=1"),
            Some(PathBuf::from("/srv/nixos"))
        );
        assert_eq!(
            local_dir("git+file:///srv/nixos"),
            Some(PathBuf::from("/srv/nixos"))
        );
        assert_eq!(local_dir("github:me/nixos"), None);
        assert_eq!(local_dir("path:relative"), None);
    }

    #[tokio::test]
    async fn a_local_flake_in_git_has_a_revision_and_a_dirty_flag() {
        let dir = Scratch::fresh("hbdeploy-provenance").expect("dir");
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(&*dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .expect("git runs");
            assert!(status.status.success(), "{status:?}");
        };
        let reference = dir.display().to_string();
        assert_eq!(
            flake_info(&reference).await.rev,
            None,
            "not a git work tree"
        );
        git(&["init", "-q"]);
        std::fs::write(dir.join("flake.nix"), "{ }").expect("write");
        git(&["add", "flake.nix"]);
        git(&["commit", "-q", "-m", "x"]);
        let clean = flake_info(&format!("path:{reference}")).await;
        assert_eq!(clean.rev.as_deref().map(str::len), Some(40));
        assert_eq!(clean.dirty, Some(false));
        std::fs::write(dir.join("flake.nix"), "{ outputs = _: { }; }").expect("write");
        assert_eq!(flake_info(&reference).await.dirty, Some(true));
        let remote = flake_info("github:me/nixos").await;
        assert_eq!((remote.rev, remote.dirty), (None, None));
    }
}
