//! The deployment's decisions for one host, on the fake host of `fake.rs`: confirming,
//! restoring after a failed activation or health check, stopping an activation past its limit,
//! the watchdog restoring a host the deployer cannot reach, and a session lost mid-activation.
//! Tokio's clock is paused, so the watchdog's windows pass at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hbdeploy_nix::StorePath;
use tokio::sync::Semaphore;

use super::HostJob;
use crate::build::Built;
use crate::error::Restored;
use crate::fake::{FakeTransport, Faults, World};
use crate::health::{Check, CheckProbe};
use crate::report::{HostReport, Outcome};
use crate::{Cancel, EventSender, Goal, HostError, HostPlan, HostSafety};

const OLD: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-old";
const NEW: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-new";

fn store(path: &str) -> StorePath {
    StorePath::new(path).expect("a store path")
}

fn plan(safety: HostSafety, health: Vec<Check>) -> HostPlan {
    HostPlan {
        health,
        safety,
        ..crate::fanout::tests::plan("web")
    }
}

fn healthy() -> Vec<Check> {
    vec![Check {
        probe: CheckProbe::Command("systemctl is-system-running".to_owned()),
        timeout: Duration::from_secs(5),
        retries: 0,
    }]
}

fn safety(magic_rollback: bool) -> HostSafety {
    HostSafety {
        magic_rollback,
        confirm_timeout: Duration::from_secs(10),
        activation_timeout: Duration::from_secs(30),
        ..HostSafety::default()
    }
}

/// Deploys NEW with `switch` to a host running OLD, with `faults`.
async fn deploy(plan: HostPlan, faults: Faults) -> (HostReport, Arc<Mutex<World>>) {
    let (report, world, _notes) = deploy_noted(plan, faults).await;
    (report, world)
}

/// As [`deploy`], with the notes the deployment sent about the host.
async fn deploy_noted(
    plan: HostPlan,
    faults: Faults,
) -> (HostReport, Arc<Mutex<World>>, Vec<String>) {
    let world = World::running(OLD);
    world.lock().expect("world").faults = faults;
    deploy_to_noted(plan, world).await
}

/// Deploys NEW with `switch` to the host `world`.
async fn deploy_to(plan: HostPlan, world: Arc<Mutex<World>>) -> (HostReport, Arc<Mutex<World>>) {
    let (report, world, _notes) = deploy_to_noted(plan, world).await;
    (report, world)
}

/// As [`deploy_to`], with the notes the deployment sent about the host.
async fn deploy_to_noted(
    plan: HostPlan,
    world: Arc<Mutex<World>>,
) -> (HostReport, Arc<Mutex<World>>, Vec<String>) {
    let (events, mut received) = EventSender::channel();
    let (_handle, cancel) = Cancel::new();
    let job = HostJob {
        plan,
        path: store(NEW),
        built: Built {
            out: store(NEW),
            drv: store("/nix/store/cccccccccccccccccccccccccccccccc-nixos-system-new.drv"),
            on_target: false,
            host_caches: None,
        },
        copy_permits: Arc::new(Semaphore::new(1)),
        activate_permits: Arc::new(Semaphore::new(1)),
        signing_key: None,
        goal: Goal::Switch,
        reactivate: false,
        auto_rollback: true,
        reboot: false,
        transport: Arc::new(FakeTransport {
            world: Arc::clone(&world),
        }),
        events,
        cancel,
        start: Instant::now(),
        early: None,
    };
    let report = job.run().await;
    let mut notes = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(1), received.recv()).await
    {
        if let crate::Event::Note { text, .. } = event {
            notes.push(text);
        }
    }
    (report, world, notes)
}

fn on_old_system(world: &Arc<Mutex<World>>) {
    let world = world.lock().expect("world");
    assert_eq!(world.running, OLD, "{:?}", world.log);
    assert_eq!(world.profile, 1, "{:?}", world.log);
    assert!(!world.generations.contains_key(&2), "{:?}", world.log);
}

fn log(world: &Arc<Mutex<World>>) -> Vec<String> {
    world.lock().expect("world").log.clone()
}

