// SPDX-License-Identifier: MPL-2.0

//! A thread that goes round until it is told to stop, and is waited for: the elements'
//! control, session and group threads. Each turn blocks for a short while at most (a socket
//! timeout), so a stop is seen within a turn.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Whether the thread was told to stop: a long turn looks, and cuts itself short.
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a [`Worker`] runs.
pub trait Turns: Send + 'static {
    /// One turn; `Break` ends the thread (its element is gone, its input closed).
    fn turn(&mut self, stop: &Stop) -> ControlFlow<()>;

    /// After the last turn, on the thread.
    fn end(&mut self) {}
}

/// A running thread of [`Turns`]; stopped and waited for when dropped.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(name: &str, mut turns: impl Turns) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Stop(stop.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !flag.is_set() {
                    if turns.turn(&flag).is_break() {
                        break;
                    }
                }
                turns.end();
            })?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop after its turn, without waiting.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the thread and waits for it.
    pub fn join(mut self) {
        self.stop_and_wait();
    }

    fn stop_and_wait(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_and_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    struct Count {
        turns: Arc<Mutex<(u32, bool)>>,
        until: u32,
    }

    impl Turns for Count {
        fn turn(&mut self, _: &Stop) -> ControlFlow<()> {
            let mut t = self.turns.lock().unwrap();
            t.0 += 1;
            std::thread::sleep(Duration::from_millis(1));
            if t.0 == self.until {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }

        fn end(&mut self) {
            self.turns.lock().unwrap().1 = true;
        }
    }

    #[test]
    fn turns_until_stopped_or_done_then_ends_once() {
        let turns = Arc::new(Mutex::new((0, false)));
        let w = Worker::spawn(
            "test",
            Count {
                turns: turns.clone(),
                until: 3,
            },
        )
        .unwrap();
        // Not stopped: it ends by itself.
        let start = std::time::Instant::now();
        while !turns.lock().unwrap().1 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            *turns.lock().unwrap(),
            (3, true),
            "done after its third turn"
        );
        w.join();
        let turns = Arc::new(Mutex::new((0, false)));
        let w = Worker::spawn(
            "test",
            Count {
                turns: turns.clone(),
                until: u32::MAX,
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(w);
        let (n, ended) = *turns.lock().unwrap();
        assert!(n > 0 && ended);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(turns.lock().unwrap().0, n, "no turn after the drop");
    }
}
