// SPDX-License-Identifier: MPL-2.0

//! The sessions' timers on a clock the test drives (the pipeline's clock, which the
//! elements run their timers on): nothing happens a nanosecond early, and it happens as
//! soon as the time comes. Real time only bounds how long a test waits for an outcome.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, SystemTime};

use common::*;
use fanout_session::message::{self, Message};
use fanout_session::Stay;
use gst::prelude::*;

const MS: u64 = 1_000_000;

fn advance(clock: &gst_check::TestClock, ns: u64) {
    clock.advance_time(gst::ClockTime::from_nseconds(ns).nseconds() as i64);
}

/// A sender with nothing to send until the test says: its clock is the test's.
fn driven_server(port: u16, sink_opts: &str) -> (gst::Pipeline, gst_check::TestClock) {
    let p = pipeline(&format!(
        "appsrc name=in is-live=true caps=application/octet-stream format=time \
         ! fec-payloader ! session-sink name=sink port={port} {sink_opts}"
    ));
    let clock = drive(&p);
    p.set_state(gst::State::Playing).unwrap();
    (p, clock)
}

fn removed(log: &std::sync::Mutex<Vec<String>>, reason: &str) -> usize {
    let log = log.lock().unwrap();
    log.iter().filter(|l| l.ends_with(reason)).count()
}

/// The ENDs that came to `sock` so far, without waiting.
fn ends(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 65536];
    let mut n = 0;
    sock.set_nonblocking(true).unwrap();
    while let Ok(len) = sock.recv(&mut buf) {
        n += usize::from(matches!(
            message::parse_message(&buf[..len]),
            Ok(Message::End { .. })
        ));
    }
    sock.set_nonblocking(false).unwrap();
    n
}

