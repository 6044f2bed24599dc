//! The host's answers, parsed once into types: nothing else reads the scripts' bare words.

use hbdeploy_nix::{SizedClosure, pair_sizes};
use hbdeploy_ssh::Exit;

/// What `switch-to-configuration dry-activate` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryActivation {
    /// How it ended.
    pub exit: Exit,
    /// Its output, both streams, in arrival order (at most [`DRY_ACTIVATE_LINES`]).
    pub lines: Vec<String>,
}

/// How many lines of dry-activate output a plan keeps per host.
pub const DRY_ACTIVATE_LINES: usize = 200;

/// Whether `realise.sh`'s answer names `out` among the paths it built.
pub(crate) fn produced(text: &str, out: &hbdeploy_nix::StorePath) -> bool {
    text.lines().any(|l| l == out.as_str())
}

/// Marks the end of the paths in `closure.sh`'s output.
const SIZES_MARK: &str = "hbdeploy-sizes";

/// `closure.sh`'s answer: the paths, the mark, then their sizes in the same order; `None` if it
/// is not that.
pub(crate) fn parse_closure(text: &str) -> Option<SizedClosure> {
    let (paths, sizes) = text.split_once(&format!("{SIZES_MARK}\n"))?;
    pair_sizes(paths, sizes)
}

/// The answer of `lock.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockReply {
    /// The lock is held; what its holder found under it.
    Locked(Under),
    /// Another deployment holds it; who, as it described itself.
    Busy(String),
    /// `lock.sh` ended without answering (it could not run, or was stopped); what it printed.
    Unanswered(String),
}

/// What `lock.sh` found once it held the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Under {
    /// Something of an earlier deployment may still act on the host: `settle.sh` must run
    /// before anything else. Also true for an answer that does not say.
    pub settle: bool,
    /// The output of the script it was given (`state.sh`), read under the lock.
    pub state: Option<String>,
}

impl LockReply {
    pub(crate) fn parse(line: &str) -> LockReply {
        if line == "locked" {
            return LockReply::Locked(Under {
                settle: true,
                state: None,
            });
        }
        if let Some(rest) = line.strip_prefix("locked\t") {
            let (flag, state) = rest.split_once('\t').unwrap_or((rest, ""));
            let state: Vec<&str> = state.split('\t').filter(|l| !l.is_empty()).collect();
            return LockReply::Locked(Under {
                settle: flag != "clear",
                state: (!state.is_empty()).then(|| state.join("\n") + "\n"),
            });
        }
        match line.strip_prefix("busy") {
            Some(holder) => LockReply::Busy(holder.trim().to_owned()),
            None => LockReply::Unanswered(line.to_owned()),
        }
    }
}

/// What `probe.sh` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The path is a NixOS system (has `bin/switch-to-configuration`).
    pub nixos: bool,
    /// The path is not in the host's store at all.
    pub missing: bool,
    /// The host runs systemd: jobs run in transient units.
    pub systemd: bool,
}

impl Probe {
    pub(crate) fn parse(text: &str) -> Probe {
        Probe {
            nixos: text.lines().any(|l| l == "nixos"),
            missing: text.lines().any(|l| l == "missing"),
            systemd: text.lines().any(|l| l == "systemd"),
        }
    }
}

/// Why a watchdog restored its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchdogReason {
    /// No confirmation within the window that opened when the activation ended.
    Unconfirmed,
    /// The activation was still running when `activation-timeout` expired; it was stopped.
    ActivationTimeout,
}

/// The answer of `decide.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The deployer decided: the activation stands and the watchdog is stopped.
    Confirmed,
    /// The watchdog decided and restored the previous system.
    RolledBack(WatchdogReason),
    /// The watchdog decided and its restore failed, with this exit.
    RollbackFailed(Exit),
    /// The watchdog decided, but the system profile had moved since the deployment (it points
    /// at this link): it left the host alone.
    ProfileMoved(String),
    /// The watchdog decided and is still restoring.
    Restoring,
    /// Nothing was decided: the activation this confirmation waits for has not ended with
    /// success (why).
    Undecided(String),
    /// The deployment's directory is gone: a later deployment settled it.
    Gone,
}

