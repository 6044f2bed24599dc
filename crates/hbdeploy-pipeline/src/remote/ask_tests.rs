//! The lock's holder serving requests (`lock.sh`, `Held::ask`), run on this machine: the real
//! script, with its directory moved out of `/run/hbdeploy` (the machine's own lock is not ours
//! to take). Needs root, as the lock does; skipped otherwise (the lab's deployments cover it).

use hbdeploy_ssh::{CommandOutput, Exit, Local, Session, Stream, Target};

use super::Script;
use super::local_tests::scratch;

fn here() -> Local {
    let target = Target {
        address: hbdeploy_ssh::LOCAL_ADDRESS.to_owned(),
        port: 22,
        user: hbdeploy_ssh::local_user(),
        identity_file: None,
        known_hosts: std::path::PathBuf::from("/dev/null"),
        pinned_keys: Vec::new(),
        accept_new: false,
        connect_timeout: std::time::Duration::from_secs(1),
        jump: None,
        escalation: None,
        keepalive: None,
        compress: false,
    };
    Local::open(&target, &Session::default())
}

/// One request, answered within 20 s (a holder out of step would leave it waiting).
async fn ask(held: &mut hbdeploy_ssh::Held, command: &str, input: &[u8]) -> CommandOutput {
    let asked = held.ask(command, input, true, |_| {});
    tokio::time::timeout(std::time::Duration::from_secs(20), asked)
        .await
        .expect("the holder answered")
        .expect("the request was sent")
}

/// `lock.sh` with its directory moved to `dir`.
fn lock_script(dir: &std::path::Path) -> String {
    let text = Script::Lock.text();
    assert!(text.contains("run=/run/hbdeploy\n"));
    let moved = text.replace("run=/run/hbdeploy\n", &format!("run={}\n", dir.display()));
    format!("sh -c {} hbdeploy tester", super::quote(&moved))
}

/// The lock taken and held by `lock.sh` in a directory of this test's own (`name`, removed when
/// dropped, a failed test's too), with that directory and the holder's first line; `None` where
/// the tests cannot run (not root).
async fn holding(name: &str) -> Option<(hbdeploy_ssh::Held, hbdeploy_files::Scratch, String)> {
    holding_with(name, None).await
}

/// [`holding`], with `state` (a script) given to `lock.sh` as the script of its answer.
async fn holding_with(
    name: &str,
    state: Option<&str>,
) -> Option<(hbdeploy_ssh::Held, hbdeploy_files::Scratch, String)> {
    if hbdeploy_ssh::local_user() != "root" {
        return None;
    }
    let dir = scratch(&format!("ask-{name}"));
    let mut command = lock_script(&dir);
    if let Some(state) = state {
        command = format!("{command} {}", super::quote(state));
    }
    let (line, held) = here().hold_root(&command).await.unwrap();
    Some((held.expect("the holder is still running"), dir, line))
}

#[tokio::test]
async fn the_lock_holder_runs_requests_in_turn_with_their_input_output_and_exit() {
    let Some((mut held, dir, line)) = holding("turns").await else {
        return;
    };
    assert!(line.starts_with("locked\tclear"), "{line}");
    assert!(held.can_ask());

    // Empty lines of the command's own are kept, and a last line without a newline.
    let mut seen = Vec::new();
    let out = held
        .ask("printf 'a\\n\\nb'", &[], true, |l| {
            seen.push(l.text.clone())
        })
        .await
        .unwrap();
    assert_eq!(
        (out.exit.clone(), out.stdout.as_str()),
        (Exit::Code(0), "a\n\nb\n")
    );
    assert_eq!(seen, ["a", "", "b"]);
    let out = ask(&mut held, "echo x; echo", &[]).await;
    assert_eq!(out.stdout, "x\n\n");

    // Its input, and the rest of an input the command left unread: the next request starts
    // where it should.
    let out = ask(&mut held, "wc -l", b"1\n2\n3\n").await;
    assert_eq!(out.stdout.trim(), "3");
    let big = vec![b'y'; 300_000];
    let out = ask(&mut held, "head -c 2; echo", &big).await;
    assert_eq!(out.stdout, "yy\n");
    let out = ask(&mut held, "exit 4", &big).await;
    assert_eq!(out.exit, Exit::Code(4));
    let out = ask(&mut held, "echo next", &[]).await;
    assert_eq!(out.stdout, "next\n");
    // The input went through a file of the holder's own: root's alone, and emptied once the
    // command is done with it.
    let kept = std::fs::metadata(dir.join("ask.in")).expect("the holder's input file");
    assert_eq!(kept.len(), 0, "a request's input was left on the host");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&kept.permissions()) & 0o077,
        0
    );

    // Its stderr and exit code.
    let out = ask(&mut held, "echo oops >&2; exit 3", &[]).await;
    assert_eq!(out.exit, Exit::Code(3));
    assert_eq!(out.stdout, "");
    assert!(
        out.tail
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.text == "oops"),
        "{:?}",
        out.tail
    );

    // As the holder: under the lock.
    let out = ask(&mut held, "true", &[]).await;
    assert_eq!(out.exit, Exit::Code(0));
    let info = std::fs::read_to_string(dir.join("lock.info")).unwrap();
    assert_eq!(info, "tester\n");

    held.release().await;
    assert!(
        !dir.join("lock.info").exists(),
        "letting go removes the holder's name"
    );
    assert!(
        !dir.join("ask.in").exists(),
        "letting go removes the input file"
    );
}

