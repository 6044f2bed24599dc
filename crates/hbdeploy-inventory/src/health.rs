//! Health checks: `[[health]]` for every host and `[[hosts.NAME.health]]` for one. Each is one of
//! `command` (run on the host), `tcp` (`host:port`, connected to from the deployer) or `http`
//! (`http://…`, fetched from the deployer; 2xx, or exactly `status`), with a per-attempt
//! `timeout` and a number of `retries`.

use std::time::Duration;

use crate::error::InventoryError;
use crate::reader::Table;
use crate::schema::{DEFAULT_HEALTH_RETRIES, DEFAULT_HEALTH_TIMEOUT_SECS, HEALTH_KEYS};

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A shell command run on the host; exit 0 is healthy.
    Command(String),
    /// A TCP connection from the deployer to `host:port`.
    Tcp(String),
    /// An HTTP GET from the deployer; healthy on 2xx, or on exactly `status` when set.
    Http {
        /// The URL, `http://host[:port]/path`.
        url: String,
        /// The expected status code.
        status: Option<u16>,
    },
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What it probes.
    pub probe: Probe,
    /// The limit for one attempt.
    pub timeout: Duration,
    /// Attempts after the first failed one, a few seconds apart.
    pub retries: u32,
}

/// As shown to the user: `command `…``, `tcp host:port`, `http URL (status N)`.
impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.probe {
            Probe::Command(command) => write!(f, "command `{command}`"),
            Probe::Tcp(address) => write!(f, "tcp {address}"),
            Probe::Http { url, status: None } => write!(f, "http {url}"),
            Probe::Http {
                url,
                status: Some(code),
            } => write!(f, "http {url} (status {code})"),
        }
    }
}

/// Reads the `[[health]]` tables under `key` of `table`.
pub(crate) fn read_checks(table: &Table<'_>) -> Result<Vec<HealthCheck>, InventoryError> {
    table.tables("health")?.iter().map(read_check).collect()
}

fn read_check(table: &Table<'_>) -> Result<HealthCheck, InventoryError> {
    table.check_keys(HEALTH_KEYS)?;
    let command = table.string("command")?;
    let tcp = table.string("tcp")?;
    let http = table.string("http")?;
    let status = table.integer::<u16>("status", 100, 599)?;
    let hint = "give exactly one of command = \"…\", tcp = \"host:port\" or http = \"http://…\"";
    let probe = match (command, tcp, http) {
        (Some(command), None, None) if !command.get_ref().trim().is_empty() => {
            Probe::Command(command.into_inner().to_owned())
        }
        (None, Some(tcp), None) => {
            let address = tcp.get_ref();
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(table.invalid(
                    "tcp",
                    tcp.span(),
                    "is not host:port",
                    "write it like this: tcp = \"server.example.org:443\"",
                ));
            }
            Probe::Tcp((*address).to_owned())
        }
        (None, None, Some(http)) => {
            if !http.get_ref().starts_with("http://") {
                return Err(table.invalid(
                    "http",
                    http.span(),
                    "is not an http:// URL",
                    "checks fetch plain http:// URLs; for https use a command check, e.g. \
                     command = \"curl -fsS https://…\"",
                ));
            }
            Probe::Http {
                url: http.into_inner().to_owned(),
                status,
            }
        }
        _ => return Err(table.invalid("health", table.span(), "needs exactly one probe", hint)),
    };
    Ok(HealthCheck {
        probe,
        timeout: Duration::from_secs(
            table
                .integer::<u64>("timeout", 1, 3600)?
                .unwrap_or(DEFAULT_HEALTH_TIMEOUT_SECS),
        ),
        retries: table
            .integer::<u32>("retries", 0, 100)?
            .unwrap_or(DEFAULT_HEALTH_RETRIES),
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::test_fleet::parse;

    #[test]
    fn fleet_checks_come_first_then_the_hosts_own() {
        let fleet = parse(
            "[fleet]\nflake = \".\"\n\
             [[health]]\ncommand = \"true\"\n\
             [hosts.a]\naddress = \"a\"\n\
             [[hosts.a.health]]\ntcp = \"a:443\"\ntimeout = 5\nretries = 0\n\
             [[hosts.a.health]]\nhttp = \"http://a/health\"\nstatus = 204\n\
             [hosts.b]\naddress = \"b\"\n",
        )
        .expect("valid");
        let a = &fleet.host("a").expect("a").health;
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].probe, Probe::Command("true".to_owned()));
        assert_eq!(a[0].timeout, Duration::from_secs(30));
        assert_eq!(a[0].retries, 3);
        assert_eq!(a[1].probe, Probe::Tcp("a:443".to_owned()));
        assert_eq!((a[1].timeout, a[1].retries), (Duration::from_secs(5), 0));
        assert_eq!(
            a[2].probe,
            Probe::Http {
                url: "http://a/health".to_owned(),
                status: Some(204)
            }
        );
        assert_eq!(fleet.host("b").expect("b").health.len(), 1);
    }

    #[test]
    fn bad_checks_are_located_and_explained() {
        let check = |body: &str, expected: &str| {
            let text = format!(
                "[fleet]\nflake = \".\"\n[hosts.a]\naddress = \"a\"\n[[hosts.a.health]]\n{body}\n"
            );
            let err = parse(&text).expect_err(body);
            assert!(err.contains(expected), "{body}: {err}");
        };
        check("command = \"x\"\ntcp = \"a:1\"", "needs exactly one probe");
        check(
            "tcp = \"a\"",
            "fleet.toml:6:7: `tcp` in [hosts.a.health][0] is not host:port",
        );
        check("http = \"https://a\"", "is not an http:// URL");
        check("command = \"x\"\nretry = 1", "unknown key `retry`");
        check(
            "command = \"x\"\ntimeout = 0",
            "must be between 1 and 3600, not 0",
        );
    }
}
