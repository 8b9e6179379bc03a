// SPDX-License-Identifier: MPL-2.0

//! `session-sink tcp=true`: receivers connecting over TCP. The connection proves the
//! address, so the first frame is the JOIN. Each connection has a reader thread (its
//! frames go through the same protocol as datagrams) and a writer thread draining its
//! [`SendQueue`]: a receiver that stops reading loses its oldest packets, and nobody waits
//! for it.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout_session::message::{self, ParseError};
use fanout_session::Deframer;
use gst::glib;
use gst::prelude::*;

use super::shared::{Shared, TcpFrame, ToControl};
use super::CAT;
use crate::sendqueue::{send_queue, SendQueue};
use crate::udp_fanout::TargetStats;
use fanout_element_kit::log_weak;

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

/// One TCP receiver's connection. Its reader and writer threads hold it; the control thread
/// keeps it in its table and, once the receiver joined, in the streaming threads' snapshot.
pub(super) struct Conn {
    pub peer: SocketAddr,
    pub queue: SendQueue,
    /// The receiver's counters, kept across snapshots.
    pub stats: Arc<TargetStats>,
    stream: TcpStream,
    /// Set by the control thread when the receiver is in.
    pub joined: AtomicBool,
    closed: AtomicBool,
    opened: Instant,
    element: glib::WeakRef<gst::Element>,
}

impl Conn {
    /// Closes the connection once; the control thread then takes the receiver out.
    pub fn close(&self, shared: &Shared) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.queue.close() > TRIM_AFTER {
            // The queue's frames were freed; have the allocator hand the pages back too.
            // SAFETY: malloc_trim only walks the allocator's own free lists.
            unsafe { libc::malloc_trim(0) };
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        shared.tell(ToControl::Closed(self.peer));
    }
}

pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Takes every connection waiting on `listener` into `conns` (the control thread's table),
/// each with a reader and a writer thread.
pub(super) fn accept(
    element: &gst::Element,
    listener: &TcpListener,
    conns: &mut HashMap<SocketAddr, Arc<Conn>>,
    threads: &mut Vec<JoinHandle<()>>,
    shared: &Arc<Shared>,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                gst::debug!(CAT, obj = element, "accept: {e}");
                return;
            }
        };
        let unjoined: Vec<&Arc<Conn>> = conns
            .values()
            .filter(|c| !c.joined.load(Ordering::Relaxed))
            .collect();
        let from_host = unjoined.iter().filter(|c| c.peer.ip() == peer.ip()).count();
        if from_host >= MAX_UNJOINED_PER_HOST {
            gst::debug!(
                CAT,
                obj = element,
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
        if let Some(old) = oldest {
            gst::debug!(
                CAT,
                obj = element,
                "tcp:{}: closed for {peer}, too many connections not joined yet",
                old.peer
            );
            old.close(shared);
        }
        match start(element, shared, stream, peer) {
            Ok((conn, started)) => {
                threads.retain(|t| !t.is_finished());
                threads.extend(started);
                gst::debug!(CAT, obj = element, "TCP connection from {peer}");
                conns.insert(peer, conn);
            }
            Err(e) => gst::warning!(CAT, obj = element, "TCP connection from {peer}: {e}"),
        }
    }
}

fn start(
    element: &gst::Element,
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
) -> std::io::Result<(Arc<Conn>, [JoinHandle<()>; 2])> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TICK))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    // Packets wait in the queue, where the oldest go first, not in the kernel's buffer.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
    let conn = Arc::new(Conn {
        peer,
        queue: send_queue(shared.tcp_queue, shared.tcp_queue_bytes),
        stats: Arc::default(),
        stream: stream.try_clone()?,
        joined: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        opened: Instant::now(),
        element: element.downgrade(),
    });
    let reader = {
        let (shared, conn) = (shared.clone(), conn.clone());
        let stream = stream.try_clone()?;
        std::thread::Builder::new()
            .name("session-tcp-in".into())
            .spawn(move || read(shared, conn, stream))?
    };
    let writer = {
        let (shared, conn) = (shared.clone(), conn.clone());
        std::thread::Builder::new()
            .name("session-tcp-out".into())
            .spawn(move || write(shared, conn, stream))?
    };
    Ok((conn, [reader, writer]))
}

/// Frames from the receiver go to the control thread, which runs the protocol.
fn read(shared: Arc<Shared>, conn: Arc<Conn>, mut stream: TcpStream) {
    let mut frames = Deframer::control();
    let mut buf = [0u8; 4096];
    // Every connection is closed when the element stops.
    while !conn.queue.is_closed() {
        if !conn.joined.load(Ordering::Relaxed) && conn.opened.elapsed() > JOIN_WITHIN {
            log_weak!(
                debug,
                CAT,
                conn.element,
                "tcp:{}: no JOIN within {JOIN_WITHIN:?}",
                conn.peer
            );
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
                    log_weak!(
                        debug,
                        CAT,
                        conn.element,
                        "tcp:{}: bad frame ({e:?}): closed",
                        conn.peer
                    );
                    garbage = true;
                    break;
                }
            };
            // A stream cannot resynchronize after bytes of something else: close it.
            if matches!(
                message::parse(frame),
                Err(ParseError::Foreign | ParseError::Version(_))
            ) {
                log_weak!(
                    debug,
                    CAT,
                    conn.element,
                    "tcp:{}: not this protocol: closed",
                    conn.peer
                );
                garbage = true;
                break;
            }
            let frame = TcpFrame {
                from: conn.peer,
                data: frame.to_vec(),
            };
            if !shared.tcp_frame(frame) {
                return;
            }
        }
        if garbage {
            break;
        }
    }
    conn.close(&shared);
}

fn write(shared: Arc<Shared>, conn: Arc<Conn>, mut stream: TcpStream) {
    loop {
        let Some(frame) = conn.queue.pop(Duration::from_millis(100)) else {
            if conn.queue.is_closed() {
                break;
            }
            continue;
        };
        if let Err(e) = stream.write_all(frame.bytes()) {
            log_weak!(debug, CAT, conn.element, "tcp:{}: write: {e}", conn.peer);
            break;
        }
    }
    conn.close(&shared);
}
