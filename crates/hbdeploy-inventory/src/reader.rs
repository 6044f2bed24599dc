//! Typed access to the parsed TOML tree, where every wrong answer becomes a located error.
//!
//! The file is parsed with [`toml::de::DeTable`], which keeps the byte span of every key and
//! value. [`Table`] wraps one table of that tree with its name as the user wrote it
//! (`[hosts.server]`), rejects keys it does not know, and reads strings, integers, string arrays
//! and sub-tables, turning each mistake into an [`InventoryError`] that points at the offending
//! key or value.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::error::{ConfigError, InventoryError, Location, Problem, TOP_LEVEL};
use crate::schema;
use crate::suggest;

/// A key of the tree with its span.
pub(crate) type Key<'a> = Spanned<DeString<'a>>;
/// A value of the tree with its span.
pub(crate) type Value<'a> = Spanned<DeValue<'a>>;

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

    /// The root table of a parsed document.
    pub(crate) fn root<'d>(&'d self, root: &'d DeTable<'d>) -> Table<'d> {
        Table {
            doc: self,
            map: root,
            dotted: String::new(),
            span: 0..0,
        }
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

/// One table of the document, named as the user wrote it.
pub(crate) struct Table<'a> {
    doc: &'a Doc<'a>,
    map: &'a DeTable<'a>,
    /// The dotted path from the root (`hosts.server`); empty for the root.
    dotted: String,
    /// Where the table starts, for errors about keys it lacks.
    span: Range<usize>,
}

impl<'a> Table<'a> {
    /// `[hosts.server]`, or `the top level` for the root.
    pub(crate) fn name(&self) -> String {
        if self.dotted.is_empty() {
            TOP_LEVEL.to_owned()
        } else {
            format!("[{}]", self.dotted)
        }
    }

    /// The document this table belongs to.
    pub(crate) fn doc(&self) -> &'a Doc<'a> {
        self.doc
    }

    /// Whether the table has no keys.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Where the table starts.
    pub(crate) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The entries in file order, so that the first mistake in the file is the one reported.
    pub(crate) fn entries(&self) -> Vec<(&'a Key<'a>, &'a Value<'a>)> {
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        entries
    }

    /// Rejects any key not in `allowed`, suggesting the closest allowed one.
    pub(crate) fn check_keys(
        &self,
        allowed: &'static [&'static str],
    ) -> Result<(), InventoryError> {
        for (key, _) in self.entries() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let hint = match suggest::closest(name, allowed.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => "remove it; every key is described in docs/fleet.md".to_owned(),
            };
            let problem = Problem::UnknownKey {
                key: name.to_owned(),
                table: self.name(),
                expected: allowed,
            };
            return Err(self.doc.error(key.span(), problem, hint));
        }
        Ok(())
    }

    /// The value of `key`, with the key itself.
    pub(crate) fn get(&self, key: &str) -> Option<(&'a Key<'a>, &'a Value<'a>)> {
        self.map.get_key_value(key)
    }

    /// The error for a missing required key.
    pub(crate) fn missing(&self, key: &'static str) -> InventoryError {
        let problem = Problem::MissingKey {
            key,
            table: self.name(),
        };
        self.doc
            .error(self.span(), problem, schema::missing_advice(key))
    }

    /// The error for a value of the wrong type.
    pub(crate) fn wrong_type(
        &self,
        key: &str,
        value: &Value<'_>,
        expected: &'static str,
    ) -> InventoryError {
        let problem = Problem::WrongType {
            key: key.to_owned(),
            table: self.name(),
            expected,
            found: article(value.get_ref()),
        };
        let hint = format!("write it like this: {}", schema::example(key));
        self.doc.error(value.span(), problem, hint)
    }

    /// An error about the value of `key` other than its type.
    pub(crate) fn invalid(
        &self,
        key: &str,
        span: Range<usize>,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> InventoryError {
        let problem = Problem::InvalidValue {
            key: key.to_owned(),
            table: self.name(),
            reason: reason.into(),
        };
        self.doc.error(span, problem, hint)
    }

    /// `key` as a sub-table, if present.
    pub(crate) fn table(&self, key: &str) -> Result<Option<Table<'a>>, InventoryError> {
        self.get(key).map(|(k, v)| self.child(k, v)).transpose()
    }

    /// The sub-table at `key`, which must be a table.
    pub(crate) fn child(
        &self,
        key: &Key<'_>,
        value: &'a Value<'a>,
    ) -> Result<Table<'a>, InventoryError> {
        let DeValue::Table(map) = value.get_ref() else {
            return Err(self.wrong_type(key.get_ref(), value, "a table"));
        };
        let segment = bare_or_quoted(key.get_ref());
        let dotted = if self.dotted.is_empty() {
            segment
        } else {
            format!("{}.{segment}", self.dotted)
        };
        Ok(Table {
            doc: self.doc,
            map,
            dotted,
            span: value.span(),
        })
    }

    /// `key` as a string, if present.
    pub(crate) fn string(&self, key: &str) -> Result<Option<Spanned<&'a str>>, InventoryError> {
        let Some((_, value)) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref() {
            DeValue::String(s) => Ok(Some(Spanned::new(value.span(), s.as_ref()))),
            _ => Err(self.wrong_type(key, value, "a string")),
        }
    }

    /// `key` as an integer in `min..=max` that fits `T`, if present.
    pub(crate) fn integer<T: TryFrom<u64>>(
        &self,
        key: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<T>, InventoryError> {
        let Some((_, value)) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Integer(int) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an integer"));
        };
        // Parsed as i128 so that negative numbers and numbers just past u64 are reported as out of
        // range; anything larger fails to parse and is reported the same way.
        let parsed = i128::from_str_radix(int.as_str(), int.radix()).ok();
        let in_range = parsed
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok());
        match in_range {
            Some(n) => Ok(Some(n)),
            None => {
                let problem = Problem::OutOfRange {
                    key: key.to_owned(),
                    table: self.name(),
                    value: self.doc.source(value.span()).to_owned(),
                    min,
                    max: (max < u64::MAX).then_some(max),
                };
                Err(self
                    .doc
                    .error(value.span(), problem, schema::range_advice(key)))
            }
        }
    }

    /// `key` as an array of strings, if present.
    pub(crate) fn strings(
        &self,
        key: &str,
    ) -> Result<Option<Vec<Spanned<&'a str>>>, InventoryError> {
        let Some((_, value)) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an array of strings"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.as_ref())),
                other => {
                    let problem = Problem::WrongType {
                        key: key.to_owned(),
                        table: self.name(),
                        expected: "an array of strings",
                        found: in_array(other),
                    };
                    let hint = format!("quote every item: {}", schema::example(key));
                    return Err(self.doc.error(item.span(), problem, hint));
                }
            }
        }
        Ok(Some(out))
    }
}

/// The TOML type of a value, with its article, for messages.
fn article(value: &DeValue<'_>) -> &'static str {
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

/// The TOML type of an array item, for messages about arrays that should hold only strings.
fn in_array(item: &DeValue<'_>) -> &'static str {
    match item {
        DeValue::String(_) => "an array holding a string",
        DeValue::Integer(_) => "an array holding an integer",
        DeValue::Float(_) => "an array holding a float",
        DeValue::Boolean(_) => "an array holding a boolean",
        DeValue::Datetime(_) => "an array holding a date-time",
        DeValue::Array(_) => "an array holding an array",
        DeValue::Table(_) => "an array holding a table",
    }
}

/// A key as it would appear in a table header: bare if it can be, quoted otherwise.
fn bare_or_quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}
