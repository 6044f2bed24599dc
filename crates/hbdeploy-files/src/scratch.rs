//! A directory removed when dropped: what the workspace's tests use for a scratch directory of
//! their own, so that it goes however the test ends (a failed assertion drops it while
//! unwinding).

use std::path::{Path, PathBuf};

/// A directory removed (with all it holds) when dropped; a removal that fails is ignored. Bind it
/// to a named variable (`let dir = …`, not `let _ = …`, which drops it at once) for as long as
/// the directory is used.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Guards `dir` as it is: making it is left to the caller.
    pub fn new(dir: PathBuf) -> Scratch {
        Scratch(dir)
    }

    /// A new, empty directory `NAME-PID` in the system's temporary directory, PID this
    /// process's id (test binaries run at once never share one); whatever an earlier run left at
    /// that path is removed first.
    pub fn fresh(name: &str) -> std::io::Result<Scratch> {
        let dir = Scratch(std::env::temp_dir().join(format!("{name}-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0)?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::Scratch;

    #[test]
    fn the_directory_goes_with_the_guard_also_when_the_test_panics() {
        let name = "hbdeploy-files-scratch";
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(path.join("left-over")).expect("an earlier run's leftovers");
        let dir = Scratch::fresh(name).expect("fresh");
        assert_eq!(dir.path(), path);
        assert!(dir.is_dir() && !dir.join("left-over").exists(), "not fresh");
        std::fs::write(dir.join("file"), "x").expect("write");
        drop(dir);
        assert!(!path.exists(), "dropped, still there");

        let panicked = std::panic::catch_unwind(|| {
            let dir = Scratch::fresh(name).expect("fresh");
            std::fs::write(dir.join("file"), "x").expect("write");
            panic!("a failed assertion");
        });
        assert!(panicked.is_err());
        assert!(!path.exists(), "left behind by a panic");
    }
}
