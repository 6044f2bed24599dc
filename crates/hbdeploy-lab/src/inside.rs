//! Running a program inside a lab host, as its root or as a lab user, the way someone logged in
//! on that machine would: hbdeploy deploying the very host it runs on (`address = "local"`).
//!
//! [`LabHost::inside`] is the command that enters the host's namespaces (`nsenter`, see
//! `kind.rs`), clears the environment (`env -i`), goes to the user's home and, for a lab user,
//! drops to that user (`setpriv --reuid --regid --init-groups`). What the program then sees:
//!
//! - its uid and gid: 0, or the lab user's (1500), with the user's groups from the host's own
//!   `/etc/group`;
//! - the environment: `HOME` (`/root`, or [`user_home`]), `USER` and `LOGNAME`, `PATH`
//!   ([`INSIDE_PATH`]), `LANG=C.UTF-8`, the lab's [`NIX_CONFIG`], `NO_COLOR=1` and, on a
//!   namespace host, `TMPDIR` (the host's own `HOST_STATE/tmp`, mode 1777: its `/tmp` is the
//!   machine's, shared by every namespace host, and PIDs repeat between hosts); nothing else (no
//!   `TERM`, no `XDG_RUNTIME_DIR`; a systemd host's `/tmp` is the container's own). The working
//!   directory is `HOME`;
//! - the host's own `/nix` (nix as root uses the store directly, a lab user through the host's
//!   nix-daemon, started by [`crate::Lab::add_user`]), `/etc/nix`, `/run` (where
//!   `/run/current-system` is), `/etc/passwd`, `/etc/sudoers` and [`crate::HOST_STATE`];
//! - on a systemd host, the container's systemd: as root, `systemctl` and `systemd-run` reach it
//!   (through `/run/systemd/private`). Unlike an SSH login there, the process is in no logind
//!   session and in none of the container's cgroups (it stays in the caller's), so there is no
//!   `/run/user/UID` and no `systemctl --user`; `sudo` works as in a session;
//! - `sudo` resets the environment, as on any host: `NIX_CONFIG` and `TMPDIR` do not pass (the
//!   host's own `/etc/nix/nix.conf` has the lab's nix settings);
//! - on a pseudo-terminal ([`crate::Inside::on_a_terminal`]), the machine's: `isatty` and
//!   `/dev/tty` work on both kinds, but a systemd host's `/dev/pts` is the container's own, so
//!   there `ttyname` finds no name for it (`tty` says "not a tty").
//!
//! Every host sees the lab's directory at the same path (a namespace host sees the machine's
//! whole filesystem; a systemd host has it bound in), so the lab's flake ([`crate::Lab::flake_ref`],
//! [`crate::Lab::toplevel_ref`]) and the files in [`crate::Lab::inside_dir`] (the copy of the
//! hbdeploy binary, [`crate::Lab::install_inside`]) are at the same path on the outside and in
//! every host, readable (not writable) by the lab users. What a program writes next to its input,
//! such as hbdeploy's ledger beside its fleet.toml, needs a directory its user owns: HOME
//! ([`crate::Inside::write_home`]).
//!
//! [`crate::Inside`] bundles a host and a user with the lab, to run hbdeploy or any program
//! there, with its output collected or on a pseudo-terminal (for the `sudo` password prompt).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::files::{HOST_STATE, io, mkdir, write};
use crate::users::LAB_USER_ID;
use crate::{HostKind, Lab, LabError, LabHost, NIX_CONFIG, Run, finish};

/// The `PATH` of a program run inside a host.
pub const INSIDE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The home of lab user `name` on every host (its `HOME` inside; owned by the user).
pub fn user_home(name: &str) -> String {
    format!("{HOST_STATE}/home/{name}")
}

impl LabHost {
    /// A command that runs the program appended to it inside this host, as root (`user` is
    /// `None`) or as the lab user `user`, with the environment of the module doc; stdin is
    /// closed unless the caller sets it. Fails for a user this host does not have.
    pub fn inside(&self, user: Option<&str>) -> Result<Command, LabError> {
        let (name, home) = match user {
            None => ("root", "/root".to_owned()),
            Some(name) if self.users.iter().any(|u| u == name) => (name, user_home(name)),
            Some(name) => {
                return Err(LabError::NoSuchUser {
                    host: self.name.clone(),
                    user: name.to_owned(),
                });
            }
        };
        let mut command = self.nsenter();
        command.args(["/usr/bin/env", "-i", "--chdir", &home]);
        if self.kind == HostKind::Namespace {
            // The machine's /tmp is every namespace host's, and PIDs repeat between PID
            // namespaces: temporary files named by PID would meet another host's.
            let tmp = self.dir.join("state/tmp");
            mkdir(&tmp)?;
            chmod(&tmp, 0o1777)?;
            command.arg(format!("TMPDIR={HOST_STATE}/tmp"));
        }
        command
            .arg(format!("HOME={home}"))
            .arg(format!("USER={name}"))
            .arg(format!("LOGNAME={name}"))
            .arg(format!("PATH={INSIDE_PATH}"))
            .arg("LANG=C.UTF-8")
            .arg(format!("NIX_CONFIG={NIX_CONFIG}"))
            .arg("NO_COLOR=1");
        if user.is_some() {
            command.args(["/usr/bin/setpriv", "--reuid", name, "--regid", name]);
            command.args(["--init-groups", "--"]);
        }
        Ok(command)
    }
}

