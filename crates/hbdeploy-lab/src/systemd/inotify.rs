//! The kernel's limit on inotify instances per user, which systemd hosts use up.
//!
//! Every systemd host holds several of root's inotify instances (counted on a booted lab host:
//! its systemd 5, logind 1; a login's user manager takes more while it runs). With the kernel's
//! default `fs.inotify.max_user_instances` of 128 about twenty hosts boot, and the next one's
//! systemd stops at once: "Failed to create control group inotify object: Too many open files".
//! So before booting systemd hosts the lab raises the limit, never lowering it, and a host that
//! fails for want of instances all the same says which setting to raise.

use std::path::Path;

/// The per-user limit.
const LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

/// What the lab raises the limit to: room for a hundred systemd hosts and more.
const WANTED: u64 = 1024;

/// Raises the machine's limit to [`WANTED`] where it is lower. Best effort: where `/proc/sys`
/// cannot be written (inside a container), a small lab still boots, and a host that runs out
/// says so ([`hint`]).
pub(crate) fn raise() {
    raise_at(Path::new(LIMIT));
}

fn raise_at(limit: &Path) {
    let current = std::fs::read_to_string(limit).ok();
    if let Some(value) = raised(current.as_deref()) {
        // Refused (read-only /proc/sys): the limit stays, and `hint` names it if it bites.
        let _ = std::fs::write(limit, value);
    }
}

/// The value to write for a limit that reads `current`, if it is lower than [`WANTED`].
fn raised(current: Option<&str>) -> Option<String> {
    let current: u64 = current?.trim().parse().ok()?;
    (current < WANTED).then(|| WANTED.to_string())
}

/// What to do, where a host's console shows that its systemd ran out of inotify instances.
pub(crate) fn hint(console: &str) -> Option<String> {
    let out_of_instances = console
        .lines()
        .any(|line| line.contains("inotify") && line.contains("Too many open files"));
    if !out_of_instances {
        return None;
    }
    let current = std::fs::read_to_string(LIMIT).unwrap_or_default();
    Some(format!(
        "the machine's inotify instances per user are used up (fs.inotify.max_user_instances \
         is {}): raise the limit, e.g. `sysctl -w fs.inotify.max_user_instances={WANTED}`, or \
         start fewer systemd hosts at once",
        current.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_limit_is_raised_and_a_higher_one_is_left_alone() {
        assert_eq!(raised(Some("128\n")).as_deref(), Some("1024"));
        assert_eq!(raised(Some("1024\n")), None);
        assert_eq!(raised(Some("65536")), None);
        // Unreadable or not a number: nothing is written.
        assert_eq!(raised(None), None);
        assert_eq!(raised(Some("many")), None);
    }

    #[test]
    fn the_limit_file_is_raised_in_place_and_never_lowered() {
        let dir = hbdeploy_files::Scratch::fresh("hbdeploy-lab-inotify").unwrap();
        let limit = dir.join("max_user_instances");
        std::fs::write(&limit, "128\n").unwrap();
        raise_at(&limit);
        assert_eq!(std::fs::read_to_string(&limit).unwrap(), "1024");
        std::fs::write(&limit, "4096\n").unwrap();
        raise_at(&limit);
        assert_eq!(std::fs::read_to_string(&limit).unwrap(), "4096\n");
    }

    #[test]
    fn only_a_console_that_ran_out_of_inotify_instances_gets_the_hint() {
        let console = "Welcome to Debian GNU/Linux 12 (bookworm)!\n\
                       Failed to create control group inotify object: Too many open files\n\
                       Failed to allocate manager object: Too many open files\n";
        let said = hint(console).expect("a hint");
        assert!(said.contains("fs.inotify.max_user_instances"), "{said}");
        assert!(said.contains("sysctl -w"), "{said}");
        assert_eq!(hint("Failed to mount /proc: Too many open files\n"), None);
        assert_eq!(hint("Failed to start unit inotify-watch.service\n"), None);
    }
}
