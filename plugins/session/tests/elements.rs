// SPDX-License-Identifier: MPL-2.0

//! session-sink and session-src in pipelines, with bare protocol clients where the test
//! needs to misbehave: joins, expiry, authorization, channels, floods, repairs.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fanout_fec::packet::{self, Packet};
use fanout_session::message::{self, Message, COOKIE_LEN};
use fanout_session::{LostEntry, Stay};
use gst::prelude::*;

fn receiver(port: u16, opts: &str) -> gst::Pipeline {
    let p = pipeline(&format!(
        "session-src name=src port={port} {opts} ! fec-depayloader name=depay ! fakesink"
    ));
    p.set_state(gst::State::Playing).unwrap();
    p
}

fn clients(sink: &gst::Element) -> u32 {
    stats(sink).get::<u32>("clients").unwrap()
}

#[test]
fn join_and_leave_are_signalled_and_counted() {
    let port = free_port();
    let srv = server(port, "", "");
    let sink = sink(&srv);
    let log = record_signals(&sink);
    let rx = receiver(port, "");
    assert!(wait_for(5 * SECOND, || log.lock().unwrap().len() == 1));
    let added = log.lock().unwrap()[0].clone();
    assert!(added.starts_with("added 127.0.0.1:"), "{added}");
    let depay = rx.by_name("depay").unwrap();
    assert!(wait_for(10 * SECOND, || stats(&depay)
        .get::<u64>("buffers")
        .unwrap()
        > 10));
    let s = stats(&sink);
    assert_eq!(s.get::<u32>("clients").unwrap(), 1);
    let receivers = s.get::<gst::Array>("receivers").unwrap();
    let r = receivers[0].get::<gst::Structure>().unwrap();
    assert!(r.get::<u64>("packets").unwrap() > 0, "{s}");
    let src = rx.by_name("src").unwrap();
    assert!(stats(&src).get::<bool>("joined").unwrap());
    rx.set_state(gst::State::Null).unwrap();
    assert!(wait_for(5 * SECOND, || log.lock().unwrap().len() == 2));
    let removed = log.lock().unwrap()[1].clone();
    assert_eq!(removed, format!("removed {} left", &added[6..]));
    assert_eq!(clients(&sink), 0);
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn client_joining_refuses_a_wrong_token_with_a_clear_error() {
    let port = free_port();
    let srv = server(port, "", "");
    let sink = sink(&srv);
    sink.connect("client-joining", false, |args| {
        let token = args[2].get::<String>().unwrap();
        Some((token == "open sesame").to_value())
    });
    let bad = receiver(port, "token=wrong");
    let err = bus_message(&bad, gst::MessageType::Error, 10 * SECOND).expect("an error");
    assert!(err.contains("not authorized"), "{err}");
    bad.set_state(gst::State::Null).unwrap();
    assert_eq!(clients(&sink), 0);
    let good = receiver(port, "token=\"open sesame\"");
    assert!(wait_for(5 * SECOND, || clients(&sink) == 1));
    good.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn max_clients_refuses_the_next_receiver_as_full() {
    let port = free_port();
    let srv = server(port, "max-clients=1", "");
    let sink = sink(&srv);
    let first = receiver(port, "");
    assert!(wait_for(5 * SECOND, || clients(&sink) == 1));
    let second = receiver(port, "");
    let err = bus_message(&second, gst::MessageType::Error, 10 * SECOND).expect("an error");
    assert!(err.contains("server full"), "{err}");
    for p in [first, second, srv] {
        p.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn remove_client_takes_a_receiver_out() {
    let port = free_port();
    let srv = server(port, "", "");
    let sink = sink(&srv);
    let log = record_signals(&sink);
    let _rx = RawClient::join(port, Stay::For(30_000_000_000));
    // The signal comes from the server's thread, maybe after the JOINED.
    assert!(wait_for(5 * SECOND, || log.lock().unwrap().len() == 1));
    let addr = log.lock().unwrap()[0][6..].to_string();
    assert!(!sink.emit_by_name::<bool>("remove-client", &[&"127.0.0.1:1"]));
    assert!(sink.emit_by_name::<bool>("remove-client", &[&addr]));
    assert!(wait_for(2 * SECOND, || log.lock().unwrap().len() == 2));
    assert_eq!(log.lock().unwrap()[1], format!("removed {addr} removed"));
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn two_channels_reach_one_receiver_in_both_on_their_own_pads() {
    let port = free_port();
    let srv = pipeline(&format!(
        "session-sink name=sink port={port} sink_0::channel=video sink_1::channel=audio \
         videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=25/1 ! fec-payloader flow=1 ! sink.sink_0 \
         audiotestsrc is-live=true ! fec-payloader flow=2 ! sink.sink_1"
    ));
    srv.set_state(gst::State::Playing).unwrap();
    let rx = pipeline(&format!(
        "session-src name=src port={port} channels=audio,video \
         src.src_0 ! fec-depayloader name=a ! fakesink \
         src.src_1 ! fec-depayloader name=v ! fakesink"
    ));
    rx.set_state(gst::State::Playing).unwrap();
    let (a, v) = (rx.by_name("a").unwrap(), rx.by_name("v").unwrap());
    let buffers = |e: &gst::Element| stats(e).get::<u64>("buffers").unwrap();
    assert!(wait_for(10 * SECOND, || buffers(&a) > 5 && buffers(&v) > 5));
    // src_0 is the first channel asked for.
    let caps = |e: &gst::Element| e.static_pad("src").unwrap().current_caps().unwrap();
    assert!(
        caps(&a).to_string().starts_with("audio/x-raw"),
        "{}",
        caps(&a)
    );
    assert!(
        caps(&v).to_string().starts_with("video/x-raw"),
        "{}",
        caps(&v)
    );
    let src_caps = rx
        .by_name("src")
        .unwrap()
        .static_pad("src_0")
        .unwrap()
        .current_caps();
    assert!(src_caps
        .unwrap()
        .to_string()
        .starts_with("application/x-fanout-fec"));
    let s = stats(&srv.by_name("sink").unwrap());
    let channels = s.get::<gst::Array>("channels").unwrap();
    for c in channels.iter() {
        let c = c.get::<gst::Structure>().unwrap();
        assert_eq!(c.get::<u32>("clients").unwrap(), 1, "{c}");
    }
    assert_eq!(
        s.get::<u32>("clients").unwrap(),
        1,
        "one receiver in two channels"
    );
    rx.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn foreign_datagrams_and_forged_joins_create_nothing_and_disturb_nobody() {
    let port = free_port();
    let srv = server(port, "", "");
    let sink = sink(&srv);
    let mut real = RawClient::join(port, Stay::For(30_000_000_000));
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood.set_nonblocking(true).unwrap();
    let mut sent = 0usize;
    let mut x = 99u64;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let d = match i % 3 {
            0 => message::write(&Message::Join {
                nonce: x,
                cookie: [x as u8; COOKIE_LEN],
                stay: Stay::For(u64::MAX),
                multicast: x & 1 == 0,
                token: vec![],
                channels: vec![],
            }),
            1 => x.to_be_bytes().repeat((x % 40) as usize),
            _ => [b"FS\x02".as_slice(), &x.to_be_bytes()].concat(),
        };
        sent += d.len();
        let _ = flood.send_to(&d, ("127.0.0.1", port));
        if i % 1000 == 0 {
            real.pump(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut replied = 0usize;
    let mut buf = [0u8; 2048];
    while let Ok(n) = flood.recv(&mut buf) {
        replied += n;
    }
    assert!(replied <= sent, "{replied} bytes answered to {sent}");
    let s = stats(&sink);
    assert_eq!(s.get::<u32>("clients").unwrap(), 1, "{s}");
    assert!(s.get::<u64>("bad-cookies").unwrap() > 0, "{s}");
    assert!(s.get::<u64>("foreign").unwrap() + s.get::<u64>("malformed").unwrap() > 0);
    assert!(
        !real.pump(SECOND).is_empty(),
        "the real receiver still receives"
    );
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_receiver_whose_port_closed_disturbs_nobody() {
    let port = free_port();
    let srv = server(port, "", "");
    let gone = RawClient::join(port, Stay::For(30_000_000_000));
    let mut other = RawClient::join(port, Stay::For(30_000_000_000));
    drop(gone);
    // Every datagram to the closed port draws an ICMP port unreachable.
    other.pump(SECOND);
    let got = other.pump(SECOND);
    assert!(got.len() > 10, "{} packets in a second", got.len());
    assert!(bus_message(&srv, gst::MessageType::Error, Duration::ZERO).is_none());
    srv.set_state(gst::State::Null).unwrap();
}

fn symbol(p: &[u8]) -> Option<(u64, u32, bool)> {
    match packet::parse(p).ok()? {
        Packet::Symbol { header, .. } => Some((header.block, header.esi, header.flags & 1 != 0)),
        _ => None,
    }
}

#[test]
fn lost_reports_bring_repairs_to_that_receiver_only_and_no_more_than_asked() {
    let port = free_port();
    // No repair symbols but those asked for.
    let srv = server(port, "max-repair-burst=40", "repair-percent=0");
    let mut a = RawClient::join(port, Stay::For(30_000_000_000));
    let mut b = RawClient::join(port, Stay::For(30_000_000_000));
    let mut block = None;
    let start = std::time::Instant::now();
    while block.is_none() && start.elapsed() < 20 * SECOND {
        let seen = a.pump(Duration::from_millis(100));
        block = seen.iter().filter_map(|p| symbol(p)).map(|s| s.0).max();
    }
    let block = block.expect("packets");
    b.pump(Duration::from_millis(10));
    let lost = |needed| LostEntry {
        channel: 0,
        flow: 0,
        block,
        needed,
    };
    a.client.report_lost(&[lost(5)]);
    let repairs = |got: &[Vec<u8>]| {
        got.iter()
            .filter_map(|p| symbol(p))
            .filter(|s| s.2 && s.0 == block)
            .count()
    };
    // Until `want` came (or 10 s), then 300 ms more for any surplus; and how long it took.
    let collect = |c: &mut RawClient, want: usize| {
        let start = std::time::Instant::now();
        let mut n = 0;
        while n < want && start.elapsed() < 10 * SECOND {
            n += repairs(&c.pump(Duration::from_millis(50)));
        }
        n += repairs(&c.pump(Duration::from_millis(300)));
        (n, start.elapsed())
    };
    assert_eq!(collect(&mut a, 5).0, 5);
    assert_eq!(
        repairs(&b.pump(Duration::from_millis(50))),
        0,
        "not to the other one"
    );
    // A flood of reports gets the burst at most (and the rate, in the time it takes).
    for _ in 0..50 {
        a.client.report_lost(&[lost(1000)]);
    }
    let (got, took) = collect(&mut a, 40);
    let most = 40 + (2000.0 * took.as_secs_f64()) as usize;
    assert!((40..=most).contains(&got), "{got} repairs in {took:?}");
    let s = stats(&sink(&srv));
    assert!(
        s.get::<u64>("repair-symbols-asked").unwrap() >= 50_000,
        "{s}"
    );
    assert!(
        s.get::<u64>("repair-symbols-granted").unwrap() < 1000,
        "{s}"
    );
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_receiver_joins_a_restarted_server_again_by_itself() {
    let port = free_port();
    let srv = server(port, "", "");
    let rx = receiver(port, "");
    let depay = rx.by_name("depay").unwrap();
    let buffers = || stats(&depay).get::<u64>("buffers").unwrap();
    assert!(wait_for(10 * SECOND, || buffers() > 10));
    srv.set_state(gst::State::Null).unwrap();
    // A new server on the same port knows nothing of the receiver (another secret).
    let srv = server(port, "", "");
    let before = buffers();
    assert!(wait_for(15 * SECOND, || clients(&sink(&srv)) == 1));
    assert!(wait_for(10 * SECOND, || buffers() > before + 10));
    rx.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let port = free_port();
    let first = server(port, "", "");
    let second = pipeline(&format!("fakesrc ! session-sink port={port}"));
    assert!(second.set_state(gst::State::Playing).is_err());
    let err = bus_message(&second, gst::MessageType::Error, 5 * SECOND).expect("an error");
    assert!(
        err.contains(&format!("cannot listen on 0.0.0.0:{port}")),
        "{err}"
    );
    second.set_state(gst::State::Null).unwrap();
    first.set_state(gst::State::Null).unwrap();
}

/// Two servers, `appsrc ! fec-payloader ! session-sink` each, fed the same buffers by the
/// test (the same blocks: cut by size alone; each server its own repair symbols), and a
/// receiver joined to both that rebuilt a few blocks already.
struct TwoServers {
    servers: Arc<Mutex<Vec<gst::Pipeline>>>,
    rx: gst::Pipeline,
    stop: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl TwoServers {
    fn start(pay_a: &str, pay_b: &str) -> TwoServers {
        let (a, b) = (free_port(), free_port());
        let servers: Vec<gst::Pipeline> = [(a, pay_a), (b, pay_b)]
            .iter()
            .map(|(port, pay)| {
                let p = pipeline(&format!(
                    "appsrc name=src is-live=true format=time ! fec-payloader max-block-time=0 {pay} \
                     ! session-sink port={port}"
                ));
                p.set_state(gst::State::Playing).unwrap();
                p
            })
            .collect();
        let rx = pipeline(&format!(
            "session-src name=src host=127.0.0.1:{a},127.0.0.1:{b} ! fec-depayloader name=depay ! fakesink"
        ));
        rx.set_state(gst::State::Playing).unwrap();
        let src = rx.by_name("src").unwrap();
        let joined = |s: &gst::glib::SendValue| {
            s.get::<gst::Structure>()
                .unwrap()
                .get::<bool>("joined")
                .unwrap()
        };
        assert!(wait_for(10 * SECOND, || stats(&src)
            .get::<gst::Array>("servers")
            .unwrap()
            .iter()
            .all(joined)));
        let mut t = TwoServers {
            servers: Arc::new(Mutex::new(servers)),
            rx,
            stop: Arc::default(),
            feeder: None,
        };
        t.feeder = Some(t.feed());
        assert!(wait_for(20 * SECOND, || t.depay("blocks-decoded") >= 5));
        t
    }

    /// Pushes 10 kB buffers, 100 a second, into every server still there.
    fn feed(&self) -> std::thread::JoinHandle<()> {
        let (servers, stop) = (self.servers.clone(), self.stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let data: Vec<u8> = (0..10_000).map(|j| (i * 7 + j) as u8).collect();
                for p in servers.lock().unwrap().iter() {
                    let src = p.by_name("src").unwrap();
                    let src = src.downcast::<gst_app::AppSrc>().unwrap();
                    let _ = src.push_buffer(gst::Buffer::from_slice(data.clone()));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    }

    fn depay(&self, field: &str) -> u64 {
        stats(&self.rx.by_name("depay").unwrap())
            .get::<u64>(field)
            .unwrap()
    }
}

impl Drop for TwoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        let _ = self.rx.set_state(gst::State::Null);
        for p in self.servers.lock().unwrap().iter() {
            let _ = p.set_state(gst::State::Null);
        }
    }
}

#[test]
fn symbols_from_two_servers_add_up_per_channel() {
    // Neither server sends enough to rebuild a block alone: 60 % of K each, disjoint
    // repair symbols; together 120 %.
    let t = TwoServers::start(
        "send-source=false repair-percent=60 first-repair-esi=0",
        "send-source=false repair-percent=60 first-repair-esi=100000",
    );
    let s = stats(&t.rx.by_name("src").unwrap());
    let channels = s.get::<gst::Array>("channels").unwrap();
    assert_eq!(channels.len(), 1, "one channel name, one pad: {s}");
    let channel = channels[0].get::<gst::Structure>().unwrap();
    assert_eq!(channel.get::<u32>("servers").unwrap(), 2);
}

#[test]
fn losing_one_of_two_servers_loses_nothing_when_the_other_carries_enough() {
    let t = TwoServers::start(
        "repair-percent=30 first-repair-esi=0",
        "send-source=false repair-percent=30 first-repair-esi=100000",
    );
    // Server b goes away mid-stream.
    let b = t.servers.lock().unwrap().pop().unwrap();
    b.set_state(gst::State::Null).unwrap();
    let decoded = t.depay("blocks-decoded");
    assert!(wait_for(20 * SECOND, || t.depay("blocks-decoded") >= decoded + 10));
    assert_eq!(t.depay("blocks-lost"), 0);
    assert!(bus_message(&t.rx, gst::MessageType::Error, Duration::ZERO).is_none());
}

#[test]
fn an_edge_relay_forwards_its_receivers_loss_reports_to_the_origin() {
    let (origin, edge) = (free_port(), free_port());
    // No repair symbols at the origin but those asked for.
    let srv = server(origin, "", "repair-percent=0");
    let relay = pipeline(&format!(
        "session-src host=127.0.0.1 port={origin} ! session-sink port={edge}"
    ));
    relay.set_state(gst::State::Playing).unwrap();
    let mut rx = RawClient::join(edge, Stay::For(30_000_000_000));
    // The edge joins the origin on its own schedule: wait for packets through it.
    let mut block = None;
    let start = std::time::Instant::now();
    while block.is_none() && start.elapsed() < 20 * SECOND {
        let seen = rx.pump(Duration::from_millis(100));
        block = seen.iter().filter_map(|p| symbol(p)).map(|s| s.0).max();
    }
    let block = block.expect("packets through the edge");
    rx.client.report_lost(&[LostEntry {
        channel: 0,
        flow: 0,
        block,
        needed: 4,
    }]);
    let repairs_in = |got: Vec<Vec<u8>>| {
        got.iter()
            .filter_map(|p| symbol(p))
            .filter(|s| s.2 && s.0 == block)
            .count()
    };
    let mut repairs = 0;
    let start = std::time::Instant::now();
    while repairs < 4 && start.elapsed() < 10 * SECOND {
        repairs += repairs_in(rx.pump(Duration::from_millis(100)));
    }
    // And no more than asked.
    repairs += repairs_in(rx.pump(Duration::from_millis(300)));
    assert_eq!(
        repairs, 4,
        "fresh symbols from the origin, through the edge"
    );
    for p in [relay, srv] {
        p.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn eos_sent_to_a_receiver_ends_it_as_gst_launch_e_does_on_ctrl_c() {
    let port = free_port();
    let srv = server(port, "", "");
    let rx = receiver(port, "");
    let depay = rx.by_name("depay").unwrap();
    assert!(wait_for(10 * SECOND, || stats(&depay)
        .get::<u64>("buffers")
        .unwrap()
        > 10));
    assert!(rx.send_event(gst::event::Eos::new()));
    assert!(
        bus_message(&rx, gst::MessageType::Eos, 10 * SECOND).is_some(),
        "no EOS after the application's EOS"
    );
    rx.set_state(gst::State::Null).unwrap();
    // Before any server answered there is no pad to end: a clear error, not a hang.
    let lonely = receiver(free_port(), "");
    assert!(lonely.send_event(gst::event::Eos::new()));
    let err = bus_message(&lonely, gst::MessageType::Error, 5 * SECOND).expect("an error");
    assert!(err.contains("before any server answered"), "{err}");
    lonely.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn what_the_hold_kept_reaches_every_channel_whole_when_the_stream_ends() {
    let port = free_port();
    // Five receivers awaited, one comes: the hold keeps ~4 s of three channels, then the
    // stream ends (as Ctrl-C under gst-launch -e makes it) and the kept data goes out.
    let srv = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=AYUV64,width=64,height=48,framerate=30/1 \
         ! tee name=t session-sink name=sink port={port} wait-for-clients=5 \
         t. ! queue ! fec-payloader name=p0 flow=0 ! sink.sink_0 \
         t. ! queue ! fec-payloader name=p1 flow=1 ! sink.sink_1 \
         t. ! queue ! fec-payloader name=p2 flow=2 ! sink.sink_2"
    ));
    srv.set_state(gst::State::Playing).unwrap();
    let rx = pipeline(&format!(
        "session-src name=src port={port} \
         src.src_0 ! fec-depayloader name=d0 ! fakesink \
         src.src_1 ! fec-depayloader name=d1 ! fakesink \
         src.src_2 ! fec-depayloader name=d2 ! fakesink"
    ));
    rx.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(4 * SECOND);
    assert!(srv.send_event(gst::event::Eos::new()));
    assert!(bus_message(&rx, gst::MessageType::Eos, 30 * SECOND).is_some());
    for i in 0..3 {
        let sent = stats(&srv.by_name(&format!("p{i}")).unwrap())
            .get::<u64>("buffers-in")
            .unwrap();
        let d = stats(&rx.by_name(&format!("d{i}")).unwrap());
        assert!(sent > 60, "{sent} buffers held");
        assert_eq!(d.get::<u64>("blocks-lost").unwrap(), 0, "channel {i}: {d}");
        assert_eq!(d.get::<u64>("buffers").unwrap(), sent, "channel {i}: {d}");
    }
    rx.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn every_element_posts_its_stats_on_the_bus_each_second() {
    let port = free_port();
    let srv = server(port, "", "");
    let rx = receiver(port, "");
    let names = |p: &gst::Pipeline| -> Vec<String> {
        let bus = p.bus().unwrap();
        std::iter::from_fn(|| bus.pop())
            .filter_map(|m| m.structure().map(|s| s.name().to_string()))
            .collect()
    };
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    let posted = wait_for(15 * SECOND, || {
        sent.extend(names(&srv));
        got.extend(names(&rx));
        let has = |v: &[String], n: &str| v.iter().any(|s| s == n);
        has(&sent, "fanout-session-sink-stats")
            && has(&sent, "fanout-fec-payloader-stats")
            && has(&got, "fanout-session-src-stats")
            && has(&got, "fanout-fec-depayloader-stats")
    });
    assert!(posted, "sender posted {sent:?}, receiver {got:?}");
    rx.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_leave_over_tcp_removes_the_receiver_and_closes_its_connection() {
    use std::io::{Read, Write};
    let port = free_port();
    let srv = server(port, "tcp=true", "");
    let sink = sink(&srv);
    let mut c = fanout_session::Client::new_stream(
        fanout_session::ClientConfig::default(),
        fanout_session::Mono::ZERO,
        1,
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&fanout_session::frame(&[&c.poll_transmit().unwrap()]).unwrap())
        .unwrap();
    assert!(wait_for(10 * SECOND, || stats(&sink)
        .get::<u32>("clients")
        .unwrap()
        == 1));
    // The session id, from the JOINED among the first frames.
    let mut frames = fanout_session::Deframer::control();
    let mut buf = [0u8; 65536];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut session = None;
    let start = std::time::Instant::now();
    while session.is_none() && start.elapsed() < 10 * SECOND {
        if let Ok(n) = s.read(&mut buf) {
            frames.push(&buf[..n]);
            while let Some(Ok(f)) = frames.next_frame() {
                if let Ok(Message::Joined { session: id, .. }) = message::parse_message(f) {
                    session = Some(id);
                }
            }
        }
    }
    let leave = message::write(&Message::Leave {
        session: session.expect("JOINED"),
    });
    s.write_all(&fanout_session::frame(&[&leave]).unwrap())
        .unwrap();
    assert!(wait_for(10 * SECOND, || stats(&sink)
        .get::<u32>("clients")
        .unwrap()
        == 0));
    // The server closes the connection: reads end (after what was queued).
    let start = std::time::Instant::now();
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => (),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (),
            Err(_) => break true,
        }
        if start.elapsed() > 10 * SECOND {
            break false;
        }
    };
    assert!(closed, "the connection stayed open after LEAVE");
    srv.set_state(gst::State::Null).unwrap();
}

/// Takes the stream for 3 s, telling `tell` as its loss twice a second if given; the
/// answers (repair sent to this receiver alone) it got.
fn answers(c: &mut RawClient, tell: Option<f64>) -> u32 {
    let mut n = 0;
    let mut buf = [0u8; 65536];
    let start = std::time::Instant::now();
    let mut told = start - 10 * SECOND;
    while start.elapsed() < 3 * SECOND {
        if let Some(loss) = tell.filter(|_| told.elapsed() > SECOND / 2) {
            c.client.report_loss(0, loss);
            told = std::time::Instant::now();
        }
        c.flush();
        if let Ok(len) = c.sock.recv(&mut buf) {
            let now = c.now();
            if let Some(d) = c.client.handle_datagram(now, &mut buf[..len]) {
                n += u32::from(d.answer);
            }
        }
    }
    n
}

#[test]
fn a_lower_top_up_confidence_sends_less_repair_up_front_for_the_same_loss() {
    let per_block = |confidence: &str| {
        let port = free_port();
        let srv = server(
            port,
            &format!("top-up-confidence={confidence}"),
            "repair-percent=0 name=pay",
        );
        let mut lossy = RawClient::join(port, Stay::For(30_000_000_000));
        let got = answers(&mut lossy, Some(0.1));
        let st = stats(&sink(&srv));
        let blocks = stats(&srv.by_name("pay").unwrap())
            .get::<u64>("blocks")
            .unwrap();
        let top_ups = st.get::<u64>("top-up-symbols").unwrap();
        srv.set_state(gst::State::Null).unwrap();
        assert!(got > 0 && blocks > 5, "{blocks} blocks\n{st}");
        top_ups as f64 / blocks as f64
    };
    let (low, default) = (per_block("50"), per_block("99"));
    assert!(
        low > 0.0 && low < default * 0.8,
        "per block: {low} at 50 %, {default} at 99 %"
    );
}

#[test]
fn a_receiver_that_tells_its_loss_gets_repair_with_every_block_and_a_clean_one_none() {
    let port = free_port();
    let srv = server(port, "", "repair-percent=0");
    let mut lossy = RawClient::join(port, Stay::For(30_000_000_000));
    let mut clean = RawClient::join(port, Stay::For(30_000_000_000));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| answers(&mut lossy, Some(0.1)));
        let b = s.spawn(|| answers(&mut clean, None));
        (a.join().unwrap(), b.join().unwrap())
    });
    let st = stats(&sink(&srv));
    assert!(a > 10, "repair up front for the lossy receiver: {a}\n{st}");
    assert_eq!(b, 0, "none for the clean one\n{st}");
    assert!(st.get::<u64>("loss-reports").unwrap() >= 4, "{st}");
    assert!(
        st.get::<u64>("top-up-symbols").unwrap() >= u64::from(a),
        "{st}"
    );
    assert_eq!(
        st.get::<u64>("lost-reports").unwrap(),
        0,
        "nobody asked: {st}"
    );
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_lossy_receiver_tells_its_loss_by_itself_and_the_sender_tops_up() {
    let port = free_port();
    let srv = server(port, "", "repair-percent=0");
    // The loss is made after session-src: what fec-depayloader measures goes upstream.
    let rx = receiver(
        port,
        "! capsfilter caps=application/x-fanout-fec,packing=datagram ! identity drop-probability=0.1",
    );
    let depay = rx.by_name("depay").unwrap();
    let sink = sink(&srv);
    let topped = wait_for(20 * SECOND, || {
        stats(&sink).get::<u64>("top-up-symbols").unwrap() > 50
    });
    let (s, d) = (stats(&sink), stats(&depay));
    assert!(topped, "{s}\n{d}");
    let loss = d.get::<f64>("observed-loss").unwrap();
    assert!((0.05..0.15).contains(&loss), "{loss}");
    assert!(s.get::<u64>("loss-reports").unwrap() > 0, "{s}");
    rx.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_block_buffer_whose_packet_list_does_not_fit_is_dropped_counted_and_said() {
    let port = free_port();
    let srv = pipeline(&format!(
        "appsrc name=in caps=application/x-fanout-fec,packing=block \
         ! session-sink name=sink port={port}"
    ));
    srv.set_state(gst::State::Playing).unwrap();
    let src = srv
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    // Listed past its end, then listing nothing.
    let mut past = gst::Buffer::from_slice(vec![0u8; 100]);
    let places = gstfanoutfec::packing::write(&std::iter::once(0..200).collect::<Vec<_>>());
    gstfanoutfec::packing::set_packets(past.get_mut().unwrap(), places);
    let mut empty = gst::Buffer::from_slice(vec![0u8; 100]);
    gstfanoutfec::packing::set_packets(empty.get_mut().unwrap(), Vec::new());
    src.push_buffer(past).unwrap();
    src.push_buffer(empty).unwrap();
    let warning = bus_message(&srv, gst::MessageType::Warning, 10 * SECOND).expect("a warning");
    assert!(warning.contains("listed its packets wrongly"), "{warning}");
    let bad = || {
        stats(&sink(&srv)).get::<gst::Array>("channels").unwrap()[0]
            .get::<gst::Structure>()
            .unwrap()
            .get::<u64>("bad-buffers")
            .unwrap()
    };
    assert!(wait_for(10 * SECOND, || bad() == 2), "{}", bad());
    srv.set_state(gst::State::Null).unwrap();
}
