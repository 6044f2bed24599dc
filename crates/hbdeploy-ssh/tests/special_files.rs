//! Identity and known_hosts files that are not regular files are refused, never read: each call
//! runs in a thread bounded by a timeout, so a regression (reading `/dev/zero` until memory runs
//! out, or blocking on a FIFO) fails instead of hanging the suite.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hbdeploy_files::{Hint as _, Scratch};
use hbdeploy_ssh::{IdentityError, KeyFile};

/// A FIFO in a fresh directory, made with mkfifo(1): the directory's guard (keep it for as long
/// as the FIFO is used) and the FIFO's path.
fn fifo(test: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::fresh(&format!("hbdeploy-ssh-special-{test}")).expect("directory");
    let path = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    (dir, path)
}

/// Runs `f` in a thread; fails if it takes more than five seconds.
fn quickly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("returned within 5 s instead of hanging")
}

/// `KeyFile::inspect` and `decrypt` of `path`, rendered as message and first cause.
fn identity(path: PathBuf) -> [String; 2] {
    let render = |err: IdentityError| {
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        format!("{err} / {}", cause.unwrap_or_default())
    };
    quickly(move || {
        [
            KeyFile::inspect(&path).map_or_else(render, |k| format!("{k:?}")),
            hbdeploy_ssh::decrypt(&path, "x").map_or_else(render, |_| "decrypted".to_owned()),
        ]
    })
}

#[test]
fn dev_zero_as_identity_file_is_refused() {
    let expected = "cannot use identity file /dev/zero / /dev/zero is a character device, \
                    not a regular file";
    assert_eq!(identity(PathBuf::from("/dev/zero")), [expected, expected]);
}

#[test]
fn a_fifo_as_identity_file_is_refused() {
    let (_dir, path) = fifo("identity");
    let expected = format!(
        "cannot use identity file {0} / {0} is a FIFO (named pipe), not a regular file",
        path.display()
    );
    assert_eq!(identity(path.clone()), [expected.clone(), expected]);
    let hint = KeyFile::inspect(&path).err().and_then(|e| e.hint());
    assert!(hint.is_some_and(|h| h.contains("regular file")));
}

#[test]
fn special_known_hosts_files_are_refused_and_a_missing_one_is_empty() {
    let zero = quickly(|| hbdeploy_ssh::read_known_hosts(Path::new("/dev/zero")));
    assert_eq!(
        zero.err().map(|e| e.to_string()).as_deref(),
        Some("/dev/zero is a character device, not a regular file")
    );
    let (_dir, path) = fifo("known-hosts");
    let shown = path.display().to_string();
    let pipe = quickly(move || hbdeploy_ssh::read_known_hosts(&path));
    assert_eq!(
        pipe.err().map(|e| e.to_string()),
        Some(format!(
            "{shown} is a FIFO (named pipe), not a regular file"
        ))
    );
    let missing = hbdeploy_ssh::read_known_hosts(Path::new("/nonexistent/known_hosts"));
    assert_eq!(missing.ok().as_deref(), Some(""));
}