/// A host of a lab and who runs programs in it (root or a lab user), from [`Lab::inside`].
#[derive(Debug, Clone, Copy)]
pub struct Inside<'a> {
    lab: &'a Lab,
    host: &'a LabHost,
    user: Option<&'a str>,
}

impl Lab {
    /// The directory for what programs inside the hosts need from the outside and only read
    /// (the hbdeploy binary, [`Lab::write_inside`]): at the same path in every host, readable
    /// (not writable) by every lab user.
    pub fn inside_dir(&self) -> PathBuf {
        self.dir().join("inside")
    }

    /// Programs run inside `host` as root (`user` is `None`) or as the lab user `user` (see
    /// [`LabHost::inside`]). Makes the lab's directory, its flake and [`Lab::inside_dir`]
    /// readable by the lab users first.
    pub fn inside<'a>(&'a self, host: &str, user: Option<&'a str>) -> Result<Inside<'a>, LabError> {
        let host = self.host(host)?;
        // Fails early for a user the host lacks.
        host.inside(user)?;
        self.open_to_users()?;
        Ok(Inside {
            lab: self,
            host,
            user,
        })
    }

    /// Copies `binary` into [`Lab::inside_dir`] (mode 0755; again only when it changed) and
    /// returns the copy's path, the same inside every host. A copy, not the build's file: a
    /// systemd host cannot see the build directory, and a rebuild does not change the copy under
    /// a running test. The copy is renamed into place, so a copy running meanwhile (another
    /// thread's) is not written to.
    pub fn install_inside(&self, binary: &Path) -> Result<PathBuf, LabError> {
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let name = binary.file_name().unwrap_or(binary.as_os_str());
        let copy = self.inside_dir().join(name);
        let source = std::fs::metadata(binary).map_err(io(format!("read {}", binary.display())))?;
        let current = std::fs::metadata(&copy).ok();
        let same = current.is_some_and(|c| {
            c.len() == source.len() && c.modified().ok() == source.modified().ok()
        });
        if same {
            return Ok(copy);
        }
        self.open_to_users()?;
        let partial = self
            .inside_dir()
            .join(format!(".copy-{}", COPIES.fetch_add(1, Ordering::Relaxed)));
        let what = format!("copy {} to {}", binary.display(), partial.display());
        std::fs::copy(binary, &partial).map_err(io(what.clone()))?;
        let file = std::fs::File::options()
            .write(true)
            .open(&partial)
            .map_err(io(what.clone()))?;
        if let Ok(modified) = source.modified() {
            file.set_modified(modified).map_err(io(what))?;
        }
        drop(file);
        chmod(&partial, 0o755)?;
        std::fs::rename(&partial, &copy).map_err(io(format!(
            "rename {} to {}",
            partial.display(),
            copy.display()
        )))?;
        Ok(copy)
    }

    /// Writes `text` into [`Lab::inside_dir`]`/name` (mode 0644) and returns its path, the same
    /// inside every host.
    pub fn write_inside(&self, name: &str, text: &str) -> Result<PathBuf, LabError> {
        self.open_to_users()?;
        let path = self.inside_dir().join(name);
        write(&path, text)?;
        chmod(&path, 0o644)?;
        Ok(path)
    }

    /// The flake reference of `host`'s toplevel in the lab's flake
    /// (`path:…#nixosConfigurations.HOST.config.system.build.toplevel`), for `nix build` outside
    /// or inside any host.
    pub fn toplevel_ref(&self, host: &str) -> String {
        format!(
            "{}#nixosConfigurations.{host}.config.system.build.toplevel",
            self.flake_ref()
        )
    }

    /// A fleet.toml for running hbdeploy inside lab host `host` against itself: the lab's flake,
    /// and one host `self` with `address = "local"` whose system is `host`'s configuration
    /// (`attr`). `extra` is appended verbatim (more settings of `[hosts.self]` first, if any).
    pub fn local_fleet_toml(&self, host: &str, extra: &str) -> String {
        format!(
            "[fleet]\nflake = \"{}\"\n\n[hosts.self]\naddress = \"local\"\nattr = \"{host}\"\n{extra}",
            self.flake_ref()
        )
    }

    /// Lets every lab user reach and read what programs inside the hosts need: the directories
    /// from the lab root down to the flake and [`Lab::inside_dir`], and the flake's files.
    fn open_to_users(&self) -> Result<(), LabError> {
        let inside = self.inside_dir();
        mkdir(&inside)?;
        let flake = self.dir().join("flake");
        let mut dirs = vec![inside, flake.clone()];
        dirs.extend(self.dir().ancestors().take(2).map(Path::to_path_buf));
        for dir in dirs {
            add_mode(&dir, 0o755)?;
        }
        for entry in std::fs::read_dir(&flake)
            .map_err(io(format!("list {}", flake.display())))?
            .flatten()
        {
            add_mode(&entry.path(), 0o644)?;
        }
        Ok(())
    }
}

