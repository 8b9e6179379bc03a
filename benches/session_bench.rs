//! session-sink's fan-out against stock `multiudpsink` with the same clients and against a
//! bare UDP GSO + `sendmmsg` loop without GStreamer, all in one run, by datagrams sent per
//! CPU-second of the process; then the repair path's wire bytes per delivered byte.
//!
//!     cargo build --release --workspace && target/release/session-bench [seconds [rounds]]
//!
//! Issue 17, sealed data: `session-bench seal [cpu-seconds [rounds]]` measures session-sink
//! authenticated (the default) and encrypted (`passphrase`) against itself with
//! `authenticate=false`, same harness, 1, 10 and 100 receivers; `session-bench srt
//! [stream-seconds [rounds]]` measures the CPU of a sender of a paced 6 Mbit/s stream,
//! session-sink with a passphrase against `srtsink` with one, the receivers in a child process
//! (this binary again: `session-bench receive …`). `session-bench receive-side [seconds
//! [rounds]]`: the receiving side, GRO on and off (`receive_part.rs`).

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_session::{Client, ClientConfig, Mono, Stay};
use gst::prelude::*;
use gst_app::AppSrc;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

mod cpu;
mod receive_part;

use cpu::Cpu;

pub(crate) const PAYLOAD: usize = 1316;
const LIST: usize = 100;
/// What session-sink adds to a packet by default (the sealed DATA header and the GCM tag),
/// which the bare loop sends too (same bytes on the wire).
const HEADER: usize = fanout_session::message::DATA_HEADER_LEN + fanout_session::seal::TAG_LEN;

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

/// The reference: per receiver, runs of 48 equal datagrams in one GSO send, 512 receivers'
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

/// Joins every socket to the server on `port` with the protocol's client, as a receiver of
/// `security` would.
fn join_all(socks: &[UdpSocket], port: u16, security: Security) {
    for (i, s) in socks.iter().enumerate() {
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Client::new(security.client(), Mono::ZERO, i as u64 + 1);
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
                c.handle_datagram(Mono::ZERO + start.elapsed(), &mut buf[..n]);
            }
            c.handle_timeout(Mono::ZERO + start.elapsed());
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

pub(crate) fn free_port() -> u16 {
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
        join_all(socks, port, Security::Authenticated);
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
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

/// The passphrase of every encrypting sender (session-sink and srtsink alike, 10 to 79 bytes).
const PASSPHRASE: &str = "fanout bench passphrase";

/// How session-sink protects its DATA (docs/session-protocol.md, "Sealed data").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Security {
    /// `authenticate=false`: the plain header, no tag.
    Plain,
    /// The default: GMAC over header and packet.
    Authenticated,
    /// `passphrase=… pbkeylen=16`: AES-128-GCM over the packet.
    Encrypted,
}

impl Security {
    const ALL: [Security; 3] = [
        Security::Plain,
        Security::Authenticated,
        Security::Encrypted,
    ];

    fn sink_properties(self) -> String {
        match self {
            Security::Plain => "authenticate=false".into(),
            Security::Authenticated => "authenticate=true".into(),
            Security::Encrypted => format!("passphrase=\"{PASSPHRASE}\" pbkeylen=16"),
        }
    }

    /// What a receiver of such a server sets.
    fn client(self) -> ClientConfig {
        ClientConfig {
            stay: Stay::For(3_600_000_000_000),
            passphrase: (self == Security::Encrypted).then(|| PASSPHRASE.to_string()),
            allow_unauthenticated: self == Security::Plain,
            ..ClientConfig::default()
        }
    }

    fn name(self) -> &'static str {
        match self {
            Security::Plain => "plain",
            Security::Authenticated => "auth",
            Security::Encrypted => "enc",
        }
    }

    fn parse(s: &str) -> Security {
        *Security::ALL
            .iter()
            .find(|m| m.name() == s)
            .expect("plain, auth or enc")
    }
}

