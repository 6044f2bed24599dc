//! `check-validity.sh`, run on this machine with `/bin/sh` and a `nix-store` of the test's own
//! first on `PATH`: it has no `timeout` around it as a whole (the lock's holder runs it in its
//! own shell), so the one program that may wait (`nix-store`, for the store's locks) is stopped
//! at the limit it is given.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Script;

/// A directory of this test's own, removed when dropped (a failed test too).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_nix_store_that_never_answers_is_stopped_at_the_limit() {
    let dir = std::env::temp_dir().join(format!("hbdeploy-validity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = Scratch(dir);
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let nix_store = bin.join("nix-store");
    std::fs::write(&nix_store, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(
        &nix_store,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The first path is on disk: only nix-store may say what is missing.
    let input = format!("{}\n/nix/store/not-there\n", scratch.0.display());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", Script::CheckValidity.text(), "hbdeploy", "1"])
        .env("PATH", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
