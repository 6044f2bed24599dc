//! Reading a secret's content on the workstation: a file, or a command's stdout, into memory
//! that is zeroed whenever it is given back (also when the buffer grows), at most
//! [`MAX_SECRET_BYTES`].

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::{MAX_SECRET_BYTES, SecretContent, SecretSource};

/// Why a secret's content could not be read on the workstation; nothing was changed anywhere.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Its file could not be read.
    #[error("cannot read the file of secret `{name}`")]
    File {
        /// The secret.
        name: String,
        /// The cause, naming the file.
        #[source]
        source: hbdeploy_files::FileError,
    },
    /// Its command's program does not exist.
    #[error("the command of secret `{name}` cannot run: `{program}` was not found")]
    NotFound {
        /// The secret.
        name: String,
        /// The program.
        program: String,
    },
    /// Its command could not be started.
    #[error("the command of secret `{name}` (`{program}`) could not be started")]
    Spawn {
        /// The secret.
        name: String,
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its file could not be read once opened.
    #[error("cannot read {} (the file of secret `{name}`)", path.display())]
    Io {
        /// The secret.
        name: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than [`MAX_SECRET_BYTES`].
    #[error("secret `{name}` is larger than 16 MiB")]
    TooLarge {
        /// The secret.
        name: String,
    },
    /// Its command failed.
    #[error("the command of secret `{name}` (`{program}`) failed ({status}){}", stderr_text(.stderr))]
    Failed {
        /// The secret.
        name: String,
        /// The program.
        program: String,
        /// How it ended.
        status: String,
        /// Its last lines on stderr (its stdout, the content, is never shown).
        stderr: Vec<String>,
    },
}

fn stderr_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join("; "))
    }
}

impl hbdeploy_files::Hint for SecretError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SecretError::File { name, .. } => format!(
                "check `file` of the secret `{name}` in fleet.toml: a regular file (or a symlink \
                 to one) of at most 16 MiB; nothing was changed on any host"
            ),
            SecretError::NotFound { name, .. } => format!(
                "install the program, or fix `command` of the secret `{name}` in fleet.toml \
                 (it is run without a shell, so give its path or put it on PATH); nothing was \
                 changed on any host"
            ),
            SecretError::Io { name, .. } | SecretError::TooLarge { name } => format!(
                "check the source of the secret `{name}` in fleet.toml: a key or password, not \
                 a whole directory or device; nothing was changed on any host"
            ),
            SecretError::Spawn { name, .. } | SecretError::Failed { name, .. } => format!(
                "run the command of the secret `{name}` yourself to see why it fails; nothing \
                 was changed on any host"
            ),
        })
    }
}

/// Reads the content of secret `name` from `source`: a file, or what a command prints on stdout
/// (run here, without a shell, with no stdin).
pub async fn load(name: &str, source: &SecretSource) -> Result<SecretContent, SecretError> {
    match source {
        SecretSource::File(path) => read_file(name, path).await,
        SecretSource::Command(argv) => run_command(name, argv).await,
    }
}

/// The largest secret, as a `usize` (16 MiB fits every platform hbdeploy runs on).
const LIMIT: usize = MAX_SECRET_BYTES as usize;

async fn read_file(name: &str, path: &std::path::Path) -> Result<SecretContent, SecretError> {
    let failed = |source: hbdeploy_files::FileError| SecretError::File {
        name: name.to_owned(),
        source,
    };
    // What it is (a regular file, not too large) is judged first, as for every file a user
    // names; then it is read into zeroizing memory.
    hbdeploy_files::check(path, MAX_SECRET_BYTES).map_err(failed)?;
    let io = |source: std::io::Error| SecretError::Io {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    match read_zeroizing(file, LIMIT).await.map_err(io)? {
        Some(bytes) => Ok(SecretContent::from_buffer(bytes)),
        None => Err(SecretError::TooLarge {
            name: name.to_owned(),
        }),
    }
}

/// Reads `reader` to its end into memory that is zeroed whenever it is given back: the buffer
/// grows by copying into a new zeroizing one, so no copy of a secret is left in freed memory.
/// `None` when there is more than `limit` bytes.
async fn read_zeroizing(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        let n = reader.read(&mut chunk[..]).await?;
        if n == 0 {
            return Ok(Some(buffer));
        }
        let Some(filled) = chunk.get(..n) else {
            return Ok(Some(buffer));
        };
        if buffer.len() + n > limit {
            return Ok(None);
        }
        if buffer.len() + n > buffer.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (buffer.capacity() * 2).max(buffer.len() + n),
            ));
            bigger.extend_from_slice(&buffer);
            // The smaller buffer is zeroed as it is dropped here.
            buffer = bigger;
        }
        buffer.extend_from_slice(filled);
    }
}

