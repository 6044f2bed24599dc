//! [`Fleet`]: `fleet.toml` read, validated and resolved.
//!
//! Parsing is one pass over the TOML tree in a fixed order (top-level keys, `[fleet]`, `[ssh]`,
//! then hosts in file order) that stops at the first problem, reported with its location. A
//! [`Fleet`] that was built is complete: every host has an address, an attribute and fully
//! resolved SSH settings.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::doc::Doc;
use crate::error::{ConfigError, InventoryError, Location, Problem};
use crate::eval::{self, FleetEval};
use crate::health::read_checks;
use crate::host::{Host, read_host};
use crate::name::{HostName, Tag};
use crate::paths::{FlakeRef, PathError, Resolver};
use crate::reader::Table;
use crate::safety::SafetyOverrides;
use crate::schema::{
    self, DEFAULT_PARALLEL, FLEET_KEYS, MAX_FLEET_BYTES, MAX_PARALLEL, SSH_KEYS, TOP_KEYS,
};
use crate::secrets::read_secrets;
use crate::ssh::SshOverrides;
use crate::transfer::{self, FleetTransfer, TransferOverrides};

/// The whole of `fleet.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The file it was read from, made absolute.
    pub path: PathBuf,
    /// The flake defining the hosts' `nixosConfigurations`.
    pub flake: FlakeRef,
    /// How many hosts are handled at once.
    pub parallel: NonZeroUsize,
    /// Every host, by name; never empty.
    pub hosts: BTreeMap<HostName, Host>,
    /// Fleet-wide build and transfer settings.
    pub transfer: FleetTransfer,
    /// How much evaluation runs at once.
    pub eval: FleetEval,
}

impl Fleet {
    /// Reads and parses the file at `path`, expanding `~` with `$HOME`. Only a regular file (or
    /// a symlink to one) of at most [`MAX_FLEET_BYTES`] is read.
    pub fn load(path: &Path) -> Result<Fleet, InventoryError> {
        let bytes = hbdeploy_files::read(path, MAX_FLEET_BYTES)?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Fleet::parse_bytes(&bytes, path, home.as_deref())
    }

    /// [`Fleet::parse`] of the raw contents of the file at `path`, which must be UTF-8: the
    /// first byte that is not is an error at its line and column.
    pub fn parse_bytes(
        bytes: &[u8],
        path: &Path,
        home: Option<&Path>,
    ) -> Result<Fleet, InventoryError> {
        let text = std::str::from_utf8(bytes).map_err(|err| not_utf8(bytes, path, &err))?;
        Fleet::parse(text, path, home)
    }

