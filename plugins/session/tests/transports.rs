// SPDX-License-Identifier: MPL-2.0

//! Multicast, TCP and `transport=auto`: receivers decode exactly what was sent, whichever
//! way the packets came. Multicast and blocked-UDP tests run in network namespaces of their
//! own (root, so `#[ignore]`d: `scripts/test.sh` runs them as root); TCP tests on 127.0.0.1.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{drop_input, in_netns};
use common::*;
use fanout_session::message::{self, Message};
use fanout_session::{frame, Client, ClientConfig, Mono, Stay};
use gst::prelude::*;

const GROUP: &str = "239.255.42.1";

/// A server fed by the test: `appsrc ! fec-payloader ! session-sink name=sink`.
struct Feed {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    data: Vec<u8>,
}

impl Feed {
    fn new(port: u16, sink_opts: &str, pay_opts: &str, size: usize) -> Feed {
        let pipeline = pipeline(&format!(
            "appsrc name=in is-live=true caps=application/octet-stream \
             ! fec-payloader repair-linger=500000000 {pay_opts} \
             ! session-sink name=sink port={port} {sink_opts}"
        ));
        let src = pipeline
            .by_name("in")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ size as u64;
        let data = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Feed {
            pipeline,
            src,
            data,
        }
    }

    fn sink(&self) -> gst::Element {
        self.pipeline.by_name("sink").unwrap()
    }

    /// Once `n` receivers joined (and had time to join their groups), [`Self::run`].
    fn run_when_joined(&self, n: u32) {
        assert!(wait_for(10 * SECOND, || clients(&self.sink()) == n));
        std::thread::sleep(Duration::from_millis(300));
        self.run();
    }