async fn run_command(name: &str, argv: &[String]) -> Result<SecretContent, SecretError> {
    use tokio::io::AsyncReadExt;
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(argv.iter().skip(1))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SecretError::NotFound {
                name: name.to_owned(),
                program: program.clone(),
            },
            _ => SecretError::Spawn {
                name: name.to_owned(),
                program: program.clone(),
                source,
            },
        })?;
    let spawn_error = |source: std::io::Error| SecretError::Spawn {
        name: name.to_owned(),
        program: program.clone(),
        source,
    };
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other(
            "no pipes to the command",
        )));
    };
    let mut errors = Vec::new();
    // Both pipes are drained together, so a command that writes much to one never blocks.
    let (content, _) = tokio::join!(
        read_zeroizing(stdout, LIMIT),
        stderr.read_to_end(&mut errors)
    );
    let Some(content) = content.map_err(spawn_error)? else {
        let _ = child.kill().await;
        return Err(SecretError::TooLarge {
            name: name.to_owned(),
        });
    };
    let status = child.wait().await.map_err(spawn_error)?;
    if status.success() {
        return Ok(SecretContent::from_buffer(content));
    }
    drop(content);
    let stderr = String::from_utf8_lossy(&errors);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(SecretError::Failed {
        name: name.to_owned(),
        program,
        status: status.to_string(),
        stderr: lines
            .iter()
            .skip(lines.len().saturating_sub(5))
            .map(|l| (*l).to_owned())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_grows_the_buffer_whole_and_stops_past_the_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let read = read_zeroizing(&data[..], 200_000).await.expect("read");
        assert_eq!(read.as_deref().map(Vec::as_slice), Some(&data[..]));
        let read = read_zeroizing(&data[..], 100_000).await.expect("read");
        assert!(read.is_some());
        let read = read_zeroizing(&data[..], 99_999).await.expect("read");
        assert!(read.is_none());
    }

    #[tokio::test]
    async fn a_command_is_run_without_a_shell_and_its_failures_are_named() {
        let argv = |a: &[&str]| SecretSource::Command(a.iter().map(|s| (*s).to_owned()).collect());
        let ok = load("k", &argv(&["printf", "%s", "s3cret"])).await;
        let expected = SecretContent::new(b"s3cret".to_vec());
        assert_eq!(ok.ok(), Some(expected));

        let missing = load("k", &argv(&["/nonexistent/pass", "show"])).await;
        let text = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "the command of secret `k` cannot run: `/nonexistent/pass` was not found"
        );

        let failing = load(
            "k",
            &argv(&["sh", "-c", "echo s3cret; echo 'no such entry' >&2; exit 3"]),
        )
        .await;
        let text = failing.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "the command of secret `k` (`sh`) failed (exit status: 3): no such entry"
        );
        assert!(!text.contains("s3cret"));

        let file = load("k", &SecretSource::File("/nonexistent/k".into())).await;
        let text = file
            .err()
            .map(|e| hbdeploy_files::chain(&e))
            .unwrap_or_default();
        assert!(
            text.starts_with("cannot read the file of secret `k`: "),
            "{text}"
        );
        assert!(text.contains("/nonexistent/k"), "{text}");
    }
}
