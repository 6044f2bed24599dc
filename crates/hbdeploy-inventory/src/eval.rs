//! How much evaluation may run at once: `eval-workers` (nix evaluator processes) and
//! `eval-memory` (their resident memory together) in `[fleet]`. Unset, the deployer decides from
//! the machine it runs on (its cores; most of its available memory), which this crate does not
//! read: it only parses.

use std::num::NonZeroUsize;

use crate::error::InventoryError;
use crate::reader::Table;

/// The most evaluator processes accepted.
pub const MAX_EVAL_WORKERS: u64 = 1024;

/// The least memory budget accepted, 64 MiB: a nix evaluator needs some to start at all.
pub const MIN_EVAL_MEMORY: u64 = 64 * 1024 * 1024;

/// Fleet-wide evaluation settings, as set in `[fleet]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetEval {
    /// `eval-workers`: nix evaluator processes at once; `None`: one per core.
    pub workers: Option<NonZeroUsize>,
    /// `eval-memory` in bytes: the budget of all evaluators together; `None`: most of the
    /// memory available when the run starts.
    pub memory: Option<u64>,
}

/// Reads `eval-workers` and `eval-memory` of `[fleet]`.
pub(crate) fn read_fleet(fleet: &Table<'_>) -> Result<FleetEval, InventoryError> {
    let workers = fleet
        .integer::<usize>("eval-workers", 1, MAX_EVAL_WORKERS)?
        .and_then(NonZeroUsize::new);
    let memory = match fleet.string("eval-memory")? {
        None => None,
        Some(value) => Some(parse_size(value.get_ref()).map_err(|reason| {
            fleet.invalid(
                "eval-memory",
                value.span(),
                reason,
                "write a size with its unit, e.g. eval-memory = \"8GiB\" or \"512MiB\"",
            )
        })?),
    };
    Ok(FleetEval { workers, memory })
}

/// A size such as `8GiB`, `512 MiB`, `1.5G` or `2048M` in bytes (units are binary: K, M, G, T,
/// with or without `iB`; a bare number is bytes), at least [`MIN_EVAL_MEMORY`]. The error says
/// what is wrong, for `eval-memory` and `--eval-memory` alike.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("is `{text}`, which does not start with a number"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        other => {
            return Err(format!(
                "has the unit `{other}`, not one of K, M, G, T (binary)"
            ));
        }
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("is `{text}`, too large"));
    }
    let bytes = bytes as u64;
    if bytes < MIN_EVAL_MEMORY {
        return Err(format!(
            "is `{text}`, less than the 64MiB a nix evaluator needs to start"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {

    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_have_binary_units() {
        let check = |text: &str, expected: Result<u64, &str>| {
            let got = parse_size(text);
            match expected {
                Ok(bytes) => assert_eq!(got, Ok(bytes), "{text}"),
                Err(part) => {
                    let err = got.expect_err(text);
                    assert!(err.contains(part), "{text}: {err}");
                }
            }
        };
        check("8GiB", Ok(8 * GIB));
        check("8 G", Ok(8 * GIB));
        check("1.5g", Ok(3 * GIB / 2));
        check("512MiB", Ok(512 << 20));
        check("2048M", Ok(2 * GIB));
        check("1T", Ok(1024 * GIB));
        check("1000", Err("less than the 64MiB"));
        check("GiB", Err("does not start with a number"));
        check("8 parsecs", Err("unit `parsecs`"));
        check("-1G", Err("does not start with a number"));
    }

    use crate::test_fleet::parse;

    #[test]
    fn fleet_reads_eval_settings() {
        let hosts = "[hosts.a]\naddress = \"a\"\n";
        let fleet = parse(&format!("[fleet]\nflake = \".\"\n{hosts}")).expect("valid");
        assert_eq!(fleet.eval, FleetEval::default());
        let fleet = parse(&format!(
            "[fleet]\nflake = \".\"\neval-workers = 3\neval-memory = \"6GiB\"\n{hosts}"
        ))
        .expect("valid");
        assert_eq!(fleet.eval.workers.map(NonZeroUsize::get), Some(3));
        assert_eq!(fleet.eval.memory, Some(6 * GIB));
    }

    #[test]
    fn bad_eval_settings_are_located() {
        let hosts = "[hosts.a]\naddress = \"a\"\n";
        let err = parse(&format!(
            "[fleet]\nflake = \".\"\neval-memory = \"lots\"\n{hosts}"
        ))
        .expect_err("invalid");
        assert!(err.starts_with("/f/fleet.toml:3:"), "{err}");
        assert!(err.contains("eval-memory"), "{err}");
        let err = parse(&format!(
            "[fleet]\nflake = \".\"\neval-workers = 0\n{hosts}"
        ))
        .expect_err("invalid");
        assert!(err.starts_with("/f/fleet.toml:3:"), "{err}");
        let err = parse(&format!("[fleet]\nflake = \".\"\neval-memory = 8\n{hosts}"))
            .expect_err("invalid");
        assert!(err.contains("string"), "{err}");
    }
}
