//! Health checks after activation, and on demand (`hbdeploy check`): a command run on the host
//! over its connection, or a TCP connection or an HTTP GET from the deployer. Each attempt is
//! bounded by the check's timeout; a failed check is tried again `retries` times, two seconds
//! apart, before it counts as failed.

use std::time::Duration;

use hbdeploy_ssh::Exit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::port::{Dial, Host, Reach};

/// Pause between attempts of a failing check.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// What a check probes, and one check: fleet.toml's own types, run as they are.
pub use hbdeploy_inventory::{HealthCheck as Check, Probe as CheckProbe};

/// A check that failed: which, how often, and what it said last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// The check, as shown to the user.
    pub check: String,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt said.
    pub detail: String,
    /// The last attempt's output (command checks).
    pub output: Vec<String>,
}

/// Runs every check in order, each with its retries; stops at the first that fails for good.
pub async fn run_checks(conn: &impl Host, checks: &[Check]) -> Result<(), CheckFailure> {
    for check in checks {
        run_check(conn, check).await?;
    }
    Ok(())
}

/// One check, with its retries.
pub async fn run_check(conn: &impl Host, check: &Check) -> Result<(), CheckFailure> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        // A command check is bounded on the host itself (`remote/check.sh`); the limit here is the
        // backstop for a host that stops answering, after the host's own has had its turn.
        let limit = match check.probe {
            CheckProbe::Command(_) => check.timeout + KILL_AFTER + Duration::from_secs(3),
            CheckProbe::Tcp(_) | CheckProbe::Http { .. } => check.timeout,
        };
        let outcome = match tokio::time::timeout(limit, attempt(conn, check)).await {
            Ok(outcome) => outcome,
            Err(_) => Err((no_answer(check.timeout), Vec::new())),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err((detail, output)) if attempts > check.retries => {
                return Err(CheckFailure {
                    check: check.to_string(),
                    attempts,
                    detail,
                    output,
                });
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Each check, as shown to the user, with its result.
pub type CheckResults = Vec<(String, Result<(), CheckFailure>)>;

/// The result of `hbdeploy check` for one host.
#[derive(Debug)]
pub struct HostChecks {
    /// The host.
    pub host: String,
    /// Each check with its result, or why the host could not be reached.
    pub results: Result<CheckResults, crate::HostError>,
}

/// Runs every selected host's checks, hosts in parallel, checks in order (all of them, even after
/// one failed); changes nothing.
pub async fn check_hosts(
    hosts: Vec<crate::HostPlan>,
    parallel: std::num::NonZeroUsize,
    session: &hbdeploy_ssh::Session,
) -> Vec<HostChecks> {
    let results = crate::fanout::each_host(hosts, parallel, |plan| {
        let session = session.clone();
        async move {
            let conn = Reach::with(&session)
                .connect(&plan.target)
                .await
                .map_err(crate::HostError::Connect)?;
            let mut results = Vec::new();
            for check in &plan.health {
                results.push((check.to_string(), run_check(&conn, check).await));
            }
            conn.close().await;
            Ok(results)
        }
    })
    .await;
    results
        .into_iter()
        .map(|(plan, results)| HostChecks {
            host: plan.name,
            results: results.unwrap_or(Err(crate::HostError::TaskLost)),
        })
        .collect()
}

type Attempt = Result<(), (String, Vec<String>)>;

fn no_answer(limit: Duration) -> String {
    format!("no answer within {}s", limit.as_secs())
}

/// How long a timed-out command check has to stop after SIGTERM before it gets SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(2);

/// The exit code of coreutils' `timeout` when the limit expired.
const TIMED_OUT: u32 = 124;

async fn attempt(conn: &impl Host, check: &Check) -> Attempt {
    match &check.probe {
        CheckProbe::Command(command) => {
            let output = crate::remote::check(conn, command, check.timeout, KILL_AFTER)
                .await
                .map_err(|err| (err.to_string(), Vec::new()))?;
            let lines = output.tail_lines();
            if output.exit.success() {
                Ok(())
            } else if output.exit == Exit::Code(TIMED_OUT) {
                Err((no_answer(check.timeout), lines))
            } else {
                Err((output.exit.to_string(), lines))
            }
        }
        CheckProbe::Tcp(address) => TcpStream::connect(address.as_str())
            .await
            .map(|_| ())
            .map_err(|err| (format!("cannot connect: {err}"), Vec::new())),
        CheckProbe::Http { url, status } => http_get(url)
            .await
            .and_then(|code| {
                let healthy = match status {
                    Some(expected) => code == *expected,
                    None => (200..300).contains(&code),
                };
                if healthy {
                    Ok(())
                } else {
                    let wanted = status.map_or("2xx".to_owned(), |s| s.to_string());
                    Err(format!("HTTP status {code}, expected {wanted}"))
                }
            })
            .map_err(|detail| (detail, Vec::new())),
    }
}

/// `http://host[:port]/path` split into the address to connect to, the Host header and the path.
fn split_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
        return None;
    }
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((address, authority.to_owned(), path.to_owned()))
}