    /// Pushes the data at about 4 MB/s, then EOS.
    fn run(&self) {
        for chunk in self.data.chunks(4096) {
            self.src
                .push_buffer(gst::Buffer::from_slice(chunk.to_vec()))
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.src.end_of_stream().unwrap();
    }
}

/// A feed whose channel also goes to [`GROUP`] (port `port + 1`), `repair-percent=5`.
fn group_feed(port: u16, size: usize) -> Feed {
    Feed::new(
        port,
        &format!("loop=true sink_0::multicast-group={GROUP}:{}", port + 1),
        "repair-percent=5",
        size,
    )
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// `session-src ! identity drop-probability=LOSS ! fec-depayloader ! appsink`, collecting
/// what it decodes (without loss, `session-src ! fec-depayloader`, which hands it blocks;
/// with loss a buffer per packet, so that `identity` drops packets, not blocks). The
/// depayloader waits up to a second for a block (not the default 200 ms): on a loaded
/// machine a receiver's streaming thread can fall that far behind the repair symbols
/// already queued for it, and the blocks would be given up meanwhile.
struct Rx {
    pipeline: gst::Pipeline,
    out: Arc<Mutex<Vec<u8>>>,
    eos: Arc<AtomicBool>,
}

impl Rx {
    fn new(port: u16, opts: &str, loss: f64) -> Rx {
        let lossy = match loss > 0.0 {
            true => format!(
                "! capsfilter caps=application/x-fanout-fec,packing=datagram \
                 ! identity drop-probability={loss}"
            ),
            false => String::new(),
        };
        let pipeline = pipeline(&format!(
            "session-src name=src port={port} {opts} {lossy} \
             ! fec-depayloader name=depay latency=1000000000 ! appsink name=out sync=false"
        ));
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let eos = Arc::new(AtomicBool::new(false));
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (o, e) = (out.clone(), eos.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let map = sample.buffer().unwrap().map_readable().unwrap();
                    o.lock().unwrap().extend_from_slice(&map);
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| e.store(true, Ordering::SeqCst))
                .build(),
        );
        pipeline.set_state(gst::State::Playing).unwrap();
        Rx { pipeline, out, eos }
    }

    fn src(&self) -> gst::Element {
        self.pipeline.by_name("src").unwrap()
    }

    fn server_stats(&self) -> gst::Structure {
        let s = stats(&self.src());
        s.get::<gst::Array>("servers").unwrap()[0]
            .get::<gst::Structure>()
            .unwrap()
    }

    fn finish(&self, timeout: Duration) -> Vec<u8> {
        assert!(
            wait_for(timeout, || self.eos.load(Ordering::SeqCst)),
            "no EOS"
        );
        self.out.lock().unwrap().clone()
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn clients(sink: &gst::Element) -> u32 {
    stats(sink).get::<u32>("clients").unwrap()
}

/// The transports `transport=auto` moved to, from its bus messages, waiting up to
/// `timeout` for `last`.
fn transport_changes(rx: &Rx, last: &str, timeout: Duration) -> Vec<String> {
    let bus = rx.pipeline.bus().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < timeout && seen.last().map(String::as_str) != Some(last) {
        let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Element],
        ) else {
            continue;
        };
        if let Some(s) = m
            .structure()
            .filter(|s| s.name() == "fanout-session-transport")
        {
            seen.push(s.get::<String>("transport").unwrap());
        }
    }
    seen
}

fn receiver_stats(sink: &gst::Element) -> Vec<gst::Structure> {
    stats(sink)
        .get::<gst::Array>("receivers")
        .unwrap()
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .collect()
}

#[test]
#[ignore = "needs root: a network namespace"]
fn multicast_and_unicast_receivers_of_one_channel_decode_the_same_bytes() {
    in_netns(
        "multicast_and_unicast_receivers_of_one_channel_decode_the_same_bytes",
        &[],
        || {
            let port = free_port();
            let feed = group_feed(port, 2_000_000);
            let sink = feed.sink();
            let mc = Rx::new(port, "transport=multicast", 0.0);
            let uc = Rx::new(port, "transport=udp", 0.0);
            feed.run_when_joined(2);
            assert!(mc.finish(20 * SECOND) == feed.data, "multicast receiver");
            assert!(uc.finish(20 * SECOND) == feed.data, "unicast receiver");
            let s = mc.server_stats();
            assert_eq!(s.get::<String>("transport").unwrap(), "multicast");
            assert!(s.get::<u64>("group-datagrams").unwrap() > 1000, "{s}");
            let ch = stats(&sink).get::<gst::Array>("channels").unwrap()[0]
                .get::<gst::Structure>()
                .unwrap();
            assert!(ch.get::<u64>("group-datagrams").unwrap() > 1000, "{ch}");
            // No unicast copies for the receiver on the group.
            let rs = receiver_stats(&sink);
            let on_group: Vec<_> = rs
                .iter()
                .filter(|r| r.get::<String>("transport").unwrap() == "multicast")
                .collect();
            assert_eq!(on_group.len(), 1);
            assert_eq!(on_group[0].get::<u64>("packets").unwrap(), 0);
        },
    );
}

#[test]
#[ignore = "needs root: a network namespace"]
fn five_multicast_receivers_with_independent_loss_decode_every_block() {
    in_netns(
        "five_multicast_receivers_with_independent_loss_decode_every_block",
        &[],
        || {
            let port = free_port();
            let feed = group_feed(port, 1_500_000);
            let sink = feed.sink();
            let rxs: Vec<Rx> = (0..5)
                .map(|_| Rx::new(port, "transport=multicast", 0.1))
                .collect();
            feed.run_when_joined(5);
            for (i, rx) in rxs.iter().enumerate() {
                let out = rx.finish(30 * SECOND);
                let depay = rx.pipeline.by_name("depay").unwrap();
                assert!(
                    out == feed.data,
                    "receiver {i}: {} of {} bytes, {} {}",
                    out.len(),
                    feed.data.len(),
                    stats(&depay),
                    rx.server_stats()
                );
                assert_eq!(stats(&depay).get::<u64>("blocks-lost").unwrap(), 0);
            }
            let s = stats(&sink);
            assert!(s.get::<u64>("group-repairs").unwrap() > 0, "{s}");
            // Every member tells its loss: the group gets repair up front with its blocks.
            assert!(s.get::<u64>("loss-reports").unwrap() > 0, "{s}");
            assert!(s.get::<u64>("top-up-symbols").unwrap() > 0, "{s}");
        },
    );
}

#[test]
#[ignore = "needs root: a network namespace"]
fn a_group_that_never_delivers_falls_back_to_udp_within_the_timeout() {
    in_netns(
        "a_group_that_never_delivers_falls_back_to_udp_within_the_timeout",
        &[&drop_input(&format!("ip daddr {GROUP}"))],
        || {
            let port = free_port();
            let srv = server(
                port,
                &format!("sink_0::multicast-group={GROUP}:{}", port + 1),
                "",
            );
            let rx = Rx::new(port, "transport=auto fallback-timeout=1000000000", 0.0);
            let start = Instant::now();
            assert_eq!(transport_changes(&rx, "udp", 10 * SECOND), vec!["udp"]);
            assert!(start.elapsed() < 5 * SECOND, "{:?}", start.elapsed());
            let depay = rx.pipeline.by_name("depay").unwrap();
            assert!(wait_for(10 * SECOND, || stats(&depay)
                .get::<u64>("buffers")
                .unwrap()
                > 10));
            let s = rx.server_stats();
            assert_eq!(s.get::<String>("transport").unwrap(), "udp");
            assert_eq!(s.get::<String>("transport-changes").unwrap(), "udp");
            srv.set_state(gst::State::Null).unwrap();
        },
    );
}

#[test]
#[ignore = "needs root: a network namespace"]
fn a_receiver_whose_network_drops_udp_ends_on_tcp() {
    // The port is fixed: the namespace's firewall is set up before the test picks one.
    const PORT: u16 = 5690;
    in_netns(
        "a_receiver_whose_network_drops_udp_ends_on_tcp",
        &[&drop_input(&format!("udp dport {PORT}"))],
        || {
            let srv = server(PORT, "tcp=true", "");
            let sink = sink(&srv);
            let rx = Rx::new(PORT, "transport=auto fallback-timeout=1000000000", 0.0);
            assert_eq!(
                transport_changes(&rx, "tcp", 15 * SECOND),
                vec!["udp", "tcp"]
            );
            let depay = rx.pipeline.by_name("depay").unwrap();
            assert!(wait_for(10 * SECOND, || stats(&depay)
                .get::<u64>("buffers")
                .unwrap()
                > 10));
            let rs = receiver_stats(&sink);
            assert_eq!(rs.len(), 1);
            assert_eq!(rs[0].get::<String>("transport").unwrap(), "tcp");
            assert!(rs[0].get::<String>("address").unwrap().starts_with("tcp:"));
            assert_eq!(rx.server_stats().get::<String>("transport").unwrap(), "tcp");
            srv.set_state(gst::State::Null).unwrap();
        },
    );
}

/// A TCP receiver's JOIN, as a frame.
fn tcp_join_frame() -> Vec<u8> {
    let mut c = Client::new_stream(
        ClientConfig {
            stay: Stay::For(30_000_000_000),
            ..ClientConfig::default()
        },
        Mono::ZERO,
        1,
    );
    frame(&[&c.poll_transmit().unwrap()]).unwrap()
}

/// A receiver over TCP made by hand: joins, then reads only when told.
fn tcp_join(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&tcp_join_frame()).unwrap();
    s
}