/// One round of the sealing cost: session-sink (GSO) datagrams per CPU-second for each
/// security, in the order `Security::ALL` rotated by `first`, in `Security::ALL`'s order.
fn seal_round(socks: &[UdpSocket], seconds: f64, first: usize) -> [f64; 3] {
    let n = socks.len();
    let mut rates = [0.0; 3];
    for k in 0..3 {
        let i = (first + k) % 3;
        let security = Security::ALL[i];
        let port = free_port();
        let p = appsrc_into(&format!(
            "session-sink name=sink port={port} max-clients={n} max-clients-per-host=0 {}",
            security.sink_properties()
        ));
        drain(socks);
        join_all(socks, port, security);
        drain(socks);
        let clients = p
            .by_name("sink")
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u32>("clients")
            .unwrap();
        assert_eq!(clients as usize, n);
        rates[i] = through_gstreamer(&p, seconds, session_sink_datagrams);
    }
    rates
}

/// `median× (lowest–highest)` of `v`.
pub(crate) fn ratio_range(v: Vec<f64>) -> String {
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    format!("{:.2}× ({lo:.2}–{hi:.2})", median(v))
}

/// Issue 17, part 1: the sealing cost on session-sink's own fan-out harness.
fn sealing(seconds: f64, rounds: usize) {
    println!("Sealing cost, thousands of datagrams sent per CPU-second ({PAYLOAD}-byte payloads, lists of {LIST}, gso=true), median of {rounds} rounds (ratio range; goal ≥ 0.8×):\n");
    println!("| receivers | authenticate=false | authenticate=true | passphrase, pbkeylen=16 | authenticated / plain | encrypted / plain |");
    println!("|---|---|---|---|---|---|");
    for n in [1, 10, 100] {
        let socks = receivers(n);
        let results: Vec<[f64; 3]> = (0..rounds)
            .map(|r| seal_round(&socks, seconds, r % 3))
            .collect();
        let col = |i: usize| median(results.iter().map(|r| r[i]).collect());
        let ratio = |i: usize| ratio_range(results.iter().map(|r| r[i] / r[0]).collect());
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} | {} | {} |",
            col(0) / 1e3,
            col(1) / 1e3,
            col(2) / 1e3,
            ratio(1),
            ratio(2)
        );
    }
}

/// The paced stream of the SRT comparison: 6 Mbit/s of 1316-byte buffers (570 a second).
const PACED_BYTES_PER_SECOND: u64 = 750_000;

fn paced_source() -> String {
    format!(
        "fakesrc is-live=true sync=true sizetype=fixed sizemax={PAYLOAD} filltype=zero \
         datarate={PACED_BYTES_PER_SECOND}"
    )
}

