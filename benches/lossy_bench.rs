//! One live 5.8 Mbit/s stream from one sender to 1, 4 or 16 receivers over lossy links, four
//! contenders side by side in the same run:
//!
//! - fanout: `fec-payloader ! session-sink gso=false` / `session-src ! fec-depayloader`;
//! - SRT: `srtsink` listener with one caller per receiver, latency 500 ms;
//! - RIST: `rtpmp2tpay ! ristsink` (bonding, broadcast to every receiver) / `ristsrc
//!   receiver-buffer=500 ! rtpmp2tdepay`;
//! - SMPTE 2022-1: `rtpmp2tpay ! rtpst2022-1-fecenc columns=10 rows=10 ! multiudpsink` (FEC on
//!   port + 2 and + 4) / `udpsrc`s `! rtpst2022-1-fecdec ! rtpjitterbuffer latency=500 !
//!   rtpmp2tdepay`.
//!
//! Root only. The sender and every receiver are this binary again (`lossy-bench send …`,
//! `lossy-bench receive …`) under `ip netns exec`: one namespace for the sender, one per
//! receiver, a veth pair between the sender's and each receiver's; nftables drops a random
//! share of the packets on each receiver's veth, both ways. A round-trip time comes from a
//! relay thread of this process in the sender's namespace holding every datagram RTT/2 each
//! way. Every buffer carries its sequence number and send time (CLOCK_MONOTONIC, which all
//! namespaces share), so each receiver counts what it got and when.
//!
//!     cargo build --release --workspace && target/release/lossy-bench --help

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_app::{AppSink, AppSrc};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{setsockopt, sockopt};

/// Seven 188-byte TS packets, as TS over UDP goes.
const PAYLOAD: usize = 1316;
const TS: usize = 188;
const PER_BUFFER: usize = PAYLOAD / TS;
const BITRATE: f64 = 5.8e6;
/// Buffers a second.
const RATE: f64 = BITRATE / 8.0 / PAYLOAD as f64;
const TS_PID: u16 = 0x100;
/// Seconds from the first buffer to the measured window: every receiver joins in it.
const WARMUP: f64 = 4.0;
/// Seconds after the window (plus the RTT) the receivers keep taking late buffers.
const TAIL: f64 = 1.5;
/// Where the relay listens: the port a protocol uses plus this.
const RELAY_OFFSET: u16 = 10;
const APPSRC: &str = "appsrc name=src is-live=true format=time do-timestamp=true \
    caps=\"video/mpegts,systemstream=(boolean)true,packetsize=(int)188\"";
const APPSINK: &str = "appsink name=out sync=false";
const MP2T_CAPS: &str =
    "application/x-rtp,media=(string)video,clock-rate=(int)90000,encoding-name=(string)MP2T,payload=(int)33";
const FEC_CAPS: &str =
    "application/x-rtp,media=(string)application,clock-rate=(int)90000,payload=(int)96";

fn mono_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let t = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on the clock mono_ns reads; the struct outlives the call.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &t,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

// ---------------------------------------------------------------------------------------------
// The payload: every TS packet says which buffer (sequence number, index) it belongs to and
// when that buffer was sent; the rest is a pattern derived from them, so every byte is checked.

fn pattern(seq: u64, index: usize, j: usize) -> u8 {
    (seq as usize).wrapping_mul(31).wrapping_add(index * 7 + j) as u8
}

fn fill(seq: u64, sent: u64) -> Vec<u8> {
    let mut out = vec![0u8; PAYLOAD];
    for (i, p) in out.chunks_exact_mut(TS).enumerate() {
        p[0] = 0x47;
        p[1..3].copy_from_slice(&TS_PID.to_be_bytes());
        p[3] = 0x10 | ((seq as usize * PER_BUFFER + i) & 0xf) as u8;
        p[4..12].copy_from_slice(&seq.to_le_bytes());
        p[12] = i as u8;
        p[13..21].copy_from_slice(&sent.to_le_bytes());
        for (j, b) in p[21..].iter_mut().enumerate() {
            *b = pattern(seq, i, j);
        }
    }
    out
}

/// (sequence number, index in its buffer, send time) of an intact packet.
fn check(p: &[u8]) -> Option<(u64, usize, u64)> {
    if p.len() != TS {
        return None;
    }
    let seq = u64::from_le_bytes(p[4..12].try_into().unwrap());
    let index = p[12] as usize;
    let sent = u64::from_le_bytes(p[13..21].try_into().unwrap());
    let ok = p[0] == 0x47
        && p[1..3] == TS_PID.to_be_bytes()
        && p[3] == 0x10 | ((seq as usize).wrapping_mul(PER_BUFFER).wrapping_add(index) & 0xf) as u8
        && index < PER_BUFFER
        && p[21..]
            .iter()
            .enumerate()
            .all(|(j, &b)| b == pattern(seq, index, j));
    ok.then_some((seq, index, sent))
}