#[test]
fn a_tcp_receiver_that_stops_reading_loses_its_oldest_packets_and_slows_nobody() {
    let port = free_port();
    let feed = Feed::new(
        port,
        "tcp=true tcp-queue=256",
        "repair-percent=5",
        3_000_000,
    );
    let sink = feed.sink();
    let good = Rx::new(port, "transport=tcp", 0.0);
    let stuck = tcp_join(port);
    // A small receive buffer, so that its window shuts soon.
    let _ = nix::sys::socket::setsockopt(&stuck, nix::sys::socket::sockopt::RcvBuf, &4096);
    assert!(wait_for(10 * SECOND, || clients(&sink) == 2));
    let started = Instant::now();
    feed.run();
    let fed_in = started.elapsed();
    // The receiver that reads decodes everything, whatever the other one does.
    assert!(good.finish(20 * SECOND) == feed.data);
    let rs = receiver_stats(&sink);
    let mut dropped: Vec<u64> = rs
        .iter()
        .map(|r| r.get::<u64>("queue-dropped").unwrap())
        .collect();
    dropped.sort();
    eprintln!("packets dropped from the TCP queues (reading, stuck): {dropped:?}");
    assert!(
        dropped[1] > 1000,
        "the stuck receiver lost its oldest packets: {rs:?}"
    );
    // Pushing never waited for the stuck receiver (about 0.75 s of sleeps at 1 ms a chunk).
    assert!(fed_in < 10 * SECOND, "{fed_in:?}");
    drop(stuck);
}

