//! The relay paces what it sends to what the host's sshd hands on to the command
//! (`hbdeploy_ssh::relay`, `window.rs`): a command that reads nothing for a while leaves sshd
//! holding a few hundred KiB of the copy, not its whole 2 MiB window, which sshd grows into by
//! copying its buffer once per packet received (seconds of host CPU at 20 hosts on the lab,
//! docs/benchmarks.md). Through the real stand-in (`hbdeploy` run as `ssh`) and the real sshd of
//! a host running systemd (whose `/proc` shows sshd's session process to the command, as on a
//! real host); sshd's own peak memory is the measure.

use hbdeploy_lab::Lab;
use tokio::io::AsyncWriteExt;

/// What the copy sends: more than sshd's window, so that an unpaced sender fills it.
const SENT: usize = 4 << 20;

/// The command: sshd's session process (its parent) peak memory before and after a pause
/// shorter than the pace's stall limit (1 s), then the count of what arrived.
const COMMAND: &str =
    "grep VmHWM /proc/$PPID/status; sleep 0.8; grep VmHWM /proc/$PPID/status; wc -c";

#[test]
fn a_host_that_reads_nothing_for_a_while_holds_little_of_the_copy() {
    let lab = Lab::start_systemd(&["alpha"]).expect("systemd lab starts");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let target = crate::support::ssh_target(&lab, "alpha", "root");
    let session = hbdeploy_ssh::Session::default();
    let conn = runtime
        .block_on(hbdeploy_ssh::Connection::connect(&target, &session))
        .expect("connects");
    // The relay's socket is a tokio listener: made inside the runtime.
    let relay = {
        let _inside = runtime.enter();
        hbdeploy_ssh::relay::Relay::open(COMMAND).expect("relay opens")
    };
    // The stand-in is hbdeploy itself, run as `ssh` (linked in the lab's directory, which goes
    // with the lab).
    let stand_in = lab.dir().join("stand-in");
    std::fs::create_dir(&stand_in).expect("directory");
    let ssh = stand_in.join("ssh");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hbdeploy"), &ssh).expect("link");
    let (name, socket) = relay.env();
    let data: Vec<u8> = (0..SENT).map(|i| (i * 7 % 251) as u8).collect();
    let mut stderr = String::new();
    let output = runtime.block_on(relay.serve(
        &conn,
        &mut |line| {
            stderr.push_str(line);
            stderr.push('\n');
        },
        async {
            let mut child = tokio::process::Command::new(&ssh)
                .args(["alpha", COMMAND])
                .env(name, &socket)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("stand-in starts");
            let mut stdin = child.stdin.take().expect("stdin");
            let feed = async move {
                stdin.write_all(&data).await.expect("written");
                drop(stdin);
            };
            let (output, ()) = tokio::join!(child.wait_with_output(), feed);
            output.expect("stand-in ends")
        },
    ));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = format!(
        "stdout: {stdout}\nstand-in's stderr: {}\ncommand's stderr: {stderr}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    let lines: Vec<&str> = stdout.lines().collect();
    let peak = |line: &str| -> u64 {
        line.trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a VmHWM line: {line:?}\n{said}"))
    };
    assert_eq!(lines.len(), 3, "{said}");
    assert_eq!(
        lines[2].trim(),
        SENT.to_string(),
        "everything arrived\n{said}"
    );
    let grew = peak(lines[1]).saturating_sub(peak(lines[0]));
    // Unpaced (the relay without its pace, and OpenSSH's own client): 2.0 and 3.5 MB, sshd's
    // buffer grown towards the window with a copy of it alive at each step. Paced: nothing
    // measurable (the bound, 256 KiB and a chunk, fits in what sshd had already touched).
    assert!(
        grew < 1000,
        "sshd's peak memory grew by {grew} kB while the command read nothing\n{said}"
    );
}
