//! Dates for humans and JSON, without a date library: seconds since the epoch to UTC.

/// `YYYY-MM-DD HH:MM:SS` (UTC) for `secs` since the Unix epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) for `secs` since the Unix epoch.
pub fn iso(secs: u64) -> String {
    format!("{}Z", utc(secs).replace(' ', "T"))
}

/// `YYYYMMDDTHHMMSSZ` for `secs` since the Unix epoch: sortable, and safe in file names.
pub fn compact(secs: u64) -> String {
    iso(secs).replace(['-', ':'], "")
}

/// `YYYYMMDDTHHMMSS.mmmZ` for `millis` since the Unix epoch: sortable to the millisecond (the
/// fraction has a fixed width), and safe in file names.
pub fn compact_millis(millis: u64) -> String {
    let seconds = compact(millis / 1000);
    let whole = seconds.strip_suffix('Z').unwrap_or(&seconds);
    format!("{whole}.{:03}Z", millis % 1000)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    now_millis() / 1000
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(1_795_852_800), "2026-11-28 08:00:00");
        assert_eq!(iso(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(compact(1_700_000_000), "20231114T221320Z");
        assert_eq!(compact_millis(1_700_000_000_007), "20231114T221320.007Z");
        assert_eq!(compact_millis(1_700_000_000_999), "20231114T221320.999Z");
    }
}
