//! Reading hbdeploy's own `--timings` table back: where a cold apply's time went, per stage.

/// The stage columns of `hbdeploy apply --timings`, in order.
pub const COLUMNS: [&str; 6] = ["BUILD", "CONNECT", "COPY", "ACTIVATE", "OTHER", "TOTAL"];

/// The timings table of one run: its text, and its `(median)` row in seconds per column
/// (`None` where no host ran that stage).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The table as hbdeploy printed it, with its legend.
    pub table: String,
    /// The median over hosts, per column of [`COLUMNS`].
    pub median: Vec<Option<f64>>,
}

fn seconds(cell: &str) -> Option<f64> {
    cell.strip_suffix('s')?.parse().ok()
}

/// Finds the timings table in hbdeploy's stdout.
pub fn parse(stdout: &str) -> Option<Profile> {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("HOST") && l.contains("BUILD"))?;
    let header: Vec<&str> = lines[start].split_whitespace().collect();
    let body: Vec<&str> = lines[start..]
        .iter()
        .copied()
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let median_row: Vec<&str> = body
        .iter()
        .find(|l| l.starts_with("(median)"))?
        .split_whitespace()
        .collect();
    let median = COLUMNS
        .iter()
        .map(|column| {
            let index = header.iter().position(|h| h == column)?;
            median_row.get(index).and_then(|cell| seconds(cell))
        })
        .collect();
    let legend = lines
        .get(start + body.len() + 1)
        .map(|l| format!("\n{l}\n"))
        .unwrap_or_default();
    Some(Profile {
        table: format!("{}\n{legend}", body.join("\n")),
        median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_median_row() {
        let stdout = "\nHOST  RESULT\nh  ok\n\n1 hosts: 1 succeeded, 0 failed\n\n\
            HOST      BUILD  CONNECT  COPY  ACTIVATE  OTHER  TOTAL\n\
            h         1.00s  0.02s    -     0.30s     0.10s  1.42s\n\
            (median)  1.00s  0.02s    -     0.30s     0.10s  1.42s\n\
            (max)     1.00s  0.02s    -     0.30s     0.10s  1.42s\n\nBUILD: legend\n";
        let profile = parse(stdout).expect("found");
        assert_eq!(
            profile.median,
            [
                Some(1.0),
                Some(0.02),
                None,
                Some(0.3),
                Some(0.1),
                Some(1.42)
            ]
        );
        assert!(profile.table.starts_with("HOST      BUILD"));
        assert!(
            profile.table.ends_with("\nBUILD: legend\n"),
            "{:?}",
            profile.table
        );
        assert_eq!(parse("no table"), None);
    }
}