/// Whether the server closes `s` within a few seconds.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < 5 * SECOND {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => (),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => (),
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_tcp_peer_sending_garbage_is_closed_and_half_a_frame_waits_for_the_rest() {
    let port = free_port();
    let srv = server(port, "tcp=true", "");
    let sink = sink(&srv);
    let mut http = TcpStream::connect(("127.0.0.1", port)).unwrap();
    http.write_all(b"\x00\x12GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut http), "garbage is not this protocol");
    let mut huge = TcpStream::connect(("127.0.0.1", port)).unwrap();
    huge.write_all(&[0xff, 0xff, b'F', b'S']).unwrap();
    assert!(
        closed_by_server(&mut huge),
        "a frame longer than any control message"
    );
    assert_eq!(clients(&sink), 0);

    let mut c = Client::new_stream(ClientConfig::default(), Mono::ZERO, 1);
    let join = frame(&[&c.poll_transmit().unwrap()]).unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(&join[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(clients(&sink), 0);
    half.write_all(&join[5..]).unwrap();
    assert!(wait_for(5 * SECOND, || clients(&sink) == 1));
    // The JOINED comes back as a frame.
    let mut d = fanout_session::Deframer::new(fanout_session::frame::MAX_FRAME);
    let mut buf = [0u8; 65536];
    half.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut joined = false;
    while !joined && start.elapsed() < 5 * SECOND {
        if let Ok(n) = half.read(&mut buf) {
            d.push(&buf[..n]);
            while let Some(Ok(f)) = d.next_frame() {
                joined |= matches!(message::parse_message(f), Ok(Message::Joined { .. }));
            }
        }
    }
    assert!(joined);
    drop(half);
    assert!(
        wait_for(5 * SECOND, || clients(&sink) == 0),
        "closing leaves"
    );
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_tcp_peer_that_sends_but_never_reads_its_answers_is_closed() {
    let port = free_port();
    let srv = server(port, "tcp=true", "");
    let sink = sink(&srv);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Every JOIN is a refresh the server answers with a JOINED this peer never reads.
    let joins = tcp_join_frame().repeat(100);
    let start = Instant::now();
    let mut closed = false;
    while !closed && start.elapsed() < 30 * SECOND {
        closed = s.write_all(&joins).is_err();
    }
    assert!(closed, "still open after {:?}", start.elapsed());
    assert!(wait_for(5 * SECOND, || clients(&sink) == 0));
    srv.set_state(gst::State::Null).unwrap();
}

/// Groups this namespace's interfaces are members of, from /proc/net/igmp (IPv4, the
/// addresses as the kernel prints them: hex, host byte order).
fn igmp_groups() -> String {
    std::fs::read_to_string("/proc/net/igmp").unwrap()
}

#[test]
#[ignore = "needs root: a network namespace"]
fn a_multicast_receiver_leaves_the_group_when_stopped_and_joins_it_again() {
    in_netns(
        "a_multicast_receiver_leaves_the_group_when_stopped_and_joins_it_again",
        &[],
        || {
            let port = free_port();
            let srv = server(
                port,
                &format!("sink_0::multicast-group={GROUP}:{}", port + 1),
                "",
            );
            let sink = sink(&srv);
            // 239.255.42.1 as /proc/net/igmp prints it.
            let member = || igmp_groups().contains("012AFFEF");
            assert!(!member());
            let rx = Rx::new(port, "transport=multicast", 0.0);
            let depay = rx.pipeline.by_name("depay").unwrap();
            let buffers = |d: &gst::Element| stats(d).get::<u64>("buffers").unwrap();
            assert!(wait_for(10 * SECOND, || buffers(&depay) > 10));
            assert!(member(), "{}", igmp_groups());
            rx.pipeline.set_state(gst::State::Null).unwrap();
            assert!(!member(), "left on stop: {}", igmp_groups());
            assert!(wait_for(5 * SECOND, || clients(&sink) == 0));
            rx.pipeline.set_state(gst::State::Playing).unwrap();
            assert!(wait_for(10 * SECOND, || member() && clients(&sink) == 1));
            let got = rx.server_stats().get::<u64>("group-datagrams").unwrap();
            assert!(wait_for(10 * SECOND, || rx
                .server_stats()
                .get::<u64>("group-datagrams")
                .unwrap()
                > got + 10));
            srv.set_state(gst::State::Null).unwrap();
        },
    );
}

/// A TCP connection to `port` from `from` (any 127.0.0.0/8 address), saying nothing.
fn idle_tcp(from: [u8; 4], port: u16) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    s.into()
}

#[test]
fn idle_tcp_connections_never_lock_an_honest_tcp_receiver_out() {
    let port = free_port();
    let srv = server(port, "tcp=true", "repair-percent=5");
    let sink = sink(&srv);
    // 80 connections that never join, from ten hosts: more than the server keeps waiting.
    let mut idle = Vec::new();
    for host in 2..12u8 {
        for _ in 0..8 {
            idle.push(idle_tcp([127, 0, 0, host], port));
        }
    }
    // One host gets no more than 8 waiting: the ninth is closed at once.
    let mut ninth = idle_tcp([127, 0, 0, 2], port);
    assert!(
        closed_by_server(&mut ninth),
        "a ninth idle connection from one host stayed"
    );
    // The oldest idle connection makes room: an honest receiver gets in and gets data.
    let mut honest = tcp_join(port);
    assert!(
        wait_for(10 * SECOND, || clients(&sink) == 1),
        "the honest TCP receiver did not get in"
    );
    honest
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 65536];
    let start = Instant::now();
    while got < 100_000 && start.elapsed() < 10 * SECOND {
        if let Ok(n) = honest.read(&mut buf) {
            got += n;
        }
    }
    assert!(got >= 100_000, "only {got} bytes came");
    drop(idle);
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn one_host_gets_at_most_max_clients_per_host_sessions() {
    let port = free_port();
    let srv = server(port, "max-clients-per-host=2", "repair-percent=5");
    let sink = sink(&srv);
    let _a = RawClient::join(port, Stay::For(30 * SECOND.as_nanos() as u64));
    let _b = RawClient::join(port, Stay::For(30 * SECOND.as_nanos() as u64));
    let mut c = RawClient::new(port, ClientConfig::default());
    let start = Instant::now();
    let refused = loop {
        c.pump(Duration::from_millis(20));
        if let Some(fanout_session::ClientEvent::Refused { reason, text }) = c.client.poll_event() {
            break Some((reason, text));
        }
        if start.elapsed() > 10 * SECOND {
            break None;
        }
    };
    let (reason, text) = refused.expect("the third receiver from one host was not refused");
    assert_eq!(reason, fanout_session::Reason::Full);
    assert_eq!(text, "too many receivers from this host");
    assert_eq!(clients(&sink), 2);
    srv.set_state(gst::State::Null).unwrap();
}

/// One UDP datagram from `from` to `to` through a raw socket: any source address (root).
fn spoof(
    raw: &std::os::fd::OwnedFd,
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
    payload: &[u8],
) {
    use std::os::fd::AsRawFd;
    let len = 28 + payload.len();
    let mut p = Vec::with_capacity(len);
    // IPv4 header: the kernel fills in the checksum (and the id, left 0).
    p.extend_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    // UDP header, checksum 0 (none, allowed over IPv4).
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let dest = nix::sys::socket::SockaddrIn::from(to);
    let _ = nix::sys::socket::sendto(
        raw.as_raw_fd(),
        &p,
        &dest,
        nix::sys::socket::MsgFlags::empty(),
    );
}

/// What an attacker who knows the protocol but no key sends: DATA for channel 0 carrying an
/// FEC stream description of its own (caps nothing downstream takes) and a made-up tag.
fn forged_data(counter: u64) -> Vec<u8> {
    let mut d = fanout_session::message::data_header(0, counter, false).to_vec();
    d.extend_from_slice(b"FEC\x01forged description: video/x-forged-by-an-attacker");
    d.extend_from_slice(&[0xA5; 16]);
    d
}

#[test]
#[ignore = "needs root: raw sockets"]
fn data_spoofed_from_the_servers_address_costs_a_receiver_nothing() {
    let port = free_port();
    let feed = Feed::new(port, "", "repair-percent=5", 2_000_000);
    let rx = Rx::new(port, "transport=udp", 0.0);
    assert!(wait_for(10 * SECOND, || clients(&feed.sink()) == 1));
    // Every ephemeral port of 127.0.0.1, from the server's own address, while the stream runs.
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // SAFETY: a plain syscall; the descriptor is owned right after.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
            assert!(fd >= 0, "a raw socket needs root");
            let raw = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let from = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for p in 32768..61000u16 {
                    let to = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, p);
                    spoof(&raw, from, to, &forged_data(sent));
                    sent += 1;
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    feed.run();
    let got = rx.finish(30 * SECOND);
    stop.store(true, Ordering::Relaxed);
    let sent = forger.join().unwrap();
    assert!(
        got == feed.data,
        "{} of {} bytes",
        got.len(),
        feed.data.len()
    );
    let s = stats(&rx.src());
    let forged = s.get::<u64>("forged").unwrap();
    eprintln!("{sent} forged datagrams sent, {forged} reached the receiver and were dropped");
    assert!(forged > 0, "{s}");
}

#[test]
fn an_encrypted_stream_reaches_only_a_receiver_with_its_passphrase() {
    let port = free_port();
    let feed = Feed::new(
        port,
        "tcp=true passphrase=correct-horse-battery pbkeylen=32",
        "repair-percent=5",
        1_000_000,
    );
    let good = Rx::new(port, "transport=udp passphrase=correct-horse-battery", 0.0);
    let tcp = Rx::new(port, "transport=tcp passphrase=correct-horse-battery", 0.0);
    let wrong = Rx::new(port, "transport=udp passphrase=wrong-horse-battery", 0.0);
    let none = Rx::new(port, "transport=udp", 0.0);
    for (rx, said) in [(&wrong, "wrong passphrase"), (&none, "set its passphrase")] {
        let err = bus_message(&rx.pipeline, gst::MessageType::Error, 10 * SECOND);
        assert!(err.as_deref().is_some_and(|e| e.contains(said)), "{err:?}");
    }
    feed.run_when_joined(2);
    assert!(good.finish(20 * SECOND) == feed.data);
    assert!(tcp.finish(20 * SECOND) == feed.data);
}

#[test]
fn a_receiver_refuses_a_server_that_does_not_protect_its_data_unless_allowed() {
    let port = free_port();
    let feed = Feed::new(port, "authenticate=false", "repair-percent=5", 200_000);
    let strict = Rx::new(port, "transport=udp", 0.0);
    let err = bus_message(&strict.pipeline, gst::MessageType::Error, 10 * SECOND);
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("does not authenticate")),
        "{err:?}"
    );
    let lax = Rx::new(port, "transport=udp allow-unauthenticated=true", 0.0);
    feed.run_when_joined(1);
    assert!(lax.finish(20 * SECOND) == feed.data);
}

#[test]
#[ignore = "needs root: a network namespace"]
fn data_forged_to_a_multicast_group_costs_its_receivers_nothing() {
    in_netns(
        "data_forged_to_a_multicast_group_costs_its_receivers_nothing",
        &[],
        || {
            let port = free_port();
            let feed = group_feed(port, 1_000_000);
            let rxs: Vec<Rx> = (0..2)
                .map(|_| Rx::new(port, "transport=multicast", 0.0))
                .collect();
            // Anyone on the network can send to the group: forged DATA, as fast as it goes.
            let stop = Arc::new(AtomicBool::new(false));
            let forger = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    let group = format!("{GROUP}:{}", port + 1);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let _ = s.send_to(&forged_data(n), &group);
                        n += 1;
                        if n.is_multiple_of(64) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    n
                })
            };
            feed.run_when_joined(2);
            for rx in &rxs {
                assert!(rx.finish(30 * SECOND) == feed.data);
            }
            stop.store(true, Ordering::Relaxed);
            let sent = forger.join().unwrap();
            for rx in &rxs {
                let forged = stats(&rx.src()).get::<u64>("forged").unwrap();
                eprintln!("{sent} forged datagrams to the group, {forged} dropped by a receiver");
                assert!(forged > 0);
            }
        },
    );
}

