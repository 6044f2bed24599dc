//! Tests of [`read`](crate::read) against real special files; each FIFO test runs in a thread
//! bounded by a timeout, so a regression fails instead of hanging the suite.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// A fresh directory for one test, removed when the guard drops.
fn scratch(test: &str) -> Scratch {
    Scratch::fresh(&format!("hbdeploy-files-tests-{test}")).expect("scratch directory")
}

/// A FIFO at `dir/name`, made with mkfifo(1).
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
    path
}

/// Runs `f` in a thread and fails if it does not return within five seconds.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("finished within 5 s instead of hanging")
}

fn describe(result: Result<Vec<u8>, FileError>) -> String {
    match result {
        Ok(bytes) => format!("{} bytes", bytes.len()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn regular_files_and_symlinks_to_them_are_read() {
    let dir = scratch("regular");
    let file = dir.join("known_hosts");
    std::fs::write(&file, "h ssh-ed25519 AAAA\n").expect("write");
    let link = dir.join("link");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    assert_eq!(read(&file, 100).expect("read"), b"h ssh-ed25519 AAAA\n");
    assert_eq!(
        read_to_string(&link, 100).expect("read"),
        "h ssh-ed25519 AAAA\n"
    );
    // Exactly the limit is fine; one byte less is too small.
    assert_eq!(read(&file, 19).map(|b| b.len()).ok(), Some(19));
    assert_eq!(
        describe(read(&file, 18)),
        format!(
            "{} is larger than 18 bytes, the most hbdeploy reads of such a file",
            file.display()
        )
    );
}

#[test]
fn dev_zero_is_refused_without_reading() {
    let err = within_seconds(|| read(Path::new("/dev/zero"), MIB)).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "/dev/zero is a character device, not a regular file"
    );
    assert!(err.is_refusal());
    assert_eq!(err.path(), Path::new("/dev/zero"));
}

#[test]
fn a_symlink_to_dev_zero_is_refused() {
    let dir = scratch("zero-link");
    let link = dir.join("record.json");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    let err = within_seconds(move || read(&link, MIB)).expect_err("refused");
    assert!(
        matches!(
            err,
            FileError::NotRegular {
                kind: Kind::CharDevice,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = scratch("fifo");
    let path = fifo(&dir, "id_ed25519");
    let shown = path.display().to_string();
    let err = within_seconds(move || read(&path, MIB)).expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("{shown} is a FIFO (named pipe), not a regular file")
    );
}

#[test]
fn a_fifo_that_passed_the_first_look_is_refused_through_its_handle() {
    // What a FIFO swapped in between the look and the open meets: the open itself must not
    // block, and the opened file is judged again.
    let dir = scratch("fifo-handle");
    let path = fifo(&dir, "known_hosts");
    let err = within_seconds(move || open_and_judge(&path, MIB).map(drop)).expect_err("refused");
    assert!(
        matches!(
            err,
            FileError::NotRegular {
                kind: Kind::Fifo,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn directories_and_missing_files_are_errors_naming_the_path() {
    let dir = scratch("dirs");
    assert_eq!(
        describe(read(&dir, MIB)),
        format!("{} is a directory, not a regular file", dir.display())
    );
    let missing = read(&dir.join("nope"), MIB).expect_err("missing");
    assert!(missing.is_not_found() && !missing.is_refusal());
    assert_eq!(
        missing.to_string(),
        format!("cannot read {}", dir.join("nope").display())
    );
}

#[test]
fn text_must_be_utf8_and_check_reads_nothing() {
    let dir = scratch("text");
    let file = dir.join("f");
    std::fs::write(&file, b"ok\xff").expect("write");
    let err = read_to_string(&file, MIB).expect_err("not UTF-8");
    assert_eq!(err.io_kind(), Some(io::ErrorKind::InvalidData));
    assert!(check(&file, 3).is_ok());
    assert!(matches!(
        check(&file, 2),
        Err(FileError::TooLarge { limit: 2, .. })
    ));
    assert!(check(Path::new("/dev/zero"), MIB).is_err());
}

#[test]
fn sizes_are_shown_in_whole_units() {
    assert_eq!(Size(16 * MIB).to_string(), "16 MiB");
    assert_eq!(Size(64 * 1024).to_string(), "64 KiB");
    assert_eq!(Size(1000).to_string(), "1000 bytes");
}