// ---------------------------------------------------------------------------------------------
// The children.

/// Prints the pipeline's errors and warnings on stderr, labelled, until `stop` is set: the
/// others leaving then is no news.
fn watch_bus(pipeline: &gst::Pipeline, label: String, stop: Arc<AtomicBool>) {
    let bus = pipeline.bus().unwrap();
    std::thread::spawn(move || {
        for msg in bus.iter_timed(gst::ClockTime::NONE) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match msg.view() {
                gst::MessageView::Error(e) => eprintln!("{label}: error: {}", e.error()),
                gst::MessageView::Warning(w) => eprintln!("{label}: warning: {}", w.error()),
                _ => {}
            }
        }
    });
}

fn launch(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Sets `stop` once stdin reaches its end: the parent closes it to stop a child, and a child
/// whose parent died stops too.
fn stop_on_stdin_end() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// `send PIPELINE`: pushes the paced stream into the pipeline's `appsrc name=src`; prints
/// `start NS`, the send time of buffer 0 (buffer k goes at NS + k / RATE).
fn send(pipeline: &str) {
    let p = launch(pipeline);
    let stop = stop_on_stdin_end();
    watch_bus(&p, "sender".into(), stop.clone());
    let src = p.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
    p.set_state(gst::State::Playing).expect("sender PLAYING");
    let start = mono_ns();
    println!("start {start}");
    std::io::stdout().flush().unwrap();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        sleep_until(start + (seq as f64 * 1e9 / RATE) as u64);
        let buffer = gst::Buffer::from_mut_slice(fill(seq, mono_ns()));
        if src.push_buffer(buffer).is_err() {
            break;
        }
        seq += 1;
    }
    if std::env::var_os("FANOUT_BENCH_VERBOSE").is_some() {
        for e in p.iterate_elements().into_iter().flatten() {
            if e.find_property("stats").is_some() {
                eprintln!("{}: {}", e.name(), e.property::<gst::Structure>("stats"));
            }
        }
    }
    // No teardown: the receivers have reported already.
    exit_now();
}

/// What one receiver took of buffers `w0..w1`.
struct Tally {
    w0: u64,
    /// Per buffer, a bit per intact packet taken.
    parts: Vec<u8>,
    /// Per buffer, µs from send to the arrival of its last packet.
    latency: Vec<Option<u32>>,
    bad: u64,
}

impl Tally {
    fn take(&mut self, data: &[u8]) {
        let now = mono_ns();
        for p in data.chunks(TS) {
            let Some((seq, index, sent)) = check(p) else {
                self.bad += 1;
                continue;
            };
            let Some(k) = seq.checked_sub(self.w0).map(|k| k as usize) else {
                continue;
            };
            if k >= self.parts.len() {
                continue;
            }
            self.parts[k] |= 1 << index;
            if self.parts[k] == (1 << PER_BUFFER) - 1 && self.latency[k].is_none() {
                self.latency[k] = Some((now.saturating_sub(sent) / 1000) as u32);
            }
        }
    }

    /// `got=N bad=N lat=µs,… miss=first:length,…`, buffers of the window only.
    fn report(&self) -> String {
        let got = self.latency.iter().flatten().count();
        let lat: Vec<String> = self.latency.iter().flatten().map(u32::to_string).collect();
        let mut miss = Vec::new();
        let mut run: Option<(usize, usize)> = None;
        for (k, l) in self.latency.iter().enumerate() {
            match (l, &mut run) {
                (None, Some((_, len))) => *len += 1,
                (None, None) => run = Some((k, 1)),
                (Some(_), Some((first, len))) => {
                    miss.push(format!("{}:{len}", self.w0 + *first as u64));
                    run = None;
                }
                (Some(_), None) => {}
            }
        }
        if let Some((first, len)) = run {
            miss.push(format!("{}:{len}", self.w0 + first as u64));
        }
        format!(
            "got={got} bad={} lat={} miss={}",
            self.bad,
            lat.join(","),
            miss.join(",")
        )
    }
}

/// `receive W0 W1 LABEL PIPELINE`: counts what reaches the pipeline's `appsink name=out` until
/// stdin ends, then prints one line (`Tally::report`).
fn receive(w0: u64, w1: u64, label: &str, pipeline: &str) {
    let p = launch(pipeline);
    let stop = stop_on_stdin_end();
    watch_bus(&p, label.into(), stop.clone());
    let n = (w1 - w0) as usize;
    let tally = Arc::new(Mutex::new(Tally {
        w0,
        parts: vec![0; n],
        latency: vec![None; n],
        bad: 0,
    }));
    let t = tally.clone();
    let sink = p.by_name("out").unwrap().downcast::<AppSink>().unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    t.lock().unwrap().take(&map);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing).expect("receiver PLAYING");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{}", tally.lock().unwrap().report());
    std::io::stdout().flush().unwrap();
    // No teardown: some elements take seconds to leave a dead connection.
    exit_now();
}