    /// Parses `text` as the contents of the file at `path`.
    ///
    /// `path` names the file in errors and anchors relative paths (made absolute against the
    /// current directory if it is relative); `home` replaces `~`, and `None` (or a relative
    /// path) makes any use of `~` an error. Nothing is read from the filesystem.
    pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<Fleet, InventoryError> {
        let absolute = std::path::absolute(path).map_err(|source| InventoryError::CurrentDir {
            path: path.to_owned(),
            source,
        })?;
        let dir = absolute.parent().unwrap_or(&absolute);
        let resolver = Resolver::new(dir, home);
        let doc = Doc::new(text, path);
        let tree = doc.parse()?;
        let root = Table::root(&doc, tree.get_ref());
        root.check_keys(TOP_KEYS)?;

        let fleet = root.table("fleet")?.ok_or_else(|| root.missing("fleet"))?;
        fleet.check_keys(FLEET_KEYS)?;
        let flake = read_flake(&fleet, &resolver)?;
        let parallel = match fleet.integer::<usize>("parallel", 1, MAX_PARALLEL)? {
            // `integer` checked that n >= 1, so the fallback is never taken.
            Some(n) => NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
            None => NonZeroUsize::MIN.saturating_add(DEFAULT_PARALLEL - 1),
        };

        let safety = SafetyOverrides::read(&fleet)?;
        let transfer = transfer::read_fleet(&fleet, &resolver)?;
        let eval = eval::read_fleet(&fleet)?;
        let transfer_defaults = TransferOverrides::read(&fleet)?;
        let health = read_checks(&root)?;
        let secrets = read_secrets(&root, &resolver)?;

        let ssh = match root.table("ssh")? {
            Some(table) => {
                table.check_keys(SSH_KEYS)?;
                SshOverrides::read(&table, &resolver)?
            }
            None => SshOverrides::default(),
        };

        let hosts_table = root.table("hosts")?;
        let hosts_table = match hosts_table {
            Some(table) if !table.is_empty() => table,
            other => {
                let span = other.map_or(0..0, |t| t.span());
                let hint = "add a table for each machine: [hosts.NAME] followed by address = \"…\"";
                return Err(doc.error(span, Problem::NoHosts, hint));
            }
        };
        let mut hosts = BTreeMap::new();
        for (key, value) in hosts_table.entries() {
            let mut host = read_host(
                &hosts_table,
                key,
                value,
                &ssh,
                (&safety, &transfer_defaults, &secrets),
                &resolver,
            )?;
            // Checks for every host run first, then the host's own.
            host.health.splice(0..0, health.iter().cloned());
            hosts.insert(host.name.clone(), host);
        }
        Ok(Fleet {
            path: absolute,
            flake,
            parallel,
            hosts,
            transfer,
            eval,
        })
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Every tag used by some host, sorted, without repeats.
    pub fn tags(&self) -> Vec<&Tag> {
        let mut tags: Vec<&Tag> = self.hosts.values().flat_map(|h| &h.tags).collect();
        tags.sort();
        tags.dedup();
        tags
    }
}

/// The error for `bytes` that are not UTF-8, located at the first bad byte.
fn not_utf8(bytes: &[u8], path: &Path, err: &std::str::Utf8Error) -> InventoryError {
    let valid = bytes.get(..err.valid_up_to()).unwrap_or_default();
    // Everything before `valid_up_to` is UTF-8 by definition; the fallback is never taken.
    let before = std::str::from_utf8(valid).unwrap_or_default();
    let byte = bytes.get(err.valid_up_to()).copied().unwrap_or_default();
    InventoryError::Config(Box::new(ConfigError {
        location: Location::from_offset(path, before, before.len()),
        problem: Problem::NotUtf8 { byte },
        hint: "fleet.toml must be UTF-8 text, as every TOML file: save it as UTF-8 (e.g. \
               iconv -f latin1 -t utf-8)"
            .to_owned(),
    }))
}

fn read_flake(fleet: &Table<'_>, resolver: &Resolver<'_>) -> Result<FlakeRef, InventoryError> {
    let value = fleet
        .string("flake")?
        .ok_or_else(|| fleet.missing("flake"))?;
    if value.get_ref().contains('#') {
        let hint = "remove the `#…` part; each host's attribute is set with `attr`";
        return Err(fleet.invalid("flake", value.span(), "contains `#`", hint));
    }
    resolver.flake(value.get_ref()).map_err(|e| {
        let hint = match e {
            PathError::Empty => schema::missing_advice("flake"),
            other => other.advice().to_owned(),
        };
        fleet.invalid("flake", value.span(), e.reason(), hint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-line summary per host, after a header line for the fleet.
    fn summary(fleet: &Fleet) -> String {
        let mut out = format!("flake={} parallel={}", fleet.flake, fleet.parallel);
        for host in fleet.hosts.values() {
            let tags: Vec<&str> = host.tags.iter().map(Tag::as_str).collect();
            let ssh = &host.ssh;
            let identity = ssh
                .identity_file
                .as_ref()
                .map_or("agent".into(), |p| p.display().to_string());
            out.push_str(&format!(
                "\n{} {} attr={} tags=[{}] {}@:{} id={} known={} timeout={}s",
                host.name,
                host.address,
                host.attr,
                tags.join(","),
                ssh.user,
                ssh.port,
                identity,
                ssh.known_hosts.display(),
                ssh.connect_timeout.as_secs(),
            ));
        }
        out
    }

    fn check(input: &str, expected: &str) {
        let parsed = Fleet::parse(
            input,
            Path::new("/fleet/fleet.toml"),
            Some(Path::new("/home/me")),
        );
        let got = match parsed {
            Ok(fleet) => summary(&fleet),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "input:\n{input}");
    }

    const MINIMAL: &str = "[fleet]\nflake = \"./nixos\"\n[hosts.web]\naddress = \"10.0.0.1\"\n";

    #[test]
    fn the_login_name_of_a_proxy_jump_is_held_to_the_rule_of_user() {
        check(
            &format!("{MINIMAL}proxy-jump = \"a/b@bastion:2222\"\n"),
            "error: /fleet/fleet.toml:5:14: `proxy-jump` in [hosts.web] has a login name that \
             contains `/`",
        );
        let fleet = Fleet::parse(
            &format!("{MINIMAL}proxy-jump = \"ops.team@bastion:2222\"\n"),
            Path::new("/fleet/fleet.toml"),
            Some(Path::new("/home/me")),
        )
        .expect("a valid jump");
        assert_eq!(
            fleet.host("web").and_then(|h| h.proxy_jump.as_deref()),
            Some("ops.team@bastion:2222")
        );
    }

    #[test]
    fn the_machine_hbdeploy_runs_on_is_a_host_without_ssh_only_keys() {
        let local = "[fleet]\nflake = \"./nixos\"\n[hosts.desk]\naddress = \"local\"\n";
        let fleet = Fleet::parse(
            local,
            Path::new("/fleet/fleet.toml"),
            Some(Path::new("/home/me")),
        )
        .expect("a local host");
        assert_eq!(fleet.host("desk").map(Host::is_local), Some(true));
        assert_eq!(
            fleet.host("desk").map(|h| h.address.as_str()),
            Some("local")
        );
        let remote = Fleet::parse(MINIMAL, Path::new("/f.toml"), Some(Path::new("/home/me")))
            .expect("a host");
        assert_eq!(remote.host("web").map(Host::is_local), Some(false));
        check(
            &format!("{local}proxy-jump = \"bastion\"\n"),
            "error: /fleet/fleet.toml:5:14: `proxy-jump` in [hosts.desk] is set for the machine \
             hbdeploy runs on (address = \"local\"), which is not reached over SSH",
        );
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        check(
            MINIMAL,
            "flake=/fleet/nixos parallel=10\n\
             web 10.0.0.1 attr=web tags=[] root@:22 id=agent known=/home/me/.ssh/known_hosts timeout=10s",
        );
    }

    #[test]
    fn every_key_is_read() {
        check(
            r#"
            [fleet]
            flake = "github:me/nixos"
            parallel = 3
            [ssh]
            user = "deploy"
            port = 2222
            identity-file = "keys/deploy"
            known-hosts = "~/known"
            connect-timeout = 5
            [hosts.b]
            address = "b.example.org"
            attr = "bee"
            tags = ["x", "y"]
            user = "root"
            port = 22
            identity-file = "/keys/b"
            known-hosts = "b_known"
            connect-timeout = 60
            [hosts.a]
            address = "fe80::1"
            "#,
            "flake=github:me/nixos parallel=3\n\
             a fe80::1 attr=a tags=[] deploy@:2222 id=/fleet/keys/deploy known=/home/me/known timeout=5s\n\
             b b.example.org attr=bee tags=[x,y] root@:22 id=/keys/b known=/fleet/b_known timeout=60s",
        );
    }

    #[test]
    fn inline_and_dotted_tables_are_the_same() {
        let expected = "flake=/srv/nixos parallel=1\n\
             web w attr=web tags=[] root@:22 id=agent known=/home/me/.ssh/known_hosts timeout=10s";
        check(
            "fleet = { flake = \"/srv/nixos\", parallel = 1 }\nhosts.web.address = \"w\"\n",
            expected,
        );
        check(
            "[fleet]\nflake = \"/srv/nixos\"\nparallel = 1\n[hosts]\nweb = { address = \"w\" }\n",
            expected,
        );
    }

    #[test]
    fn first_error_in_the_file_wins() {
        check(
            &format!("{MINIMAL}[hosts.a]\nadress = \"x\"\nprot = 1\n"),
            "error: /fleet/fleet.toml:6:1: unknown key `adress` in [hosts.a]; expected one of: \
             address, attr, tags, user, port, identity-file, known-hosts, connect-timeout, keepalive-interval, keepalive-count, privilege-escalation, magic-rollback, confirm-timeout, activation-timeout, reboot-timeout, wave, health, \
             substitute, compress, trusted, fast-connection, build-on, host-key, proxy-jump, secrets",
        );
    }

    #[test]
    fn relative_file_paths_resolve_against_the_current_directory() {
        let fleet = Fleet::parse(MINIMAL, Path::new("fleet.toml"), Some(Path::new("/h")));
        let cwd = std::env::current_dir().ok();
        let flake = fleet.ok().map(|f| f.flake);
        assert_eq!(flake, cwd.map(|d| FlakeRef::Path(d.join("nixos"))));
    }

    #[test]
    fn load_names_the_file_it_cannot_read() {
        let err = Fleet::load(Path::new("/nonexistent/fleet.toml")).err();
        let message = err.as_ref().map(ToString::to_string);
        assert_eq!(
            message.as_deref(),
            Some("cannot read /nonexistent/fleet.toml")
        );
        let source = err
            .as_ref()
            .and_then(std::error::Error::source)
            .map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("No such file")));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let parse = |bytes: &[u8]| {
            Fleet::parse_bytes(bytes, Path::new("/f.toml"), Some(Path::new("/h")))
                .map(|f| f.hosts.len())
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(MINIMAL.as_bytes()), Ok(1));
        // Latin-1 "é" (0xe9) in a comment on line 2, after 4 characters (one of them "ü").
        let mut bytes = b"[fleet]\n# \xc3\xbcb ".to_vec();
        bytes.extend_from_slice(b"\xe9t\xe9\n");
        bytes.extend_from_slice(MINIMAL.as_bytes());
        assert_eq!(
            parse(&bytes),
            Err(
                "/f.toml:2:6: invalid UTF-8: byte 0xe9 is not part of a valid character".to_owned()
            )
        );
        assert_eq!(
            parse(b"\xff"),
            Err(
                "/f.toml:1:1: invalid UTF-8: byte 0xff is not part of a valid character".to_owned()
            )
        );
    }

    #[test]
    fn special_files_are_refused_by_name() {
        let err = Fleet::load(Path::new("/dev/zero")).err();
        assert_eq!(
            err.as_ref().map(ToString::to_string).as_deref(),
            Some("/dev/zero is a character device, not a regular file")
        );
        assert!(
            err.as_ref()
                .and_then(hbdeploy_files::Hint::hint)
                .is_some_and(|h| h.contains("regular file"))
        );
    }

    #[test]
    fn tags_are_collected_across_hosts() {
        let text = format!(
            "{MINIMAL}tags = [\"b\", \"a\"]\n[hosts.x]\naddress = \"x\"\ntags = [\"a\", \"c\"]\n"
        );
        let fleet = Fleet::parse(&text, Path::new("/f.toml"), Some(Path::new("/h")));
        let tags = fleet.map(|f| f.tags().iter().map(|t| t.to_string()).collect::<Vec<_>>());
        assert_eq!(
            tags.ok(),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
    }
}
