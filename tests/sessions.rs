//! `fec-payloader ! session-sink` and `session-src ! fec-depayloader` in separate
//! gst-launch processes, through a lossy UDP relay this test runs: what arrives is the
//! input's bytes, and LOST reports are what makes every block arrive.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use fanout_examples::LossyRelay;
use fanout_tests::*;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 1 500 packets' worth of random bytes.
fn random_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..1500 * 1316)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

struct Transfer {
    input: Vec<u8>,
    outputs: Vec<Vec<u8>>,
    /// What the receivers' gst-launch printed.
    logs: Vec<String>,
}

/// Sends 2 MB through `session-sink` to `receivers` receivers (each through its own relay
/// losing `loss`), paced at about 7 Mbit/s. The sender reads a FIFO the test writes only once
/// every receiver joined, so every receiver can get every byte.
fn transfer(
    loss: f64,
    receivers: usize,
    pay_opts: &str,
    sink_opts: &str,
    depay_opts: &str,
) -> Transfer {
    transfer_over(
        loss,
        Duration::ZERO,
        receivers,
        pay_opts,
        sink_opts,
        depay_opts,
    )
}

/// As [`transfer`], over links of round trip `rtt`.
fn transfer_over(
    loss: f64,
    rtt: Duration,
    receivers: usize,
    pay_opts: &str,
    sink_opts: &str,
    depay_opts: &str,
) -> Transfer {
    let tmp = tempfile::tempdir().unwrap();
    let input_path = tmp.path().join("in.fifo");
    mkfifo(&input_path);
    let input = random_bytes(42);
    let port = free_udp_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let relays: Vec<LossyRelay> = (0..receivers)
        .map(|i| LossyRelay::with_delay(server, loss, rtt / 2, 7 + i as u64).unwrap())
        .collect();
    let children: Vec<_> = relays
        .iter()
        .enumerate()
        .map(|(i, relay)| {
            let out = tmp.path().join(format!("out{i}.bin"));
            let child = spawn_receiver(&format!("port={}", relay.port()), depay_opts, &out);
            (child, out)
        })
        .collect();
    let sender = spawn(&format!(
        "filesrc location={} blocksize=1316 ! identity sleep-time=1500 \
         ! fec-payloader {pay_opts} ! session-sink port={port} {sink_opts}",
        input_path.display()
    ));
    let start = std::time::Instant::now();
    while !relays.iter().all(|r| r.joined()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "receivers did not join"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(&input_path, &input).unwrap();
    let sender = wait_with_timeout(sender, Duration::from_secs(90));
    assert!(sender.status.success(), "{}", text(&sender));
    let outputs = children
        .into_iter()
        .map(|(child, out)| {
            let o = wait_with_timeout(child, Duration::from_secs(30));
            assert!(o.status.success(), "{}", text(&o));
            (std::fs::read(out).unwrap(), text(&o))
        })
        .collect::<Vec<_>>();
    let (outputs, logs) = outputs.into_iter().unzip();
    for r in &relays {
        if loss > 0.0 {
            assert!(r.dropped() > 100, "the relay lost nothing");
        }
    }
    Transfer {
        input,
        outputs,
        logs,
    }
}

#[test]
fn with_loss_reports_every_block_arrives_through_10_percent_loss() {
    let t = transfer(0.1, 1, "repair-percent=5", "", "");
    assert!(
        t.input == t.outputs[0],
        "got {} of {} bytes, the input's end: {}\n{}",
        t.outputs[0].len(),
        t.input.len(),
        t.input.ends_with(&t.outputs[0]),
        t.logs[0]
    );
}

/// Far receivers: 10 % loss both ways at 50 and 200 ms round trip, the depayloader given
/// 500 ms. The first ask brings enough for the loss on its way back almost always; when it
/// does not, a second fits in the time left.
#[test]
fn with_loss_reports_every_block_arrives_at_50_and_200_ms_round_trip() {
    for rtt in [50, 200] {
        let t = transfer_over(
            0.1,
            Duration::from_millis(rtt),
            2,
            "repair-percent=5",
            "",
            "latency=500000000",
        );
        for (o, log) in t.outputs.iter().zip(&t.logs) {
            assert!(
                &t.input == o,
                "RTT {rtt} ms: got {} of {} bytes\n{log}",
                o.len(),
                t.input.len(),
            );
        }
    }
}

#[test]
fn without_loss_reports_the_same_run_loses_blocks_and_says_how_much() {
    // The same sender; the receiving fec-depayloader never asks (repair-delay=0).
    let t = transfer(0.1, 1, "repair-percent=5", "", "repair-delay=0");
    assert!(
        t.input != t.outputs[0],
        "5 % repair symbols alone covered 10 % loss: the test shows nothing"
    );
    // Never silently: the warning names the blocks and bytes, the summary counts them.
    let log = &t.logs[0];
    assert!(log.contains("could not be rebuilt in time"), "{log}");
    assert!(log.contains("bytes) could not be rebuilt"), "{log}");
    let summary = log
        .lines()
        .find(|l| l.contains("stream ended:"))
        .unwrap_or_else(|| panic!("no summary at EOS: {log}"));
    assert!(!summary.contains(" 0 lost"), "{summary}");
}

/// session-sink takes a block's packets in one buffer (what fec-payloader sends it by
/// default) or a buffer per packet (forced here), and sends with GSO or without.
#[test]
fn block_or_datagram_packing_with_gso_on_or_off_give_the_same_bytes_to_every_receiver() {
    for packing in ["block", "datagram"] {
        for gso in [true, false] {
            let pay = format!("! capsfilter caps=application/x-fanout-fec,packing={packing}");
            let t = transfer(0.0, 2, &pay, &format!("gso={gso}"), "");
            for o in &t.outputs {
                assert!(
                    &t.input == o,
                    "packing={packing} gso={gso}: got {} of {} bytes, or not the input's",
                    o.len(),
                    t.input.len()
                );
            }
        }
    }
}

/// Receivers started before the sender (3 s and 0.3 s before), sender with
/// `wait-for-clients`: both get the stream from its first byte.
#[test]
fn receivers_started_before_the_sender_get_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let input_path = tmp.path().join("in.bin");
    let input = random_bytes(11);
    std::fs::write(&input_path, &input).unwrap();
    let port = free_udp_port();
    let receiver = |i: usize| {
        let out = tmp.path().join(format!("out{i}.bin"));
        (spawn_receiver(&format!("port={port}"), "", &out), out)
    };
    let early = receiver(0);
    std::thread::sleep(Duration::from_millis(2700));
    let late = receiver(1);
    std::thread::sleep(Duration::from_millis(300));
    let sender = run(
        &format!(
            "filesrc location={} blocksize=1316 ! identity sleep-time=1500 \
             ! fec-payloader ! session-sink port={port} wait-for-clients=2 wait-timeout=20000000000",
            input_path.display()
        ),
        Duration::from_secs(90),
    );
    assert!(sender.status.success(), "{}", text(&sender));
    assert!(
        !text(&sender).contains("receivers joined within"),
        "the hold timed out: {}",
        text(&sender)
    );
    for (child, out) in [early, late] {
        let o = wait_with_timeout(child, Duration::from_secs(30));
        assert!(o.status.success(), "{}", text(&o));
        let got = std::fs::read(out).unwrap();
        assert!(
            got == input,
            "got {} of {} bytes; the input's end: {}\n{}",
            got.len(),
            input.len(),
            input.ends_with(&got),
            text(&o)
        );
    }
}

/// Nobody joins: the sender waits `wait-timeout` (shorter than its 1.6 s stream), says so,
/// and sends anyway.
#[test]
fn a_sender_waiting_for_receivers_that_never_come_warns_and_goes_on() {
    let port = free_udp_port();
    let o = run(
        &format!(
            "videotestsrc is-live=true num-buffers=40 ! video/x-raw,width=64,height=48,framerate=25/1 \
             ! fec-payloader ! session-sink port={port} wait-for-clients=1 wait-timeout=500000000"
        ),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("only 0 of 1 receivers joined within"),
        "{}",
        text(&o)
    );
}