#[test]
fn end_goes_out_five_times_exactly_30_ms_apart_and_eos_follows_the_last() {
    let port = free_port();
    let (srv, clock) = driven_server(port, "");
    let c = RawClient::join(port, Stay::For(30_000 * MS));
    assert!(srv.send_event(gst::event::Eos::new()));
    // The first at once, on the time the stream ended.
    assert!(wait_for(10 * SECOND, || ends(&c.sock) == 1), "no first END");
    let bus = srv.bus().unwrap();
    for k in 2..=5 {
        advance(&clock, 29 * MS);
        settled(port);
        assert_eq!(ends(&c.sock), 0, "END {k} came a millisecond early");
        assert!(
            bus.pop_filtered(&[gst::MessageType::Eos]).is_none(),
            "EOS before END {k}"
        );
        advance(&clock, MS);
        assert!(wait_for(10 * SECOND, || ends(&c.sock) == 1), "no END {k}");
    }
    settled(port);
    assert!(
        bus.pop_filtered(&[gst::MessageType::Eos]).is_some(),
        "no EOS after the fifth END"
    );
    advance(&clock, 300 * MS);
    settled(port);
    assert_eq!(ends(&c.sock), 0, "a sixth END");
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_receiver_that_vanishes_expires_by_duration_and_by_absolute_time() {
    let port = free_port();
    let (srv, clock) = driven_server(port, "");
    let sink = sink(&srv);
    let log = record_signals(&sink);
    // Read after the server started: "until" is later on its time line than here.
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let a = RawClient::join(port, Stay::For(1_000 * MS));
    let b = RawClient::join(port, Stay::Until(unix + 1_500 * MS));
    // Neither says LEAVE: both sockets just go.
    drop((a, b));
    advance(&clock, 999 * MS);
    settled(port);
    assert_eq!(removed(&log, " expired"), 0, "{:?}", log.lock().unwrap());
    advance(&clock, MS);
    assert!(wait_for(10 * SECOND, || removed(&log, " expired") == 1));
    settled(port);
    assert_eq!(
        removed(&log, " expired"),
        1,
        "the absolute one is not due yet"
    );
    assert_eq!(stats(&sink).get::<u32>("clients").unwrap(), 1);
    advance(&clock, 499 * MS);
    settled(port);
    assert_eq!(removed(&log, " expired"), 1, "{:?}", log.lock().unwrap());
    advance(&clock, 1_500 * MS);
    assert!(wait_for(10 * SECOND, || removed(&log, " expired") == 2));
    assert_eq!(stats(&sink).get::<u32>("clients").unwrap(), 0);
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_sender_waiting_for_receivers_warns_and_sends_exactly_at_wait_timeout() {
    let port = free_port();
    let (srv, clock) = driven_server(port, "wait-for-clients=2 wait-timeout=2000000000");
    let c = RawClient::join(port, Stay::For(30_000 * MS));
    let bus = srv.bus().unwrap();
    advance(&clock, 1_999 * MS);
    settled(port);
    assert!(
        bus.pop_filtered(&[gst::MessageType::Warning]).is_none(),
        "the hold gave up early"
    );
    advance(&clock, MS);
    let warning = bus_message(&srv, gst::MessageType::Warning, 10 * SECOND).expect("a warning");
    assert!(
        warning.contains("only 1 of 2 receivers joined within"),
        "{warning}"
    );
    drop(c);
    srv.set_state(gst::State::Null).unwrap();
}

#[test]
fn an_unreachable_server_is_an_error_at_the_first_retry_past_the_timeout() {
    // A server that hears and never answers: each HELLO tells the test the receiver's
    // thread saw the time it is due at.
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let rx = pipeline(&format!(
        "session-src name=src port={port} timeout=1000000000 ! fec-depayloader ! fakesink"
    ));
    let clock = drive(&rx);
    rx.set_state(gst::State::Playing).unwrap();
    let mut buf = [0u8; 2048];
    let mut hello = |k: u64| {
        let n = server
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("HELLO {k}: {e}"));
        assert!(
            matches!(message::parse_message(&buf[..n]), Ok(Message::Hello { .. })),
            "HELLO {k}"
        );
    };
    hello(0);
    // Repeated every 100 ms while nothing answers: the tenth is at 1 s.
    for k in 1..=9 {
        advance(&clock, 100 * MS);
        hello(k);
    }
    // The turn that sent HELLO 9 tells the element what it had to just after: a moment.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        bus_message(&rx, gst::MessageType::Error, Duration::ZERO),
        None,
        "an error before the timeout"
    );
    advance(&clock, 100 * MS);
    hello(10);
    let err = bus_message(&rx, gst::MessageType::Error, 10 * SECOND).expect("an error");
    assert!(err.contains("no answer from 127.0.0.1:"), "{err}");
    rx.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_quiet_channel_keeps_its_receivers_and_refreshes_do_not_ask_again() {
    let port = free_port();
    // A channel whose data has not started (a delayed output, say): nothing for 7 s.
    let (srv, clock) = driven_server(port, "");
    let sink = sink(&srv);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let a = asked.clone();
    sink.connect("client-joining", false, move |_| {
        *a.lock().unwrap() += 1;
        Some(true.to_value())
    });
    // One joined for 30 s, one for 2 s (it refreshes about every second meanwhile), both
    // on the sender's clock.
    let receiver = |opts: &str| {
        let p = pipeline(&format!(
            "session-src name=src port={port} {opts} ! fec-depayloader ! fakesink"
        ));
        p.use_clock(Some(&clock));
        p.set_clock(Some(&clock)).unwrap();
        p.set_state(gst::State::Playing).unwrap();
        p
    };
    let long = receiver("");
    let short = receiver("join-duration=2000000000");
    assert!(wait_for(10 * SECOND, || stats(&sink)
        .get::<u32>("clients")
        .unwrap()
        == 2));
    // 7 s in 100 ms steps; the receivers are given a moment to read what each step sent.
    for _ in 0..70 {
        advance(&clock, 100 * MS);
        settled(port);
        std::thread::sleep(Duration::from_millis(10));
    }
    let joins = |p: &gst::Pipeline| {
        stats(&p.by_name("src").unwrap())
            .get::<u64>("joins")
            .unwrap()
    };
    // Silence for more than 3 s would make a receiver start over with a new handshake:
    // the channel's keepalive (CHANNEL every second) tells it the server is there.
    assert_eq!(joins(&long), 1, "{}", stats(&sink));
    assert!(joins(&short) >= 3, "the short session refreshed");
    // client-joining asks once per receiver, never for a refresh.
    assert_eq!(*asked.lock().unwrap(), 2, "{}", stats(&sink));
    assert_eq!(stats(&sink).get::<u32>("clients").unwrap(), 2);
    short.set_state(gst::State::Null).unwrap();
    long.set_state(gst::State::Null).unwrap();
    srv.set_state(gst::State::Null).unwrap();
}
