//! Reading a secret (an identity file's passphrase, a sudo password) on the terminal without
//! showing it. While it is read, the terminal neither
//! echoes nor turns keys into signals; its settings are restored whatever happens, so Ctrl-C
//! ends the question cleanly (the caller exits) instead of killing the process with the
//! terminal left silent. What was typed is wiped from memory when dropped.

use std::io::Read;

use console::Term;
use rustix::termios::{
    LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcsetattr,
};
use zeroize::Zeroizing;

/// Whether the user can be asked: stdin and stderr are a terminal.
pub(crate) fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && Term::stderr().is_term()
}

/// What the user did at the prompt.
pub(crate) enum Typed {
    /// Typed a line and pressed Enter.
    Line(Zeroizing<String>),
    /// Pressed Ctrl-C (or Ctrl-D on an empty line).
    Interrupted,
}

/// Puts the terminal's settings back when dropped.
struct Restore(Termios);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.0);
    }
}

/// Shows `prompt` on stderr and reads a line from the terminal on stdin, unseen.
pub(crate) fn read_hidden(prompt: &str) -> std::io::Result<Typed> {
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet
        .local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    // Quiet before the prompt shows, so nothing typed after it is echoed; and flushed, so
    // nothing typed before it is taken as the passphrase.
    tcsetattr(&stdin, OptionalActions::Flush, &quiet)?;
    let restore = Restore(saved);
    let term = Term::stderr();
    term.write_str(prompt)?;
    let mut editor = Editor::default();
    let mut input = stdin.lock();
    let typed = loop {
        let mut byte = [0u8; 1];
        match input.read(&mut byte) {
            Ok(0) => break Typed::Interrupted,
            Ok(_) => match editor.key(byte[0]) {
                Step::More => {}
                Step::Done => break Typed::Line(editor.finish()),
                Step::Interrupted => break Typed::Interrupted,
            },
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    };
    drop(input);
    drop(restore);
    term.write_line("")?;
    Ok(typed)
}

/// What a key press means for the line being typed.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Keep reading.
    More,
    /// Enter: the line is complete.
    Done,
    /// Ctrl-C, or Ctrl-D on an empty line: give up.
    Interrupted,
}

/// The line being typed, with the few editing keys a hidden line needs.
#[derive(Default)]
struct Editor {
    bytes: Zeroizing<Vec<u8>>,
}

impl Editor {
    fn key(&mut self, byte: u8) -> Step {
        match byte {
            b'\r' | b'\n' => return Step::Done,
            0x03 => return Step::Interrupted,
            0x04 if self.bytes.is_empty() => return Step::Interrupted,
            // Backspace or Delete: the last character, however many bytes it took.
            0x7f | 0x08 => {
                while let Some(last) = self.bytes.pop() {
                    if last & 0b1100_0000 != 0b1000_0000 {
                        break;
                    }
                }
            }
            // Ctrl-U: start again.
            0x15 => self.bytes.clear(),
            // Other control keys (Ctrl-D on a non-empty line, Escape, Tab…) are ignored.
            byte if byte < 0x20 => {}
            byte => self.bytes.push(byte),
        }
        Step::More
    }

    fn finish(mut self) -> Zeroizing<String> {
        let bytes = std::mem::take(&mut *self.bytes);
        match String::from_utf8(bytes) {
            Ok(text) => Zeroizing::new(text),
            Err(err) => {
                let bytes = Zeroizing::new(err.into_bytes());
                Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[u8]) -> (Step, String) {
        let mut editor = Editor::default();
        for &key in keys {
            match editor.key(key) {
                Step::More => {}
                step => return (step, editor.finish().to_string()),
            }
        }
        (Step::More, editor.finish().to_string())
    }

    #[test]
    fn enter_ends_the_line_and_editing_keys_edit_it() {
        assert_eq!(typed(b"secret\r"), (Step::Done, "secret".to_owned()));
        assert_eq!(typed(b"secret\n"), (Step::Done, "secret".to_owned()));
        assert_eq!(typed(b"secrex\x7ft\r"), (Step::Done, "secret".to_owned()));
        assert_eq!(
            typed(b"oops\x15secret\r"),
            (Step::Done, "secret".to_owned())
        );
        assert_eq!(
            typed(b"se\x1bcr\tet\x04\r"),
            (Step::Done, "secret".to_owned())
        );
        assert_eq!(typed(b"\r"), (Step::Done, String::new()));
    }

    #[test]
    fn backspace_removes_a_whole_character() {
        assert_eq!(
            typed("pässé\x7f\x7fe\r".as_bytes()),
            (Step::Done, "päse".to_owned())
        );
        assert_eq!(typed(b"\x7f\x7fok\r"), (Step::Done, "ok".to_owned()));
    }

    #[test]
    fn ctrl_c_and_ctrl_d_on_an_empty_line_give_up() {
        assert_eq!(typed(b"sec\x03").0, Step::Interrupted);
        assert_eq!(typed(b"\x04").0, Step::Interrupted);
        assert_eq!(typed(b"a\x04").0, Step::More);
    }
}
