//! The file being read: its text, its path, and the TOML parser's view of it.
//!
//! The file is parsed with [`toml::de::DeTable`], which keeps the byte span of every key and
//! value; [`Doc`] turns spans into [`Location`]s and the parser's own errors (syntax, duplicate
//! keys and tables) into located [`InventoryError`]s.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, InventoryError, Location, Problem};

/// The file being read: its text and the path to name in errors.
pub(crate) struct Doc<'a> {
    text: &'a str,
    path: &'a Path,
}

impl<'a> Doc<'a> {
    /// Wraps the file's text; `path` is only used in error locations.
    pub(crate) fn new(text: &'a str, path: &'a Path) -> Self {
        Doc { text, path }
    }

    /// Parses the text as TOML, mapping syntax errors (including duplicate keys) to located ones.
    pub(crate) fn parse(&self) -> Result<Spanned<DeTable<'a>>, InventoryError> {
        DeTable::parse(self.text).map_err(|e| self.syntax_error(&e))
    }

    /// An error at the start of `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        problem: Problem,
        hint: impl Into<String>,
    ) -> InventoryError {
        let location = Location::from_offset(self.path, self.text, span.start);
        InventoryError::Config(Box::new(ConfigError {
            location,
            problem,
            hint: hint.into(),
        }))
    }

    /// The source text of a span, or `""` if the span does not fit the text.
    pub(crate) fn source(&self, span: Range<usize>) -> &'a str {
        self.text.get(span).unwrap_or("")
    }

    fn syntax_error(&self, e: &toml::de::Error) -> InventoryError {
        let span = e.span().unwrap_or(0..0);
        if e.message().starts_with("duplicate key") {
            let (what, is_table) = self.duplicate(span.clone());
            let hint = if is_table {
                "each table may appear only once: merge the two tables, or rename one of them"
            } else {
                "a key may be set only once per table: delete one of the two"
            };
            return self.error(span, Problem::Duplicate { what, is_table }, hint);
        }
        // The parser's messages may span lines; keep ours on one.
        let message: Vec<&str> = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let problem = Problem::Syntax {
            message: message.join("; "),
        };
        self.error(span, problem, "fleet.toml must be valid TOML (https://toml.io): check the quotes, brackets, commas and `=` here")
    }

    /// What a duplicate-key error at `span` repeats: the table header if it is on a header line,
    /// else the key itself.
    fn duplicate(&self, span: Range<usize>) -> (String, bool) {
        let start = span.start.min(self.text.len());
        let line_start = self
            .text
            .get(..start)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self.text.get(line_start..).unwrap_or("");
        let line = line.lines().next().unwrap_or("").trim_start();
        if line.starts_with('[') {
            let close = if line.starts_with("[[") { "]]" } else { "]" };
            let header = match line.find(close) {
                Some(end) => &line[..end + close.len()],
                None => line.trim_end(),
            };
            (header.to_owned(), true)
        } else {
            (
                self.source(span).trim_matches(['"', '\'']).to_owned(),
                false,
            )
        }
    }
}

/// The TOML type of a value, with its article, for messages.
pub(crate) fn article(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Hint as _;

    /// Parses `text` and renders the outcome as `ok` or `message | hint`.
    fn check(text: &str, expected: &str) {
        let doc = Doc::new(text, Path::new("f.toml"));
        let got = match doc.parse() {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{e} | {}", e.hint().as_deref().unwrap_or("-")),
        };
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn valid_toml_parses() {
        check("", "ok");
        check("[a]\nb = 1\n[c.d]\ne = [\"f\"]\n", "ok");
    }

    #[test]
    fn duplicate_tables_name_the_header() {
        check(
            "[hosts.a]\nx = 1\n\n[hosts.a]  # again\ny = 2\n",
            "f.toml:4:8: table [hosts.a] is defined twice | each table may appear only once: \
             merge the two tables, or rename one of them",
        );
        check(
            "[[x]]\n[x]\n",
            "f.toml:2:2: table [x] is defined twice | each table may appear \
             only once: merge the two tables, or rename one of them",
        );
    }

    #[test]
    fn duplicate_keys_name_the_key() {
        check(
            "[ssh]\nport = 22\n  port = 23\n",
            "f.toml:3:3: key `port` is set twice | a key may be set only once per table: delete \
             one of the two",
        );
        check(
            "x = { \"a\" = 1, a = 2 }\n",
            "f.toml:1:16: key `a` is set twice | a key may be set only once per table: delete \
             one of the two",
        );
    }

    #[test]
    fn syntax_errors_keep_the_parser_message() {
        let hint = "fleet.toml must be valid TOML (https://toml.io): check the quotes, brackets, \
                    commas and `=` here";
        check(
            "a = \"x\n",
            &format!("f.toml:1:7: invalid TOML: invalid basic string, expected `\"` | {hint}"),
        );
        check(
            "a = [1, 2\n",
            &format!("f.toml:1:10: invalid TOML: unclosed array, expected `]` | {hint}"),
        );
        check(
            "[hosts.a\n",
            &format!("f.toml:1:9: invalid TOML: unclosed table, expected `]` | {hint}"),
        );
    }
}