/// With the state script, the holder reads the state in its own shell and answers in one line,
/// each of the state's lines ended by a tab (the lines the script prints on its own); a check of
/// what the store lacks, asked with its paths inside the request and no input, counts a path
/// not on disk as missing and one on disk as there.
#[tokio::test]
async fn the_holder_answers_with_the_state_in_its_line_and_checks_paths_given_in_the_request() {
    let Some((mut held, dir, line)) = holding_with("state", Some(Script::State.text())).await
    else {
        return;
    };
    let alone = std::process::Command::new("/bin/sh")
        .args(["-c", Script::State.text()])
        .output()
        .unwrap();
    let alone = String::from_utf8(alone.stdout).unwrap();
    assert!(alone.contains("link /run/current-system"), "{alone}");
    let expected: String = alone.lines().map(|l| format!("{l}\t")).collect();
    // The holder's first line comes without its trailing blanks.
    assert_eq!(line, format!("locked\tclear\t{expected}").trim_end());

    let missing = dir.join("not-there").display().to_string();
    let there = dir.display().to_string();
    let paths = format!("{missing}\n{there}\n{missing}-too");
    let out = ask(&mut held, &Script::CheckValidity.asked(&["5", &paths]), &[]).await;
    assert_eq!(out.exit, Exit::Code(0));
    assert_eq!(out.stdout, format!("{missing}\n{missing}-too\n"));
    held.release().await;
}

/// A request whose answer was not read to its end leaves the holder unable to take another: what
/// it prints next could be the rest of that answer.
#[tokio::test]
async fn a_request_given_up_on_spoils_the_holder_for_the_next() {
    let Some((mut held, _dir, _)) = holding("spoilt").await else {
        return;
    };
    let slow = held.ask("sleep 2", &[], true, |_| {});
    let given_up = tokio::time::timeout(std::time::Duration::from_millis(200), slow).await;
    assert!(given_up.is_err());
    assert!(!held.can_ask());
    let refused = held.ask("echo again", &[], true, |_| {}).await;
    assert!(
        matches!(refused, Err(hbdeploy_ssh::SshError::Unanswered { .. })),
        "{refused:?}"
    );
    held.release().await;
}

/// A job a request starts detached (`setsid`, as `launch.sh` does where the host has no
/// systemd) does not hold the lock: it is free once the holder lets go.
#[tokio::test]
async fn what_a_request_starts_detached_does_not_hold_the_lock() {
    let Some((mut held, dir, _)) = holding("detached").await else {
        return;
    };
    let pid_file = dir.join("detached.pid");
    let start = format!(
        "setsid sh -c 'echo $$ >{}; exec sleep 30' </dev/null >/dev/null 2>&1 &",
        pid_file.display()
    );
    assert_eq!(ask(&mut held, &start, &[]).await.exit, Exit::Code(0));
    // The request ends once the job is started, maybe before it runs: the lock is let go only
    // once it runs (its pid written), with whatever it inherited.
    let mut pid = String::new();
    for _ in 0..100 {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if pid.ends_with('\n') {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(pid.ends_with('\n'), "the detached job never ran");
    held.release().await;
    let free = std::process::Command::new("flock")
        .args(["-n", "-E", "7"])
        .arg(dir.join("lock"))
        .arg("true")
        .status()
        .unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    assert_eq!(free.code(), Some(0), "the detached job holds the lock");
}
