//! Running the real `hbdeploy` binary on a pseudo-terminal, for what only happens there: the
//! questions it asks before it does something that cannot be undone.
//!
//! util-linux's `script` gives the binary a terminal on stdin, stdout and stderr; this module
//! waits for a prompt to appear on it, types the answer, and collects everything the terminal
//! showed until the binary exits.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::{LabError, NIX_CONFIG, Run};

/// How long a run on a terminal may take in all.
const LIMIT: Duration = Duration::from_secs(180);

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs `binary` with `args` (after `--fleet fleet`, when given) on a pseudo-terminal, with the
/// lab's nix settings and colour off. Each time the terminal shows `prompt` again, the next of
/// `answers` is typed, followed by Enter. Everything the terminal showed is in `stdout`, with
/// `\r\n` turned into `\n`; `stderr` is empty (a terminal has one screen).
pub fn hbdeploy_on_a_terminal(
    binary: &Path,
    fleet: Option<&Path>,
    args: &[&str],
    prompt: &str,
    answers: &[&str],
) -> Result<Run, LabError> {
    let mut argv: Vec<OsString> = vec![binary.as_os_str().to_owned()];
    if let Some(fleet) = fleet {
        argv.push("--fleet".into());
        argv.push(fleet.as_os_str().to_owned());
    }
    argv.extend(args.iter().map(OsString::from));
    on_a_terminal(&argv, "hbdeploy", prompt, answers)
}

/// Runs `argv` on a pseudo-terminal (`script --command`, the words quoted for its shell) and
/// answers `prompt` with `answers`, as [`hbdeploy_on_a_terminal`] does; `argv` may start with the
/// command that enters a lab host ([`crate::Inside::on_a_terminal`]). `what` names the program
/// in errors.
pub(crate) fn on_a_terminal(
    argv: &[OsString],
    what: &str,
    prompt: &str,
    answers: &[&str],
) -> Result<Run, LabError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| LabError::Io { what, source }
    };
    let line: Vec<String> = argv
        .iter()
        .map(|word| quote(&word.to_string_lossy()))
        .collect();
    let line = line.join(" ");
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("run script (util-linux)"))?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LabError::Startup {
            host: "terminal".to_owned(),
            detail: "script's pipes could not be opened".to_owned(),
        });
    };
    let (tx, rx) = channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown: Vec<u8> = Vec::new();
    let mut typed = 0;
    let deadline = Instant::now() + LIMIT;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(chunk) => shown.extend(chunk),
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        let prompts = String::from_utf8_lossy(&shown).matches(prompt).count();
        if prompts > typed
            && let Some(answer) = answers.get(typed)
        {
            if let Err(err) = stdin.write_all(format!("{answer}\r").as_bytes()) {
                break Err(io("type an answer")(err));
            }
            typed += 1;
        }
        if Instant::now() > deadline {
            break Err(LabError::Startup {
                host: "terminal".to_owned(),
                detail: format!(
                    "{what} did not finish within {}s; the terminal showed:\n{}",
                    LIMIT.as_secs(),
                    String::from_utf8_lossy(&shown)
                ),
            });
        }
    };
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(io("wait for script"));
    drop(stdin);
    let _ = reader.join();
    outcome?;
    Ok(Run {
        code: status?.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&shown).replace("\r\n", "\n"),
        stderr: String::new(),
    })
}

impl crate::Lab {
    /// [`hbdeploy_on_a_terminal`] against this lab's fleet file (written by
    /// [`crate::Lab::write_fleet`]).
    pub fn hbdeploy_on_a_terminal(
        &self,
        binary: &Path,
        args: &[&str],
        prompt: &str,
        answers: &[&str],
    ) -> Result<Run, LabError> {
        let fleet = self.dir().join("fleet.toml");
        hbdeploy_on_a_terminal(binary, Some(&fleet), args, prompt, answers)
    }
}
