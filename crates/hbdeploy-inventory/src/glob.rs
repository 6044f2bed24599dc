//! Shell-style patterns for host names and tags on the command line: `*` any run of characters
//! (also none), `?` one character, `[abc]` one of a set, `[a-z]` a range, `[!abc]` none of them.
//!
//! Host names and tags are ASCII letters, digits, `-` and `_` (`name.rs`), so no name contains
//! a pattern character and a word without one is a plain name. Small enough to write here: a
//! crate for it would bring path-separator rules and options that names do not need.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This character.
    Char(char),
    /// `?`.
    One,
    /// `*`.
    Any,
    /// `[...]`: inclusive ranges (a single character is a range of one), negated with `!`.
    Set {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

/// Why a word is not a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// `[` without its `]`.
    #[error("`[` without its `]`")]
    Unclosed,
    /// `[]` or `[!]`.
    #[error("`[]` matches no character")]
    EmptySet,
    /// `[z-a]`.
    #[error("a range in `[ ]` runs backwards")]
    BackwardRange,
}

/// Whether `word` has a pattern character in it (else it is a plain name).
pub fn is_pattern(word: &str) -> bool {
    word.contains(['*', '?', '['])
}

impl Glob {
    /// Parses `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                '[' => {
                    let negated = chars.get(i) == Some(&'!');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        let Some(&low) = chars.get(i) else {
                            return Err(GlobError::Unclosed);
                        };
                        i += 1;
                        if low == ']' {
                            break;
                        }
                        // `a-z` is a range; a `-` first or last in the set is itself.
                        let high = match (chars.get(i), chars.get(i + 1)) {
                            (Some('-'), Some(&high)) if high != ']' => {
                                i += 2;
                                high
                            }
                            _ => low,
                        };
                        if high < low {
                            return Err(GlobError::BackwardRange);
                        }
                        ranges.push((low, high));
                    }
                    if ranges.is_empty() {
                        return Err(GlobError::EmptySet);
                    }
                    Token::Set { ranges, negated }
                }
                c => Token::Char(c),
            });
        }
        Ok(Glob { tokens })
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // The classic backtracking match: on a mismatch, let the last `*` take one more
        // character. Linear in practice, at most text × pattern.
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Any) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(token) if one(token, text[t]) => {
                    t += 1;
                    p += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            }
        }
        self.tokens[p.min(self.tokens.len())..]
            .iter()
            .all(|token| *token == Token::Any)
    }
}

/// Whether `token` (not `*`) matches the character `c`.
fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(want) => *want == c,
        Token::One => true,
        Token::Any => false,
        Token::Set { ranges, negated } => {
            ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str, expected: bool) {
        let glob = Glob::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(glob.matches(text), expected, "`{pattern}` against `{text}`");
    }

    #[test]
    fn stars_and_questions() {
        check("web-*", "web-1", true);
        check("web-*", "web-", true);
        check("web-*", "web", false);
        check("*", "", true);
        check("*", "anything", true);
        check("*-db", "eu-db", true);
        check("*-db", "eu-db-2", false);
        check("a*b*c", "aXbYbZc", true);
        check("a*b*c", "aXbYbZ", false);
        check("**x", "x", true);
        check("w?b", "web", true);
        check("w?b", "wb", false);
        check("web", "web", true);
        check("web", "webs", false);
        check("", "", true);
        check("", "a", false);
    }

    #[test]
    fn sets_and_ranges() {
        check("web-[12]", "web-1", true);
        check("web-[12]", "web-3", false);
        check("web-[0-9]", "web-7", true);
        check("web-[0-9]", "web-a", false);
        check("web-[!0-9]", "web-a", true);
        check("web-[!0-9]", "web-7", false);
        check("[a-c-]x", "-x", true);
        check("[a-]", "-", true);
        check("[ab][cd]*", "bdz", true);
        check("[ab][cd]*", "bez", false);
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Glob::new("web-[12"), Err(GlobError::Unclosed));
        assert_eq!(Glob::new("[]"), Err(GlobError::EmptySet));
        assert_eq!(Glob::new("[!]"), Err(GlobError::EmptySet));
        assert_eq!(Glob::new("[z-a]"), Err(GlobError::BackwardRange));
    }

    #[test]
    fn pattern_characters() {
        assert!(is_pattern("web-*") && is_pattern("w?b") && is_pattern("[ab]"));
        assert!(!is_pattern("web-1") && !is_pattern("@infra"));
    }
}
