//! Following a job's log (`launch.sh`, `run.sh`) with `sh` on this machine, no lab: the job's
//! output reaches the follower whole.

use std::path::Path;
use std::process::Command;

use crate::support::scripts::{DeploymentDir, script};

/// A job that writes files of its own into the deployment's directory while it is followed
/// (switch.sh writes the generation it made) still has every line of its output shown: `tail
/// --pid` once ended without reading the log's last change when it met events of other files
/// in the log's directory (1 in 10 under load). Six followers at once, 20 jobs each, on a tmpfs
/// where there is one (inotify, as `/run` on a host).
#[test]
fn a_followed_job_shows_all_its_output_whatever_it_writes_beside_its_log() {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let followers: Vec<_> = (0..6)
        .map(|follower| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mut lost = 0;
                for i in 0..20 {
                    let dir = DeploymentDir::new_in(&base, &format!("follow-{follower}-{i}"));
                    for name in ["run.sh", "launch.sh"] {
                        std::fs::copy(script(name), dir.path().join(name)).expect("copy");
                    }
                    dir.write(
                        "job.sh",
                        "echo a >\"$1/made\"\necho b >\"$1/$2.generation\"\n\
                         echo 'the last line'\necho 1 >\"$1/$2.end\"\nexit 1\n",
                    );
                    let out = Command::new("sh")
                        .arg(dir.path().join("launch.sh"))
                        .arg(dir.path())
                        .args(["activate", "0", "1", "job.sh"])
                        .output()
                        .expect("sh runs");
                    let said = String::from_utf8_lossy(&out.stdout);
                    assert!(said.contains("hbdeploy-exit:1"), "{said}");
                    if !said.contains("the last line") {
                        lost += 1;
                    }
                }
                lost
            })
        })
        .collect();
    let lost: u32 = followers
        .into_iter()
        .map(|f| f.join().expect("follower"))
        .sum();
    assert_eq!(lost, 0, "the job's output was lost {lost} times in 120");
}