impl Decision {
    pub(crate) fn parse(text: &str) -> Decision {
        let line = text.lines().next().unwrap_or("").trim();
        if let Some(reason) = line.strip_prefix("rolled-back") {
            return Decision::RolledBack(if reason == ":activation-timeout" {
                WatchdogReason::ActivationTimeout
            } else {
                WatchdogReason::Unconfirmed
            });
        }
        if let Some(code) = line.strip_prefix("rollback-failed") {
            return Decision::RollbackFailed(
                code.trim().parse().map(Exit::Code).unwrap_or(Exit::Unknown),
            );
        }
        if let Some(link) = line.strip_prefix("profile-moved:") {
            return Decision::ProfileMoved(link.to_owned());
        }
        if let Some(why) = line.strip_prefix("undecided:") {
            return Decision::Undecided(why.to_owned());
        }
        match line {
            "confirmed" => Decision::Confirmed,
            "gone" => Decision::Gone,
            _ => Decision::Restoring,
        }
    }
}

/// One line of a job's output: hbdeploy's markers, or the job's own output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobLine<'a> {
    /// The profile's generation after the job moved it (`None` if the link did not parse).
    Generation(Option<u32>),
    /// How `switch-to-configuration` ended.
    Exit(Exit),
    /// Moving the profile failed, with this exit; nothing was activated.
    ProfileFailed(Exit),
    /// A restore left the system profile alone: it had moved since the deployment (it points
    /// at this link).
    ProfileMoved(&'a str),
    /// The job could not be started.
    LaunchFailed(&'a str),
    /// Settling found an earlier deployment's job: its name, token and whether it was stopped;
    /// for a stopped job also whether the host runs systemd and what that deployment recorded
    /// to go back to (`DIR/previous`, `unknown` if nothing).
    Settled {
        job: &'a str,
        token: &'a str,
        stopped: Option<Stopped<'a>>,
    },
    /// Settling found an earlier deployment whose watchdog was armed and nothing decided: its
    /// token, whether the host runs systemd, and what it recorded to go back to.
    Undecided {
        token: &'a str,
        systemd: bool,
        previous: &'a str,
    },
    /// Settling found the pending record of a deployment armed in an earlier boot and never
    /// settled: its token, the generation it made (empty if none) and the restore it recorded.
    Pending {
        token: &'a str,
        made: &'a str,
        change: &'a str,
    },
    Output(&'a str),
}

/// What settling says of a job it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped<'a> {
    /// The host runs systemd (the job was a unit).
    pub systemd: bool,
    /// The first line of the deployment's `previous` file, `unknown` when it had none.
    pub previous: &'a str,
}

impl<'a> JobLine<'a> {
    pub(crate) fn parse(text: &'a str) -> JobLine<'a> {
        let code = |c: &str| c.parse().map(Exit::Code).unwrap_or(Exit::Unknown);
        if let Some(link) = text.strip_prefix("hbdeploy-generation:") {
            JobLine::Generation(link_number(link))
        } else if let Some(c) = text.strip_prefix("hbdeploy-exit:") {
            JobLine::Exit(code(c))
        } else if let Some(c) = text.strip_prefix("hbdeploy-profile-failed:") {
            JobLine::ProfileFailed(code(c))
        } else if let Some(link) = text.strip_prefix("hbdeploy-profile-moved:") {
            JobLine::ProfileMoved(link)
        } else if let Some(rest) = text.strip_prefix("hbdeploy-undecided:") {
            match rest.splitn(3, ':').collect::<Vec<_>>().as_slice() {
                [token, systemd, previous] => JobLine::Undecided {
                    token,
                    systemd: *systemd == "1",
                    previous,
                },
                _ => JobLine::Output(text),
            }
        } else if let Some(rest) = text.strip_prefix("hbdeploy-pending:") {
            match rest.splitn(3, ':').collect::<Vec<_>>().as_slice() {
                [token, made, change] => JobLine::Pending {
                    token,
                    made,
                    change,
                },
                _ => JobLine::Output(text),
            }
        } else if let Some(why) = text.strip_prefix("hbdeploy-launch-failed:") {
            JobLine::LaunchFailed(why)
        } else if let Some(rest) = text.strip_prefix("hbdeploy-settled:") {
            let mut parts = rest.splitn(5, ':');
            match (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) {
                (Some(job), Some(token), Some("finished"), None, None) => JobLine::Settled {
                    job,
                    token,
                    stopped: None,
                },
                (Some(job), Some(token), Some("stopped"), Some(systemd), Some(previous)) => {
                    JobLine::Settled {
                        job,
                        token,
                        stopped: Some(Stopped {
                            systemd: systemd == "1",
                            previous,
                        }),
                    }
                }
                _ => JobLine::Output(text),
            }
        } else {
            JobLine::Output(text)
        }
    }
}

/// The generation number in a profile link name, e.g. `system-12-link` → 12.
pub(crate) fn link_number(link: &str) -> Option<u32> {
    let name = link.rsplit('/').next()?;
    name.strip_prefix("system-")?
        .strip_suffix("-link")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_into_types() {
        let under = |settle, state: Option<&str>| {
            LockReply::Locked(Under {
                settle,
                state: state.map(str::to_owned),
            })
        };
        assert_eq!(LockReply::parse("locked"), under(true, None));
        assert_eq!(
            LockReply::parse("locked\tclear\tlink /run/current-system /x\tsystemd\t"),
            under(false, Some("link /run/current-system /x\nsystemd\n"))
        );
        assert_eq!(LockReply::parse("locked\tsettle\t"), under(true, None));
        assert_eq!(LockReply::parse("locked\tsomething"), under(true, None));
        assert_eq!(
            LockReply::parse("busy hbdeploy apply by me"),
            LockReply::Busy("hbdeploy apply by me".to_owned())
        );
        assert_eq!(LockReply::parse(""), LockReply::Unanswered(String::new()));
        assert_eq!(Decision::parse("confirmed\n"), Decision::Confirmed);
        assert_eq!(
            Decision::parse("rolled-back:unconfirmed\n"),
            Decision::RolledBack(WatchdogReason::Unconfirmed)
        );
        assert_eq!(
            Decision::parse("rolled-back:activation-timeout\n"),
            Decision::RolledBack(WatchdogReason::ActivationTimeout)
        );
        assert_eq!(
            Decision::parse("rollback-failed 1\n"),
            Decision::RollbackFailed(Exit::Code(1))
        );
        assert_eq!(
            Decision::parse("profile-moved:system-9-link\n"),
            Decision::ProfileMoved("system-9-link".to_owned())
        );
        assert_eq!(Decision::parse("gone\n"), Decision::Gone);
        assert_eq!(Decision::parse("restoring\n"), Decision::Restoring);
        assert_eq!(
            Decision::parse("undecided:the activate job has not finished\n"),
            Decision::Undecided("the activate job has not finished".to_owned())
        );
        assert_eq!(
            JobLine::parse("hbdeploy-generation:system-7-link"),
            JobLine::Generation(Some(7))
        );
        assert_eq!(
            JobLine::parse("hbdeploy-exit:4"),
            JobLine::Exit(Exit::Code(4))
        );
        assert_eq!(
            JobLine::parse(
                "hbdeploy-settled:activate:ab12:stopped:1:restore /nix/store/x switch 4"
            ),
            JobLine::Settled {
                job: "activate",
                token: "ab12",
                stopped: Some(Stopped {
                    systemd: true,
                    previous: "restore /nix/store/x switch 4"
                })
            }
        );
        assert_eq!(
            JobLine::parse("hbdeploy-settled:restore:ab12:finished"),
            JobLine::Settled {
                job: "restore",
                token: "ab12",
                stopped: None
            }
        );
        assert_eq!(
            JobLine::parse("hbdeploy-undecided:ab12:0:restore /nix/store/x switch 4"),
            JobLine::Undecided {
                token: "ab12",
                systemd: false,
                previous: "restore /nix/store/x switch 4"
            }
        );
        assert_eq!(
            JobLine::parse("hbdeploy-profile-moved:system-9-link"),
            JobLine::ProfileMoved("system-9-link")
        );
        assert_eq!(
            JobLine::parse("hbdeploy-pending:ab12:system-5-link:restore /nix/store/x switch 4"),
            JobLine::Pending {
                token: "ab12",
                made: "system-5-link",
                change: "restore /nix/store/x switch 4"
            }
        );
        assert_eq!(JobLine::parse("hello"), JobLine::Output("hello"));
        let probe = Probe::parse("not-nixos\nsystemd\n");
        assert!(!probe.nixos && probe.systemd);
    }

    #[test]
    fn closures_parse_with_their_sizes() {
        let a = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a";
        let b = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b";
        let closure =
            parse_closure(&format!("{a}\n{b}\nhbdeploy-sizes\n10\n20\n")).expect("a closure");
        let sizes: Vec<(&str, u64)> = closure.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        assert_eq!(sizes, [(a, 10), (b, 20)]);
        assert!(parse_closure(&format!("{a}\n10\n")).is_none(), "no mark");
        let out = hbdeploy_nix::StorePath::new(b).expect("valid");
        assert!(produced(&format!("{a}\n{b}\n"), &out));
        assert!(!produced(&format!("{a}\n{b}-x\n"), &out));
    }

    #[test]
    fn link_numbers() {
        assert_eq!(
            link_number("/nix/var/nix/profiles/system-12-link"),
            Some(12)
        );
        assert_eq!(link_number("system-x-link"), None);
        assert_eq!(link_number("/nix/var/nix/profiles/system-*-link"), None);
    }
}
