//! The lab's flake: toy NixOS systems built by real nix without nixpkgs.
//!
//! Each host's `nixosConfigurations.<host>.config.system.build.toplevel` is a closure of three
//! store paths (a payload of random bytes, an `etc` tree, the toplevel) whose
//! `bin/switch-to-configuration` behaves like NixOS's for `switch`, `boot`, `test` and
//! `dry-activate`: it points `/run/current-system` at the system, records the boot default, and
//! logs every activation to the host's state directory. A system can be told to fail.
//!
//! For `hbdeploy install`, each configuration also declares disko disks
//! (`config.disko.devices.disk`), has a toy `config.system.build.diskoScript` (see
//! `installer.rs`) and an `extendModules` that honours a module overriding a disk's `device`,
//! as NixOS's does.

use std::collections::{BTreeMap, BTreeSet};

use hbdeploy_nix::nix_string;

use crate::installer::disko_script_for;

pub use crate::files::HOST_STATE;

/// How a toy system's activation behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Activates and exits 0.
    #[default]
    Succeed,
    /// Prints an error and exits 1 before changing anything.
    Fail,
    /// Never finishes (sleeps for an hour).
    Hang,
    /// Switches `/run/current-system`, then exits 4: a half-done activation.
    FailAfterSwitch,
    /// Sleeps this many seconds, then activates and exits 0.
    Slow(u32),
    /// Fails like [`Activation::Fail`] when activating now (`switch`, `test`); `boot` works.
    FailNow,
    /// Activates, then kills the host's sshd and exits 0: the host can no longer be reached.
    KillSshd,
    /// Activates, then kills every sshd process of the host — the listener and every session,
    /// the deployer's own included — and exits 0: the host can no longer be reached, and the
    /// connection that started the activation is cut.
    KillAllSshd,
    /// Waits until this many hosts of the lab have reached this point of their activation (at
    /// most a minute, then fails): proof that activations overlap, without timing assumptions.
    Barrier(u32),
    /// Has no `bin/switch-to-configuration` at all: not a NixOS system.
    NotASystem,
    /// Waits until the test opens the gate ([`crate::Lab::open_gate`]; at most two minutes,
    /// then fails): an activation that is running for as long as a test needs it to.
    Gate,
    /// Prints this many MiB of output (lines of text), then activates and exits 0.
    Chatty(u32),
    /// Activates, kills every sshd of the host (like [`Activation::KillAllSshd`]: the
    /// deployer's session is cut) and starts sshd again, as a restart of sshd that also ends
    /// its sessions would: the host stays reachable. Exits 0.
    CutSessions,
}

/// Whether a toy system can be evaluated and built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Buildability {
    /// Evaluates and builds.
    #[default]
    Builds,
    /// Evaluates, but its builder exits 1.
    BuildFails,
    /// Its evaluation throws.
    EvalFails,
}

/// What evaluating a toy system costs, on top of the milliseconds a toy takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evaluation {
    /// Nothing more.
    #[default]
    Free,
    /// Pure Nix work: `hashes` SHA-256 hashes of a 1 MiB string (CPU time; see
    /// [`crate::eval_cost`] for hashes per CPU-second here) and `memory_mib` strings of 1 MiB
    /// held by the configuration, so until the evaluator ends, as a real NixOS configuration's
    /// values are.
    Costs {
        /// Hashes of 1 MiB.
        hashes: u64,
        /// MiB held.
        memory_mib: u64,
    },
    /// The evaluation builds a derivation (import from derivation) that waits until `count`
    /// evaluations of this `token` have reached it (at most a minute, then it fails): proof that
    /// evaluations overlap, without timing assumptions. A new `token` makes a new derivation,
    /// so nothing built earlier lets it pass.
    Barrier {
        /// Evaluations that must meet.
        count: u32,
        /// Tells this meeting from earlier ones.
        token: u64,
    },
    /// The evaluation builds a derivation (import from derivation) that waits until `count`
    /// hosts of the lab have reached their [`Activation::Barrier`] (at most a minute, then it
    /// fails): proof that a host is activated while another is still being evaluated. `token`
    /// as for [`Evaluation::Barrier`].
    AfterActivations {
        /// Activations to wait for.
        count: u32,
        /// Tells this wait from earlier ones.
        token: u64,
    },
    /// Says `lab: evaluating HOST` (`builtins.trace`, on nix's stderr) each time it is
    /// evaluated, so a test can count evaluations.
    Traced,
    /// The evaluation builds a derivation (import from derivation) that waits until the test
    /// lets it go with [`crate::Lab::release_evaluations`] (at most a minute, then it fails):
    /// a test can look at the hosts while their systems are still being evaluated. `token` as
    /// for [`Evaluation::Barrier`].
    UntilReleased {
        /// Tells this wait from earlier ones.
        token: u64,
    },
}

