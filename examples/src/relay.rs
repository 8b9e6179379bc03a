// SPDX-License-Identifier: MPL-2.0

//! A lossy link for one receiver: a UDP relay between it and a server that drops a share of
//! the datagrams either way at random, and can delay them (this machine has no netem). The
//! receiver joins the relay's port as it would the server's.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A session-protocol JOINED, as the server sends it (docs/session-protocol.md).
const JOINED: &[u8] = b"FS\x02\x04";

pub struct LossyRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    joined: Arc<AtomicBool>,
}

/// xorshift64: reproducible loss from a seed.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Datagrams held back until their time: the link's one-way delay.
struct Delayed {
    delay: Duration,
    queue: VecDeque<(Instant, Vec<u8>)>,
}

impl Delayed {
    /// How long the next read may wait: until the next datagram is due, at most 20 ms.
    fn wait(&self) -> Duration {
        let tick = Duration::from_millis(20);
        self.queue.front().map_or(tick, |(due, _)| {
            due.saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), tick)
        })
    }

    /// Sends what is due with `send`.
    fn release(&mut self, mut send: impl FnMut(&[u8])) {
        let now = Instant::now();
        while self.queue.front().is_some_and(|(due, _)| *due <= now) {
            let (_, d) = self.queue.pop_front().expect("front");
            send(&d);
        }
    }
}

/// One direction of the link: what it loses (0 to 1, at random from `seed`) and delays.
#[derive(Clone, Copy)]
struct Way {
    loss: f64,
    delay: Duration,
    seed: u64,
}

/// Reads `from` until `stop`, losing and delaying as `way` says, sending the rest with `send`.
fn forward(
    from: &UdpSocket,
    way: Way,
    stop: &AtomicBool,
    dropped: &AtomicU64,
    mut received: impl FnMut(SocketAddr, &[u8]),
    mut send: impl FnMut(&[u8]),
) {
    let mut rng = Rng(way.seed | 1);
    let mut buf = [0u8; 65536];
    let mut held = Delayed {
        delay: way.delay,
        queue: VecDeque::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let _ = from.set_read_timeout(Some(held.wait()));
        if let Ok((n, addr)) = from.recv_from(&mut buf) {
            received(addr, &buf[..n]);
            if rng.chance(way.loss) {
                dropped.fetch_add(1, Ordering::Relaxed);
            } else if held.delay.is_zero() {
                send(&buf[..n]);
            } else {
                held.queue
                    .push_back((Instant::now() + held.delay, buf[..n].to_vec()));
            }
        }
        held.release(&mut send);
    }
}

impl LossyRelay {
    /// Relays between 127.0.0.1:[`Self::port`] and `server`, losing `loss` (0 to 1) of the
    /// datagrams each way; `seed` picks which.
    pub fn start(server: SocketAddr, loss: f64, seed: u64) -> std::io::Result<LossyRelay> {
        LossyRelay::with_delay(server, loss, Duration::ZERO, seed)
    }

    /// As [`Self::start`], each datagram that goes through delayed by `one_way` (the round
    /// trip is twice that).
    pub fn with_delay(
        server: SocketAddr,
        loss: f64,
        one_way: Duration,
        seed: u64,
    ) -> std::io::Result<LossyRelay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        back.connect(server)?;
        for s in [&front, &back] {
            // A block arrives as a burst: room for it while this thread is off the CPU.
            let _ = socket2::SockRef::from(&**s).set_recv_buffer_size(4 << 20);
        }
        let port = front.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let joined = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = {
            let (front, back, stop, dropped, client) = (
                front.clone(),
                back.clone(),
                stop.clone(),
                dropped.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let received = |from, _: &[u8]| *client.lock().unwrap() = Some(from);
                let send = |d: &[u8]| {
                    let _ = back.send(d);
                };
                let way = Way {
                    loss,
                    delay: one_way,
                    seed,
                };
                forward(&front, way, &stop, &dropped, received, send);
            })
        };
        let down = {
            let (stop, dropped, joined) = (stop.clone(), dropped.clone(), joined.clone());
            std::thread::spawn(move || {
                let received = |_, _: &[u8]| ();
                let send = |d: &[u8]| {
                    if d.starts_with(JOINED) {
                        joined.store(true, Ordering::Relaxed);
                    }
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front.send_to(d, to);
                    }
                };
                let way = Way {
                    loss,
                    delay: one_way,
                    seed: seed.rotate_left(17),
                };
                forward(&back, way, &stop, &dropped, received, send);
            })
        };
        Ok(LossyRelay {
            port,
            stop,
            threads: vec![up, down],
            dropped,
            joined,
        })
    }

    /// The port a receiver joins (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Datagrams dropped so far, both ways.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether a JOINED went through to the receiver.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
