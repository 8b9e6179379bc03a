// SPDX-License-Identifier: MPL-2.0

//! `session-sink tcp=true`: receivers connecting over TCP. The connection proves the
//! address, so the first frame is the JOIN. Each connection has a reader thread (its
//! frames go through the same protocol as datagrams) and a writer thread draining its
//! [`SendQueue`]: a receiver that stops reading loses its oldest packets, and nobody waits
//! for it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_session::message::{self, ParseError};
use fanout_session::{Deframer, Peer};
use gst::glib;

use super::control;
use super::imp::{Running, CAT};
use crate::fanout::{Target, TargetStats};
use crate::sendqueue::SendQueue;

/// A connection that has not joined within this long is closed.
const JOIN_WITHIN: Duration = Duration::from_secs(10);
/// Connections not joined yet, at most (each holds two threads); when full, the oldest one
/// is closed for the newcomer, so idle connections cannot lock honest receivers out.
pub const MAX_UNJOINED: usize = 64;
/// Connections not joined yet from one IP address, at most: a receiver joins at once.
pub const MAX_UNJOINED_PER_HOST: usize = 8;
/// A write blocked this long (the receiver's window stayed shut): the connection is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TICK: Duration = Duration::from_millis(50);
const SEND_BUFFER: usize = 256 << 10;
/// A closing connection that still held this much queued makes the allocator give memory
/// back to the system.
const TRIM_AFTER: usize = 256 << 10;

pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub queue: SendQueue,
    pub target: Arc<Target>,
    stream: TcpStream,
    pub joined: AtomicBool,
    closed: AtomicBool,
    opened: Instant,
}

impl Conn {
    /// Closes the connection once; the control thread then takes the receiver out.
    pub fn close(&self, r: &Running) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.queue.close() > TRIM_AFTER {
            // The queue's frames were freed; have the allocator hand the pages back too.
            // SAFETY: malloc_trim only walks the allocator's own free lists.
            unsafe { libc::malloc_trim(0) };
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        r.tcp_closed.lock().unwrap().push(self.peer);
    }
}

pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Takes every connection waiting on the listener (called by the control thread).
pub(super) fn accept(weak: &glib::WeakRef<super::SessionSink>, r: &Arc<Running>) {
    let Some(listener) = &r.listener else { return };
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                gst::debug!(CAT, "accept: {e}");
                return;
            }
        };
        let conns = r.conns.lock().unwrap();
        let unjoined: Vec<&Arc<Conn>> = conns
            .values()
            .filter(|c| !c.joined.load(Ordering::Relaxed))
            .collect();
        let from_host = unjoined.iter().filter(|c| c.peer.ip() == peer.ip()).count();
        if from_host >= MAX_UNJOINED_PER_HOST {
            gst::debug!(
                CAT,
                "TCP connection from {peer} closed: {from_host} from that host not joined yet"
            );
            continue;
        }
        let oldest = (unjoined.len() >= MAX_UNJOINED)
            .then(|| {
                unjoined
                    .iter()
                    .min_by_key(|c| c.opened)
                    .map(|c| (*c).clone())
            })
            .flatten();
        drop(conns);
        if let Some(old) = oldest {
            gst::debug!(
                CAT,
                "tcp:{}: closed for {peer}, too many connections not joined yet",
                old.peer
            );
            old.close(r);
        }
        if let Err(e) = start(weak, r, stream, peer) {
            gst::warning!(CAT, "TCP connection from {peer}: {e}");
        }
    }
}

fn start(
    weak: &glib::WeakRef<super::SessionSink>,
    r: &Arc<Running>,
    stream: TcpStream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TICK))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    // Packets wait in the queue, where the oldest go first, not in the kernel's buffer.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
    let conn = Arc::new(Conn {
        peer,
        queue: SendQueue::new(r.tcp_queue, r.tcp_queue_bytes),
        target: Arc::new(Target {
            id: 0,
            addr: peer,
            stats: Arc::new(TargetStats::default()),
        }),
        stream: stream.try_clone()?,
        joined: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        opened: Instant::now(),
    });
    let reader = {
        let (weak, r, conn) = (weak.clone(), r.clone(), conn.clone());
        let stream = stream.try_clone()?;
        std::thread::Builder::new()
            .name("session-tcp-in".into())
            .spawn(move || read(weak, r, conn, stream))?
    };
    let writer = {
        let (r, conn) = (r.clone(), conn.clone());
        std::thread::Builder::new()
            .name("session-tcp-out".into())
            .spawn(move || write(r, conn, stream))?
    };
    let mut threads = r.tcp_threads.lock().unwrap();
    threads.retain(|t| !t.is_finished());
    threads.extend([reader, writer]);
    drop(threads);
    gst::debug!(CAT, "TCP connection from {peer}");
    r.conns.lock().unwrap().insert(peer, conn);
    Ok(())
}

fn read(
    weak: glib::WeakRef<super::SessionSink>,
    r: Arc<Running>,
    conn: Arc<Conn>,
    mut stream: TcpStream,
) {
    let opened = Instant::now();
    let mut frames = Deframer::control();
    let mut buf = [0u8; 4096];
    while !r.stop.load(Ordering::SeqCst) && !conn.queue.is_closed() {
        if !conn.joined.load(Ordering::Relaxed) && opened.elapsed() > JOIN_WITHIN {
            gst::debug!(CAT, "tcp:{}: no JOIN within {JOIN_WITHIN:?}", conn.peer);
            break;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        frames.push(&buf[..n]);
        let mut garbage = false;
        while let Some(frame) = frames.next_frame() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    gst::debug!(CAT, "tcp:{}: bad frame ({e:?}): closed", conn.peer);
                    garbage = true;
                    break;
                }
            };
            // A stream cannot resynchronize after bytes of something else: close it.
            if matches!(
                message::parse(frame),
                Err(ParseError::Foreign | ParseError::Version(_))
            ) {
                gst::debug!(CAT, "tcp:{}: not this protocol: closed", conn.peer);
                garbage = true;
                break;
            }
            let Some(sink) = weak.upgrade() else { return };
            control::take_message(&sink, &r, Peer::Tcp(conn.peer), frame);
            let joined = r.server.lock().unwrap().has(Peer::Tcp(conn.peer));
            conn.joined.store(joined, Ordering::Relaxed);
        }
        if garbage {
            break;
        }
    }
    conn.close(&r);
}

fn write(r: Arc<Running>, conn: Arc<Conn>, mut stream: TcpStream) {
    while !r.stop.load(Ordering::SeqCst) {
        let Some(frame) = conn.queue.pop(Duration::from_millis(100)) else {
            if conn.queue.is_closed() {
                break;
            }
            continue;
        };
        if let Err(e) = stream.write_all(&frame) {
            gst::debug!(CAT, "tcp:{}: write: {e}", conn.peer);
            break;
        }
    }
    conn.close(&r);
}