/// How a toy system's disko script behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Disko {
    /// "Formats" every disk (overwrites the stand-in file), records it, exits 0.
    #[default]
    Formats,
    /// Prints an error and exits 1 before touching any disk.
    Fails,
}

/// One host's toy system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSpec {
    /// Bumping it yields a new system (new store paths), like a configuration change.
    pub generation: u32,
    /// Size of the payload file, in bytes (random, so incompressible).
    pub payload_bytes: u64,
    /// How activation behaves.
    pub activation: Activation,
    /// Whether it evaluates and builds.
    pub build: Buildability,
    /// Its disko disks, `disko.devices.disk.<name>.device`: name → device.
    pub disks: BTreeMap<String, String>,
    /// How its disko script behaves.
    pub disko: Disko,
    /// Has `kernel` and `initrd` (one pair per host, the same in every generation) but no
    /// `kernel-modules`, like a system whose kernel has no loadable modules; without it the
    /// toy has no kernel files at all.
    pub kernel: bool,
    /// What evaluating it costs.
    pub evaluation: Evaluation,
    /// How many small store paths its closure holds besides its own few, like the thousands of
    /// a real NixOS system (`builtins.toFile`, so they cost no builds); new ones per generation.
    pub extra_paths: u32,
}

impl Default for SystemSpec {
    fn default() -> Self {
        SystemSpec {
            generation: 1,
            payload_bytes: 4096,
            activation: Activation::Succeed,
            build: Buildability::Builds,
            disks: BTreeMap::from([("vda".to_owned(), "/dev/vda".to_owned())]),
            disko: Disko::Formats,
            kernel: false,
            evaluation: Evaluation::Free,
            extra_paths: 0,
        }
    }
}

/// Where evaluations meet at [`Evaluation::Barrier`], under the lab's directory; made writable
/// for every nixbld user, as the builds that meet run as different ones.
pub const EVAL_BARRIER_DIR: &str = "eval-barrier";

/// The nix expression of `evaluation`'s extra work for `host`, as mkConfig's `extra`.
fn evaluation_expr(host: &str, evaluation: Evaluation, lab_dir: &str) -> String {
    match evaluation {
        Evaluation::Free => "{ }".to_owned(),
        Evaluation::Traced => "{ trace = true; }".to_owned(),
        Evaluation::Costs { hashes, memory_mib } => {
            format!("{{ hashes = {hashes}; mib = {memory_mib}; }}")
        }
        Evaluation::Barrier { count, token } => {
            let dir = format!("{lab_dir}/{EVAL_BARRIER_DIR}");
            let script = format!(
                "touch {dir}/{token}-{host}; n=0; \
                 while [ \"$(ls {dir} | grep -c '^{token}-')\" -lt {count} ]; do \
                 n=$((n+1)); if [ $n -gt 600 ]; then \
                 echo \"error: evaluation barrier of {host}: fewer than {count} evaluations \
                 met within a minute\" >&2; exit 1; fi; sleep 0.1; done; echo true > $out"
            );
            format!(
                "{{ barrier = sh {} {} {{ }}; }}",
                nix_string(&script),
                nix_string(&format!("lab-eval-barrier-{host}-{token}"))
            )
        }
        Evaluation::UntilReleased { token } => {
            let go = format!("{lab_dir}/{EVAL_BARRIER_DIR}/{token}-released");
            let script = format!(
                "n=0; while [ ! -e {go} ]; do n=$((n+1)); if [ $n -gt 600 ]; then \
                 echo \"error: evaluation of {host} was not let go within a minute\" >&2; \
                 exit 1; fi; sleep 0.1; done; echo true > $out"
            );
            format!(
                "{{ barrier = sh {} {} {{ }}; }}",
                nix_string(&script),
                nix_string(&format!("lab-eval-released-{host}-{token}"))
            )
        }
        Evaluation::AfterActivations { count, token } => {
            let script = format!(
                "n=0; while [ \"$(ls {lab_dir}/barrier | wc -l)\" -lt {count} ]; do \
                 n=$((n+1)); if [ $n -gt 600 ]; then \
                 echo \"error: evaluation of {host} waited a minute for {count} activations\" >&2; \
                 exit 1; fi; sleep 0.1; done; echo true > $out"
            );
            format!(
                "{{ barrier = sh {} {} {{ }}; }}",
                nix_string(&script),
                nix_string(&format!("lab-eval-after-{host}-{token}"))
            )
        }
    }
}

