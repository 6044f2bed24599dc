//! How much of what is sent on a channel the host holds and has not handed on, learnt from its
//! SSH window, and a sender that keeps that small where the network allows.
//!
//! An SSH server grants each channel a window (OpenSSH's sshd: 2 MiB) and grants more
//! (`SSH_MSG_CHANNEL_WINDOW_ADJUST`) as it hands what it received on to the command. What it
//! received and has not handed on waits in its memory. OpenSSH's sshd keeps that in a buffer it
//! grows by exactly what arrives: each growth copies the whole buffer into a new allocation and
//! wipes the old one. When the command reads more slowly than the network delivers (a
//! `nix-daemon` on a busy host), that buffer fills towards the whole window, and the copying and
//! wiping costs the host more CPU than the copy's own decryption (measured on the lab: seconds
//! of sshd CPU at 20 hosts, in page faults, `memmove` and `memset`; docs/benchmarks.md).
//!
//! [`Windows`] records, per channel, the largest window the server granted and its window after
//! its last adjustment (russh's handler sees both). [`Pace`] keeps what the server holds below a
//! bound of its own, leaving the rest in the pipe it reads from. So that the bound never costs
//! the network its throughput, it is at least twice what the host takes in the time it takes to
//! answer (the fastest rate at which it has counted bytes as handed on, times the shortest delay
//! seen between sending bytes and the adjustment that counts them), as TCP's and BBR's windows
//! are: a host that takes all it is sent doubles the bound each round trip, up to its own
//! window, and a host that takes less than the network delivers (the case that fills sshd's
//! buffer) keeps it small.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The windows of one connection's channels, as its server last set them.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    channels: Mutex<HashMap<u32, Granted>>,
    changed: tokio::sync::Notify,
}

/// One channel's window: the largest it was, and after the server's last adjustment. The largest
/// is the server's own bound on what it holds (OpenSSH's sshd opens a session channel with an
/// empty window and grants the whole of it once the command runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Granted {
    largest: u32,
    last: u32,
    /// How many adjustments there were (a sender notices a new one by this count), and when
    /// the last one came.
    adjustments: u64,
    at: Option<Instant>,
}

impl Windows {
    /// The server confirmed a channel with this initial window.
    pub(crate) fn opened(&self, id: u32, window: u32) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.insert(
                id,
                Granted {
                    largest: window,
                    last: window,
                    adjustments: 0,
                    at: None,
                },
            );
        }
    }

    /// The server adjusted a channel's window; `window` is what russh may now send.
    pub(crate) fn adjusted(&self, id: u32, window: u32) {
        if let Ok(mut channels) = self.channels.lock()
            && let Some(granted) = channels.get_mut(&id)
        {
            granted.last = window;
            granted.largest = granted.largest.max(window);
            granted.adjustments += 1;
            granted.at = Some(Instant::now());
        }
        self.changed.notify_waiters();
    }

    /// Forgets a channel that is done.
    pub(crate) fn forget(&self, id: u32) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.remove(&id);
        }
    }

    fn get(&self, id: u32) -> Option<Granted> {
        self.channels.lock().ok()?.get(&id).copied()
    }
}

/// The most a sender lets the server hold on one channel where the link answers quickly: a
/// few of sshd's own steps of 96 KiB (it adjusts the window once more than three packets of it
/// are used), so that it never waits for an adjustment the server would not send yet.
pub(crate) const HELD: u64 = 256 << 10;

/// How long a sender waits at its bound for the server to take anything before it doubles the
/// bound: a server that adjusts only once half its window is used (older OpenSSH) never would
/// below it, and a command that reads nothing for a while should not hold the copy for good.
const STALL: Duration = Duration::from_secs(1);

/// How many bytes may have been handed to the channel and not sent yet when an adjustment comes
/// (what the relay lends russh at most, and a chunk more handed before the sender noticed the
/// adjustment): bytes counted as answered are taken to be this many fewer, so that the
/// answering time is never taken shorter than it was (which would make the bound too small).
const UNSENT: u64 = 128 << 10;

