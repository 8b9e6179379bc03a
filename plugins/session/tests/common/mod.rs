// SPDX-License-Identifier: MPL-2.0
#![allow(dead_code)]

//! Pipelines of the elements in this process, and a bare protocol client over a socket.

pub mod netns;

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_session::{Client, ClientConfig, Mono, Stay};
use gst::prelude::*;

pub const SECOND: Duration = Duration::from_secs(1);

pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstfanoutfec::plugin_register_static().unwrap();
        gstfanoutsession::plugin_register_static().unwrap();
    });
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn pipeline(desc: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// A live FEC stream (about 170 packets a second) into `session-sink name=sink`.
pub fn server(port: u16, sink_opts: &str, pay_opts: &str) -> gst::Pipeline {
    let p = pipeline(&format!(
        "videotestsrc is-live=true pattern=snow ! video/x-raw,format=I420,width=64,height=48,framerate=50/1 \
         ! fec-payloader {pay_opts} ! session-sink name=sink port={port} {sink_opts}"
    ));
    p.set_state(gst::State::Playing).unwrap();
    p
}

pub fn sink(p: &gst::Pipeline) -> gst::Element {
    p.by_name("sink").unwrap()
}

/// Collects the signals `client-added` and `client-removed` as "added ADDR" and
/// "removed ADDR REASON".
pub fn record_signals(sink: &gst::Element) -> Arc<Mutex<Vec<String>>> {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    sink.connect("client-added", false, move |args| {
        let addr = args[1].get::<String>().unwrap();
        l.lock().unwrap().push(format!("added {addr}"));
        None
    });
    let l = log.clone();
    sink.connect("client-removed", false, move |args| {
        let addr = args[1].get::<String>().unwrap();
        let reason = args[2].get::<String>().unwrap();
        l.lock().unwrap().push(format!("removed {addr} {reason}"));
        None
    });
    log
}

/// Waits up to `timeout` for `f` to hold.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The first error or warning on the bus within `timeout`, as text.
pub fn bus_message(p: &gst::Pipeline, kind: gst::MessageType, timeout: Duration) -> Option<String> {
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[kind],
    )?;
    Some(match msg.view() {
        gst::MessageView::Error(e) => format!("{} {:?}", e.error(), e.debug()),
        gst::MessageView::Warning(w) => format!("{} {:?}", w.error(), w.debug()),
        _ => format!("{msg:?}"),
    })
}

pub fn stats(e: &gst::Element) -> gst::Structure {
    e.property::<gst::Structure>("stats")
}

/// The protocol's client over a plain socket: a receiver the test controls byte by byte.
pub struct RawClient {
    pub sock: UdpSocket,
    pub client: Client,
    start: Instant,
}

impl RawClient {
    pub fn new(port: u16, cfg: ClientConfig) -> RawClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for a repair burst while a loaded machine keeps this thread from reading.
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(4 << 20);
        sock.connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let seed = u64::from(sock.local_addr().unwrap().port());
        RawClient {
            sock,
            client: Client::new(cfg, Mono::ZERO, seed),
            start: Instant::now(),
        }
    }

    /// Joins every channel for `stay`, or panics.
    pub fn join(port: u16, stay: Stay) -> RawClient {
        let mut c = RawClient::new(
            port,
            ClientConfig {
                stay,
                ..ClientConfig::default()
            },
        );
        let start = Instant::now();
        while !c.client.is_joined() {
            assert!(start.elapsed() < 10 * SECOND, "did not join");
            c.pump(Duration::from_millis(20));
        }
        c
    }

    pub fn now(&self) -> Mono {
        Mono::ZERO + self.start.elapsed()
    }

    pub fn flush(&mut self) {
        while let Some(d) = self.client.poll_transmit() {
            let _ = self.sock.send(&d);
        }
    }

    /// Runs the client for `dur`; returns the DATA payloads that came.
    pub fn pump(&mut self, dur: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let start = Instant::now();
        let mut buf = [0u8; 65536];
        while start.elapsed() < dur {
            self.flush();
            if let Ok(n) = self.sock.recv(&mut buf) {
                let now = self.now();
                if let Some(d) = self.client.handle_datagram(now, &mut buf[..n]) {
                    out.push(d.payload.to_vec());
                }
            }
            let now = self.now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
        }
        self.flush();
        out
    }
}

/// A clock the test drives, given to `p` and to every element in it before it starts, so
/// the elements' timers start on it too. It stands still until the test advances it.
pub fn drive(p: &gst::Pipeline) -> gst_check::TestClock {
    let clock = gst_check::TestClock::new();
    p.use_clock(Some(&clock));
    p.set_clock(Some(&clock)).unwrap();
    clock
}

/// Returns once the session-sink on `port` has taken a whole turn that began after this
/// call (on the time its clock shows now): it answers each HELLO with a COOKIE, one per
/// turn, so the second answer comes after the first turn's timers, events and signals.
pub fn settled(port: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut hello = Client::new(ClientConfig::default(), Mono::ZERO, 7);
    let hello = hello.poll_transmit().unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..2 {
        sock.send(&hello).unwrap();
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < 10 * SECOND, "session-sink took no turn");
            if sock.recv(&mut buf).is_ok() {
                break;
            }
        }
    }
}