/// Exits without running C++ static destructors (libsrt's) under threads still using them,
/// which can crash the process on its way out.
fn exit_now() -> ! {
    // SAFETY: _exit(2) ends the process; what it skips (atexit handlers) is unneeded here.
    unsafe { libc::_exit(0) }
}

/// A child: this binary again in a network namespace, stopped by closing its stdin.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(plugins: &Path, netns: &str, args: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(std::env::current_exe().unwrap())
            .args(args)
            .env("GST_PLUGIN_PATH", plugins)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Proc {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// `ip netns exec` execs the command: this is the sender's or receiver's own pid.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// Closes stdin, takes the last line and reaps the child (killed if it hangs).
    fn stop(mut self) -> String {
        self.stdin = None;
        let line = self.line();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        line
    }
}

// ---------------------------------------------------------------------------------------------
// The network.

fn run_ok(cmd: &mut Command) {
    let ok = cmd.status().is_ok_and(|s| s.success());
    assert!(ok, "failed: {cmd:?}");
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

fn enter(netns: &str) {
    let f = File::open(format!("/var/run/netns/{netns}")).unwrap();
    setns(f, CloneFlags::CLONE_NEWNET).unwrap();
}

/// Deletes every namespace whose name starts with `prefix`.
fn remove_namespaces(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn namespace_prefix() -> String {
    format!("lb-{}-", std::process::id())
}

/// The sender's namespace and one per receiver, receiver i behind veth `lbr<i+1>` (sender's
/// side 10.213.<i+1>.1, receiver's side `eth0`, .2); every namespace is deleted on drop.
struct Net {
    sender: String,
    receivers: Vec<String>,
}

impl Net {
    fn new(n: usize, ethtool: bool) -> Net {
        let prefix = namespace_prefix();
        let net = Net {
            sender: format!("{prefix}s"),
            receivers: (1..=n).map(|i| format!("{prefix}r{i}")).collect(),
        };
        let s = net.sender.as_str();
        ip(&["netns", "add", s]);
        ip(&["-n", s, "link", "set", "lo", "up"]);
        for (i, r) in net.receivers.iter().enumerate() {
            let veth = format!("lbr{}", i + 1);
            ip(&["netns", "add", r]);
            ip(&[
                "link", "add", &veth, "netns", s, "type", "veth", "peer", "name", "eth0", "netns",
                r,
            ]);
            for (ns, dev, addr) in [
                (s, veth.as_str(), Net::sender_ip(i)),
                (r, "eth0", Net::receiver_ip(i)),
            ] {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
                if ethtool {
                    // Every datagram its own packet on the wire, so loss hits each alone.
                    run_ok(
                        Command::new("ip")
                            .args(["netns", "exec", ns, "ethtool", "-K", dev])
                            .args([
                                "gro",
                                "off",
                                "gso",
                                "off",
                                "tso",
                                "off",
                                "tx-udp-segmentation",
                                "off",
                            ]),
                    );
                }
            }
            ip(&["-n", r, "link", "set", "lo", "up"]);
        }
        net
    }

    fn sender_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, i as u8 + 1, 1)
    }

    fn receiver_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, i as u8 + 1, 2)
    }

    /// Every receiver's veth drops `percent` % of the IP packets that arrive and of those it
    /// sends, each independently. At the device (netdev hooks), as a link loses them: a drop
    /// in the IP output path would fail the sender's `sendto` with EPERM.
    fn set_loss(&self, percent: f64) {
        let per_mille = (percent * 10.0).round() as u32;
        let mut rules = String::from("flush ruleset\n");
        if per_mille > 0 {
            let drop = format!("meta protocol ip numgen random mod 1000 < {per_mille} drop");
            rules += &format!(
                "table netdev lossy {{\n\
                 chain in {{ type filter hook ingress device \"eth0\" priority 0; {drop}; }}\n\
                 chain out {{ type filter hook egress device \"eth0\" priority 0; {drop}; }}\n\
                 }}\n"
            );
        }
        for r in &self.receivers {
            let mut nft = Command::new("ip")
                .args(["netns", "exec", r, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            nft.stdin
                .take()
                .unwrap()
                .write_all(rules.as_bytes())
                .unwrap();
            assert!(nft.wait().unwrap().success(), "nft in {r}");
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        remove_namespaces(&namespace_prefix());
    }
}

/// One relayed UDP path: datagrams arriving on the sender's side (`inner`) go out of the
/// receiver's side (`outer`) to its peer and back, each held for the relay's delay. A side's
/// peer is the last address a datagram came from there (at first the one given, if any).
struct FlowSpec {
    inner: SocketAddrV4,
    inner_peer: Option<SocketAddrV4>,
    outer: SocketAddrV4,
    outer_peer: Option<SocketAddrV4>,
}

struct Flow {
    sockets: [UdpSocket; 2],
    peers: [Option<SocketAddr>; 2],
    /// Datagrams that arrived on side s, to leave from the other side at the given time.
    held: [VecDeque<(Instant, Vec<u8>)>; 2],
}

impl Flow {
    fn bind(spec: &FlowSpec) -> Flow {
        let sockets = [spec.inner, spec.outer].map(|a| {
            let s = UdpSocket::bind(a).unwrap_or_else(|e| panic!("relay bind {a}: {e}"));
            s.set_nonblocking(true).unwrap();
            // Root: past rmem_max, so a burst is held, not dropped, by the relay.
            setsockopt(&s, sockopt::RcvBufForce, &(4 << 20)).unwrap();
            setsockopt(&s, sockopt::SndBufForce, &(4 << 20)).unwrap();
            s
        });
        Flow {
            sockets,
            peers: [spec.inner_peer, spec.outer_peer].map(|p| p.map(SocketAddr::V4)),
            held: Default::default(),
        }
    }
}

/// A thread in the sender's namespace relaying every flow with a delay of RTT/2 each way.
struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(netns: String, specs: Vec<FlowSpec>, hold: Duration) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&netns);
            let flows: Vec<Flow> = specs.iter().map(Flow::bind).collect();
            ready.send(()).unwrap();
            relay(flows, hold, &s);
        });
        started.recv().expect("relay did not start");
        Relay {
            stop,
            thread: Some(thread),
        }
    }
}

