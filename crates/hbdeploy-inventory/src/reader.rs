//! Typed access to the parsed TOML tree, where every wrong answer becomes a located error.
//!
//! [`Table`] wraps one table of that tree with its name as the user wrote it
//! (`[hosts.server]`), rejects keys it does not know, and reads strings, integers, string arrays
//! and sub-tables, turning each mistake into an [`InventoryError`] that points at the offending
//! key or value.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::doc::{Doc, article};
use crate::error::{InventoryError, Problem, TOP_LEVEL};
use crate::schema;
use crate::suggest;

/// A key of the tree with its span.
pub(crate) type Key<'a> = Spanned<DeString<'a>>;
/// A value of the tree with its span.
pub(crate) type Value<'a> = Spanned<DeValue<'a>>;

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
    /// The root table of a parsed document.
    pub(crate) fn root(doc: &'a Doc<'a>, map: &'a DeTable<'a>) -> Self {
        Table {
            doc,
            map,
            dotted: String::new(),
            span: 0..0,
        }
    }

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

    /// `key` as an array of tables (`[[key]]`), empty if absent. Each table is named
    /// `[[dotted.key]]` #n in errors.
    pub(crate) fn tables(&self, key: &str) -> Result<Vec<Table<'a>>, InventoryError> {
        let Some((_, value)) = self.get(key) else {
            return Ok(Vec::new());
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an array of tables ([[…]])"));
        };
        let segment = bare_or_quoted(key);
        let dotted = if self.dotted.is_empty() {
            segment
        } else {
            format!("{}.{segment}", self.dotted)
        };
        let mut tables = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let DeValue::Table(map) = item.get_ref() else {
                return Err(self.wrong_type(key, item, "an array of tables ([[…]])"));
            };
            tables.push(Table {
                doc: self.doc,
                map,
                dotted: format!("{dotted}][{i}"),
                span: item.span(),
            });
        }
        Ok(tables)
    }

    /// `key` as a boolean, if present.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, InventoryError> {
        let Some((_, value)) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref() {
            DeValue::Boolean(b) => Ok(Some(*b)),
            _ => Err(self.wrong_type(key, value, "a boolean (true or false)")),
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
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.as_ref())),
                other => {
                    let problem = Problem::WrongType {
                        key: format!("{key}[{i}]"),
                        table: self.name(),
                        expected: "a string",
                        found: article(other),
                    };
                    let hint = format!("quote every item: {}", schema::example(key));
                    return Err(self.doc.error(item.span(), problem, hint));
                }
            }
        }
        Ok(Some(out))
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

#[cfg(test)]
mod tests {
    use hbdeploy_files::Hint as _;
    use std::path::Path;

    use super::*;

    /// Reads the sub-table `[t]` of `text` with `read`, rendering the outcome.
    fn check<T: std::fmt::Debug>(
        text: &str,
        read: impl Fn(&Table<'_>) -> Result<T, InventoryError>,
        expected: &str,
    ) {
        let doc = Doc::new(text, Path::new("f.toml"));
        let got = doc.parse().and_then(|tree| {
            let root = Table::root(&doc, tree.get_ref());
            let table = root.table("t")?.ok_or_else(|| root.missing("fleet"))?;
            read(&table)
        });
        let got = match got {
            Ok(value) => format!("{value:?}"),
            Err(e) => format!("{e} | {}", e.hint().as_deref().unwrap_or("-")),
        };
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let keys = |t: &Table<'_>| t.check_keys(&["flake", "parallel"]);
        check("[t]\nflake = 1\n", keys, "()");
        check(
            "[t]\nflake = 1\nparalel = 2\n",
            keys,
            "f.toml:3:1: unknown key `paralel` in [t]; expected one of: flake, parallel \
             | did you mean `parallel`?",
        );
        check(
            "[t]\nzzz = 2\n",
            keys,
            "f.toml:2:1: unknown key `zzz` in [t]; expected one of: flake, parallel \
             | remove it; every key is described in docs/fleet.md",
        );
    }

    #[test]
    fn integers_are_range_checked() {
        let port = |t: &Table<'_>| t.integer::<u16>("port", 1, 65535);
        check("[t]\n", port, "None");
        check("[t]\nport = 0x16\n", port, "Some(22)");
        check("[t]\nport = 1_000\n", port, "Some(1000)");
        let advice = "use the port the host's sshd listens on; the default is 22";
        for bad in [
            "0",
            "-1",
            "65536",
            "99999999999999999999999999999999999999999",
        ] {
            check(
                &format!("[t]\nport = {bad}\n"),
                port,
                &format!(
                    "f.toml:2:8: `port` in [t] must be between 1 and 65535, not {bad} | {advice}"
                ),
            );
        }
        check(
            "[t]\nport = \"22\"\n",
            port,
            "f.toml:2:8: `port` in [t] must be an integer, not a string | write it like this: port = 22",
        );
        check(
            "[t]\nport = 22.0\n",
            port,
            "f.toml:2:8: `port` in [t] must be an integer, not a float | write it like this: port = 22",
        );
    }

    #[test]
    fn unbounded_integers_say_at_least() {
        let timeout = |t: &Table<'_>| t.integer::<u64>("connect-timeout", 1, u64::MAX);
        check(
            "[t]\nconnect-timeout = 0\n",
            timeout,
            "f.toml:2:19: `connect-timeout` in [t] must be at least 1, not 0 \
             | `connect-timeout` is a number of seconds; the default is 10",
        );
    }

    #[test]
    fn string_arrays_name_the_bad_item() {
        let tags = |t: &Table<'_>| t.strings("tags").map(|v| v.map(|v| v.len()));
        check("[t]\ntags = []\n", tags, "Some(0)");
        check("[t]\ntags = [\"a\", \"b\"]\n", tags, "Some(2)");
        check(
            "[t]\ntags = \"a\"\n",
            tags,
            "f.toml:2:8: `tags` in [t] must be an array of strings, not a string \
             | write it like this: tags = [\"infra\"]",
        );
        check(
            "[t]\ntags = [\"a\", 2]\n",
            tags,
            "f.toml:2:14: `tags[1]` in [t] must be a string, not an integer \
             | quote every item: tags = [\"infra\"]",
        );
    }

    #[test]
    fn sub_tables_are_named_as_headers() {
        let name = |t: &Table<'_>| {
            let sub = t.table("my host")?.ok_or_else(|| t.missing("x"))?;
            Ok(sub.name())
        };
        check("[t.\"my host\"]\n", name, "\"[t.\\\"my host\\\"]\"");
        check(
            "[t]\n\"my host\" = 3\n",
            name,
            "f.toml:2:13: `my host` in [t] must be a table, not an integer \
             | write it like this: [hosts.NAME] followed by address = \"…\"",
        );
        check(
            "[u]\n",
            name,
            "f.toml:1:1: missing table [fleet] | add a [fleet] table naming \
              the flake that defines the hosts' nixosConfigurations, e.g. [fleet] followed by \
              flake = \"./nixos\"",
        );
    }
}
