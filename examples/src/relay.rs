// SPDX-License-Identifier: MPL-2.0

//! A lossy link for one receiver: a UDP relay between it and a server that drops a share of
//! the datagrams either way at random (this machine has no netem). The receiver joins the
//! relay's port as it would the server's.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

impl LossyRelay {
    /// Relays between 127.0.0.1:[`Self::port`] and `server`, losing `loss` (0 to 1) of the
    /// datagrams each way; `seed` picks which.
    pub fn start(server: SocketAddr, loss: f64, seed: u64) -> std::io::Result<LossyRelay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        back.connect(server)?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
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
                let mut rng = Rng(seed | 1);
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        if rng.chance(loss) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            })
        };
        let down = {
            let (stop, dropped, joined) = (stop.clone(), dropped.clone(), joined.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed.rotate_left(17) | 1);
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        let to = *client.lock().unwrap();
                        if rng.chance(loss) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(to) = to {
                            if buf[..n].starts_with(JOINED) {
                                joined.store(true, Ordering::Relaxed);
                            }
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
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