/// The activation script; `@out@`, `@host@` and `@failure@` are filled in by the builder.
/// Written without `${` and without `''` so it needs no escaping beyond a nix string's.
const SWITCH_SCRIPT: &str = r#"#!/bin/sh
# Toy switch-to-configuration of the hbdeploy lab.
set -e
goal="$1"
sys=@out@
state=/var/lib/hbdeploy-lab
case "$goal" in
  switch|boot|test|dry-activate) ;;
  *) echo "usage: switch-to-configuration switch|boot|test|dry-activate" >&2; exit 1 ;;
esac
echo "$goal $sys" >> "$state/activations.log"
if [ "$goal" = dry-activate ]; then
  echo "would activate $sys on @host@"
  exit 0
fi
@failure_before@
if [ "$goal" = switch ] || [ "$goal" = test ]; then
  ln -sfn "$sys" /run/current-system
  echo "activated @host@ ($goal): $sys"
fi
if [ "$goal" = switch ] || [ "$goal" = boot ]; then
  ln -sfn "$sys" "$state/boot-default"
  echo "boot default of @host@ is now $sys"
fi
@sshd@
@failure_after@
"#;

/// Like a NixOS activation (re)starting sshd.service: make sure the host's sshd runs.
const ENSURE_SSHD: &str = r#"if [ "$goal" = switch ] || [ "$goal" = test ]; then
  if ! kill -0 "$(cat /run/sshd.pid 2>/dev/null)" 2>/dev/null; then
    /usr/sbin/sshd -f /var/lib/hbdeploy-lab/sshd_config -E /var/lib/hbdeploy-lab/sshd.log
    echo "started sshd"
  fi
fi"#;

/// The same on a systemd host, where sshd is the unit `hbdeploy-lab-sshd.service`, as NixOS
/// restarts `sshd.service`: an sshd started by the script itself would be killed with the
/// transient unit the activation may run in.
const ENSURE_SSHD_UNIT: &str = r#"if [ "$goal" = switch ] || [ "$goal" = test ]; then
  if ! systemctl is-active --quiet hbdeploy-lab-sshd.service; then
    systemctl start hbdeploy-lab-sshd.service
    echo "started sshd"
  fi
fi"#;

/// A broken configuration that takes sshd down with it.
const KILL_SSHD: &str = r#"if [ "$goal" = switch ] || [ "$goal" = test ]; then
  kill "$(cat /run/sshd.pid)"
  echo "stopped sshd"
fi"#;