fn chmod(path: &Path, mode: u32) -> Result<(), LabError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {mode:o} {}", path.display())))
}

/// Adds the bits of `mode` to `path`'s permissions (none is taken away).
fn add_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    let current = std::fs::metadata(path)
        .map_err(io(format!("read {}", path.display())))?
        .permissions()
        .mode()
        & 0o7777;
    if current & mode == mode {
        return Ok(());
    }
    chmod(path, current | mode)
}

impl Inside<'_> {
    /// The host.
    pub fn host(&self) -> &LabHost {
        self.host
    }

    /// The user (`None`: root).
    pub fn user(&self) -> Option<&str> {
        self.user
    }

    /// `HOME` inside: `/root` or the lab user's home.
    pub fn home(&self) -> String {
        self.user.map_or_else(|| "/root".to_owned(), user_home)
    }

    /// The command of [`LabHost::inside`] for this host and user, with `argv` appended.
    pub fn command(&self, argv: &[&str]) -> Result<Command, LabError> {
        let mut command = self.host.inside(self.user)?;
        command.args(argv);
        Ok(command)
    }

    /// Runs `argv` inside (stdin closed) and collects its output; a non-zero exit is no error
    /// here (see [`Run::code`]).
    pub fn run(&self, argv: &[&str]) -> Result<Run, LabError> {
        let child = self
            .command(argv)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!(
                "run `{}` inside lab host {}",
                argv.join(" "),
                self.host.name
            )))?;
        finish(child)
    }

    /// Runs `argv` inside on a pseudo-terminal, typing the next of `answers` each time `prompt`
    /// appears, as [`crate::hbdeploy_on_a_terminal`] does (e.g. `sudo`'s password prompt).
    pub fn on_a_terminal(
        &self,
        argv: &[&str],
        prompt: &str,
        answers: &[&str],
    ) -> Result<Run, LabError> {
        let command = self.command(argv)?;
        let mut line: Vec<OsString> = vec![command.get_program().to_owned()];
        line.extend(command.get_args().map(ToOwned::to_owned));
        let what = format!("`{}` inside lab host {}", argv.join(" "), self.host.name);
        crate::terminal::on_a_terminal(&line, &what, prompt, answers)
    }

    /// Where HOME inside is, on the outside: the host's `root/`, or the user's home in its
    /// `state/` (both kinds of host bind these).
    fn home_outside(&self) -> PathBuf {
        match self.user {
            None => self.host.dir.join("root"),
            Some(name) => self.host.dir.join("state/home").join(name),
        }
    }

    /// Writes `text` into the file `name` in HOME inside (owned by the user, mode 0644), and
    /// returns its path inside: e.g. a fleet.toml, whose directory then holds hbdeploy's ledger
    /// (`.hbdeploy/`), writable by whoever runs it, and its relative paths.
    pub fn write_home(&self, name: &str, text: &str) -> Result<String, LabError> {
        let path = self.home_outside().join(name);
        write(&path, text)?;
        chmod(&path, 0o644)?;
        if self.user.is_some() {
            std::os::unix::fs::chown(&path, Some(LAB_USER_ID), Some(LAB_USER_ID))
                .map_err(io(format!("chown {}", path.display())))?;
        }
        Ok(format!("{}/{name}", self.home()))
    }

    /// The argv of hbdeploy inside (see [`Inside::hbdeploy`]).
    fn hbdeploy_argv(
        &self,
        binary: &Path,
        fleet: Option<&str>,
        args: &[&str],
    ) -> Result<Vec<String>, LabError> {
        let mut argv = vec![
            self.lab
                .install_inside(binary)?
                .to_string_lossy()
                .into_owned(),
        ];
        if let Some(text) = fleet {
            argv.push("--fleet".to_owned());
            argv.push(self.write_home("fleet.toml", text)?);
        }
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Ok(argv)
    }

    /// Runs hbdeploy inside this host: the copy of `binary` ([`Lab::install_inside`]), with
    /// `--fleet` and the fleet.toml `fleet` (its text, e.g. [`Lab::local_fleet_toml`], written
    /// to `fleet.toml` in HOME by [`Inside::write_home`]) when given, then `args`; stdin closed.
    pub fn hbdeploy(
        &self,
        binary: &Path,
        fleet: Option<&str>,
        args: &[&str],
    ) -> Result<Run, LabError> {
        let argv = self.hbdeploy_argv(binary, fleet, args)?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run(&argv)
    }

    /// [`Inside::hbdeploy`] on a pseudo-terminal, typing the next of `answers` each time
    /// `prompt` appears (e.g. the sudo password prompt of `--ask-sudo-password`).
    pub fn hbdeploy_on_a_terminal(
        &self,
        binary: &Path,
        fleet: Option<&str>,
        args: &[&str],
        prompt: &str,
        answers: &[&str],
    ) -> Result<Run, LabError> {
        let argv = self.hbdeploy_argv(binary, fleet, args)?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.on_a_terminal(&argv, prompt, answers)
    }
}
