//! `--target [USER@]ADDRESS[:PORT]`: the machine, booted into the NixOS installer, that a pushed
//! install goes to. It is not the host's fleet.toml address (the installer is not the installed
//! system yet), so it is given on the command line; the key and known_hosts file still come
//! from fleet.toml.

/// Where the installer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetArg {
    /// The login name, when given.
    pub user: Option<String>,
    /// DNS name or IP address (an IPv6 address without its brackets).
    pub address: String,
    /// The port, when given.
    pub port: Option<u16>,
}

/// A `--target` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not [USER@]ADDRESS[:PORT]: {reason}")]
pub struct TargetArgError {
    /// The value.
    text: String,
    /// What is wrong.
    reason: &'static str,
}

/// A user name or address: not empty, not an option, of letters, digits and `extra`.
fn plain(word: &str, extra: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

impl std::str::FromStr for TargetArg {
    type Err = TargetArgError;

    fn from_str(text: &str) -> Result<TargetArg, TargetArgError> {
        let error = |reason| TargetArgError {
            text: text.to_owned(),
            reason,
        };
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, text),
        };
        if let Some(user) = user
            && !plain(user, "._-")
        {
            return Err(error("the user name is empty or has odd characters"));
        }
        let bracketed = rest.starts_with('[');
        let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((address, after)) = bracketed.split_once(']') else {
                return Err(error("an IPv6 address in [ ] lacks its `]`"));
            };
            match after {
                "" => (address, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None => return Err(error("only `:PORT` may follow `[ADDRESS]`")),
                },
            }
        } else {
            match rest.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(error("write an IPv6 address in brackets: [ADDRESS]:PORT"));
                }
                Some((address, port)) => (address, Some(port)),
                None => (rest, None),
            }
        };
        // Inside brackets an IPv6 address, with its zone (`%eth0`) if any.
        let extra = if bracketed { ":.%-_" } else { ".-_" };
        if !plain(address, extra) {
            return Err(error("the address is empty or has odd characters"));
        }
        let port = match port {
            None => None,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(error("the port must be a number from 1 to 65535")),
            },
        };
        Ok(TargetArg {
            user: user.map(str::to_owned),
            address: address.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Option<&'static str>, String, Option<u16>), &'static str> {
        text.parse::<TargetArg>()
            .map(|t| {
                (
                    t.user.map(|u| if u == "root" { "root" } else { "other" }),
                    t.address,
                    t.port,
                )
            })
            .map_err(|e| e.reason)
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse("root@192.0.2.7"),
            Ok((Some("root"), "192.0.2.7".into(), None))
        );
        assert_eq!(
            parse("root@nixos.local:2222"),
            Ok((Some("root"), "nixos.local".into(), Some(2222)))
        );
        assert_eq!(parse("10.0.0.2"), Ok((None, "10.0.0.2".into(), None)));
        assert_eq!(
            parse("root@[fe80::1]:22"),
            Ok((Some("root"), "fe80::1".into(), Some(22)))
        );
        assert_eq!(parse("[::1]"), Ok((None, "::1".into(), None)));
    }

    #[test]
    fn bad_targets_say_why() {
        for (text, reason) in [
            ("@host", "the user name is empty or has odd characters"),
            ("root@", "the address is empty or has odd characters"),
            ("root@host:0", "the port must be a number from 1 to 65535"),
            ("root@host:ssh", "the port must be a number from 1 to 65535"),
            ("::1", "write an IPv6 address in brackets: [ADDRESS]:PORT"),
            ("[::1", "an IPv6 address in [ ] lacks its `]`"),
            (
                "ssh://root@host",
                "the user name is empty or has odd characters",
            ),
            ("root@host/x", "the address is empty or has odd characters"),
            (
                "-oProxyCommand=x",
                "the address is empty or has odd characters",
            ),
        ] {
            assert_eq!(parse(text), Err(reason), "{text}");
        }
    }
}
