//! session-sink's fan-out against stock `multiudpsink` with the same clients and against a
//! bare UDP GSO + `sendmmsg` loop without GStreamer, all in one run, by datagrams sent per
//! CPU-second of the process; then the repair path's wire bytes per delivered byte.
//!
//!     cargo build --release --workspace && target/release/session-bench [seconds [rounds]]

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_session::{Client, ClientConfig, Stay};
use gst::prelude::*;
use gst_app::AppSrc;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

mod cpu;

use cpu::Cpu;

const PAYLOAD: usize = 1316;
const LIST: usize = 100;
/// session-sink's channel header, which the bare loop sends too (same bytes on the wire).
const HEADER: usize = 8;

fn receivers(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            s
        })
        .collect()
}

/// Empties every receiver's socket, so each measurement starts from the same state (and a
/// join's answers are not dropped behind old packets).
fn drain(socks: &[UdpSocket]) {
    let mut buf = [0u8; 2048];
    for s in socks {
        s.set_nonblocking(true).unwrap();
        while s.recv(&mut buf).is_ok() {}
        s.set_nonblocking(false).unwrap();
    }
}

fn packets() -> Vec<Vec<u8>> {
    (0..LIST).map(|i| vec![i as u8; PAYLOAD]).collect()
}

/// The reference: per receiver, runs of 49 equal datagrams in one GSO send, 512 receivers'
/// messages per `sendmmsg`, iovecs over the same packet memory.
fn bare_loop(socks: &[UdpSocket], seconds: f64) -> f64 {
    drain(socks);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let header = [0u8; HEADER];
    let packets = packets();
    let addrs: Vec<Option<SockaddrStorage>> = socks
        .iter()
        .map(|s| Some(SockaddrStorage::from(s.local_addr().unwrap())))
        .collect();
    let per_send = 65_507 / (HEADER + PAYLOAD);
    let segment = (HEADER + PAYLOAD) as u16;
    let runs: Vec<Vec<IoSlice>> = packets
        .chunks(per_send)
        .map(|run| {
            run.iter()
                .flat_map(|p| [IoSlice::new(&header), IoSlice::new(p)])
                .collect()
        })
        .collect();
    let cpu = Cpu::now();
    let mut sent = 0u64;
    while cpu.elapsed() < seconds {
        for iov in &runs {
            for chunk in addrs.chunks(512) {
                let mut headers: MultiHeaders<SockaddrStorage> =
                    MultiHeaders::preallocate(chunk.len(), Some(nix::cmsg_space!(u16)));
                let cmsgs = [ControlMessage::UdpGsoSegments(&segment)];
                let n = sendmmsg(
                    tx.as_raw_fd(),
                    &mut headers,
                    std::iter::repeat_n(iov, chunk.len()),
                    chunk,
                    cmsgs,
                    MsgFlags::empty(),
                )
                .map(|r| r.count())
                .unwrap_or(0);
                sent += (n * iov.len() / 2) as u64;
            }
        }
    }
    sent as f64 / cpu.elapsed()
}

/// Pushes lists of `LIST` packets into `appsrc ! <sink>` for `seconds` of CPU; returns
/// datagrams per CPU-second, the count taken from `count(lists pushed, sink)`.
fn through_gstreamer(
    pipeline: &gst::Pipeline,
    seconds: f64,
    count: impl Fn(u64, &gst::Element) -> u64,
) -> f64 {
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<AppSrc>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let mut list = gst::BufferList::new_sized(LIST);
    for p in packets() {
        list.get_mut().unwrap().add(gst::Buffer::from_mut_slice(p));
    }
    let cpu = Cpu::now();
    let mut lists = 0u64;
    while cpu.elapsed() < seconds {
        src.push_buffer_list(list.clone()).unwrap();
        lists += 1;
    }
    src.end_of_stream().unwrap();
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos])
        .expect("EOS");
    let rate = count(lists, &sink) as f64 / cpu.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    rate
}