#[tokio::test(start_paused = true)]
async fn a_good_activation_is_confirmed_over_a_second_connection() {
    let (report, world) = deploy(plan(safety(true), healthy()), Faults::default()).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    assert_eq!(report.generation, Some(2));
    let world = world.lock().expect("world");
    assert_eq!((world.running.as_str(), world.profile), (NEW, 2));
    assert_eq!(
        world.connections, 2,
        "the deployment's and the confirmation's"
    );
    let steps: Vec<&str> = world
        .log
        .iter()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        steps,
        ["lock", "copy", "armed", "activate", "confirm:", "check"],
        "{:?}",
        world.log
    );
    // From the lock to the running activation, one round trip: the NixOS check, the job
    // scripts, the watchdog and the activation's start are one script (the copy is the
    // transport's, not a command), run by the lock's holder: no channel of its own. The
    // confirmation and the health check run on the confirmation's connection.
    assert_eq!(
        (world.round_trips.as_slice(), world.asked.as_slice()),
        (
            &["lock.sh", "decide.sh", "check.sh"][..],
            &["prepare.sh"][..]
        ),
        "{:?}",
        world.log
    );
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_host_is_read_with_the_lock_alone() {
    let (report, world) = deploy_to(plan(safety(true), healthy()), World::running(NEW)).await;
    assert!(matches!(report.outcome, Outcome::Unchanged), "{report:?}");
    let world = world.lock().expect("world");
    assert_eq!(world.connections, 1);
    assert_eq!(world.log, ["lock"], "no separate state read, no settling");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deployment_left_undecided_is_settled_before_the_host_is_changed() {
    let world = World::running(OLD);
    world
        .lock()
        .expect("world")
        .left_undecided("/run/hbdeploy/earlier");
    let (report, world) = deploy_to(plan(safety(true), healthy()), world).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    let log = log(&world);
    let settle = log.iter().position(|l| l == "settle");
    let copy = log.iter().position(|l| l == "copy");
    assert!(settle.is_some() && settle < copy, "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn without_magic_rollback_one_connection_does_everything() {
    let (report, world) = deploy(plan(safety(false), Vec::new()), Faults::default()).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    let world = world.lock().expect("world");
    assert_eq!(world.connections, 1);
    assert!(!world.log.iter().any(|l| l == "armed"), "{:?}", world.log);
}

#[tokio::test(start_paused = true)]
async fn the_machine_hbdeploy_runs_on_skips_magic_rollback_with_a_note_and_keeps_auto_rollback() {
    let mut local = plan(safety(true), Vec::new());
    local.target.address = hbdeploy_ssh::LOCAL_ADDRESS.to_owned();
    let (report, world, notes) = deploy_noted(local.clone(), Faults::default()).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("magic rollback skipped")),
        "{notes:?}"
    );
    {
        let world = world.lock().expect("world");
        assert_eq!(world.connections, 1, "no confirmation: {:?}", world.log);
        assert!(!world.log.iter().any(|l| l == "armed"), "{:?}", world.log);
    }
    let faults = Faults {
        fail_activation: true,
        ..Faults::default()
    };
    let (report, world, _) = deploy_noted(local, faults).await;
    assert!(
        matches!(
            report.outcome,
            Outcome::Failed(HostError::Activation {
                restored: Restored::Yes,
                ..
            })
        ),
        "{report:?}"
    );
    on_old_system(&world);
}