#[test]
fn an_edge_passes_the_origins_answers_to_the_receiver_that_asked_only() {
    let (origin_port, edge_port) = (free_port(), free_port());
    let feed = Feed::new(origin_port, "", "repair-percent=0", 1_000_000);
    let edge = pipeline(&format!(
        "session-src port={origin_port} ! session-sink name=edge port={edge_port}"
    ));
    edge.set_state(gst::State::Playing).unwrap();
    let edge_sink = edge.by_name("edge").unwrap();
    // The edge has its channel once it joined the origin: receivers asking for every channel
    // before that would get none.
    assert!(wait_for(10 * SECOND, || edge_sink.num_sink_pads() == 1));
    let lossy = Rx::new(edge_port, "transport=udp", 0.2);
    let clean = Rx::new(edge_port, "transport=udp", 0.0);
    assert!(wait_for(10 * SECOND, || clients(&edge_sink) == 2));
    feed.run_when_joined(1);
    assert!(lossy.finish(30 * SECOND) == feed.data, "the lossy receiver");
    assert!(clean.finish(30 * SECOND) == feed.data, "the clean receiver");
    // Packets the edge took: the stream, and the answers it passed on.
    let channel = stats(&edge_sink).get::<gst::Array>("channels").unwrap()[0]
        .get::<gst::Structure>()
        .unwrap();
    let edge_in = channel.get::<u64>("packets").unwrap() + channel.get::<u64>("repairs").unwrap();
    let rs = receiver_stats(&edge_sink);
    let by = |f: &str| -> Vec<u64> { rs.iter().map(|r| r.get::<u64>(f).unwrap()).collect() };
    let (packets, repairs) = (by("packets"), by("repairs"));
    let lossy_i = if repairs[0] > repairs[1] { 0 } else { 1 };
    let clean_i = 1 - lossy_i;
    eprintln!("edge took {edge_in} packets; receivers got {packets:?}, answers {repairs:?}");
    assert!(
        repairs[lossy_i] > 0,
        "no answer reached the receiver that asked"
    );
    assert_eq!(repairs[clean_i], 0);
    // The clean receiver got the stream, not the other one's answers.
    assert!(
        packets[clean_i] + repairs[lossy_i] <= edge_in,
        "{packets:?} {repairs:?} of {edge_in}"
    );
    edge.set_state(gst::State::Null).unwrap();
}

