//! Address slots: each running lab owns one `127.77.N.0/24` range and one state directory,
//! claimed with a file lock so labs in parallel tests (threads or processes) never share hosts.
//!
//! A slot also remembers the PIDs its lab started. When a lab's process died without cleaning up
//! (SIGKILL, power cut), the next lab to claim the slot stops exactly those processes, checked by
//! their command line, and the processes they started (a systemd host's container), before it
//! starts its own; then it unmounts what the dead lab mounted there and removes its cgroups.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::LabError;

/// How many labs can run at once on one machine.
pub const SLOTS: u32 = 250;

/// A claimed slot: its number, its state directory, and the lock that holds it.
#[derive(Debug)]
pub struct Slot {
    /// 0..SLOTS; the lab's hosts live at 127.77.<number>.x.
    pub number: u32,
    /// The lab's state directory.
    pub dir: PathBuf,
    _lock: File,
}

fn root() -> PathBuf {
    std::env::temp_dir().join("hbdeploy-lab")
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { what, source }
}

impl Slot {
    /// Claims the first free slot, stops what a dead lab left in it, and empties its directory.
    pub fn claim(clean: fn(&Path, u32)) -> Result<Slot, LabError> {
        let root = root();
        std::fs::create_dir_all(&root).map_err(io(format!("create {}", root.display())))?;
        for number in 0..SLOTS {
            let lock_path = root.join(format!("slot-{number}.lock"));
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io(format!("open {}", lock_path.display())))?;
            if lock.try_lock().is_err() {
                continue;
            }
            let dir = root.join(format!("slot-{number}"));
            stop_leftovers(&dir);
            clean(&dir, number);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io(format!("clear {}", dir.display())))?;
            }
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            return Ok(Slot {
                number,
                dir,
                _lock: lock,
            });
        }
        Err(LabError::NoFreeSlot)
    }

    /// Records a PID this lab started, so a later lab can stop it if this one dies.
    pub fn record_pid(&self, pid: u32) -> Result<(), LabError> {
        use std::io::Write;
        let path = self.dir.join("pids");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        writeln!(file, "{pid}").map_err(io(format!("write {}", path.display())))
    }
}

/// Kills the processes a dead lab recorded in `dir/pids`, but only those whose command line still
/// names `dir` (a recycled PID belongs to someone else and is left alone), and their descendants
/// (read before the kill, killed parents first: a systemd host's holder would boot another
/// container), then waits for them to be gone.
fn stop_leftovers(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("pids")) else {
        return;
    };
    let marker = dir.to_string_lossy().into_owned();
    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) {
            let mut tree = vec![pid];
            let mut next = 0;
            while let Some(&parent) = tree.get(next) {
                tree.extend(crate::process::children(parent));
                next += 1;
            }
            for &member in &tree {
                crate::process::signal(member, "KILL");
            }
            for member in tree {
                crate::process::wait_gone(member, std::time::Duration::from_secs(10));
            }
        }
    }
}
