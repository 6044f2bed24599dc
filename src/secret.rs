//! Asking for a secret (a sudo password) on the terminal, without echo.
//!
//! Echo is turned off *before* the prompt is shown, and without discarding pending input, so an
//! answer typed the moment the prompt appears is never lost (`console`'s reader switches echo off
//! after the prompt with `TCSAFLUSH`, which throws such an answer away and then waits forever).

use std::io::{BufRead, BufReader, Write};

use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

/// Shows `prompt` on the controlling terminal and reads one line there without echoing it.
pub fn ask(prompt: &str) -> std::io::Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let original = tcgetattr(&tty)?;
    let mut quiet = original.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    // The Enter that ends the answer still moves to the next line.
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let answer = (|| -> std::io::Result<String> {
        let mut out = &tty;
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
        let mut line = String::new();
        BufReader::new(&tty).read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    })();
    let restored = tcsetattr(&tty, OptionalActions::Now, &original);
    let answer = answer?;
    restored?;
    Ok(answer)
}
