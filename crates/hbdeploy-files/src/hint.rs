//! What every error of hbdeploy offers the user besides its message: a [`Hint`] saying what to
//! do, and its causes, walked by [`causes`] (the one walk of `source()` in the workspace) and
//! put on one line by [`chain`].
//!
//! It lives in this leaf crate because every crate with errors (the inventory, the nix driver,
//! the SSH transport, the pipeline and the binary) already depends on it or can at no cost; a
//! crate of its own for one trait and two functions would be a split with no boundary to keep.

use std::error::Error;

/// An error that may come with advice: what the user can do about it, beyond what the message
/// says. The binary's renderer prints it after the error and its causes (`hint: …`).
pub trait Hint: Error {
    /// The advice, where there is any.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// No advice for an operating system error: the message and the path it names say it all.
impl Hint for std::io::Error {}

/// The causes of `error` (its `source()`, the source's source, …), outermost first, without
/// `error` itself.
pub fn causes<'a>(error: &'a dyn Error) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(error.source(), |&cause| cause.source())
}

/// `error` and each of its causes on one line, joined by `: `, for JSON, the ledger, warnings
/// and reasons handed on as text.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    for cause in causes(error) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    impl Hint for Outer {
        fn hint(&self) -> Option<String> {
            Some("do this".to_owned())
        }
    }

    fn outer() -> Outer {
        Outer(Middle(std::io::Error::other("inner")))
    }

    #[test]
    fn the_chain_names_the_error_then_each_cause() {
        let err = outer();
        assert_eq!(chain(&err), "outer: middle: inner");
        let causes: Vec<String> = causes(&err).map(|c| c.to_string()).collect();
        assert_eq!(causes, ["middle", "inner"]);
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn a_hint_is_reached_through_the_trait() {
        let err = outer();
        let dynamic: &dyn Hint = &err;
        assert_eq!(dynamic.hint().as_deref(), Some("do this"));
        assert_eq!(std::io::Error::other("x").hint(), None);
    }
}