/// Every sshd of the host: the listener and its descendants (the sessions), found by their
/// parent PIDs from the listener's PID down, so that no process outside the host is touched
/// even where the host sees the machine's `/proc`; on a systemd host the unit is stopped too,
/// as NixOS stopping `sshd.service` would.
const KILL_ALL_SSHD: &str = r#"if [ "$goal" = switch ] || [ "$goal" = test ]; then
  kids="$(cat /run/sshd.pid)"
  all=""
  while [ -n "$kids" ]; do
    all="$all $kids"
    next=""
    for p in /proc/[0-9]*; do
      pp="$(awk '/^PPid:/ { print $2 }' "$p/status" 2>/dev/null)" || continue
      for k in $kids; do
        if [ "$pp" = "$k" ]; then next="$next $(basename "$p")"; fi
      done
    done
    kids="$next"
  done
  if [ -d /run/systemd/system ]; then systemctl stop hbdeploy-lab-sshd.service || true; fi
  kill -9 $all 2>/dev/null || true
  echo "killed every sshd:$all"
fi"#;

fn failure_snippets(activation: Activation) -> (String, String) {
    let (before, after) = match activation {
        Activation::Succeed => ("", ""),
        Activation::Fail => (
            "echo \"error: toy activation of @host@ fails on purpose\" >&2; exit 1",
            "",
        ),
        Activation::Hang => (
            "echo \"activation of @host@ hangs on purpose\"; sleep 3600",
            "",
        ),
        Activation::FailAfterSwitch => (
            "",
            "echo \"error: toy activation of @host@ failed after switching\" >&2; exit 4",
        ),
        Activation::KillSshd
        | Activation::KillAllSshd
        | Activation::CutSessions
        | Activation::NotASystem => ("", ""),
        Activation::Barrier(count) => {
            return (
                format!(
                    "touch @labdir@/barrier/@host@; n=0; \
                     while [ \"$(ls @labdir@/barrier | wc -l)\" -lt {count} ]; do \
                     n=$((n+1)); if [ $n -gt 600 ]; then echo \"error: barrier timeout\" >&2; exit 1; fi; \
                     sleep 0.1; done"
                ),
                String::new(),
            );
        }
        Activation::Gate => (
            "echo \"waiting at the gate\"; n=0; while [ ! -e @labdir@/gate ]; do \
             n=$((n+1)); if [ $n -gt 1200 ]; then echo \"error: gate timeout\" >&2; exit 1; fi; \
             sleep 0.1; done",
            "",
        ),
        Activation::Slow(seconds) => return (format!("sleep {seconds}"), String::new()),
        Activation::Chatty(mib) => {
            return (
                format!(
                    "yes \"a chatty toy activation prints this line again and again\" | \
                     head -c {}",
                    u64::from(mib) * 1024 * 1024
                ),
                String::new(),
            );
        }
        Activation::FailNow => (
            "if [ \"$goal\" != boot ]; then echo \"error: toy activation of @host@ fails on purpose\" >&2; exit 1; fi",
            "",
        ),
    };
    (before.to_owned(), after.to_owned())
}

fn script_for(host: &str, spec: &SystemSpec, lab_dir: &str, systemd: bool) -> String {
    if spec.activation == Activation::NotASystem {
        return String::new();
    }
    let (before, after) = failure_snippets(spec.activation);
    let ensure = if systemd {
        ENSURE_SSHD_UNIT
    } else {
        ENSURE_SSHD
    };
    let cut_then_ensure;
    let sshd = match spec.activation {
        Activation::KillSshd => KILL_SSHD,
        Activation::KillAllSshd => KILL_ALL_SSHD,
        Activation::CutSessions => {
            // The killed listener may linger a moment (a zombie passes `kill -0`): its pid file
            // goes, so that sshd is started again for certain.
            cut_then_ensure = format!("{KILL_ALL_SSHD}\nrm -f /run/sshd.pid\n{ensure}");
            cut_then_ensure.as_str()
        }
        _ => ensure,
    };
    SWITCH_SCRIPT
        .replace("@sshd@", sshd)
        .replace("@failure_before@", &before)
        .replace("@failure_after@", &after)
        .replace("@host@", host)
        .replace("@labdir@", lab_dir)
}

