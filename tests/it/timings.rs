//! `hbdeploy apply --timings` against the lab (issue 9): after the result table, one row per host
//! with the time spent in each stage. Only the table's structure is checked, never durations.

use std::path::Path;

use hbdeploy_lab::{Lab, Run};

const HBDEPLOY: &str = env!("CARGO_BIN_EXE_hbdeploy");

/// The rows of the `--timings` table (the one whose header starts `HOST  BUILD`), split into
/// cells, header first.
fn timings_table(run: &Run) -> Vec<Vec<String>> {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("HOST") && l.contains("BUILD"))
        .unwrap_or_else(|| panic!("no timings table\n{}", run.both()));
    lines[start..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn is_seconds(cell: &str) -> bool {
    cell.strip_suffix('s')
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|v| v >= 0.0))
}

#[test]
fn timings_show_where_each_hosts_time_went() {
    let lab = Lab::start(&["alpha", "beta"]).expect("lab starts (needs root, nix, sshd)");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    let bin = Path::new(HBDEPLOY);

    let cold = lab
        .hbdeploy(bin, &["apply", "--all", "--timings"])
        .expect("hbdeploy runs");
    assert_eq!(cold.code, 0, "{}", cold.both());
    let table = timings_table(&cold);
    assert_eq!(
        table[0],
        [
            "HOST", "BUILD", "CONNECT", "COPY", "ACTIVATE", "OTHER", "TOTAL"
        ]
    );
    let names: Vec<&str> = table[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "(median)", "(max)"]);
    for row in &table[1..] {
        assert_eq!(row.len(), 7, "{row:?}");
        assert!(row[1..].iter().all(|c| is_seconds(c)), "{row:?}");
    }
    // The result table still comes first, and the legend follows the timings.
    let results = cold.stdout.find("RESULT").expect("result table");
    let timings = cold.stdout.find("BUILD").expect("timings table");
    assert!(results < timings, "{}", cold.both());
    assert!(
        cold.stdout
            .contains("BUILD: until this host's system was evaluated and built")
    );

    // Unchanged hosts are neither copied to nor activated: those cells are empty.
    let warm = lab
        .hbdeploy(bin, &["apply", "--all", "--timings"])
        .expect("hbdeploy runs");
    assert_eq!(warm.code, 0, "{}", warm.both());
    for row in &timings_table(&warm)[1..3] {
        assert_eq!(row[3..5], ["-", "-"], "{}", warm.both());
        assert!(is_seconds(&row[2]), "{row:?}");
    }

    // Without the flag there is no timings table.
    let plain = lab
        .hbdeploy(bin, &["apply", "--all"])
        .expect("hbdeploy runs");
    assert!(!plain.stdout.contains("BUILD"), "{}", plain.both());
}