fn relay(mut flows: Vec<Flow>, hold: Duration, stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = flows
        .iter()
        .flat_map(|f| &f.sockets)
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut next = now + Duration::from_millis(50);
        for f in &mut flows {
            for side in 0..2 {
                while let Some((due, _)) = f.held[side].front() {
                    if *due > now {
                        next = next.min(*due);
                        break;
                    }
                    let (_, d) = f.held[side].pop_front().unwrap();
                    if let Some(to) = f.peers[1 - side] {
                        let _ = f.sockets[1 - side].send_to(&d, to);
                    }
                }
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` and `ts` outlive the call; ppoll(2) only writes `revents`.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, &ts, std::ptr::null()) };
        let now = Instant::now();
        for (k, pfd) in fds.iter_mut().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            let (f, side) = (&mut flows[k / 2], k % 2);
            while let Ok((n, from)) = f.sockets[side].recv_from(&mut buf) {
                f.peers[side] = Some(from);
                f.held[side].push_back((now + hold, buf[..n].to_vec()));
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The contenders.

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Fanout,
    Srt,
    Rist,
    St2022,
}

impl Contender {
    fn parse(s: &str) -> Contender {
        match s {
            "fanout" => Contender::Fanout,
            "srt" => Contender::Srt,
            "rist" => Contender::Rist,
            "2022-1" => Contender::St2022,
            _ => usage(&format!("unknown contender {s}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Contender::Fanout => "fanout",
            Contender::Srt => "SRT",
            Contender::Rist => "RIST",
            Contender::St2022 => "2022-1",
        }
    }

    /// The ports the sender sends to at each receiver (push), or the one the receivers join
    /// it on (pull: fanout, SRT).
    fn ports(self, port: u16) -> Vec<u16> {
        match self {
            Contender::Fanout | Contender::Srt => vec![port],
            Contender::Rist => vec![port, port + 1],
            Contender::St2022 => vec![port, port + 2, port + 4],
        }
    }

    fn pull(self) -> bool {
        matches!(self, Contender::Fanout | Contender::Srt)
    }

    /// The relay's flows for `n` receivers. Pull: receiver i joins the relay on the sender's
    /// side of its veth, port + RELAY_OFFSET, which forwards from 127.0.1.<i+1> (one address
    /// per receiver, as without it) to the sender on port. Push: the sender sends to
    /// 127.0.2.<i+1>, port + RELAY_OFFSET, forwarded to the receiver on port.
    fn flows(self, n: usize, port: u16) -> Vec<FlowSpec> {
        let mut flows = Vec::new();
        for i in 0..n {
            for p in self.ports(port) {
                let relay = p + RELAY_OFFSET;
                flows.push(if self.pull() {
                    FlowSpec {
                        inner: SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, i as u8 + 1), 0),
                        inner_peer: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p)),
                        outer: SocketAddrV4::new(Net::sender_ip(i), relay),
                        outer_peer: None,
                    }
                } else {
                    FlowSpec {
                        inner: SocketAddrV4::new(Ipv4Addr::new(127, 0, 2, i as u8 + 1), relay),
                        inner_peer: None,
                        outer: SocketAddrV4::new(Net::sender_ip(i), 0),
                        outer_peer: Some(SocketAddrV4::new(Net::receiver_ip(i), p)),
                    }
                });
            }
        }
        flows
    }

    fn sender(self, opts: &Opts, n: usize, port: u16, relayed: bool) -> String {
        // Where the sender sends receiver i's datagrams for `p`.
        let dests = |p: u16| -> String {
            (0..n)
                .map(|i| match relayed {
                    true => format!("127.0.2.{}:{}", i + 1, p + RELAY_OFFSET),
                    false => format!("{}:{p}", Net::receiver_ip(i)),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let udp = |p: u16| format!("multiudpsink clients={} sync=false async=false", dests(p));
        match self {
            Contender::Fanout => format!(
                "{APPSRC} ! fec-payloader {} ! session-sink port={port} {}",
                opts.pay, opts.sink
            ),
            Contender::Srt => format!(
                "{APPSRC} ! srtsink uri=\"srt://:{port}?mode=listener\" latency=500 \
                 wait-for-connection=false sync=false"
            ),
            Contender::Rist => format!(
                "{APPSRC} ! rtpmp2tpay ! ristsink bonding-addresses=\"{}\" bonding-method=broadcast",
                dests(port)
            ),
            // rtpst2022-1-fecenc takes SSRC 0 only.
            Contender::St2022 => format!(
                "{APPSRC} ! rtpmp2tpay ssrc=0 ! rtpst2022-1-fecenc name=enc columns=10 rows=10 ! {} \
                 enc.fec_0 ! {} enc.fec_1 ! {}",
                udp(port),
                udp(port + 2),
                udp(port + 4)
            ),
        }
    }

    fn receiver(self, opts: &Opts, i: usize, port: u16, relayed: bool) -> String {
        let host = Net::sender_ip(i);
        let join = if relayed { port + RELAY_OFFSET } else { port };
        let udpsrc =
            |p: u16, caps: &str| format!("udpsrc port={p} buffer-size=4194304 caps=\"{caps}\"");
        match self {
            Contender::Fanout => format!(
                "session-src host={host} port={join} ! fec-depayloader {} ! {APPSINK}",
                opts.depay
            ),
            Contender::Srt => {
                format!("srtsrc uri=\"srt://{host}:{join}?mode=caller\" latency=500 ! {APPSINK}")
            }
            Contender::Rist => format!(
                "ristsrc address=0.0.0.0 port={port} receiver-buffer=500 ! rtpmp2tdepay ! {APPSINK}"
            ),
            Contender::St2022 => format!(
                "{} ! rtpst2022-1-fecdec name=dec ! rtpjitterbuffer latency=500 ! rtpmp2tdepay \
                 ! {APPSINK} {} ! dec.fec_0 {} ! dec.fec_1",
                udpsrc(port, MP2T_CAPS),
                udpsrc(port + 2, FEC_CAPS),
                udpsrc(port + 4, FEC_CAPS)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// User + system CPU seconds of process `pid`, every thread.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are 12th, 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf(3) has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Bytes received and sent by the veths of process `pid`'s namespace. /proc/PID/net/dev has
/// the counters of /sys/class/net/*/statistics as that namespace sees them.
fn wire_bytes(pid: u32) -> u64 {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    dev.lines()
        .filter_map(|l| l.trim_start().strip_prefix("lbr"))
        .map(|l| {
            let f: Vec<u64> = l
                .split_once(':')
                .unwrap()
                .1
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            f[0] + f[8]
        })
        .sum()
}

/// UDP datagrams dropped for a full socket buffer in process `pid`'s namespace.
fn socket_drops(pid: u32) -> u64 {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).unwrap();
    let udp: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let column = udp[0].iter().position(|&h| h == "RcvbufErrors").unwrap();
    udp[1][column].parse().unwrap()
}

/// The counters at one moment.
struct Sample {
    at: u64,
    cpu: f64,
    wire: u64,
    drops: u64,
}

impl Sample {
    fn take(sender: &Proc, receivers: &[Proc]) -> Sample {
        Sample {
            at: mono_ns(),
            cpu: process_cpu(sender.pid()),
            wire: wire_bytes(sender.pid()),
            drops: std::iter::once(sender)
                .chain(receivers)
                .map(|p| socket_drops(p.pid()))
                .sum(),
        }
    }
}

/// One contender's run.
struct Run {
    /// Share of the window's buffers each receiver took.
    shares: Vec<f64>,
    wire_per_byte: f64,
    cpu: f64,
    /// µs, every buffer every receiver took.
    latency: Vec<u32>,
    /// Runs of lost buffers at least one fanout block long, all receivers.
    gaps: usize,
    drops: u64,
    bad: u64,
}

/// A run's parameters.
struct Setup<'a> {
    opts: &'a Opts,
    net: &'a Net,
    receivers: usize,
    rtt_ms: f64,
    port: u16,
    /// A run of lost buffers at least this long spans a whole fanout block.
    long_gap: u64,
}

fn window(seconds: f64) -> (u64, u64) {
    (
        (WARMUP * RATE).ceil() as u64,
        ((WARMUP + seconds) * RATE) as u64,
    )
}

/// Starts the sender (`pipeline`) and the receivers, samples the window and stops them all.
fn measure(
    setup: &Setup,
    pipeline: &str,
    receivers: &[String],
) -> (f64, Sample, Sample, Vec<String>) {
    let seconds = setup.opts.seconds;
    let (w0, w1) = window(seconds);
    let plugins = &setup.opts.plugins;
    let mut sender = Proc::spawn(plugins, &setup.net.sender, &["send", pipeline]);
    let start: u64 = sender
        .line()
        .strip_prefix("start ")
        .unwrap_or_else(|| panic!("sender did not start: {pipeline}"))
        .trim()
        .parse()
        .unwrap();
    let (w0s, w1s) = (w0.to_string(), w1.to_string());
    let mut procs: Vec<Proc> = receivers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let label = format!("receiver {}", i + 1);
            Proc::spawn(
                plugins,
                &setup.net.receivers[i],
                &["receive", &w0s, &w1s, &label, r],
            )
        })
        .collect();
    let at = |s: f64| start + (s * 1e9) as u64;
    sleep_until(at(WARMUP));
    let a = Sample::take(&sender, &procs);
    sleep_until(at(WARMUP + seconds));
    let b = Sample::take(&sender, &procs);
    sleep_until(at(WARMUP + seconds + TAIL + setup.rtt_ms / 1e3));
    // Every child told at once: none sees the others leave and reports it as an error.
    for p in std::iter::once(&mut sender).chain(&mut procs) {
        p.stdin = None;
    }
    let reports = procs.into_iter().map(Proc::stop).collect();
    sender.stop();
    let cpu = (b.cpu - a.cpu) / ((b.at - a.at) as f64 / 1e9);
    (cpu, a, b, reports)
}

fn run(setup: &Setup, c: Contender) -> Run {
    let n = setup.receivers;
    let relayed = setup.rtt_ms > 0.0;
    let _relay = relayed.then(|| {
        Relay::start(
            setup.net.sender.clone(),
            c.flows(n, setup.port),
            Duration::from_secs_f64(setup.rtt_ms / 2e3),
        )
    });
    let receivers: Vec<String> = (0..n)
        .map(|i| c.receiver(setup.opts, i, setup.port, relayed))
        .collect();
    let sender = c.sender(setup.opts, n, setup.port, relayed);
    let (cpu, a, b, reports) = measure(setup, &sender, &receivers);
    let (w0, w1) = window(setup.opts.seconds);
    let mut r = Run {
        shares: Vec::new(),
        wire_per_byte: 0.0,
        cpu,
        latency: Vec::new(),
        gaps: 0,
        drops: b.drops - a.drops,
        bad: 0,
    };
    let mut delivered = 0u64;
    for (i, line) in reports.iter().enumerate() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .unwrap_or_else(|| panic!("{} receiver {}: no report", c.name(), i + 1))
        };
        let got: u64 = field("got=").parse().unwrap();
        delivered += got;
        r.shares.push(got as f64 / (w1 - w0) as f64);
        r.bad += field("bad=").parse::<u64>().unwrap();
        r.latency.extend(
            field("lat=")
                .split(',')
                .filter_map(|v| v.parse::<u32>().ok()),
        );
        r.gaps += field("miss=")
            .split(',')
            .filter_map(|m| m.split_once(':'))
            .filter(|(_, len)| len.parse::<u64>().unwrap() >= setup.long_gap)
            .count();
    }
    r.wire_per_byte = (b.wire - a.wire) as f64 / (delivered * PAYLOAD as u64).max(1) as f64;
    r
}

/// CPU-seconds a second of the sender with no network at all: `appsrc ! fakesink`.
fn source_alone(setup: &Setup) -> f64 {
    measure(setup, &format!("{APPSRC} ! fakesink sync=false"), &[]).0
}

// ---------------------------------------------------------------------------------------------
// The command line and the report.

struct Opts {
    seconds: f64,
    repeats: usize,
    receivers: Vec<usize>,
    loss: Vec<f64>,
    rtt: Vec<f64>,
    contenders: Vec<Contender>,
    pay: String,
    sink: String,
    depay: String,
    plugins: PathBuf,
}

const USAGE: &str = "lossy-bench [--seconds S] [--repeats R] [--receivers 1,4,16] [--loss 0,2,10] \
[--rtt 0,50,200] [--contenders fanout,srt,rist,2022-1] [--fanout-pay PROPS] [--fanout-sink PROPS] \
[--fanout-depay PROPS]

  --seconds     measured seconds per run (default 6; each run takes about 7 s more)
  --repeats     runs per contender and cell, the contenders' order rotated (default 3)
  --receivers   receiver counts, up to 250 (default 4,16)
  --loss        % of the packets each receiver's link drops, each way (default 2,10)
  --rtt         round-trip times in ms (0: the bare veth, about 0.1 ms) (default 50)
  --contenders  default fanout,srt,rist,2022-1
  --fanout-pay  fec-payloader properties (default \"repair-percent=5 max-block-time=200000000\")
  --fanout-sink session-sink properties (default \"gso=false\": nftables then drops single packets)
  --fanout-depay fec-depayloader properties (default \"latency=300000000\")

Root only; after cargo build --release --workspace (the plugins are taken from next to this binary).";

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\n\n{USAGE}");
    std::process::exit(2)
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| usage(&format!("bad value {v}")))
        })
        .collect()
}

fn parse_args(args: &[String], plugins: PathBuf) -> Opts {
    let mut o = Opts {
        seconds: 6.0,
        repeats: 3,
        receivers: vec![4, 16],
        loss: vec![2.0, 10.0],
        rtt: vec![50.0],
        contenders: vec![
            Contender::Fanout,
            Contender::Srt,
            Contender::Rist,
            Contender::St2022,
        ],
        pay: "repair-percent=5 max-block-time=200000000".into(),
        sink: "gso=false".into(),
        depay: "latency=300000000".into(),
        plugins,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--seconds" => o.seconds = list(value)[0],
            "--repeats" => o.repeats = list(value)[0],
            "--receivers" => o.receivers = list(value),
            "--loss" => o.loss = list(value),
            "--rtt" => o.rtt = list(value),
            "--contenders" => o.contenders = value.split(',').map(Contender::parse).collect(),
            "--fanout-pay" => o.pay = value.clone(),
            "--fanout-sink" => o.sink = value.clone(),
            "--fanout-depay" => o.depay = value.clone(),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if o.receivers.iter().any(|&n| n == 0 || n > 250) || o.repeats == 0 || o.seconds <= 0.0 {
        usage("receivers 1 to 250, repeats and seconds above 0");
    }
    o
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p).round() as usize] as f64 / 1e3)
}

/// Buffers in one fanout block with the payloader's settings: K symbols of T bytes, or
/// max-block-time of stream if that closes it sooner.
fn fanout_block(pay: &str, plugins: &Path) -> f64 {
    gst::init().unwrap();
    gst::Registry::get().scan_path(plugins);
    let e = gst::parse::launch(&format!("fec-payloader {pay}"))
        .unwrap_or_else(|e| usage(&format!("fec-payloader {pay}: {e}")));
    let bytes = f64::from(e.property::<u32>("max-block-symbols"))
        * f64::from(e.property::<u32>("symbol-size"));
    let by_size = bytes / PAYLOAD as f64;
    match e.property::<u64>("max-block-time") {
        0 => by_size,
        t => by_size.min(t as f64 / 1e9 * RATE),
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread but one, which removes the namespaces
/// and exits when one comes. (Children start with an empty signal mask.)
fn clean_up_on_signals() {
    // SAFETY: plain signal-set calls on a set of our own, before any other thread exists.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            remove_namespaces(&namespace_prefix());
            eprintln!("lossy-bench: signal {sig}, namespaces removed");
            std::process::exit(128 + sig);
        });
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("send") => {
            gst::init().unwrap();
            return send(&args[2]);
        }
        Some("receive") => {
            gst::init().unwrap();
            return receive(
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                &args[4],
                &args[5],
            );
        }
        _ => {}
    }
    let plugins = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let opts = parse_args(&args[1..], plugins.clone());
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        usage("lossy-bench makes network namespaces: run it as root");
    }
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut stale = Vec::new();
    for lib in ["libgstfanoutfec.so", "libgstfanoutsession.so"] {
        if !plugins.join(lib).exists() {
            usage(&format!(
                "no {lib} next to this binary: cargo build --release --workspace first"
            ));
        }
        // A build of this package alone refreshes the plugins in deps/ only.
        if modified(plugins.join("deps").join(lib)) > modified(plugins.join(lib)) {
            stale.push(lib);
        }
    }
    let block = fanout_block(&opts.pay, &plugins);
    // A lost block takes its buffers and those it shares with a neighbour: at least this many.
    let long_gap = block.floor() as u64;
    let ethtool = Command::new("ethtool")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    clean_up_on_signals();
    let started = Instant::now();
    let net = Net::new(*opts.receivers.iter().max().unwrap(), ethtool);

    println!("Command: `{}`\n", args.join(" "));
    println!("Load average at the start: {}\n", load());
    if !stale.is_empty() {
        println!(
            "**Warning:** {} in {} older than the last build of the plugins (in deps/): \
             `cargo build --release --workspace` to measure the current code.\n",
            stale.join(", "),
            plugins.display()
        );
    }
    println!(
        "One live {:.1} Mbit/s stream of {PAYLOAD}-byte buffers ({RATE:.0} a second, 7 TS packets each), \
         one sender, every receiver in a network namespace of its own behind a veth pair \
         ({}). Loss: nftables `numgen random` on each receiver's veth (netdev ingress and \
         egress hooks), the same share each way, independent per packet. RTT: a relay thread holding every datagram RTT/2 each way \
         (0: the bare veth, no relay). Per run: {WARMUP} s to start and join, then {} s measured, \
         median of {} runs with the contenders' order rotated.\n",
        BITRATE / 1e6,
        if ethtool {
            "GRO/GSO/TSO and UDP segmentation offloads off with ethtool"
        } else {
            "ethtool missing: offloads left as they are"
        },
        opts.seconds,
        opts.repeats
    );
    println!("- fanout: `fec-payloader {} ! session-sink {}` / `session-src ! fec-depayloader {}`{}; one block ≈ {block:.0} buffers",
        opts.pay, opts.sink, opts.depay,
        if opts.sink.contains("gso=false") { " (gso=false: every datagram is a packet of its own, so the loss is per packet)" } else { "" });
    println!("- SRT: `srtsink uri=srt://:P?mode=listener latency=500`, one caller per receiver `srtsrc latency=500`");
    println!("- RIST: `rtpmp2tpay ! ristsink bonding-addresses=<every receiver> bonding-method=broadcast` / `ristsrc receiver-buffer=500 ! rtpmp2tdepay`");
    println!("- 2022-1: `rtpmp2tpay ! rtpst2022-1-fecenc columns=10 rows=10`, media, column and row FEC each a `multiudpsink` to every receiver (ports P, P+2, P+4) / `udpsrc`s `! rtpst2022-1-fecdec ! rtpjitterbuffer latency=500 ! rtpmp2tdepay`\n");
    println!("Delivered: share of the window's buffers a receiver took whole, every byte checked. \
              Wire: bytes on the sender's veths (Ethernet frames, both ways) per delivered byte, all receivers. \
              CPU: user + system of the sender's process (/proc/PID/stat) per second. Latency: receive − send time of every buffer delivered. \
              Long gaps: runs of at least {long_gap} lost buffers (one fanout block), all receivers and runs. \
              Socket drops: UDP datagrams dropped for a full receive buffer in any namespace (not the intended loss).\n");

    let mut port = 20000u16;
    let mut next_port = || {
        port = if port > 60000 { 20000 } else { port + 16 };
        port
    };
    let source = {
        let setup = Setup {
            opts: &opts,
            net: &net,
            receivers: 0,
            rtt_ms: 0.0,
            port: next_port(),
            long_gap,
        };
        source_alone(&setup)
    };
    println!(
        "Source alone (`appsrc ! fakesink`, this pacing loop): {source:.4} CPU-seconds a second\n"
    );
    println!("| receivers | loss each way | RTT | contender | delivered, lowest receiver | mean | wire bytes per delivered byte | sender CPU s/s | net of source | latency p50 | p99 | long gaps | socket drops | bad packets |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &opts.receivers {
        for &loss in &opts.loss {
            net.set_loss(loss);
            for &rtt in &opts.rtt {
                let k = opts.contenders.len();
                let mut runs: Vec<Vec<Run>> = (0..k).map(|_| Vec::new()).collect();
                for r in 0..opts.repeats {
                    for j in 0..k {
                        let c = (r + j) % k;
                        let setup = Setup {
                            opts: &opts,
                            net: &net,
                            receivers: n,
                            rtt_ms: rtt,
                            port: next_port(),
                            long_gap,
                        };
                        runs[c].push(run(&setup, opts.contenders[c]));
                    }
                }
                for (c, runs) in opts.contenders.iter().zip(runs) {
                    let col = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
                    let pct = |p: f64| {
                        let v: Vec<f64> = runs
                            .iter()
                            .filter_map(|r| {
                                let mut l = r.latency.clone();
                                l.sort_unstable();
                                percentile(&l, p)
                            })
                            .collect();
                        if v.is_empty() {
                            "–".to_owned()
                        } else {
                            format!("{:.1} ms", median(v))
                        }
                    };
                    let cpu = col(&|r| r.cpu);
                    println!(
                        "| {n} | {loss} % | {rtt} ms | {} | {:.4} | {:.4} | {:.3} | {cpu:.4} | {:.4} | {} | {} | {} in {} runs | {} | {} |",
                        c.name(),
                        col(&|r| r.shares.iter().cloned().fold(f64::MAX, f64::min)),
                        col(&|r| r.shares.iter().sum::<f64>() / r.shares.len() as f64),
                        col(&|r| r.wire_per_byte),
                        cpu - source,
                        pct(0.5),
                        pct(0.99),
                        runs.iter().map(|r| r.gaps).sum::<usize>(),
                        runs.len(),
                        runs.iter().map(|r| r.drops).sum::<u64>(),
                        runs.iter().map(|r| r.bad).sum::<u64>(),
                    );
                }
            }
        }
    }
    println!("\nLoad average at the end: {}", load());
    println!("Took {:.0} s.", started.elapsed().as_secs_f64());
}
