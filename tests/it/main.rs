//! hbdeploy's integration tests, as one test binary (`cargo test --test it`): the real binary
//! against the lab (simulated hosts with real nix and real sshd), its CLI errors and outputs
//! (insta snapshots in `snapshots/`), and the tidy checks that keep ARCHITECTURE.md's invariants
//! true. One binary links the lab and the helpers once instead of once per file.
//!
//! Adding tests on a new topic:
//! 1. write `tests/it/<topic>.rs` (no `mod support;`: it is declared here once), using the
//!    shared helpers as `use crate::support::{hbdeploy, host, ...};` and `crate::support::lab`;
//! 2. add `mod <topic>;` below, in alphabetical order;
//! 3. helpers that a second module needs go to `support/` (not copied);
//! 4. keep each file under 400 lines (the tidy test checks it): split a topic into
//!    `<topic>_<aspect>.rs` modules;
//! 5. insta snapshots of module `<topic>` are `snapshots/it__<topic>__<name>.snap`.
//!
//! Moving in a file written as a test binary of its own (`tests/<topic>.rs` with `mod support;`,
//! the layout before this one; the tidy test fails while one is left in `tests/`):
//!
//! ```text
//! git mv tests/T.rs tests/it/T.rs
//! perl -pi -e 's/^mod support;\n//; s/(?<![:\w])support::/crate::support::/g' tests/it/T.rs
//! # drop its `#![allow(clippy::expect_used, clippy::unwrap_used)]` (stated once below), add
//! # `mod T;` here; its snapshots: tests/snapshots/T__x.snap -> tests/it/snapshots/it__T__x.snap
//! # (and `source: tests/it/T.rs` in each)
//! ```
//!
//! Run one topic with `cargo test --test it <topic>::` (a filter on the test's path), one test
//! with `cargo test --test it <topic>::<test_name> -- --exact`.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

mod apply;
mod apply_goals;
mod bench;
mod cli;
mod completions;
mod early_connect;
mod eval_scale;
mod exec;
mod health;
mod history;
mod hostcert;
mod install;
mod install_steps;
mod job_follow;
mod lab_inside;
mod local;
mod local_lab;
mod lock_settle;
mod nixos_flake;
mod passphrase;
mod plan;
mod probe;
mod reboot;
mod reboot_checked;
mod remote_scripts;
mod rollback;
mod safe_activation;
mod safety;
mod safety_interrupt;
mod secrets;
mod secrets_faults;
mod selection;
mod special_files;
mod sudo;
mod systemd_faults;
mod systemd_hosts;
mod systems;
mod tidy;
mod tidy_modules;
mod timings;
mod transfer;
mod transfer_large;
mod transfer_pacing;
mod trust;
mod trust_keys;