/// Keeps what the server holds on one channel below a bound.
#[derive(Debug)]
pub(crate) struct Pace<'a> {
    windows: &'a Windows,
    id: u32,
    /// How many times the bound was doubled for a server that took nothing for [`STALL`].
    doubled: u32,
    /// How many bytes have been handed to the channel in all.
    handed: u64,
    /// The adjustments seen so far, and how much had been handed to the channel then.
    seen: u64,
    handed_then: u64,
    /// When the bytes handed so far were handed: (handed in all once these were, when).
    sent: VecDeque<(u64, Instant)>,
    /// The shortest answering time seen.
    quickest: Option<Duration>,
    /// Recent adjustments: (when, how much in all the server had counted as handed on then).
    counted: VecDeque<(Instant, u64)>,
    /// The fastest rate at which the server counted bytes as handed on, in bytes per second,
    /// over at least one answering time.
    fastest: u64,
    /// The most the server was ever counted as holding (for the tests of the bound).
    most: u64,
}

impl<'a> Pace<'a> {
    pub(crate) fn new(windows: &'a Windows, id: u32) -> Pace<'a> {
        Pace {
            windows,
            id,
            doubled: 0,
            handed: 0,
            seen: 0,
            handed_then: 0,
            sent: VecDeque::new(),
            quickest: None,
            counted: VecDeque::new(),
            fastest: 0,
            most: 0,
        }
    }

    /// Notes that `bytes` more have now been handed to the channel.
    pub(crate) fn handed(&mut self, bytes: u64) {
        self.handed += bytes;
        self.sent.push_back((self.handed, Instant::now()));
    }

    /// What the server holds of the bytes handed to the channel so far, as last known:
    /// sent before its last adjustment and not granted again, plus everything handed since it
    /// was seen (an overcount by what russh had not sent yet, never an undercount). A new
    /// adjustment also tells how long the host took to answer.
    fn held(&mut self, granted: Granted) -> u64 {
        let handed = self.handed;
        let before = u64::from(granted.largest.saturating_sub(granted.last));
        if granted.adjustments != self.seen {
            self.seen = granted.adjustments;
            self.handed_then = handed;
            if let Some(at) = granted.at {
                self.answered(handed.saturating_sub(before + UNSENT), at);
                self.rate(handed.saturating_sub(before), at);
            }
        }
        before + handed.saturating_sub(self.handed_then)
    }

    /// The server counted the first `taken` bytes as handed on, by `at`: the time since the
    /// last of them was handed to the channel is how long the host took to answer, and the
    /// shortest such time sets the bound.
    fn answered(&mut self, taken: u64, at: Instant) {
        if taken == 0 {
            return;
        }
        // The entry holding the byte at `taken`: the first that reaches it. Entries wholly
        // before it are done with.
        let mut when = None;
        while let Some(&(upto, time)) = self.sent.front() {
            when = Some(time);
            if upto > taken {
                break;
            }
            self.sent.pop_front();
            if upto == taken {
                break;
            }
        }
        let Some(when) = when else {
            return;
        };
        let took = at.saturating_duration_since(when);
        self.quickest = Some(self.quickest.map_or(took, |q| q.min(took)));
    }

    /// Notes that the server had counted `counted` bytes in all as handed on at `at`, and
    /// learns from it the rate at which it takes them: over the longest span of recent
    /// adjustments that is at least one answering time long (shorter spans say more of how
    /// adjustments bunch up than of the rate).
    fn rate(&mut self, counted: u64, at: Instant) {
        self.counted.push_back((at, counted));
        let Some(span) = self.quickest.filter(|q| !q.is_zero()) else {
            // Nothing to measure over yet: only the latest few are worth keeping.
            while self.counted.len() > 64 {
                self.counted.pop_front();
            }
            return;
        };
        // Keep the newest entry that is at least `span` old, and none older.
        while self
            .counted
            .get(1)
            .is_some_and(|&(when, _)| at.saturating_duration_since(when) >= span)
        {
            self.counted.pop_front();
        }
        let Some(&(since, from)) = self.counted.front() else {
            return;
        };
        let over = at.saturating_duration_since(since);
        if over < span || over.is_zero() {
            return;
        }
        let per_second =
            u128::from(counted.saturating_sub(from)) * 1_000_000_000 / over.as_nanos().max(1);
        self.fastest = self
            .fastest
            .max(u64::try_from(per_second).unwrap_or(u64::MAX));
    }

    /// The bound now: twice what the host takes in its shortest answering time (at the fastest
    /// rate it took anything), or [`HELD`] (doubled for each stall), whichever is more.
    fn bound(&self) -> u64 {
        let in_flight = self.quickest.map_or(0, |quickest| {
            let bytes = quickest
                .as_nanos()
                .saturating_mul(u128::from(self.fastest))
                .saturating_mul(2)
                / 1_000_000_000;
            u64::try_from(bytes).unwrap_or(u64::MAX)
        });
        HELD.saturating_mul(1 << self.doubled.min(16))
            .max(in_flight)
    }

    /// Waits until the server holds less than the bound of the bytes handed so far. A channel
    /// the server never confirmed (not in [`Windows`]) is not paced.
    pub(crate) async fn wait(&mut self) {
        loop {
            let changed = self.windows.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Some(granted) = self.windows.get(self.id) else {
                return;
            };
            let held = self.held(granted);
            self.most = self.most.max(held);
            if held < self.bound() || held >= u64::from(granted.largest) {
                return;
            }
            if tokio::time::timeout(STALL, changed).await.is_err() {
                self.doubled += 1;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn most(&self) -> u64 {
        self.most
    }

    /// The shortest answering time seen, the fastest rate, and the bound now.
    #[cfg(test)]
    pub(crate) fn learnt(&self) -> (Option<Duration>, u64, u64) {
        (self.quickest, self.fastest, self.bound())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// OpenSSH's sshd: a session channel opens with an empty window, and the whole window is
    /// granted once the command runs.
    const WINDOW: u64 = 2 << 20;
    const CHUNK: u64 = 32 << 10;

    fn granted(windows: &Windows, id: u32) {
        windows.opened(id, 0);
        windows.adjusted(id, WINDOW as u32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_at_the_bound_until_the_host_takes_some() {
        let windows = Windows::default();
        granted(&windows, 7);
        let mut pace = Pace::new(&windows, 7);
        pace.wait().await;
        pace.handed(HELD);
        {
            let waiting = pace.wait();
            tokio::pin!(waiting);
            assert!(
                futures::poll!(waiting.as_mut()).is_pending(),
                "the host holds the whole bound"
            );
            // russh sent all of it; the host hands 128 KiB on and adjusts the window by that.
            windows.adjusted(7, (WINDOW - HELD + (128 << 10)) as u32);
            waiting.await;
        }
        assert_eq!(pace.most(), HELD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_takes_nothing_for_a_while_gets_a_doubled_bound() {
        let windows = Windows::default();
        granted(&windows, 1);
        let mut pace = Pace::new(&windows, 1);
        pace.wait().await;
        pace.handed(HELD);
        let began = Instant::now();
        // No adjustment ever comes (a server that waits for half its window to be used).
        pace.wait().await;
        assert_eq!(began.elapsed(), STALL);
        assert_eq!(pace.learnt().2, 2 * HELD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_the_server_never_confirmed_is_not_paced() {
        let windows = Windows::default();
        let mut pace = Pace::new(&windows, 3);
        pace.handed(WINDOW);
        let waiting = pace.wait();
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_holding_the_whole_window_leaves_the_waiting_to_it() {
        let windows = Windows::default();
        granted(&windows, 2);
        let mut pace = Pace::new(&windows, 2);
        pace.handed(WINDOW);
        let waiting = pace.wait();
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_ready());
    }

    /// The answering time is counted from when the last byte counted was handed: not from a
    /// later chunk's handing (too short an answer would make the bound too small).
    #[tokio::test(start_paused = true)]
    async fn the_answering_time_runs_from_the_last_byte_counted() {
        let windows = Windows::default();
        let mut pace = Pace::new(&windows, 4);
        let began = Instant::now();
        pace.handed(CHUNK);
        tokio::time::advance(Duration::from_millis(10)).await;
        pace.handed(CHUNK);
        tokio::time::advance(Duration::from_millis(10)).await;
        // Exactly the first chunk counted, at 20 ms: it was handed at 0.
        pace.answered(CHUNK, Instant::now());
        assert_eq!(pace.quickest, Some(Duration::from_millis(20)));
        // The second chunk's first byte, at 25 ms: handed at 10 ms.
        tokio::time::advance(Duration::from_millis(5)).await;
        pace.answered(CHUNK + 1, Instant::now());
        assert_eq!(pace.quickest, Some(Duration::from_millis(15)));
        assert_eq!(began.elapsed(), Duration::from_millis(25));
    }

    /// What a simulated copy of `seconds` did: bytes handed, and the pace's shortest answering
    /// time, fastest rate, bound, and the most the host was counted as holding.
    struct Copied {
        handed: u64,
        quickest: Duration,
        bound: u64,
        most: u64,
    }

    /// A copy over a link with round trip `rtt` to a host that hands bytes on at most at `rate`
    /// bytes per second: each chunk is counted `rtt` after it is handed, or once the host has
    /// handed on everything before it at `rate`, whichever is later; russh's own window (the
    /// server's) stops the sender as russh would.
    async fn copy(rtt: Duration, rate: u64, seconds: u64) -> Copied {
        let windows = Arc::new(Windows::default());
        granted(&windows, 5);
        let sent = Arc::new(AtomicU64::new(0));
        let counted = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64)>();
        let host = {
            let windows = Arc::clone(&windows);
            let sent = Arc::clone(&sent);
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut free_at = Instant::now();
                while let Some((handed_at, bytes)) = rx.recv().await {
                    let per_chunk = Duration::from_nanos(bytes * 1_000_000_000 / rate);
                    let done = (handed_at + rtt).max(free_at + per_chunk);
                    free_at = done;
                    tokio::time::sleep_until(done).await;
                    let taken = counted.fetch_add(bytes, Ordering::SeqCst) + bytes;
                    let outstanding = sent.load(Ordering::SeqCst) - taken;
                    windows.adjusted(5, (WINDOW - outstanding) as u32);
                }
            })
        };
        let mut pace = Pace::new(&windows, 5);
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            pace.wait().await;
            while sent.load(Ordering::SeqCst) - counted.load(Ordering::SeqCst) + CHUNK > WINDOW {
                tokio::time::sleep(Duration::from_micros(50)).await;
            }
            sent.fetch_add(CHUNK, Ordering::SeqCst);
            pace.handed(CHUNK);
            tx.send((Instant::now(), CHUNK)).expect("host");
        }
        drop(tx);
        host.abort();
        let (quickest, _, bound) = pace.learnt();
        Copied {
            handed: pace.handed,
            quickest: quickest.expect("answered"),
            bound,
            most: pace.most(),
        }
    }

    /// A long round trip to a host that takes everything: the bound grows to the server's
    /// window within a few round trips, so the copy runs as fast as the window lets it (2 MiB
    /// per 50 ms), not at the bound's first 256 KiB per round trip.
    #[tokio::test(start_paused = true)]
    async fn a_long_link_to_a_quick_host_gets_the_whole_window() {
        let copied = copy(Duration::from_millis(50), 10_000_000_000, 2).await;
        assert!(copied.quickest >= Duration::from_millis(50));
        assert!(copied.bound >= WINDOW, "bound {}", copied.bound);
        // The window's rate is 2 MiB / 50 ms = 80 MiB in 2 s; the first bound's, 10 MiB.
        assert!(
            copied.handed > 60 << 20,
            "only {} MiB in 2 s",
            copied.handed >> 20
        );
    }

    /// A short round trip to a host that takes 20 MB/s (a busy `nix-daemon`): the host holds
    /// a few hundred KiB at most, not the window, and the copy still runs at the host's rate.
    /// (The bound is a little above the first: the answering time is measured from bytes
    /// handed a little earlier than those counted, so that it is never taken too short.)
    #[tokio::test(start_paused = true)]
    async fn a_slow_host_on_a_quick_link_holds_little_and_loses_nothing() {
        let copied = copy(Duration::from_micros(200), 20_000_000, 2).await;
        assert!(copied.bound <= 2 * HELD, "bound {}", copied.bound);
        assert!(copied.most <= copied.bound + CHUNK, "held {}", copied.most);
        assert!(copied.most < WINDOW / 4, "held {}", copied.most);
        // 40 MB in 2 s at the host's rate, less the first round trips.
        assert!(
            copied.handed > 38_000_000,
            "only {} bytes in 2 s",
            copied.handed
        );
    }
}