#[test]
fn receivers_joined_to_an_edge_before_it_has_its_channel_get_every_byte() {
    let (origin_port, edge_port) = (free_port(), free_port());
    let edge = pipeline(&format!(
        "session-src port={origin_port} ! session-sink name=edge port={edge_port}"
    ));
    edge.set_state(gst::State::Playing).unwrap();
    let edge_sink = edge.by_name("edge").unwrap();
    let rxs: Vec<Rx> = (0..2)
        .map(|_| Rx::new(edge_port, "transport=udp", 0.0))
        .collect();
    // Joined, with no channel to take yet: the origin is not there.
    assert!(wait_for(10 * SECOND, || clients(&edge_sink) == 2));
    assert_eq!(edge_sink.num_sink_pads(), 0);
    let feed = Feed::new(origin_port, "", "repair-percent=5", 500_000);
    assert!(wait_for(10 * SECOND, || edge_sink.num_sink_pads() == 1));
    assert!(wait_for(10 * SECOND, || receiver_stats(&edge_sink)
        .iter()
        .all(|r| r.get::<String>("channels").unwrap() == "0")));
    std::thread::sleep(Duration::from_millis(300));
    feed.run_when_joined(1);
    for rx in &rxs {
        assert!(rx.finish(30 * SECOND) == feed.data);
    }
    edge.set_state(gst::State::Null).unwrap();
}