/// A minimal HTTP/1.1 GET: the status code of the answer.
async fn http_get(url: &str) -> Result<u16, String> {
    let (address, host, path) = split_url(url).ok_or_else(|| format!("cannot use URL {url}"))?;
    let mut stream = TcpStream::connect(&address)
        .await
        .map_err(|err| format!("cannot connect to {address}: {err}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hbdeploy\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("cannot send the request: {err}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|err| format!("cannot read the answer: {err}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("");
    let mut fields = status_line.split_whitespace();
    match (fields.next(), fields.next().and_then(|c| c.parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP answer: {status_line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `line` as the host's SSH server would (`sh -c`), on this machine: its stdout and
    /// exit code.
    fn run_here(line: &str) -> (String, Option<i32>) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .output()
            .expect("sh runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        )
    }

    #[test]
    fn command_checks_are_bounded_on_the_host_as_one_word() {
        // The user's command reaches the shell as one word: quotes, `&&` and its exit code intact.
        let line = crate::remote::check_command(
            "printf '%s|' \"it's\" a && exit 3",
            Duration::from_secs(10),
            KILL_AFTER,
        );
        assert_eq!(run_here(&line), ("it's|a|".to_owned(), Some(3)), "{line}");
        // One that outlives its limit is stopped, with the exit code `attempt` reads as timed out.
        let line = crate::remote::check_command("sleep 30", Duration::from_millis(300), KILL_AFTER);
        assert_eq!(run_here(&line).1, i32::try_from(TIMED_OUT).ok(), "{line}");
    }

    #[test]
    fn urls_split_into_address_host_and_path() {
        let check = |url: &str, expected: Option<(&str, &str, &str)>| {
            let got = split_url(url);
            let expected = expected.map(|(a, h, p)| (a.to_owned(), h.to_owned(), p.to_owned()));
            assert_eq!(got, expected, "{url}");
        };
        check("http://web/health", Some(("web:80", "web", "/health")));
        check(
            "http://10.0.0.1:8080",
            Some(("10.0.0.1:8080", "10.0.0.1:8080", "/")),
        );
        check("https://web/", None);
        check("http:///x", None);
        check("http://a b/", None);
    }

    #[tokio::test]
    async fn http_status_is_read_from_a_real_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 503 Busy\r\n\r\n",
            ] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 1024];
                let n = socket.read(&mut request).await.expect("read");
                assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET /h HTTP/1.1\r\n"));
                socket.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        assert_eq!(
            http_get(&format!("http://127.0.0.1:{port}/h")).await,
            Ok(204)
        );
        assert_eq!(
            http_get(&format!("http://127.0.0.1:{port}/h")).await,
            Ok(503)
        );
        server.await.expect("server");
    }
}