/// The text of the lab's `flake.nix` for `systems` (host name → spec), for `system` (e.g.
/// `x86_64-linux`); `lab_dir` is where barrier and gate files live (seen by every host);
/// `systemd_hosts` are the hosts whose sshd is a systemd unit.
pub fn flake_text(
    system: &str,
    systems: &BTreeMap<String, SystemSpec>,
    lab_dir: &str,
    systemd_hosts: &BTreeSet<String>,
) -> String {
    let mut configs = String::new();
    for (host, spec) in systems {
        let toplevel = match spec.build {
            Buildability::EvalFails => format!(
                "throw {}",
                nix_string(&format!(
                    "lab: the configuration of {host} fails to evaluate on purpose"
                ))
            ),
            Buildability::Builds | Buildability::BuildFails => format!(
                "mk {{ host = {}; generation = {}; payloadBytes = {}; buildFails = {}; \
                 withKernel = {}; extraPaths = {}; switchScript = {}; }}",
                nix_string(host),
                nix_string(&spec.generation.to_string()),
                nix_string(&spec.payload_bytes.to_string()),
                spec.build == Buildability::BuildFails,
                spec.kernel,
                spec.extra_paths,
                nix_string(&script_for(
                    host,
                    spec,
                    lab_dir,
                    systemd_hosts.contains(host)
                )),
            ),
        };
        let config = match spec.build {
            Buildability::EvalFails => format!("{{ config.system.build.toplevel = {toplevel}; }}"),
            Buildability::Builds | Buildability::BuildFails => {
                let disks: String = spec
                    .disks
                    .iter()
                    .map(|(name, device)| {
                        format!(" {} = {};", nix_string(name), nix_string(device))
                    })
                    .collect();
                format!(
                    "mkConfig {{ host = {}; toplevel = {toplevel}; disks = {{{disks} }}; \
                     diskoScript = {}; extra = {}; }}",
                    nix_string(host),
                    nix_string(&disko_script_for(host, spec.disko == Disko::Fails)),
                    evaluation_expr(host, spec.evaluation, lab_dir),
                )
            }
        };
        configs.push_str(&format!("      {} = {config};\n", nix_string(host)));
    }
    FLAKE_TEMPLATE
        .replace("@system@", &nix_string(system))
        .replace("@configs@", &configs)
}

