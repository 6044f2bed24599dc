//! Lending a [`Connection`] to a program that runs OpenSSH's `ssh` (nix's `ssh-ng://` store):
//! the program finds a stand-in `ssh` first on its `PATH`, and the stand-in's stdin and stdout
//! become those of a command on a new channel of the connection. So that program reaches the
//! host over the connection hbdeploy already made: no second handshake, and no second set of
//! host keys, identities, jump hosts or timeouts to keep in step with the first.
//!
//! The stand-in is the running executable itself (so an installed binary needs no other file):
//! [`Relay::open`] makes a private (0700) temporary directory holding a unix socket and a
//! symlink named `ssh` to `/proc/PID/exe` (this very process's executable, even if it was
//! replaced on disk meanwhile), and the program runs with that directory first on its `PATH`
//! and the socket in [`RELAY_ENV`]. A program that relays must call
//! [`stand_in`] first thing in `main`: run as `ssh` with [`RELAY_ENV`] set, it connects to the
//! socket, names the command it was asked to run and, where its stdin and stdout are pipes (as
//! nix gives `ssh`), hands them to the relay over the socket (`SCM_RIGHTS`): the relay then
//! reads nix's requests and writes the host's answers itself, and the stand-in only waits for the
//! relay to be done. Otherwise (a terminal, a file) it copies its stdin to the socket and the
//! socket to its stdout until either ends. Handing the pipes over saves a process's hop for every
//! byte and every round trip of the copy: on the lab, the stand-in's copying cost about 12 ms of
//! CPU per 10 MiB sent, and one more process to wake for each of the nix protocol's round trips.
//!
//! What the relay sends, it paces to what the host's sshd hands on to the command ([`crate::window`]):
//! sshd holds what it has received and not handed on in a buffer whose growth costs it a copy
//! of the whole buffer each time, so a busy `nix-daemon` behind a fast link made each host's
//! sshd spend more CPU growing that buffer towards its 2 MiB window than decrypting the copy.
//!
//! The relay runs exactly one command line, given by its owner (e.g. `nix-daemon --stdio`); a
//! stand-in that asks for another is refused. The command runs as the connection's login user,
//! as `ssh` would have run it. Its stderr goes to the owner's line sink.

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Connection;

/// The environment variable that holds the relay's socket for the stand-in `ssh`.
pub const RELAY_ENV: &str = "HBDEPLOY_RELAY";

/// The stand-in's answer when the relay started the command.
const STARTED: &str = "ok";

/// The stand-in's word, after its local command ran, that the relay may use the pipes it
/// handed over (the relay writes nothing to them before).
const GO: u8 = b'g';

/// How much the stand-in reads at once from its stdin and from the socket.
const CHUNK: usize = 64 << 10;

/// How much the relay reads at once from the stand-in: one SSH data packet's worth (the size
/// OpenSSH's sshd accepts on a session channel), handed to russh whole.
const LEND_CHUNK: usize = 32 << 10;

/// How many bytes of the stand-in's input one relay may have handed to russh that russh's
/// session has not yet taken (encrypted into its output and let go). Without a bound the relay
/// hands russh as much as the host's channel window allows (2 MiB with OpenSSH's sshd) while a
/// busy host drains it slowly, and russh's session, which takes every queued message at once,
/// keeps an output buffer that large for the rest of the connection: about a window per host.
/// With it, what russh holds for a copy is this much queued plus an output buffer of about as
/// much; the data waiting beyond it stays in the kernel's socket buffer and then in `nix copy`.
/// Two packets: one being encrypted and written while the next waits, so the connection never
/// idles for want of data.
const IN_FLIGHT: usize = 2 * LEND_CHUNK;

