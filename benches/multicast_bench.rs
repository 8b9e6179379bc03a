//! Multicast against unicast in one run, in network namespaces this benchmark makes (root):
//!
//! 1. the sender's CPU for 1, 10, 100 and 1000 receivers of one 8 Mbit/s channel: `session-sink`
//!    sending unicast copies, and the same receivers on the channel's multicast group. The
//!    receivers are in another namespace behind a veth pair, which drops data on arrival,
//!    so that what is measured is the sender's work;
//! 2. repair efficiency: 20 receivers on a group, each losing 5 % of the packets on its own,
//!    `repair-percent=0`: the repair packets the server sent, against the packets the
//!    receivers lost (what per-receiver retransmission would resend).
//!
//!     cargo build --release --workspace && target/release/multicast-bench [seconds]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use fanout_session::{Client, ClientConfig, Mono, Stay};
use gst::prelude::*;
use gst_app::AppSrc;
use nix::sched::{setns, CloneFlags};

mod cpu;

use cpu::Cpu;

const PAYLOAD: usize = 1316;
/// 8 Mbit/s in lists of 10 packets.
const LIST: usize = 10;
const LISTS_PER_SECOND: f64 = 8e6 / 8.0 / (PAYLOAD * LIST) as f64;
const SENDER: &str = "10.79.0.1";
const RECEIVERS: &str = "10.79.0.2";
const GROUP: &str = "239.255.79.1:5700";

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {}", args.join(" "));
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Namespaces {
    sender: String,
    receivers: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            sender: format!("fanout-bench-tx-{id}"),
            receivers: format!("fanout-bench-rx-{id}"),
        };
        let (s, r) = (ns.sender.as_str(), ns.receivers.as_str());
        ip(&["netns", "add", s]);
        ip(&["netns", "add", r]);
        ip(&[
            "link", "add", "eth0", "netns", s, "type", "veth", "peer", "name", "eth0", "netns", r,
        ]);
        for (n, addr) in [(s, SENDER), (r, RECEIVERS)] {
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ip(&["-n", n, "link", "set", "eth0", "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
            ip(&["-n", n, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        // Data (any datagram longer than a control message) is dropped as it arrives.
        for cmd in [
            "add table inet bench",
            "add chain inet bench pre { type filter hook prerouting priority -300 ; }",
            "add rule inet bench pre meta l4proto udp meta length gt 600 drop",
        ] {
            let ok = Command::new("ip")
                .args(["netns", "exec", r, "nft"])
                .args(cmd.split(' '))
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "nft {cmd} in {r}");
        }
        ns
    }

    fn enter(name: &str) {
        let f = File::open(format!("/var/run/netns/{name}")).unwrap();
        setns(f, CloneFlags::CLONE_NEWNET).unwrap();
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.sender, &self.receivers] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// `n` sockets made in the receivers' namespace, joined to the server at `port`.
fn join(ns: &Namespaces, n: usize, port: u16, multicast: bool) -> Vec<UdpSocket> {
    let name = ns.receivers.clone();
    let socks = std::thread::spawn(move || {
        Namespaces::enter(&name);
        (0..n)
            .map(|_| UdpSocket::bind(format!("{RECEIVERS}:0")).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let server: SocketAddr = format!("{SENDER}:{port}").parse().unwrap();
    for (i, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let cfg = ClientConfig {
            stay: Stay::For(3_600_000_000_000),
            multicast,
            ..ClientConfig::default()
        };
        let mut c = Client::new(cfg, Mono::ZERO, i as u64 + 1);
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while !c.is_joined() {
            assert!(start.elapsed() < Duration::from_secs(10), "no join");
            while let Some(d) = c.poll_transmit() {
                s.send_to(&d, server).unwrap();
            }
            if let Ok((len, _)) = s.recv_from(&mut buf) {
                c.handle_datagram(Mono::ZERO + start.elapsed(), &mut buf[..len]);
            }
            c.handle_timeout(Mono::ZERO + start.elapsed());
        }
    }
    socks
}

fn free_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// CPU-seconds a second the sender's process spends sending one 8 Mbit/s channel to `n`
/// receivers for `seconds`, and the datagrams it sent.
fn sender_cpu(ns: &Namespaces, n: usize, multicast: bool, seconds: f64) -> (f64, u64) {
    let port = free_port();
    let group = if multicast {
        format!("sink_0::multicast-group={GROUP}")
    } else {
        String::new()
    };
    let p = gst::parse::launch(&format!(
        "appsrc name=src is-live=false format=time ! session-sink name=sink port={port} \
         max-clients={n} max-clients-per-host=0 {group}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let socks = join(ns, n, port, multicast);
    let src = p.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
    let mut list = gst::BufferList::new_sized(LIST);
    for i in 0..LIST {
        list.get_mut()
            .unwrap()
            .add(gst::Buffer::from_mut_slice(vec![i as u8; PAYLOAD]));
    }
    let gap = Duration::from_secs_f64(1.0 / LISTS_PER_SECOND);
    let start = Instant::now();
    let cpu = Cpu::now();
    let mut next = start;
    while start.elapsed().as_secs_f64() < seconds {
        src.push_buffer_list(list.clone()).unwrap();
        next += gap;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let used = cpu.elapsed() / start.elapsed().as_secs_f64();
    let stats = p
        .by_name("sink")
        .unwrap()
        .property::<gst::Structure>("stats");
    let ch = stats.get::<gst::Array>("channels").unwrap()[0]
        .get::<gst::Structure>()
        .unwrap();
    let sent = ch.get::<u64>("datagrams").unwrap() + ch.get::<u64>("group-datagrams").unwrap();
    p.set_state(gst::State::Null).unwrap();
    drop(socks);
    (used, sent)
}

/// 20 receivers of a group, each dropping `loss` of what arrives: (repair packets sent,
/// packets the receivers lost, source packets sent, blocks lost at any receiver).
fn repair_efficiency(receivers: usize, loss: f64) -> (u64, u64, u64, u64) {
    let port = free_port();
    let server = gst::parse::launch(&format!(
        "appsrc name=src is-live=true ! fec-payloader name=pay repair-percent=0 \
         repair-linger=1000000000 ! session-sink name=sink port={port} loop=true \
         sink_0::multicast-group={GROUP}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    server.set_state(gst::State::Playing).unwrap();
    let rxs: Vec<gst::Pipeline> = (0..receivers)
        .map(|_| {
            let p = gst::parse::launch(&format!(
                "session-src name=src host=127.0.0.1 port={port} transport=multicast \
                 ! identity drop-probability={loss} ! fec-depayloader name=depay \
                 latency=1000000000 ! fakesink"
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            p.set_state(gst::State::Playing).unwrap();
            p
        })
        .collect();
    let sink = server.by_name("sink").unwrap();
    let start = Instant::now();
    while sink
        .property::<gst::Structure>("stats")
        .get::<u32>("clients")
        .unwrap()
        < receivers as u32
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "receivers did not join"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let src = server.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
    for i in 0..3000u32 {
        src.push_buffer(gst::Buffer::from_mut_slice(vec![i as u8; PAYLOAD]))
            .unwrap();
        std::thread::sleep(Duration::from_micros(700));
    }
    src.end_of_stream().unwrap();
    for p in std::iter::once(&server).chain(&rxs) {
        p.bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos])
            .expect("EOS");
    }
    let stats = |p: &gst::Pipeline, name: &str| {
        p.by_name(name).unwrap().property::<gst::Structure>("stats")
    };
    let mut lost_packets = 0u64;
    let mut lost_blocks = 0u64;
    for rx in &rxs {
        let arrived: u64 = stats(rx, "src").get::<gst::Array>("channels").unwrap()[0]
            .get::<gst::Structure>()
            .unwrap()
            .get("packets")
            .unwrap();
        let depay = stats(rx, "depay");
        lost_packets += arrived - depay.get::<u64>("packets").unwrap();
        lost_blocks += depay.get::<u64>("blocks-lost").unwrap();
    }
    let ch = stats(&server, "sink")
        .get::<gst::Array>("channels")
        .unwrap()[0]
        .get::<gst::Structure>()
        .unwrap();
    let repairs = ch.get::<u64>("repairs").unwrap();
    let source = stats(&server, "pay").get::<u64>("source-packets").unwrap();
    for p in std::iter::once(&server).chain(&rxs) {
        p.set_state(gst::State::Null).unwrap();
    }
    (repairs, lost_packets, source, lost_blocks)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("multicast-bench makes network namespaces: run it as root");
        std::process::exit(1);
    }
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(5.0, |s| s.parse().expect("seconds per measurement"));
    let ns = Namespaces::new();
    // Every thread from here on (GStreamer's too) is in the sender's namespace.
    Namespaces::enter(&ns.sender);
    gst::init().unwrap();
    gstfanoutfec::plugin_register_static().unwrap();
    gstfanoutsession::plugin_register_static().unwrap();

    println!("Sender CPU for one 8 Mbit/s channel ({PAYLOAD}-byte packets in lists of {LIST}), CPU-seconds per second of the sending process, {seconds} s each:\n");
    println!("| receivers | unicast session-sink | datagrams | multicast group | datagrams | unicast / multicast |");
    println!("|---|---|---|---|---|---|");
    for n in [1, 10, 100, 1000] {
        let (uc, uc_sent) = sender_cpu(&ns, n, false, seconds);
        let (mc, mc_sent) = sender_cpu(&ns, n, true, seconds);
        println!(
            "| {n} | {:.2} % | {uc_sent} | {:.2} % | {mc_sent} | {:.1}× |",
            uc * 100.0,
            mc * 100.0,
            uc / mc
        );
    }

    // The group on loopback: every receiver is on this host.
    ip(&[
        "-n",
        &ns.sender,
        "route",
        "replace",
        "224.0.0.0/4",
        "dev",
        "lo",
    ]);
    println!("\nRepair efficiency, 20 receivers on a group, 5 % loss each (independent), repair-percent=0, 3000 × {PAYLOAD}-byte buffers:\n");
    println!("| repair packets sent | packets lost at the receivers (retransmission would resend) | repair / retransmission | blocks lost |");
    println!("|---|---|---|---|");
    let (repairs, lost, source, blocks_lost) = repair_efficiency(20, 0.05);
    println!(
        "| {repairs} ({:.3} per source packet) | {lost} | {:.3} | {blocks_lost} |",
        repairs as f64 / source.max(1) as f64,
        repairs as f64 / lost.max(1) as f64
    );
}