const FLAKE_TEMPLATE: &str = r#"{
  description = "hbdeploy lab: toy NixOS systems";
  outputs = { self }:
    let
      system = @system@;
      sh = args: name: env: derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" args ];
        PATH = "/usr/bin:/bin";
      } // env);
      mk = { host, generation, payloadBytes, buildFails, withKernel, extraPaths, switchScript }:
        let
          # Store paths written at evaluation, listed in one file that the system links to.
          extras = if extraPaths == 0 then "" else builtins.toFile "lab-extras-${host}-${generation}"
            (builtins.concatStringsSep "\n" (builtins.genList
              (i: builtins.toFile "lab-extra-${host}-${generation}-${toString i}" (toString i))
              extraPaths));
          kernel = sh "mkdir -p $out && echo toy-kernel > $out/bzImage && echo toy-initrd > $out/initrd"
            "lab-kernel-${host}" { };
          payload = sh "head -c $bytes /dev/urandom > $out"
            "lab-payload-${host}-${generation}" { bytes = payloadBytes; };
          etc = sh "mkdir -p $out/etc && echo $host > $out/etc/hostname"
            "lab-etc-${host}-${generation}" { inherit host; };
        in
          sh (if buildFails then "echo \"error: lab system of $host fails to build on purpose\" >&2; exit 1" else ''
            mkdir -p $out/bin
            ln -s $payload $out/payload
            ln -s $etc/etc $out/etc
            if [ -n "$extras" ]; then ln -s $extras $out/extras; fi
            echo "toy-$generation" > $out/nixos-version
            if [ "$withKernel" = 1 ]; then
              ln -s $kernel/bzImage $out/kernel
              ln -s $kernel/initrd $out/initrd
            fi
            if [ -n "$switchScript" ]; then
              printf '%s\n' "$switchScript" | sed "s|@out@|$out|g" > $out/bin/switch-to-configuration
              chmod +x $out/bin/switch-to-configuration
            fi
          '') "nixos-system-${host}-toy-${generation}" ({
            inherit host generation payload etc extras switchScript withKernel;
          } // (if withKernel then { inherit kernel; } else { }));
      # A configuration: its toplevel, its disko disks and disko script, and an extendModules
      # that applies modules setting disko.devices.disk.<name>.device (plain or mkOverride'd).
      unwrap = v: if builtins.isAttrs v && (v._type or "") == "override" then v.content else v;
      # The extra work of an evaluation (see `Evaluation` in flake.rs): hashing a 1 MiB string
      # `hashes` times, a string of `mib` MiB held by the configuration, a barrier built on the
      # way (import from derivation).
      double = s: s + s;
      oneMib = builtins.foldl' (s: i: double s) "x" (builtins.genList (i: i) 20);
      mkConfig = { host, toplevel, disks, diskoScript, extra ? { } }:
        let
          # Strings of 1 MiB each, every one allocated once at its size: the evaluator's resident
          # memory grows by about `mib` MiB, with no transient copy of the whole.
          ballast = builtins.genList (i: oneMib + toString i) (extra.mib or 0);
          burned = builtins.foldl' (a: i: builtins.seq (builtins.hashString "sha256" oneMib) (a + 1))
            0 (builtins.genList (i: i) (extra.hashes or 0));
          met = if extra ? barrier then import extra.barrier else true;
          traced = if extra.trace or false then builtins.trace "lab: evaluating ${host}" else (x: x);
          # The memory first, so it is held while the CPU time is spent.
          costly = traced (builtins.seq (builtins.deepSeq ballast null)
            (builtins.seq met (builtins.seq burned toplevel)));
          configure = applied:
            let
              override = acc: m: acc // builtins.mapAttrs (name: d:
                if builtins.hasAttr name acc then unwrap d.device
                else throw "lab: ${host} declares no disko disk ${name}")
                (m.disko.devices.disk or { });
              devices = builtins.foldl' override disks applied;
              pairs = map (name: name + "=" + devices.${name}) (builtins.attrNames devices);
            in {
              config = {
                system.build.toplevel = costly;
                lab.ballast = ballast;
                system.build.diskoScript = sh ''
                  { echo '#!/bin/sh'; echo "disks='$disks'"; printf '%s\n' "$script"; } > $out
                  chmod +x $out
                '' "disko-${host}" { disks = builtins.concatStringsSep " " pairs; script = diskoScript; };
                disko.devices.disk = builtins.mapAttrs (name: device: { inherit device; }) devices;
                disko.rootMountPoint = "/mnt";
              };
              extendModules = args: configure (applied ++ (args.modules or [ ]));
            };
        in configure [ ];
    in {
      nixosConfigurations = {
@configs@      };
    };
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flake_lists_every_host_with_its_failure_mode() {
        let systems = BTreeMap::from([
            ("a".to_owned(), SystemSpec::default()),
            (
                "b".to_owned(),
                SystemSpec {
                    build: Buildability::EvalFails,
                    ..SystemSpec::default()
                },
            ),
            (
                "c".to_owned(),
                SystemSpec {
                    activation: Activation::Fail,
                    ..SystemSpec::default()
                },
            ),
        ]);
        let text = flake_text("x86_64-linux", &systems, "/lab", &BTreeSet::new());
        assert!(text.contains("\"a\" = mkConfig { host = \"a\"; toplevel = mk { host = \"a\";"));
        assert!(text.contains("disks = { \"vda\" = \"/dev/vda\"; };"));
        assert!(text.contains("\"b\" = { config.system.build.toplevel = throw"));
        assert!(text.contains("toy activation of c fails on purpose"));
        assert!(!text.contains("@configs@") && !text.contains("@system@"));
    }

    #[test]
    fn scripts_keep_out_placeholder_for_the_builder() {
        let script = script_for("h", &SystemSpec::default(), "/lab", false);
        assert!(script.contains("sys=@out@"));
        let unit = script_for("h", &SystemSpec::default(), "/lab", true);
        assert!(unit.contains("systemctl start hbdeploy-lab-sshd.service"));
        assert!(!unit.contains("${"), "nix would interpolate it");
        assert!(!script.contains("@host@") && !script.contains("@failure"));
        assert!(!script.contains("${"), "nix would interpolate it");
    }
}
