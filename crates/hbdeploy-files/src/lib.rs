//! Reading the files a user names to hbdeploy (fleet.toml, known-hosts and identity files,
//! ledger records): only regular files, or symlinks to one, and never more than a limit.
//!
//! `std::fs::read` of `/dev/zero` fills memory, and opening a FIFO blocks until something
//! writes to it, so a path set to either would hang hbdeploy. [`read`] and [`read_to_string`]
//! refuse anything but a regular file, and a file larger than the caller's limit, with a
//! [`FileError`] naming the file. The check is made on the opened file itself: the file is
//! opened with `O_NONBLOCK` (so opening a FIFO cannot block) and its metadata read through the
//! handle, so a file swapped for a FIFO or a device between the look and the open is still
//! refused; the read is then bounded by the limit whatever the file does.
//!
//! This crate is a leaf of the workspace (std, `libc` for two flags and `thiserror`), so the
//! inventory, the SSH transport and the binary can all use it without depending on each other.
//! For the same reason it holds the [`Hint`] trait every error of hbdeploy implements, the
//! one walk of an error's causes ([`causes`], [`chain`]), the one calendar ([`time`]), and the
//! tests' scratch directory ([`Scratch`]), removed however a test ends.

mod hint;
mod scratch;
pub mod time;

pub use hint::{Hint, causes, chain};
pub use scratch::Scratch;

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One mebibyte, for writing limits.
pub const MIB: u64 = 1024 * 1024;

/// What a path refused by [`read`] is instead of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe): reading it blocks until something writes.
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device such as `/dev/zero`, which never ends.
    CharDevice,
    /// A block device: a whole disk.
    BlockDevice,
    /// Anything else.
    Other,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Directory => "a directory",
            Kind::Fifo => "a FIFO (named pipe)",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Other => "not a regular file",
        })
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading it failed (it does not exist, permissions, not UTF-8 text, …).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file, as the caller named it.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// It is not a regular file (nor a symlink to one), so it is not read at all.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file, as the caller named it.
        path: PathBuf,
        /// What it is.
        kind: Kind,
    },
    /// It is larger than the caller's limit, so it is not read (or not read further).
    #[error("{} is larger than {}, the most hbdeploy reads of such a file", path.display(), Size(*limit))]
    TooLarge {
        /// The file, as the caller named it.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
}

impl FileError {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. } => path,
        }
    }

    /// The kind of IO error, for [`FileError::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FileError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::NotFound)
    }

    /// Whether the file was refused for what it is (not a regular file, or too large), rather
    /// than failing to open or read.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }
}

/// A byte count in the largest whole unit: `16 MiB`, `512 bytes`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            write!(f, "{} MiB", self.0 / MIB)
        } else if self.0 >= 1024 && self.0.is_multiple_of(1024) {
            write!(f, "{} KiB", self.0 / 1024)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// Reads the regular file at `path` (following symlinks), refusing anything else and any file
/// larger than `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open(path, limit)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew since its size was checked.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(path, source))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text; other bytes are a [`FileError::Io`] of kind `InvalidData`, as with
/// `std::fs::read_to_string`.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read(path, limit)?).map_err(|err| {
        io_error(
            path,
            io::Error::new(io::ErrorKind::InvalidData, err.utf8_error()),
        )
    })
}

/// Checks that [`read`] would read `path`, without reading it.
pub fn check(path: &Path, limit: u64) -> Result<(), FileError> {
    open(path, limit).map(drop)
}

/// Opens `path` for reading after checking what it is, and checks again through the handle.
fn open(path: &Path, limit: u64) -> Result<File, FileError> {
    // Look first, so a device is never opened at all (opening some has effects of its own)…
    let seen = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
    judge(path, &seen, limit)?;
    open_and_judge(path, limit)
}

/// Opens `path` and judges the opened file.
fn open_and_judge(path: &Path, limit: u64) -> Result<File, FileError> {
    // Open without blocking (a FIFO swapped in since would block an ordinary open until
    // a writer came) and without becoming its controlling terminal, and judge what was opened.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    let opened = file.metadata().map_err(|source| io_error(path, source))?;
    judge(path, &opened, limit)?;
    Ok(file)
}

/// Refuses what is not a regular file of at most `limit` bytes.
fn judge(path: &Path, metadata: &Metadata, limit: u64) -> Result<(), FileError> {
    let kind = metadata.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            Kind::Directory
        } else if kind.is_fifo() {
            Kind::Fifo
        } else if kind.is_socket() {
            Kind::Socket
        } else if kind.is_char_device() {
            Kind::CharDevice
        } else if kind.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::Other
        };
        return Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    if metadata.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> FileError {
    FileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// No advice of its own: the caller knows which file it was and says what to do about it.
impl Hint for FileError {}

#[cfg(test)]
mod tests;
