//! For the tests that run the remote protocol's scripts with `sh` on this machine (no lab): the
//! scripts' paths, and a deployment directory of the test's own.

use std::path::{Path, PathBuf};

/// The path of one of the remote protocol's scripts.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/hbdeploy-pipeline/src/remote")
        .join(name)
}

/// A deployment directory of the test's own, removed when dropped. Its name is unique, so the
/// `pending-NAME` record a watchdog writes (and `decide.sh` drops after a confirmation) is none
/// that exists.
pub struct DeploymentDir(PathBuf);

impl DeploymentDir {
    /// In the temporary directory.
    pub fn new(test: &str) -> DeploymentDir {
        DeploymentDir::new_in(&std::env::temp_dir(), test)
    }

    /// In `base`.
    pub fn new_in(base: &Path, test: &str) -> DeploymentDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir = base.join(format!("hbdeploy-it-{test}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the deployment directory");
        DeploymentDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write");
    }
}

impl Drop for DeploymentDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The record a watchdog of the test's own wrote, named after the directory, even when
        // the test failed.
        if let Some(name) = self.0.file_name() {
            let record = format!("/nix/var/hbdeploy/pending-{}", name.to_string_lossy());
            let _ = std::fs::remove_file(record);
        }
    }
}
