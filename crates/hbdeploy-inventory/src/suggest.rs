//! "Did you mean …?": the closest known name to a misspelt one, and short lists of known names.
//!
//! Both unknown keys in `fleet.toml` and unknown hosts or tags on the command line use this, so
//! the two kinds of typo get the same kind of help.

/// How many names [`list`] shows before it summarises the rest.
const LIST_LIMIT: usize = 10;

/// The candidate closest to `wrong`, if one is close enough to be a plausible typo.
///
/// Distance is optimal string alignment (Damerau-Levenshtein without repeated edits) on
/// lowercased strings, so `sever`, `sevrer` and `Server` all find `server`. A candidate qualifies
/// when at most a third of `wrong` (and at least one character) had to change; ties go to the
/// first candidate, which keeps the answer stable because callers pass sorted lists.
pub(crate) fn closest<'a, I>(wrong: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let wrong_lower = wrong.to_lowercase();
    let limit = (wrong.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = strsim::osa_distance(&wrong_lower, &candidate.to_lowercase());
        let better = best.is_none_or(|(d, _)| distance < d);
        if distance <= limit && better {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// `a, b, c`, or `a, b, … and 12 more` for long lists; `(none)` for an empty one.
pub(crate) fn list<'a, I>(names: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return "(none)".to_owned();
    }
    let shown = names.len().min(LIST_LIMIT);
    let mut out = names[..shown].join(", ");
    if names.len() > shown {
        out.push_str(&format!(" and {} more", names.len() - shown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &[&str] = &["desktop", "laptop", "server"];
    const HOST_KEYS: &[&str] = &[
        "address",
        "attr",
        "tags",
        "user",
        "port",
        "identity-file",
        "known-hosts",
        "connect-timeout",
    ];

    fn check(wrong: &str, candidates: &[&'static str], expected: Option<&str>) {
        assert_eq!(
            closest(wrong, candidates.iter().copied()),
            expected,
            "closest to {wrong:?}"
        );
    }

    #[test]
    fn finds_typos() {
        check("sever", HOSTS, Some("server"));
        check("sevrer", HOSTS, Some("server"));
        check("Server", HOSTS, Some("server"));
        check("lapotp", HOSTS, Some("laptop"));
        check("desk", HOSTS, None);
        check("adress", HOST_KEYS, Some("address"));
        check("identity_file", HOST_KEYS, Some("identity-file"));
        check("knownhosts", HOST_KEYS, Some("known-hosts"));
        check("tag", HOST_KEYS, Some("tags"));
        check("prot", HOST_KEYS, Some("port"));
    }

    #[test]
    fn ignores_unrelated_names() {
        check("mail", HOSTS, None);
        check("x", HOSTS, None);
        check("hostname", HOST_KEYS, None);
        check("anything", &[], None);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        check("ab", &["aa", "bb"], Some("aa"));
    }

    #[test]
    fn lists_are_capped() {
        assert_eq!(list(HOSTS.iter().copied()), "desktop, laptop, server");
        assert_eq!(list([]), "(none)");
        let many: Vec<String> = (0..13).map(|i| format!("h{i:02}")).collect();
        assert_eq!(
            list(many.iter().map(String::as_str)),
            "h00, h01, h02, h03, h04, h05, h06, h07, h08, h09 and 3 more"
        );
    }
}
