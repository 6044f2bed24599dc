//! The fleet.toml parser as the unit tests of each table call it.

use std::path::Path;

use crate::Fleet;

/// `text` parsed as `/f/fleet.toml`, with `/home/me` as the home directory; the error as text.
pub(crate) fn parse(text: &str) -> Result<Fleet, String> {
    Fleet::parse(
        text,
        Path::new("/f/fleet.toml"),
        Some(Path::new("/home/me")),
    )
    .map_err(|e| e.to_string())
}