/// Every way packets can travel from fec-payloader to fec-depayloader through a session:
/// in a buffer each or a block's in one buffer into session-sink, sent with or without GSO,
/// read with or without GRO (a read holding many datagrams, handed on to the depayloader
/// as one buffer listing them).
#[test]
fn block_or_datagram_packing_gso_and_gro_on_or_off_give_every_byte() {
    for packing in ["block", "datagram"] {
        for gso in [true, false] {
            for gro in [true, false] {
                let port = free_port();
                let pay = format!("! capsfilter caps=application/x-fanout-fec,packing={packing}");
                let feed = Feed::new(port, &format!("gso={gso}"), &pay, 1_000_000);
                let rx = Rx::new(port, &format!("gro={gro}"), 0.0);
                feed.run_when_joined(1);
                let got = rx.finish(30 * SECOND);
                let src = stats(&rx.src());
                let server = src.get::<gst::Array>("servers").unwrap()[0]
                    .get::<gst::Structure>()
                    .unwrap();
                let reads = server.get::<u64>("udp-reads").unwrap();
                let datagrams = server.get::<u64>("datagrams").unwrap();
                eprintln!(
                    "packing={packing} gso={gso} gro={gro}: {datagrams} datagrams in {reads} reads"
                );
                assert!(
                    got == feed.data,
                    "packing={packing} gso={gso} gro={gro}: {} of {} bytes",
                    got.len(),
                    feed.data.len()
                );
                // A capsfilter takes buffer lists apart: GSO runs only come from blocks here.
                if packing == "block" && gso && gro {
                    assert!(reads * 4 < datagrams, "GRO coalesced nothing: {src}");
                }
                if !gro {
                    assert!(reads >= datagrams, "{src}");
                }
            }
        }
    }
}