/// Receivers in a child process (this binary, `receive …`): a line on its stdin asks for a
/// line of packets taken so far, one count per receiver.
struct Receivers {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Receivers {
    fn spawn(args: &[String]) -> Receivers {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("receive")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Receivers {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn counts(&mut self) -> Vec<u64> {
        writeln!(self.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect()
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// CPU-seconds of this process per second of stream while `sender` sends the paced stream to
/// the receivers `receive` makes (none: the source alone), after every receiver took data and
/// a second more; and the lowest and mean share of the stream's packets a receiver took.
fn paced(sender: &str, receive: Option<Vec<String>>, seconds: f64) -> (f64, f64, f64) {
    let p = gst::parse::launch(&format!("{} ! {sender}", paced_source()))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut receivers = receive.map(|a| Receivers::spawn(&a));
    if let Some(r) = &mut receivers {
        let start = Instant::now();
        while r.counts().contains(&0) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "receivers of {sender} got nothing"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = receivers.as_mut().map(|r| r.counts());
    let (cpu, wall) = (Cpu::now(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (cpu, wall) = (cpu.elapsed(), wall.elapsed().as_secs_f64());
    let after = receivers.as_mut().map(|r| r.counts());
    drop(receivers);
    p.set_state(gst::State::Null).unwrap();
    let (lowest, mean) = match (before, after) {
        (Some(b), Some(a)) => {
            let expected = PACED_BYTES_PER_SECOND as f64 / PAYLOAD as f64 * wall;
            let shares: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| (a - b) as f64 / expected)
                .collect();
            (
                shares.iter().cloned().fold(f64::MAX, f64::min),
                shares.iter().sum::<f64>() / shares.len() as f64,
            )
        }
        _ => (1.0, 1.0),
    };
    (cpu / wall, lowest, mean)
}

/// One sender of the SRT comparison: session-sink with `security`, or srtsink (`None`).
fn paced_sender(security: Option<Security>, n: usize, seconds: f64) -> (f64, f64, f64) {
    let port = free_port();
    match security {
        Some(security) => paced(
            &format!(
                "session-sink port={port} max-clients-per-host=0 wait-for-clients=0 {}",
                security.sink_properties()
            ),
            Some(vec![
                "fanout".into(),
                port.to_string(),
                n.to_string(),
                security.name().into(),
            ]),
            seconds,
        ),
        None => paced(
            &format!(
                "srtsink uri=srt://:{port} mode=listener passphrase=\"{PASSPHRASE}\" \
                 pbkeylen=16 latency=120 wait-for-connection=false sync=false"
            ),
            Some(vec!["srt".into(), port.to_string(), n.to_string()]),
            seconds,
        ),
    }
}

/// Issue 17, part 2: the sender's CPU for an encrypted stream, session-sink against srtsink
/// (and session-sink with `authenticate=false`, the sealing cost at a real bitrate).
fn against_srt(seconds: f64, rounds: usize) {
    let bitrate = PACED_BYTES_PER_SECOND * 8;
    let senders = [Some(Security::Encrypted), None, Some(Security::Plain)];
    let mut source = Vec::new();
    let mut rows = Vec::new();
    for n in [1usize, 10, 100] {
        let mut runs = Vec::new();
        for r in 0..rounds {
            if n == 1 {
                source.push(paced("fakesink sync=false", None, seconds).0);
            }
            // Rotate the order, so no sender always runs on a fresher machine.
            let mut run = [(0.0, 0.0, 0.0); 3];
            for k in 0..3 {
                let i = (r + k) % 3;
                run[i] = paced_sender(senders[i], n, seconds);
            }
            runs.push(run);
        }
        rows.push((n, runs));
    }
    let source = median(source);
    println!("Sender CPU for a {:.1} Mbit/s stream ({PAYLOAD}-byte buffers, {:.0} a second), CPU-seconds of the sending process per second of stream, median of {rounds} runs of {seconds} s (ratio range):\n", bitrate as f64 / 1e6, PACED_BYTES_PER_SECOND as f64 / PAYLOAD as f64);
    println!("Source alone (`fakesrc ! fakesink`): {source:.4}\n");
    println!("| receivers | session-sink passphrase | srtsink passphrase | session-sink authenticate=false | session-sink / srtsink (both encrypted) | net of the source | datagrams per CPU-second, session-sink encrypted / plain | datagrams per CPU-second, session-sink / srtsink | share of the stream taken, lowest receiver (mean of all): session-sink / srtsink |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, runs) in rows {
        let col = |i: usize| median(runs.iter().map(|r| r[i].0).collect());
        let ratio = |i: usize, j: usize, less: f64| {
            ratio_range(
                runs.iter()
                    .map(|r| (r[i].0 - less) / (r[j].0 - less))
                    .collect(),
            )
        };
        let lowest = |i: usize| runs.iter().map(|r| r[i].1).fold(f64::MAX, f64::min);
        let mean = |i: usize| median(runs.iter().map(|r| r[i].2).collect());
        let pps = PACED_BYTES_PER_SECOND as f64 / PAYLOAD as f64 * n as f64;
        println!(
            "| {n} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {:.0}k / {:.0}k | {:.3} ({:.3}) / {:.3} ({:.3}) |",
            col(0),
            col(1),
            col(2),
            ratio(0, 1, 0.0),
            ratio(0, 1, source),
            ratio(2, 0, 0.0),
            pps / col(0) / 1e3,
            pps / col(1) / 1e3,
            lowest(0),
            mean(0),
            lowest(1),
            mean(1),
        );
    }
}

/// The child's side of [`Receivers`]: `fanout PORT N SECURITY` (raw sockets, each with the
/// protocol's client, which checks every DATA datagram's seal and takes it once) or `srt PORT
/// N` (`srtsrc mode=caller` pipelines).
fn receive(args: &[String]) {
    let port: u16 = args[1].parse().unwrap();
    let n: usize = args[2].parse().unwrap();
    let taken: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let mut pipelines = Vec::new();
    match args[0].as_str() {
        "fanout" => {
            let security = Security::parse(&args[3]);
            let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            for i in 0..n {
                let taken = taken.clone();
                std::thread::spawn(move || {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let start = Instant::now();
                    let mut c = Client::new(security.client(), Mono::ZERO, i as u64 + 1);
                    let mut buf = [0u8; 2048];
                    loop {
                        while let Some(d) = c.poll_transmit() {
                            let _ = s.send_to(&d, server);
                        }
                        if let Ok((len, _)) = s.recv_from(&mut buf) {
                            let now = Mono::ZERO + start.elapsed();
                            if c.handle_datagram(now, &mut buf[..len]).is_some() {
                                taken[i].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        c.handle_timeout(Mono::ZERO + start.elapsed());
                    }
                });
            }
        }
        "srt" => {
            for i in 0..n {
                let p = gst::parse::launch(&format!(
                    "srtsrc uri=srt://127.0.0.1:{port} mode=caller passphrase=\"{PASSPHRASE}\" \
                     pbkeylen=16 latency=120 ! fakesink name=sink sync=false"
                ))
                .unwrap()
                .downcast::<gst::Pipeline>()
                .unwrap();
                let taken = taken.clone();
                p.by_name("sink")
                    .unwrap()
                    .static_pad("sink")
                    .unwrap()
                    .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                        if let Some(b) = info.buffer() {
                            // srtsrc gives one message a buffer; counted in 1316-byte packets.
                            taken[i].fetch_add(b.size() as u64, Ordering::Relaxed);
                        }
                        gst::PadProbeReturn::Ok
                    });
                p.set_state(gst::State::Playing).unwrap();
                pipelines.push(p);
            }
        }
        other => panic!("receive fanout|srt, not {other}"),
    }
    let bytes = args[0] == "srt";
    let mut out = std::io::stdout();
    for _ in std::io::stdin().lock().lines() {
        let counts: Vec<String> = taken
            .iter()
            .map(|t| {
                let t = t.load(Ordering::Relaxed);
                (if bytes { t / PAYLOAD as u64 } else { t }).to_string()
            })
            .collect();
        writeln!(out, "{}", counts.join(" ")).unwrap();
        out.flush().unwrap();
    }
    for p in pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    std::process::exit(0);
}

fn main() {
    gst::init().unwrap();
    gstfanoutfec::plugin_register_static().unwrap();
    gstfanoutsession::plugin_register_static().unwrap();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let part = match args.first().map(String::as_str) {
        Some("receive") => return receive(&args[1..]),
        Some("receive-gro") => return receive_part::child(&args[1..]),
        Some(p @ ("seal" | "srt" | "receive-side")) => {
            let p = p.to_string();
            args.remove(0);
            Some(p)
        }
        _ => None,
    };
    let seconds: f64 = args
        .first()
        .map_or(3.0, |s| s.parse().expect("seconds per measurement"));
    let rounds: usize = args.get(1).map_or(3, |s| s.parse().expect("rounds"));
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if let Some(part) = part {
        println!("Load average at the start: {}", load().trim());
        if part == "seal" {
            sealing(seconds, rounds)
        } else if part == "receive-side" {
            receive_part::run(seconds, rounds)
        } else {
            against_srt(seconds, rounds)
        }
        println!("\nLoad average at the end: {}", load().trim());
        return;
    }
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
