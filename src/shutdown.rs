//! Ctrl-C, owned by `main`: the one listener of the run's interrupts, and the one place that ends
//! a run early. Ending it means dropping the command's future inside the runtime, so every
//! destructor of the run runs (temporary files, the relay's directory, connections), where
//! `process::exit` would have skipped them all.
//!
//! A command that can stop gently (`apply`: start nothing new, let running activations finish)
//! says so with [`Shutdown::on_first_interrupt`]; then the first Ctrl-C only asks it to stop and
//! the second ends the run. Without that, the first Ctrl-C ends the run, as SIGINT would.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::UnboundedReceiver;

/// What one stop of a command does; called at most once.
type Stop = Box<dyn FnOnce() + Send>;

/// The run's Ctrl-C state, shared by `main`, which listens, and the command, which may ask for a
/// gentler first interrupt. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Shutdown(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Interrupts received so far.
    interrupts: u32,
    /// What the first interrupt does instead of ending the run, and the line it prints.
    gentle: Option<(Stop, &'static str)>,
}

/// What an interrupt does to the run.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The command was asked to stop and goes on until it has.
    Stopping,
    /// The run ends now.
    End,
}

impl Shutdown {
    /// From now on, the first Ctrl-C calls `stop` and prints `notice` instead of ending the run;
    /// a second one ends it.
    pub(crate) fn on_first_interrupt(
        &self,
        notice: &'static str,
        stop: impl FnOnce() + Send + 'static,
    ) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.interrupts == 0 {
            state.gentle = Some((Box::new(stop), notice));
        }
    }

    /// Whether Ctrl-C was pressed during the run.
    pub(crate) fn interrupted(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .interrupts
            > 0
    }

    /// Takes one interrupt in, printing through `say` what it does.
    fn interrupt(&self, say: &mut impl FnMut(&str)) -> Verdict {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.interrupts += 1;
        if state.interrupts == 1 {
            if let Some((stop, notice)) = state.gentle.take() {
                drop(state);
                stop();
                say(notice);
                return Verdict::Stopping;
            }
            return Verdict::End;
        }
        say("interrupted again: exiting now");
        Verdict::End
    }

    /// Runs `work` to its end, unless the interrupts arriving on `interrupts` end the run first:
    /// then `None`, and `work` has been dropped, with everything it owned.
    pub(crate) async fn supervise<T>(
        &self,
        work: impl Future<Output = T>,
        mut interrupts: UnboundedReceiver<()>,
        mut say: impl FnMut(&str),
    ) -> Option<T> {
        let mut work = std::pin::pin!(work);
        let mut listening = true;
        loop {
            tokio::select! {
                done = &mut work => return Some(done),
                interrupt = interrupts.recv(), if listening => match interrupt {
                    Some(()) => {
                        if self.interrupt(&mut say) == Verdict::End {
                            return None;
                        }
                    }
                    // No more interrupts can come: the work alone decides.
                    None => listening = false,
                },
            }
        }
    }
}

/// The process's SIGINTs, one `()` each, from now on. Listening replaces SIGINT's default (to
/// die at once) for the rest of the process, so only [`Shutdown::supervise`] ends the run.
pub(crate) fn interrupts() -> std::io::Result<UnboundedReceiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while sigint.recv().await.is_some() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Sets its flag when dropped: stands for a temporary file the run removes on drop.
    struct Guard(Arc<AtomicBool>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Work that owns a guard and runs until `finish` is sent, then returns 7.
    fn work(
        dropped: &Arc<AtomicBool>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        impl Future<Output = u8> + use<>,
    ) {
        let guard = Guard(Arc::clone(dropped));
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        (finish, async move {
            let _guard = guard;
            let _ = finished.await;
            7
        })
    }

    fn said() -> (Arc<Mutex<Vec<String>>>, impl FnMut(&str)) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        (lines, move |line: &str| {
            sink.lock().expect("lock").push(line.to_owned());
        })
    }

    #[tokio::test]
    async fn without_a_gentle_stop_the_first_interrupt_ends_the_run_and_drops_its_work() {
        let shutdown = Shutdown::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (_finish, work) = work(&dropped);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(()).expect("send");
        let (lines, say) = said();
        assert_eq!(shutdown.supervise(work, rx, say).await, None);
        assert!(dropped.load(Ordering::SeqCst), "the run's destructors ran");
        assert!(shutdown.interrupted());
        assert!(lines.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_gentle_stop_lets_the_work_finish_after_one_interrupt() {
        let shutdown = Shutdown::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (finish, work) = work(&dropped);
        // The command's stop: here it lets the work end, as a cancelled deployment ends.
        let finish = Mutex::new(Some(finish));
        shutdown.on_first_interrupt("stopping", move || {
            if let Some(finish) = finish.lock().expect("lock").take() {
                let _ = finish.send(());
            }
        });
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(()).expect("send");
        let (lines, say) = said();
        assert_eq!(shutdown.supervise(work, rx, say).await, Some(7));
        assert!(shutdown.interrupted());
        assert_eq!(*lines.lock().expect("lock"), ["stopping"]);
    }

    #[tokio::test]
    async fn a_second_interrupt_ends_a_stopping_run_and_drops_its_work() {
        let shutdown = Shutdown::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (_finish, work) = work(&dropped);
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopped);
        shutdown.on_first_interrupt("stopping", move || flag.store(true, Ordering::SeqCst));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(()).expect("send");
        tx.send(()).expect("send");
        let (lines, say) = said();
        assert_eq!(shutdown.supervise(work, rx, say).await, None);
        assert!(stopped.load(Ordering::SeqCst));
        assert!(dropped.load(Ordering::SeqCst), "the run's destructors ran");
        assert_eq!(
            *lines.lock().expect("lock"),
            ["stopping", "interrupted again: exiting now"]
        );
    }

    #[tokio::test]
    async fn without_interrupts_the_work_decides() {
        let shutdown = Shutdown::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let (finish, work) = work(&dropped);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        drop(tx);
        let (_, say) = said();
        let finisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = finish.send(());
        });
        assert_eq!(shutdown.supervise(work, rx, say).await, Some(7));
        assert!(!shutdown.interrupted());
        finisher.await.expect("finisher");
    }
}
