//! `builders`: nix's remote-builder specification, checked for what nix would misread.
//!
//! nix splits the value into entries at `;` and line breaks, cuts each entry at `#` (a comment),
//! reads an entry starting with `@` as a file of more entries, and splits any other entry at
//! whitespace into up to eight fields: the store URI, the systems, the SSH key, the maximum
//! jobs, the speed factor, the supported features, the mandatory features and the host's public
//! key (`-` for a field left at its default). hbdeploy passes the value as one argument, never
//! through a shell. Anything nix accepts in that shape is accepted here; what it would silently
//! read differently from how it looks (a comment, shell quoting, an option where the URI should
//! be) or refuse only when the build starts (a count that is not a number) is refused at once.

/// Why a `builders` value is refused: a reason completing "`builders` in [fleet] …", and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildersProblem {
    /// What is wrong, e.g. "contains `#`, …".
    pub(crate) reason: String,
    /// What to do.
    pub(crate) hint: &'static str,
}

/// Checks a `builders` value given anywhere else than fleet.toml (`--builders`): `Err` with what
/// is wrong and what to do, in one line.
pub fn check_builders(spec: &str) -> Result<(), String> {
    match problem(spec) {
        None => Ok(()),
        Some(BuildersProblem { reason, hint }) => Err(format!("it {reason}; {hint}")),
    }
}

/// The most fields a builder entry has.
const MAX_FIELDS: usize = 8;

/// Checks `spec` as nix's `builders` setting; `None` when nix reads it as it looks.
pub(crate) fn problem(spec: &str) -> Option<BuildersProblem> {
    let refuse = |reason: String, hint| Some(BuildersProblem { reason, hint });
    if spec.contains(['\n', '\r']) {
        return refuse(
            "contains a line break".to_owned(),
            "separate builders with `;`, e.g. builders = \"ssh://a x86_64-linux; ssh://b \
             aarch64-linux\"",
        );
    }
    if let Some(c) = spec.chars().find(|&c| c.is_control() && c != '\t') {
        return refuse(
            format!("contains the control character {:?}", c),
            "write the builders as plain text, e.g. builders = \"ssh://builder x86_64-linux\"",
        );
    }
    if spec.contains('#') {
        return refuse(
            "contains `#`, which nix reads as the start of a comment: the rest of the entry \
             would be ignored"
                .to_owned(),
            "remove the `#…` part",
        );
    }
    if let Some(c) = spec.chars().find(|c| matches!(c, '"' | '\'' | '`' | '\\')) {
        return refuse(
            format!("contains `{c}`; nix does not read shell quoting or escapes"),
            "write each builder's fields separated by spaces, without quotes or backslashes, \
             e.g. builders = \"ssh://builder x86_64-linux\"",
        );
    }
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some(file) = entry.strip_prefix('@') {
            if file.trim().is_empty() {
                return refuse(
                    "has `@` without a file name".to_owned(),
                    "name nix's machines file after `@`, e.g. builders = \"@/etc/nix/machines\"",
                );
            }
            continue;
        }
        let fields: Vec<&str> = entry.split_whitespace().collect();
        if fields.len() > MAX_FIELDS {
            return refuse(
                format!(
                    "has an entry of {} fields (`{entry}`); a builder has at most {MAX_FIELDS}",
                    fields.len()
                ),
                "give URI, systems, SSH key, maximum jobs, speed factor, supported features, \
                 mandatory features and host key, in that order, separating builders with `;`",
            );
        }
        if fields.first().is_some_and(|uri| uri.starts_with('-')) {
            return refuse(
                format!("has an entry starting with `-` (`{entry}`) where its URI should be"),
                "start each builder with its store URI, e.g. builders = \"ssh://builder \
                 x86_64-linux\"",
            );
        }
        let number = |field: Option<&&str>, decimal: bool| {
            field.is_none_or(|f| {
                *f == "-"
                    || (f.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && f.chars()
                            .all(|c| c.is_ascii_digit() || (decimal && c == '.')))
            })
        };
        if !number(fields.get(3), false) || !number(fields.get(4), true) {
            return refuse(
                format!(
                    "has an entry whose maximum jobs or speed factor is not a number (`{entry}`)"
                ),
                "the 4th field is the maximum number of jobs and the 5th the speed factor; \
                 write `-` for the default",
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_nix_reads_as_written_is_accepted() {
        for good in [
            "",
            "ssh://builder x86_64-linux",
            "ssh-ng://me@builder.example.org?ssh-key=/k x86_64-linux,aarch64-linux",
            "@/etc/nix/machines",
            "ssh://a x86_64-linux; ssh://b aarch64-linux;",
            "ssh://a x86_64-linux /root/.ssh/id 4 1.5 kvm,big-parallel - c3NoLWVkMjU1MTk=",
            "ssh://a - - - 2",
            "builder\tx86_64-linux",
            "auto",
        ] {
            assert_eq!(problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn what_nix_would_misread_is_refused() {
        for (bad, reason) in [
            ("ssh://a x86_64-linux\nssh://b", "contains a line break"),
            (
                "ssh://a\u{1b}[0m",
                "contains the control character '\\u{1b}'",
            ),
            (
                "ssh://a x86_64-linux # fast one",
                "contains `#`, which nix reads as the start of a comment: the rest of the \
                 entry would be ignored",
            ),
            (
                "'ssh://a x86_64-linux'",
                "contains `'`; nix does not read shell quoting or escapes",
            ),
            ("ssh://a \\\n x86_64-linux", "contains a line break"),
            ("@", "has `@` without a file name"),
            ("ssh://a x86_64-linux; @ ", "has `@` without a file name"),
            (
                "-oProxyCommand=x x86_64-linux",
                "has an entry starting with `-` (`-oProxyCommand=x x86_64-linux`) where its \
                 URI should be",
            ),
            (
                "ssh://a x86_64-linux - many",
                "has an entry whose maximum jobs or speed factor is not a number \
                 (`ssh://a x86_64-linux - many`)",
            ),
            (
                "ssh://a a b c d e f g h",
                "has an entry of 9 fields (`ssh://a a b c d e f g h`); a builder has at most 8",
            ),
        ] {
            assert_eq!(
                problem(bad).map(|p| p.reason).as_deref(),
                Some(reason),
                "{bad:?}"
            );
        }
    }
}