#[tokio::test(start_paused = true)]
async fn a_failed_activation_is_claimed_from_the_watchdog_and_restored_by_the_deployer() {
    let faults = Faults {
        fail_activation: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), healthy()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::Activation {
            restored: Restored::Yes,
            profile_set: true,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(report.generation, Some(1));
    on_old_system(&world);
    let log = log(&world);
    let disarm = log.iter().position(|l| l == "disarm: confirmed");
    let restore = log.iter().position(|l| l.starts_with("restore restore"));
    assert!(disarm.is_some() && disarm < restore, "{log:?}");
    assert!(
        !log.iter().any(|l| l == "check"),
        "no checks on a failed activation: {log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_health_check_restores_the_previous_generation() {
    let faults = Faults {
        unhealthy: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), healthy()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::HealthCheck {
            restored: Restored::Yes,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    on_old_system(&world);
}

#[tokio::test(start_paused = true)]
async fn a_hung_activation_without_a_watchdog_is_stopped_and_restored_at_its_limit() {
    let faults = Faults {
        hang_activation: true,
        ..Faults::default()
    };
    let began = tokio::time::Instant::now();
    let (report, world) = deploy(plan(safety(false), Vec::new()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::ActivationTimeout {
            secs: 30,
            restored: Restored::Yes,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(began.elapsed() >= Duration::from_secs(30));
    assert!(log(&world).iter().any(|l| l == "stop"), "{:?}", log(&world));
}

#[tokio::test(start_paused = true)]
async fn a_hung_activation_under_a_watchdog_is_stopped_and_restored_by_the_host() {
    let faults = Faults {
        hang_activation: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), Vec::new()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::ActivationTimeout {
            restored: Restored::Yes,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        log(&world)
            .iter()
            .any(|l| l.starts_with("watchdog restores")),
        "{:?}",
        log(&world)
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_system_that_cuts_the_host_off_is_restored_by_its_watchdog_and_reported_so() {
    let faults = Faults {
        unreachable_on_new_system: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), healthy()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::RolledBack { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(report.generation, Some(1));
    on_old_system(&world);
    let log = log(&world);
    assert!(log.iter().any(|l| l == "connection refused"), "{log:?}");
    assert!(!log.iter().any(|l| l == "check"), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_such_a_host_is_left_on_the_new_system_and_the_report_says_so() {
    let faults = Faults {
        unreachable_on_new_system: true,
        ..Faults::default()
    };
    // No health checks and no watchdog: nothing needs a second connection, and the deployer
    // cannot tell. With checks, they run on the deployment's own connection.
    let (report, world) = deploy(plan(safety(false), healthy()), faults).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    assert_eq!(world.lock().expect("world").running, NEW);
}

#[tokio::test(start_paused = true)]
async fn a_session_cut_under_a_good_activation_is_confirmed_and_checked_over_new_connections() {
    let faults = Faults {
        cut_session: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), healthy()), faults).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    assert_eq!(report.generation, Some(2), "read again after the cut");
    let world = world.lock().expect("world");
    assert_eq!(world.running, NEW);
    assert_eq!(world.connections, 3, "deployment, confirmation, checks");
    assert!(world.log.iter().any(|l| l == "check"), "{:?}", world.log);
}

#[tokio::test(start_paused = true)]
async fn a_session_cut_before_the_host_said_it_armed_the_watchdog_is_confirmed_all_the_same() {
    // The watchdog was armed and the activation ended well, but the session broke before any
    // of the answer came: taken for unarmed, the host would be reported deployed and then put
    // back by its watchdog once `confirm-timeout` passed.
    let faults = Faults {
        cut_silently: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(true), Vec::new()), faults).await;
    assert!(matches!(report.outcome, Outcome::Succeeded), "{report:?}");
    tokio::time::sleep(Duration::from_secs(600)).await;
    let mut world = world.lock().expect("world");
    world.run_watchdogs();
    assert_eq!(world.running, NEW, "{:?}", world.log);
    assert!(
        world
            .log
            .iter()
            .any(|l| l.starts_with("confirm: confirmed")),
        "{:?}",
        world.log
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_cut_without_a_watchdog_is_followed_to_its_end_over_a_new_connection() {
    let faults = Faults {
        cut_session: true,
        fail_activation: true,
        ..Faults::default()
    };
    let (report, world) = deploy(plan(safety(false), Vec::new()), faults).await;
    match &report.outcome {
        Outcome::Failed(HostError::Activation {
            restored: Restored::Yes,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    on_old_system(&world);
    assert!(
        log(&world).iter().any(|l| l == "follow activate"),
        "{:?}",
        log(&world)
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_task_that_panics_still_ends_its_wave_as_failed() {
    // Host 0 is wave 0, host 1 wave 1: host 1 may start only once host 0 ended, and not at all
    // when it failed. A task that panics never says how it ended; its drop guard does.
    let gate = Arc::new(crate::waves::Gate::new(2, &[vec![0], vec![1]]));
    let panicking = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let _ending = super::Ending {
                gate: &gate,
                host: 0,
                succeeded: false,
            };
            panic!("a bug in host 0's task");
        })
    };
    assert!(panicking.await.is_err(), "the task panicked");
    let waited = tokio::time::timeout(Duration::from_secs(5), gate.wait(1)).await;
    assert_eq!(
        waited.ok(),
        Some(false),
        "wave 1 is let go, as after a failure"
    );
}