/// What can go wrong while setting up a relay or while standing in for `ssh`.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay's private directory, socket or `ssh` link could not be made.
    #[error("cannot set up the relay for `ssh` in {}", path.display())]
    Setup {
        /// The directory or file involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stand-in could not reach the relay, or lost it before the command started.
    #[error("cannot reach hbdeploy's connection through {}", socket.display())]
    Reach {
        /// The relay's socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The relay refused the command or could not start it.
    #[error("hbdeploy's connection did not run `{command}`: {reason}")]
    Refused {
        /// The command the stand-in was asked to run.
        command: String,
        /// The relay's reason.
        reason: String,
    },
    /// The stand-in was run with arguments it does not serve (a master connection, no command).
    #[error("hbdeploy stands in for `ssh` only to run one command; unsupported: {0}")]
    Unsupported(String),
}

/// No advice beyond the message.
impl hbdeploy_files::Hint for RelayError {}

/// A socket on which a connection's channels are lent to stand-in `ssh` processes. Dropping it
/// removes its directory.
pub struct Relay {
    dir: PathBuf,
    socket: PathBuf,
    listener: tokio::net::UnixListener,
    command: String,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("dir", &self.dir)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Makes the private directory with the socket and the `ssh` link to this executable, for a
    /// relay that runs only `command`.
    pub fn open(command: &str) -> Result<Relay, RelayError> {
        // The running executable through /proc, not by its path: a binary replaced on disk
        // while hbdeploy runs (an upgrade, a rebuild) still runs, where a link to the path would
        // dangle and let `nix copy` find OpenSSH's `ssh` next on PATH.
        let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        let dir = private_dir()?;
        let setup = |path: &Path, source| RelayError::Setup {
            path: path.to_path_buf(),
            source,
        };
        let made = (|| {
            let link = dir.join("ssh");
            std::os::unix::fs::symlink(&exe, &link).map_err(|e| setup(&link, e))?;
            let socket = dir.join("relay.sock");
            let listener =
                tokio::net::UnixListener::bind(&socket).map_err(|e| setup(&socket, e))?;
            Ok((socket, listener))
        })();
        match made {
            Ok((socket, listener)) => Ok(Relay {
                dir,
                socket,
                listener,
                command: command.to_owned(),
            }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    /// The directory to put first on the program's `PATH`: it holds the stand-in `ssh`.
    pub fn bin_dir(&self) -> &Path {
        &self.dir
    }

    /// The environment the program needs besides `PATH`: [`RELAY_ENV`] naming the socket.
    pub fn env(&self) -> (&'static str, OsString) {
        (RELAY_ENV, self.socket.clone().into_os_string())
    }

    /// `PATH` with the stand-in's directory first.
    pub fn path_env(&self) -> OsString {
        let mut path = self.dir.clone().into_os_string();
        if let Some(rest) = std::env::var_os("PATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// Runs `work` (the program using the relay) while lending `conn`'s channels to every
    /// stand-in that connects; each line the command prints on stderr goes to `on_stderr`.
    /// When `work` ends, channels still open are closed.
    pub async fn serve<T>(
        &self,
        conn: &Connection,
        on_stderr: &mut (dyn FnMut(&str) + Send),
        work: impl Future<Output = T>,
    ) -> T {
        let (stderr_tx, mut stderr_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut splices = futures::stream::FuturesUnordered::new();
        let mut work = std::pin::pin!(work);
        use futures::StreamExt;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                accepted = self.listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        splices.push(splice(conn, &self.command, stream, stderr_tx.clone(), stop_rx.clone()));
                    }
                }
                Some(()) = splices.next(), if !splices.is_empty() => {}
                Some(line) = stderr_rx.recv() => on_stderr(&line),
            }
        };
        let _ = stop_tx.send(true);
        while splices.next().await.is_some() {}
        drop(stderr_tx);
        while let Ok(line) = stderr_rx.try_recv() {
            on_stderr(&line);
        }
        result
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves one stand-in: reads the command it asks for (and the pipes it hands over, if any),
/// runs it on a new channel, and copies bytes both ways until the command's output ends or
/// `stop` is set.
async fn splice(
    conn: &Connection,
    allowed: &str,
    stream: tokio::net::UnixStream,
    stderr: tokio::sync::mpsc::UnboundedSender<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok((asked, pipes)) = ask(&stream).await else {
        return;
    };
    let (read, mut write) = stream.into_split();
    if asked != allowed {
        let reply = format!("only `{allowed}` is relayed\n");
        let _ = write.write_all(reply.as_bytes()).await;
        return;
    }
    // The pipes as tokio's ends (non-blocking from here on: the stand-in no longer uses them).
    let pipes = match pipes.map(|(stdin, stdout)| {
        Ok::<_, std::io::Error>((
            tokio::net::unix::pipe::Receiver::from_owned_fd(stdin)?,
            tokio::net::unix::pipe::Sender::from_owned_fd(stdout)?,
        ))
    }) {
        Some(Err(err)) => {
            let reply = format!("cannot use the stand-in's pipes: {err}\n");
            let _ = write.write_all(reply.as_bytes()).await;
            return;
        }
        Some(Ok(pipes)) => Some(pipes),
        None => None,
    };
    let channel = match conn.start(allowed).await {
        Ok(channel) => channel,
        Err(err) => {
            let _ = write.write_all(format!("{err}\n").as_bytes()).await;
            return;
        }
    };
    if write
        .write_all(format!("{STARTED}\n").as_bytes())
        .await
        .is_err()
    {
        let _ = channel.close().await;
        return;
    }
    let mut read = read;
    // With pipes: the socket only keeps the stand-in waiting, and it says when the relay may
    // write to its stdout (after its local command). Without: the socket carries the bytes.
    let (mut from, mut to): (
        Box<dyn tokio::io::AsyncRead + Unpin + Send + '_>,
        Box<dyn tokio::io::AsyncWrite + Unpin + Send + '_>,
    ) = match pipes {
        Some((stdin, stdout)) => {
            let mut go = [0u8; 1];
            // Not waited for beyond the program's end (a stand-in stuck in its local command).
            let said = tokio::select! {
                read = read.read(&mut go) => matches!(read, Ok(1)) && go[0] == GO,
                () = stopped(&mut stop) => false,
            };
            if !said {
                let _ = channel.close().await;
                return;
            }
            (Box::new(stdin), Box::new(stdout))
        }
        None => (Box::new(&mut read), Box::new(&mut write)),
    };
    let id = u32::from(channel.id());
    let (mut from_host, to_host) = channel.split();
    let mut lines = crate::exec::LineSplitter::default();
    let budget = Budget::new(IN_FLIGHT);
    let mut pace = crate::window::Pace::new(&conn.windows, id);
    let input = async {
        // The stand-in's stdin, then end of file for the command.
        lend(&mut from, &budget, Some(&mut pace), |data| {
            to_host.data_bytes(data)
        })
        .await;
        let _ = to_host.eof().await;
    };
    let output = async {
        while let Some(msg) = from_host.wait().await {
            let more = match msg {
                ChannelMsg::Data { data } => to.write_all(&data).await.is_ok(),
                ChannelMsg::ExtendedData { data, .. } => {
                    lines.push(&data, |line| {
                        let _ = stderr.send(line);
                    });
                    true
                }
                ChannelMsg::Eof | ChannelMsg::Close => false,
                _ => true,
            };
            if !more {
                break;
            }
        }
        lines.finish(|line| {
            let _ = stderr.send(line);
        });
        let _ = to.shutdown().await;
    };
    tokio::select! {
        // Output ended: the command is done, whatever is left of the input does not matter.
        () = output => {}
        () = stopped(&mut stop) => {}
        () = async { input.await; std::future::pending::<()>().await } => {}
    }
    let _ = to_host.close().await;
    // Dropping the pipe ends and the socket (here) lets the stand-in exit.
}

/// Reads the stand-in's command line, with the pipes (stdin, stdout) that came with it, if any.
/// Nothing follows the line before the relay answers, so this reads no further.
async fn ask(
    stream: &tokio::net::UnixStream,
) -> std::io::Result<(String, Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut line = Vec::new();
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    loop {
        let mut buffer = [0u8; 512];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = stream
            .async_io(tokio::io::Interest::READABLE, || {
                rustix::net::recvmsg(
                    stream,
                    &mut [std::io::IoSliceMut::new(&mut buffer)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        let got = &buffer[..received.bytes];
        if got.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.extend_from_slice(got);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            // A stand-in sends nothing after its line before the answer: more is refused.
            if end + 1 != line.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            line.truncate(end);
            break;
        }
        // A command line is short; a stand-in that sends more is cut off.
        if line.len() > 4096 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    let asked = String::from_utf8_lossy(&line).into_owned();
    let mut fds = fds.into_iter();
    let pipes = match (fds.next(), fds.next(), fds.next()) {
        (Some(stdin), Some(stdout), None) => Some((stdin, stdout)),
        (None, None, None) => None,
        _ => return Err(std::io::ErrorKind::InvalidData.into()),
    };
    Ok((asked, pipes))
}

/// The bytes one relay has handed to the connection and the connection has not let go yet, with
/// the buffer it is reading into: at most `bound` (see [`IN_FLIGHT`]).
struct Budget {
    free: std::sync::Arc<tokio::sync::Semaphore>,
    bound: usize,
    /// The most that was ever lent at once (for the tests of the bound).
    peak: std::sync::atomic::AtomicUsize,
}

impl Budget {
    fn new(bound: usize) -> Budget {
        Budget {
            free: std::sync::Arc::new(tokio::sync::Semaphore::new(bound)),
            bound,
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Waits until `size` bytes (capped at the bound: a larger request could never be granted)
    /// fit in the budget, and holds them for a buffer about to be filled.
    async fn reserve(&self, size: usize) -> Option<Reserved> {
        let wanted = u32::try_from(size.clamp(1, self.bound)).ok()?;
        let permit = self.free.clone().acquire_many_owned(wanted).await.ok()?;
        let lent = self.bound - self.free.available_permits();
        self.peak
            .fetch_max(lent, std::sync::atomic::Ordering::Relaxed);
        Some(Reserved { permit })
    }

    /// Waits until `data` fits in the budget, then wraps it so that its bytes count against
    /// the budget until the last reference to them is dropped.
    #[cfg(test)]
    async fn lend(&self, data: Vec<u8>) -> Option<bytes::Bytes> {
        let reserved = self.reserve(data.capacity()).await?;
        Some(reserved.lend(data))
    }

    #[cfg(test)]
    fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A share of the [`Budget`] held for a buffer before it is read into, so that the buffer
/// being filled counts too: a relay never holds more than the bound, read or lent.
struct Reserved {
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Reserved {
    /// Wraps `data` (read into the buffer this share was held for) so that its share stays
    /// held until the last reference to its bytes is dropped.
    ///
    /// What counts is the allocation, not the bytes in it: many small pieces each holding a
    /// chunk-sized buffer must not slip through. A piece that fills less than half its buffer
    /// is shrunk to its bytes, and the share it no longer needs goes back at once.
    fn lend(self, mut data: Vec<u8>) -> bytes::Bytes {
        let mut permit = self.permit;
        if data.len() < data.capacity() / 2 {
            data.shrink_to_fit();
        }
        let keep = data.capacity().max(1);
        if permit.num_permits() > keep {
            // Split off and dropped: handed back to the budget.
            drop(permit.split(permit.num_permits() - keep));
        }
        bytes::Bytes::from_owner(Lent {
            data,
            _permit: permit,
        })
    }
}

/// Bytes handed to the connection, with their share of the [`Budget`]: returned when russh
/// drops the last slice of them.
struct Lent {
    data: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Copies `from` to `send` in chunks of up to [`LEND_CHUNK`], never more than `budget` read or
/// lent at once, and with `pace`, never more than it lets the host hold (`window.rs`), until
/// `from` ends or fails or `send` fails.
async fn lend<R, S, F, E>(
    from: &mut R,
    budget: &Budget,
    mut pace: Option<&mut crate::window::Pace<'_>>,
    mut send: S,
) where
    R: tokio::io::AsyncRead + Unpin,
    S: FnMut(bytes::Bytes) -> F,
    F: Future<Output = Result<(), E>>,
{
    let chunk = LEND_CHUNK.min(budget.bound).max(1);
    loop {
        if let Some(pace) = pace.as_deref_mut() {
            pace.wait().await;
        }
        // The buffer is paid for before it is read into: a relay whose connection holds the
        // whole bound reads nothing more (what waits stays in the pipe), not one chunk more.
        let Some(reserved) = budget.reserve(chunk).await else {
            break;
        };
        let mut data = Vec::with_capacity(chunk);
        match from.read_buf(&mut data).await {
            Ok(1..) => {}
            Ok(0) | Err(_) => break,
        }
        if let Some(pace) = pace.as_deref_mut() {
            pace.handed(data.len() as u64);
        }
        if send(reserved.lend(data)).await.is_err() {
            break;
        }
    }
}

/// Removes the directories of this process's relays: for a program about to exit without
/// dropping them (a second Ctrl-C).
pub fn remove_leftovers() {
    let prefix = format!("hbdeploy-relay-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Returns once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let set = *stop.borrow_and_update();
        if set || stop.changed().await.is_err() {
            return;
        }
    }
}

/// A new directory only this user can enter: `$TMPDIR/hbdeploy-relay-<pid>-<random>`. Short,
/// since a unix socket's path is limited to about 100 bytes.
fn private_dir() -> Result<PathBuf, RelayError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "hbdeploy-relay-{}-{:016x}",
            std::process::id(),
            random()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                // The mode given to mkdir is masked by the umask: make sure of it.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                    |source| RelayError::Setup {
                        path: dir.clone(),
                        source,
                    },
                )?;
                return Ok(dir);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => last = Some(err),
            Err(source) => return Err(RelayError::Setup { path: dir, source }),
        }
    }
    Err(RelayError::Setup {
        path: base,
        source: last.unwrap_or_else(|| std::io::Error::other("no free directory name")),
    })
}

/// A random number for a directory name (uniqueness, not secrecy: the directory is created
/// exclusively and private).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// What an `ssh` command line asks for, as far as the stand-in serves it.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    /// The remote command: the words after the host, joined by spaces (as `ssh` sends them).
    command: String,
    /// `-o LocalCommand=…` with `-o PermitLocalCommand=yes`: run here once connected.
    local_command: Option<String>,
}

/// `ssh`'s options that take an argument (OpenSSH's `ssh.c` getopt string).
const WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Reads an `ssh` command line as nix writes it (`ssh HOST -x [-a] [-C] [-i F] [-p N]
/// [-oOPT]… [--] COMMAND…`); other options are skipped. `Ok(None)`: a control request (`-O
/// check`), which has no master to ask and fails as `ssh` does without one.
fn parse(args: &[OsString]) -> Result<Option<Invocation>, RelayError> {
    let mut words = args.iter().map(|a| a.to_string_lossy().into_owned());
    let mut host_seen = false;
    let mut options = Vec::new();
    let mut command = Vec::new();
    while let Some(word) = words.next() {
        if word == "--" {
            if !host_seen {
                // `ssh [OPTIONS] -- HOST COMMAND…`
                words.next();
            }
            command.extend(words.by_ref());
            break;
        }
        let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) else {
            if host_seen {
                command.push(word);
                command.extend(words.by_ref());
                break;
            }
            host_seen = true;
            continue;
        };
        for (at, flag) in flags.char_indices() {
            if WITH_ARGUMENT.contains(flag) {
                let rest = &flags[at + flag.len_utf8()..];
                let value = if rest.is_empty() {
                    words.next().unwrap_or_default()
                } else {
                    rest.to_owned()
                };
                options.push((flag, value));
                break;
            }
            if flag == 'M' || flag == 'N' {
                return Err(RelayError::Unsupported(format!("-{flag}")));
            }
        }
    }
    if options.iter().any(|(flag, _)| *flag == 'O') {
        return Ok(None);
    }
    if command.is_empty() {
        return Err(RelayError::Unsupported("no remote command".to_owned()));
    }
    let option = |name: &str| {
        options.iter().rev().find_map(|(flag, value)| {
            let (key, value) = value.split_once('=')?;
            (*flag == 'o' && key.eq_ignore_ascii_case(name)).then(|| value.to_owned())
        })
    };
    let local_command = option("LocalCommand")
        .filter(|_| option("PermitLocalCommand").is_some_and(|v| v.eq_ignore_ascii_case("yes")));
    Ok(Some(Invocation {
        command: command.join(" "),
        local_command,
    }))
}

/// Stands in for `ssh` when this executable was run as `ssh` with [`RELAY_ENV`] set: `None`
/// otherwise (the caller goes on as itself). `Some(Ok(code))` is the exit code to exit with.
pub fn stand_in() -> Option<Result<u8, RelayError>> {
    let mut args = std::env::args_os();
    let name = args.next()?;
    if Path::new(&name).file_name()? != "ssh" {
        return None;
    }
    let socket = PathBuf::from(std::env::var_os(RELAY_ENV)?);
    let args: Vec<OsString> = args.collect();
    Some(match parse(&args) {
        Ok(Some(invocation)) => relay(&socket, &invocation).map(|()| 0),
        // No master connection to check: exit as `ssh -O check` does without one.
        Ok(None) => Ok(255),
        Err(err) => Err(err),
    })
}

/// Sends the command line, with `pipes` (stdin, stdout) attached to its first byte.
fn send_command(
    writer: &mut std::os::unix::net::UnixStream,
    command: &str,
    pipes: Option<[std::os::fd::BorrowedFd<'_>; 2]>,
) -> std::io::Result<()> {
    let line = format!("{command}\n");
    let Some(fds) = pipes else {
        return writer.write_all(line.as_bytes());
    };
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(
        &*writer,
        &[std::io::IoSlice::new(line.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    // The fds went with the first part; the rest of a long line follows plainly.
    writer.write_all(&line.as_bytes()[sent..])
}

/// This process's stdin and stdout, when both are pipes: they can be handed to the relay.
fn pipes() -> Option<[std::os::fd::BorrowedFd<'static>; 2]> {
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|file| file.metadata())
            .is_ok_and(|meta| meta.file_type().is_fifo())
    };
    let stdin = rustix::stdio::stdin();
    let stdout = rustix::stdio::stdout();
    (is_pipe(stdin) && is_pipe(stdout)).then_some([stdin, stdout])
}

/// Connects to the relay, asks for the command, then hands it stdin and stdout (pipes) or
/// copies them.
fn relay(socket: &Path, invocation: &Invocation) -> Result<(), RelayError> {
    let reach = |source| RelayError::Reach {
        socket: socket.to_path_buf(),
        source,
    };
    if invocation.command.contains('\n') {
        return Err(RelayError::Refused {
            command: invocation.command.clone(),
            reason: "a command line must be one line".to_owned(),
        });
    }
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(reach)?;
    let mut writer = stream.try_clone().map_err(reach)?;
    let handed = pipes();
    send_command(&mut writer, &invocation.command, handed).map_err(reach)?;
    let mut reader = std::io::BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(reach)?;
    let answer = answer.trim_end_matches('\n');
    if answer != STARTED {
        return Err(RelayError::Refused {
            command: invocation.command.clone(),
            reason: if answer.is_empty() {
                "the relay closed".to_owned()
            } else {
                answer.to_owned()
            },
        });
    }
    if let Some(local) = &invocation.local_command {
        // As `ssh` runs it: once connected, on this side, with this process's stdout.
        let _ = std::process::Command::new("/bin/sh")
            .args(["-c", local])
            .status();
    }
    if handed.is_some() {
        // The relay reads and writes the pipes now. Let go of this process's end of stdout (so
        // nix sees the end of the output when the relay closes its own), say go, and wait for
        // the relay to be done.
        let _ = std::io::stdout().flush();
        if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
        writer.write_all(&[GO]).map_err(reach)?;
        let mut rest = [0u8; 64];
        while let Ok(1..) = reader.read(&mut rest) {}
        return Ok(());
    }
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; CHUNK];
        // Reads this large bypass stdin's own (small) buffer.
        while let Ok(n @ 1..) = stdin.read(&mut buffer) {
            if writer.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut stdout = std::io::stdout().lock();
    let mut buffer = vec![0u8; CHUNK];
    // The stdin thread may still be blocked reading; the caller exits, which ends it.
    loop {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout.write_all(&buffer[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        }
    }
    let _ = stdout.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn nix_command_lines_of_every_version_name_the_same_command() {
        // nix 2.8 … 2.18: the command as one word, no `--`.
        let old = parse(&args(&[
            "root@10.0.0.1",
            "-x",
            "-a",
            "-C",
            "nix-daemon --stdio",
        ]))
        .expect("parsed")
        .expect("a command");
        assert_eq!(old.command, "nix-daemon --stdio");
        assert_eq!(old.local_command, None);
        // Later: options after the host, `echo started` as a local command, `--`, words.
        let new = parse(&args(&[
            "root@10.0.0.1",
            "-x",
            "-i",
            "/k",
            "-p2222",
            "-oPermitLocalCommand=yes",
            "-oLocalCommand=echo started",
            "--",
            "nix-daemon",
            "--stdio",
        ]))
        .expect("parsed")
        .expect("a command");
        assert_eq!(new.command, "nix-daemon --stdio");
        assert_eq!(new.local_command.as_deref(), Some("echo started"));
    }

    #[test]
    fn a_control_request_or_a_master_is_not_served() {
        assert_eq!(
            parse(&args(&["-O", "check", "root@h", "-oLocalCommand=x"])).expect("parsed"),
            None
        );
        assert!(matches!(
            parse(&args(&["root@h", "-M", "-N", "-S", "/s"])),
            Err(RelayError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&args(&["root@h", "-x"])),
            Err(RelayError::Unsupported(_))
        ));
        // A local command without PermitLocalCommand=yes is not run, as with `ssh`.
        let quiet = parse(&args(&["h", "-o", "LocalCommand=echo started", "cmd"]))
            .expect("parsed")
            .expect("a command");
        assert_eq!(quiet.local_command, None);
        assert_eq!(quiet.command, "cmd");
    }

    #[test]
    fn the_relay_directory_is_private_and_goes_away() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let relay = Relay::open("nix-daemon --stdio").expect("relay");
        let dir = relay.bin_dir().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_link(dir.join("ssh")).expect("link"),
            PathBuf::from(format!("/proc/{}/exe", std::process::id()))
        );
        assert!(
            relay
                .path_env()
                .to_string_lossy()
                .starts_with(&*dir.to_string_lossy())
        );
        assert_eq!(relay.env().0, RELAY_ENV);
        drop(relay);
        assert!(!dir.exists());
    }

    /// A connection that takes what it is handed slowly (as russh's session does while a busy
    /// host drains its window): the bytes it holds never exceed the relay's bound, and every
    /// byte arrives, in order.
    #[test]
    fn a_slow_connection_holds_no_more_than_the_bound() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let input: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
        let (queue_tx, mut queue_rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let held = std::cell::Cell::new(0usize);
        let most_held = std::cell::Cell::new(0usize);
        let budget = Budget::new(IN_FLIGHT);
        let received = runtime.block_on(async {
            let send = |data: bytes::Bytes| {
                held.set(held.get() + data.len());
                most_held.set(most_held.get().max(held.get()));
                std::future::ready(queue_tx.send(data))
            };
            let producer = async {
                lend(&mut &input[..], &budget, None, send).await;
            };
            let consumer = async {
                let mut received = Vec::with_capacity(input.len());
                while received.len() < input.len() {
                    // Slow: the producer gets many turns per piece taken.
                    for _ in 0..8 {
                        tokio::task::yield_now().await;
                    }
                    let Some(data) = queue_rx.recv().await else {
                        break;
                    };
                    received.extend_from_slice(&data);
                    held.set(held.get() - data.len());
                    drop(data);
                }
                received
            };
            let ((), received) = tokio::join!(producer, consumer);
            received
        });
        assert!(received == input, "the bytes arrive whole and in order");
        assert!(
            most_held.get() <= IN_FLIGHT,
            "the connection held {} bytes at once, more than the bound {IN_FLIGHT}",
            most_held.get()
        );
        assert!(budget.peak() <= IN_FLIGHT);
        // The bound is used, not undercut: more than one piece was in flight at a time.
        assert!(most_held.get() > LEND_CHUNK, "{}", most_held.get());
    }

    /// The buffer being read into counts against the bound: while the connection holds all of
    /// it, the relay reads nothing more from the stand-in (the rest waits in the pipe, not in
    /// a chunk-sized buffer of the relay's).
    #[test]
    fn nothing_more_is_read_while_the_connection_holds_the_bound() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let input = vec![7u8; 4 * IN_FLIGHT];
        let mut rest = &input[..];
        let held = std::cell::RefCell::new(Vec::new());
        let budget = Budget::new(IN_FLIGHT);
        runtime.block_on(async {
            let send = |data: bytes::Bytes| {
                held.borrow_mut().push(data);
                std::future::ready(Ok::<(), ()>(()))
            };
            let producer = lend(&mut rest, &budget, None, send);
            tokio::pin!(producer);
            assert!(
                futures::poll!(producer.as_mut()).is_pending(),
                "the relay waits once the connection holds the whole bound"
            );
        });
        let lent: usize = held.borrow().iter().map(bytes::Bytes::len).sum();
        assert_eq!(lent, IN_FLIGHT);
        assert_eq!(
            input.len() - rest.len(),
            IN_FLIGHT,
            "read beyond what the connection was handed"
        );
    }

    /// The stand-in's pipes reach the relay with its command line, and still work there: what
    /// the relay writes to the handed stdout comes out of the pipe's other end.
    #[test]
    fn pipes_handed_over_arrive_with_the_command_line() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (mut stand_in, relay) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (stdin_read, mut stdin_write) = std::io::pipe().expect("pipe");
        let (mut stdout_read, stdout_write) = std::io::pipe().expect("pipe");
        use std::os::fd::AsFd;
        send_command(
            &mut stand_in,
            "nix-daemon --stdio",
            Some([stdin_read.as_fd(), stdout_write.as_fd()]),
        )
        .expect("sent");
        // The stand-in lets go of its copies, as it does of its stdout.
        drop((stdin_read, stdout_write));
        let (asked, pipes) = runtime.block_on(async {
            relay.set_nonblocking(true).expect("non-blocking");
            let relay = tokio::net::UnixStream::from_std(relay).expect("tokio stream");
            ask(&relay).await.expect("asked")
        });
        assert_eq!(asked, "nix-daemon --stdio");
        let (stdin, stdout) = pipes.expect("two pipes handed over");
        stdin_write.write_all(b"request").expect("written");
        drop(stdin_write);
        let mut got = String::new();
        std::fs::File::from(stdin)
            .read_to_string(&mut got)
            .expect("read");
        assert_eq!(got, "request");
        std::fs::File::from(stdout)
            .write_all(b"answer")
            .expect("written");
        let mut got = String::new();
        stdout_read.read_to_string(&mut got).expect("read");
        assert_eq!(got, "answer");

        // Without pipes: the line alone; and a line with bytes after it is refused.
        let (mut stand_in, relay) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_command(&mut stand_in, "nix-daemon --stdio", None).expect("sent");
        stand_in.write_all(b"more").expect("written");
        drop(stand_in);
        runtime.block_on(async {
            relay.set_nonblocking(true).expect("non-blocking");
            let relay = tokio::net::UnixStream::from_std(relay).expect("tokio stream");
            assert!(ask(&relay).await.is_err(), "bytes after the line");
        });
        let (mut stand_in, relay) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_command(&mut stand_in, "nix-daemon --stdio", None).expect("sent");
        let (asked, pipes) = runtime.block_on(async {
            relay.set_nonblocking(true).expect("non-blocking");
            let relay = tokio::net::UnixStream::from_std(relay).expect("tokio stream");
            ask(&relay).await.expect("asked")
        });
        assert_eq!(asked, "nix-daemon --stdio");
        assert!(pipes.is_none());
    }

    /// Small pieces count as the buffers they hold: a stream of one-byte reads cannot pile up
    /// chunk-sized allocations beyond the bound.
    #[test]
    fn small_pieces_count_as_their_buffers() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let budget = Budget::new(IN_FLIGHT);
            let mut held = Vec::new();
            for _ in 0..4 {
                let reserved = budget.reserve(LEND_CHUNK).await.expect("reserved");
                let mut data = Vec::with_capacity(LEND_CHUNK);
                data.push(1);
                held.push(reserved.lend(data));
            }
            // Shrunk to what they carry, four one-byte pieces hold only what they carry: the
            // rest of each chunk's share went back when the piece was lent.
            assert!(budget.free.available_permits() > IN_FLIGHT - 64);
            let big = vec![0u8; IN_FLIGHT];
            let waiting = budget.lend(big);
            tokio::pin!(waiting);
            assert!(
                futures::poll!(waiting.as_mut()).is_pending(),
                "a full-budget piece waits while others are held"
            );
            held.clear();
            let lent = waiting.await.expect("lent");
            assert_eq!(budget.peak(), IN_FLIGHT);
            drop(lent);
        });
    }
}