fn appsrc_into(sink: &str) -> gst::Pipeline {
    let p = gst::parse::launch(&format!(
        "appsrc name=src is-live=false block=true max-bytes=2000000 ! {sink}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    p
}

/// Joins every socket to the server on `port` with the protocol's client.
fn join_all(socks: &[UdpSocket], port: u16) {
    for (i, s) in socks.iter().enumerate() {
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cfg = ClientConfig {
            stay: Stay::For(3_600_000_000_000),
            ..ClientConfig::default()
        };
        let mut c = Client::new(cfg, 0, i as u64 + 1);
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while !c.is_joined() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "receiver {i} did not join"
            );
            while let Some(d) = c.poll_transmit() {
                s.send_to(&d, server).unwrap();
            }
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                c.handle_datagram(start.elapsed().as_nanos() as u64, &mut buf[..n]);
            }
            c.handle_timeout(start.elapsed().as_nanos() as u64);
        }
    }
}

fn session_sink_datagrams(_lists: u64, sink: &gst::Element) -> u64 {
    let stats = sink.property::<gst::Structure>("stats");
    let errors: u64 = stats
        .get::<gst::Array>("receivers")
        .unwrap()
        .iter()
        .map(|r| {
            r.get::<gst::Structure>()
                .unwrap()
                .get::<u64>("send-errors")
                .unwrap()
        })
        .sum();
    if errors > 0 {
        eprintln!("session-sink: {errors} failed sends");
    }
    let channels = stats.get::<gst::Array>("channels").unwrap();
    channels
        .iter()
        .map(|c| {
            c.get::<gst::Structure>()
                .unwrap()
                .get::<u64>("datagrams")
                .unwrap()
        })
        .sum()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One round: datagrams per CPU-second for session-sink (GSO, then plain), multiudpsink and
/// the bare loop, each starting from drained receivers.
fn round(socks: &[UdpSocket], seconds: f64) -> [f64; 4] {
    let n = socks.len();
    let bare = bare_loop(socks, seconds);
    let mut session = [0.0; 2];
    for (i, gso) in [true, false].into_iter().enumerate() {
        let port = free_port();
        let p = appsrc_into(&format!(
            "session-sink name=sink port={port} gso={gso} max-clients={n} max-clients-per-host=0"
        ));
        drain(socks);
        join_all(socks, port);
        drain(socks);
        let clients = p
            .by_name("sink")
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u32>("clients")
            .unwrap();
        assert_eq!(clients as usize, n);
        session[i] = through_gstreamer(&p, seconds, session_sink_datagrams);
    }
    let clients: Vec<String> = socks
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let p = appsrc_into(&format!(
        "multiudpsink name=sink sync=false async=false clients={}",
        clients.join(",")
    ));
    drain(socks);
    let multi = through_gstreamer(&p, seconds, |lists, _| lists * LIST as u64 * n as u64);
    [session[0], session[1], multi, bare]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The median of `rounds` rounds, and the range of the two ratios.
fn fan_out(n: usize, seconds: f64, rounds: usize) {
    let socks = receivers(n);
    let results: Vec<[f64; 4]> = (0..rounds).map(|_| round(&socks, seconds)).collect();
    let col = |i: usize| median(results.iter().map(|r| r[i]).collect());
    let ratios = |d: usize| {
        let v: Vec<f64> = results.iter().map(|r| r[0] / r[d]).collect();
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        format!("{:.2}× ({lo:.2}–{hi:.2})", median(v.clone()))
    };
    println!(
        "| {n} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
        col(0) / 1e3,
        col(1) / 1e3,
        col(2) / 1e3,
        col(3) / 1e3,
        ratios(2),
        ratios(3)
    );
}

/// Forwards one receiver's datagrams to the server and back, losing `loss` of them either
/// way; counts the bytes the server sent this receiver.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    wire: Arc<AtomicU64>,
    joined: Arc<AtomicBool>,
}

impl Relay {
    fn start(server: u16, loss: f64) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        back.connect(("127.0.0.1", server)).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            // As session-src's own socket: a block arrives as one burst.
            nix::sys::socket::setsockopt(&**s, nix::sys::socket::sockopt::RcvBuf, &(4 << 20))
                .unwrap();
        }
        let r = Relay {
            port: front.local_addr().unwrap().port(),
            stop: Arc::default(),
            wire: Arc::default(),
            joined: Arc::default(),
        };
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (f, b, stop, c) = (front.clone(), back.clone(), r.stop.clone(), client.clone());
        std::thread::spawn(move || {
            let mut x = 0x9e37_79b9_u64;
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = f.recv_from(&mut buf) {
                    *c.lock().unwrap() = Some(from);
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if (x >> 11) as f64 / (1u64 << 53) as f64 >= loss {
                        let _ = b.send(&buf[..n]);
                    }
                }
            }
        });
        let (stop, wire, joined) = (r.stop.clone(), r.wire.clone(), r.joined.clone());
        std::thread::spawn(move || {
            let mut x = 0x1234_5678_u64;
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = back.recv(&mut buf) {
                    wire.fetch_add(n as u64, Ordering::Relaxed);
                    if buf[..n].starts_with(b"FS\x02\x04") {
                        joined.store(true, Ordering::Relaxed);
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let to = *client.lock().unwrap();
                    if let (true, Some(to)) = ((x >> 11) as f64 / (1u64 << 53) as f64 >= loss, to) {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            }
        });
        r
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// 10 % loss both ways: wire bytes the server sent per byte the receiver rebuilt, and blocks
/// lost, for one sender configuration and whether the receiver asks for repairs.
fn repair_path(repair_percent: u32, ask: bool) -> (f64, u64, u64) {
    let port = free_port();
    let server = gst::parse::launch(&format!(
        "appsrc name=src is-live=false block=true max-bytes=200000 \
         ! fec-payloader name=pay repair-percent={repair_percent} repair-linger=500000000 \
         ! session-sink port={port}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    server.set_state(gst::State::Playing).unwrap();
    let relay = Relay::start(port, 0.1);
    let delay = if ask { 40_000_000 } else { 0 };
    let receiver = gst::parse::launch(&format!(
        "session-src port={} ! fec-depayloader name=depay repair-delay={delay} \
         ! appsink name=out sync=false emit-signals=false",
        relay.port
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    receiver.set_state(gst::State::Playing).unwrap();
    let appsink = receiver
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let d = delivered.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                d.fetch_add(
                    sample.buffer().map_or(0, |b| b.size()) as u64,
                    Ordering::Relaxed,
                );
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    while !relay.joined.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let src = server.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
    let input = 3000u64;
    for i in 0..input {
        src.push_buffer(gst::Buffer::from_mut_slice(vec![i as u8; PAYLOAD]))
            .unwrap();
        std::thread::sleep(Duration::from_micros(400));
    }
    src.end_of_stream().unwrap();
    for p in [&server, &receiver] {
        p.bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos])
            .expect("EOS");
    }
    let lost = receiver
        .by_name("depay")
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("blocks-lost")
        .unwrap();
    let blocks = server
        .by_name("pay")
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("blocks")
        .unwrap();
    for p in [&server, &receiver] {
        p.set_state(gst::State::Null).unwrap();
    }
    let delivered = delivered.load(Ordering::Relaxed);
    let ratio = relay.wire.load(Ordering::Relaxed) as f64 / delivered.max(1) as f64;
    (ratio, lost, blocks)
}

fn main() {
    gst::init().unwrap();
    gstfanoutfec::plugin_register_static().unwrap();
    gstfanoutsession::plugin_register_static().unwrap();
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(3.0, |s| s.parse().expect("seconds of CPU per measurement"));
    let rounds: usize = std::env::args()
        .nth(2)
        .map_or(3, |s| s.parse().expect("rounds"));

    println!("Fan-out, thousands of datagrams sent per CPU-second ({PAYLOAD}-byte payloads, lists of {LIST}), median of {rounds} rounds (ratio range):\n");
    println!("| receivers | session-sink | session-sink gso=false | multiudpsink | bare GSO loop | session-sink / multiudpsink | session-sink / bare loop |");
    println!("|---|---|---|---|---|---|---|");
    for n in [200, 1000] {
        fan_out(n, seconds, rounds);
    }

    println!("\nRepair path, 10 % loss both ways, one receiver, 3000 × {PAYLOAD} bytes:\n");
    println!("| sender | receiver asks | wire bytes per delivered byte | blocks lost |");
    println!("|---|---|---|---|");
    for (percent, ask) in [(5, true), (25, false), (5, false)] {
        let (ratio, lost, blocks) = repair_path(percent, ask);
        println!(
            "| repair-percent={percent} | {} | {ratio:.3} | {lost} of {blocks} |",
            if ask {
                "yes (LOST)"
            } else {
                "no (repair-delay=0)"
            }
        );
    }
}
