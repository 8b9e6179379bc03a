// SPDX-License-Identifier: MPL-2.0

//! Client and server state machines talking through an in-memory network.

use std::net::SocketAddr;
use std::time::Duration;

use fanout_session::message::{self, Cookie, Message, COOKIE_LEN};
use fanout_session::time::{nanos, Mono};
use fanout_session::{
    Client, ClientConfig, ClientEvent, Event, LostEntry, Now, Peer, Reason, RemoveReason, RepairTo,
    Server, ServerConfig, Stay,
};

const S: u64 = 1_000_000_000;
const UNIX0: u64 = 1_800_000_000 * S;

fn now(t: u64) -> Now {
    Now {
        mono: mono(t),
        unix: UNIX0 + t,
    }
}

/// `ns` on the monotonic clock of the tests.
fn mono(ns: u64) -> Mono {
    Mono::from_nanos(ns)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn peer(port: u16) -> Peer {
    Peer::Udp(addr(port))
}

/// A server whose receivers all come from one host (many ports of 192.0.2.1): the
/// per-host limit has a test of its own.
fn server() -> Server {
    let mut cfg = ServerConfig::new(b"test secret".to_vec());
    cfg.max_clients_per_host = 0;
    let mut s = Server::new(cfg);
    s.set_channel(0, "hd", "application/x-fanout-fec", None);
    s.set_channel(1, "sd", "video/mpegts", None);
    s
}

fn config(channels: &[&str], stay: Stay) -> ClientConfig {
    ClientConfig {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        stay,
        // Silence is tested on its own.
        idle_rejoin: Duration::from_nanos(u64::MAX),
        ..ClientConfig::default()
    }
}

/// Runs both machines until neither has anything to send; every JOIN is accepted unless
/// `authorize` says otherwise. Returns the server's events.
fn exchange(
    t: u64,
    s: &mut Server,
    c: &mut Client,
    at: SocketAddr,
    authorize: &dyn Fn(&[u8]) -> bool,
) -> Vec<Event> {
    loop {
        let mut moved = false;
        while let Some(d) = c.poll_transmit() {
            moved = true;
            if let Some(req) = s.handle_datagram(now(t), at, &d) {
                if authorize(&req.token) {
                    s.accept(now(t), req);
                } else {
                    s.refuse(req, Reason::NotAuthorized, "token refused");
                }
            }
        }
        while let Some(tx) = s.poll_transmit() {
            moved = true;
            if tx.to == Peer::Udp(at) {
                c.handle_datagram(mono(t), &mut tx.data.clone());
            }
        }
        if !moved {
            break;
        }
    }
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn yes(_: &[u8]) -> bool {
    true
}

fn joined_channels(c: &mut Client) -> Vec<String> {
    let mut names = None;
    while let Some(e) = c.poll_event() {
        if let ClientEvent::Joined { channels, .. } = e {
            names = Some(channels.into_iter().map(|c| c.name).collect());
        }
    }
    names.expect("joined")
}

#[test]
fn join_refresh_and_leave() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    let ev = exchange(0, &mut s, &mut c, addr(5000), &yes);
    assert_eq!(
        ev,
        vec![Event::Added {
            id: 1,
            peer: peer(5000)
        }]
    );
    assert_eq!(joined_channels(&mut c), vec!["hd"]);
    assert_eq!(s.members(0).collect::<Vec<_>>(), vec![(1, peer(5000))]);
    assert_eq!(s.members(1).count(), 0);

    // The refresh comes 40 % before the end of the stay (less up to 10 %), and keeps the
    // receiver in.
    let refresh = c.poll_timeout().map(Mono::as_nanos).unwrap();
    assert!((15 * S..=18 * S).contains(&refresh), "{refresh}");
    c.handle_timeout(mono(refresh));
    assert!(exchange(refresh, &mut s, &mut c, addr(5000), &yes).is_empty());
    s.handle_timeout(now(35 * S));
    assert_eq!(s.client_count(), 1, "the refresh moved the expiry");

    c.leave();
    let ev = exchange(36 * S, &mut s, &mut c, addr(5000), &yes);
    assert_eq!(
        ev,
        vec![Event::Removed {
            id: 1,
            peer: peer(5000),
            reason: RemoveReason::Left
        }]
    );
    assert_eq!(s.client_count(), 0);
}

#[test]
fn a_refresh_sets_the_channel_list() {
    let mut s = server();
    let mut c = Client::new(config(&["hd", "sd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(5000), &yes);
    assert_eq!(joined_channels(&mut c), vec!["hd", "sd"]);
    assert_eq!(s.members(0).count(), 1);
    assert_eq!(s.members(1).count(), 1, "one receiver in two channels");
    let mut c = Client::new(config(&["sd"], Stay::For(30 * S)), mono(S), 2);
    exchange(S, &mut s, &mut c, addr(5000), &yes);
    assert_eq!(s.members(0).count(), 0, "a channel left out is left");
    assert_eq!(s.members(1).count(), 1);
    let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(2 * S), 3);
    exchange(2 * S, &mut s, &mut c, addr(5000), &yes);
    assert_eq!(
        joined_channels(&mut c),
        vec!["hd", "sd"],
        "no list: every channel"
    );
    assert_eq!(s.client_count(), 1);
}

#[test]
fn expiry_by_duration_and_by_absolute_time() {
    let mut s = server();
    let mut a = Client::new(config(&["hd"], Stay::For(10 * S)), mono(0), 1);
    exchange(0, &mut s, &mut a, addr(1), &yes);
    let mut b = Client::new(config(&["hd"], Stay::Until(UNIX0 + 20 * S)), mono(0), 2);
    exchange(0, &mut s, &mut b, addr(2), &yes);
    assert_eq!(s.poll_timeout().map(Mono::as_nanos), Some(10 * S));
    s.handle_timeout(now(10 * S - 1));
    assert_eq!(s.client_count(), 2);
    s.handle_timeout(now(10 * S));
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        ev,
        vec![Event::Removed {
            id: 1,
            peer: peer(1),
            reason: RemoveReason::Expired
        }]
    );
    s.handle_timeout(now(20 * S));
    assert_eq!(
        s.client_count(),
        0,
        "gone at the absolute time it asked for"
    );
    // A time already past joins nobody.
    let mut c = Client::new(config(&["hd"], Stay::Until(UNIX0)), mono(30 * S), 3);
    let ev = exchange(30 * S, &mut s, &mut c, addr(3), &yes);
    assert_eq!(s.client_count(), 0);
    assert!(matches!(
        ev.last(),
        Some(Event::Removed {
            reason: RemoveReason::Expired,
            ..
        })
    ));
}

#[test]
fn an_unknown_channel_and_a_refused_token_are_refused_with_the_reason() {
    let mut s = server();
    let mut c = Client::new(config(&["4k"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Refused { reason: Reason::UnknownChannel, text }) if text.contains("4k")
    ));
    let mut cfg = config(&["hd"], Stay::For(30 * S));
    cfg.token = b"wrong".to_vec();
    let mut c = Client::new(cfg, mono(0), 2);
    let ev = exchange(0, &mut s, &mut c, addr(2), &|t| t == b"right");
    assert!(ev.is_empty());
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Refused {
            reason: Reason::NotAuthorized,
            text: "token refused".into()
        })
    );
    assert_eq!(s.client_count(), 0);
}

#[test]
fn one_host_gets_at_most_max_clients_per_host_places() {
    let mut s = Server::new(ServerConfig::new(b"k".to_vec()));
    s.set_channel(0, "hd", "", None);
    let max = s.config().max_clients_per_host as u16;
    assert!(max > 0, "on by default");
    for port in 1..=max + 1 {
        let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), port.into());
        exchange(0, &mut s, &mut c, addr(port), &yes);
        if port == max + 1 {
            assert!(matches!(
                c.poll_event(),
                Some(ClientEvent::Refused {
                    reason: Reason::Full,
                    ref text,
                    ..
                }) if text == "too many receivers from this host"
            ));
        }
    }
    assert_eq!(s.client_count(), max as usize);
    // Another host still gets in, and a place freed is taken again.
    let other = SocketAddr::from(([192, 0, 2, 2], 1));
    let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), 99);
    exchange(0, &mut s, &mut c, other, &yes);
    assert_eq!(s.client_count(), max as usize + 1);
    s.handle_datagram(
        now(0),
        addr(1),
        &message::write(&Message::Leave { session: 0 }),
    );
    let id = s.clients().find(|(_, p)| *p == peer(1)).unwrap().0;
    assert!(s.remove(id, RemoveReason::Removed));
    let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), 100);
    exchange(0, &mut s, &mut c, addr(100), &yes);
    assert_eq!(s.client_count(), max as usize + 1);
}

#[test]
fn a_join_asking_for_a_day_gets_a_minute_and_a_vanished_receiver_leaves_after_it() {
    let mut s = Server::new(ServerConfig::new(b"k".to_vec()));
    s.set_channel(0, "hd", "", None);
    let mut c = Client::new(config(&[], Stay::For(24 * 3600 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.client_count(), 1);
    // The receiver vanishes: nothing more from it.
    s.handle_timeout(now(59 * S));
    assert_eq!(s.client_count(), 1);
    s.handle_timeout(now(60 * S));
    assert_eq!(s.client_count(), 0);
}

#[test]
fn servers_sharing_a_secret_never_share_session_ids() {
    let joined_id = |s: &mut Server| {
        s.set_channel(0, "hd", "", None);
        let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), 1);
        exchange(0, s, &mut c, addr(1), &yes);
        // The session id, as the receiver's LEAVE carries it.
        c.leave();
        match message::parse(&c.poll_transmit().unwrap()) {
            Ok(message::Datagram::Control(Message::Leave { session })) => session,
            _ => panic!("not a LEAVE"),
        }
    };
    let mut a = Server::new(ServerConfig::new(b"shared".to_vec()));
    let mut b = Server::new(ServerConfig::new(b"shared".to_vec()));
    let (on_a, on_b) = (joined_id(&mut a), joined_id(&mut b));
    assert_ne!(on_a, on_b);
    // A LEAVE spoofed with the id learned on A does nothing on B.
    b.handle_datagram(
        now(S),
        addr(1),
        &message::write(&Message::Leave { session: on_a }),
    );
    assert_eq!(b.client_count(), 1);
}

#[test]
fn max_clients_is_kept() {
    let mut cfg = ServerConfig::new(b"k".to_vec());
    cfg.max_clients = 2;
    let mut s = Server::new(cfg);
    s.set_channel(0, "hd", "", None);
    for port in 1..=3 {
        let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), port.into());
        exchange(0, &mut s, &mut c, addr(port), &yes);
        if port == 3 {
            assert!(matches!(
                c.poll_event(),
                Some(ClientEvent::Refused {
                    reason: Reason::Full,
                    ..
                })
            ));
        }
    }
    assert_eq!(s.client_count(), 2);
}

fn cookie_for(s: &mut Server, t: u64, from: SocketAddr) -> Cookie {
    s.handle_datagram(now(t), from, &message::write(&Message::Hello { nonce: 5 }));
    match message::parse_message(&s.poll_transmit().unwrap().data).unwrap() {
        Message::Cookie { cookie, .. } => cookie,
        m => panic!("{m:?}"),
    }
}

fn join(cookie: Cookie) -> Vec<u8> {
    message::write(&Message::Join {
        nonce: 5,
        cookie,
        stay: Stay::For(30 * S),
        multicast: false,
        token: vec![],
        channels: vec![],
    })
}

#[test]
fn forged_expired_and_replayed_cookies_create_nothing() {
    let mut s = server();
    let good = cookie_for(&mut s, 0, addr(1));
    // Forged.
    assert!(s
        .handle_datagram(now(0), addr(1), &join([0; COOKIE_LEN]))
        .is_none());
    // Replayed from another address, or another port.
    assert!(s.handle_datagram(now(0), addr(2), &join(good)).is_none());
    assert!(s
        .handle_datagram(now(0), SocketAddr::from(([192, 0, 2, 2], 1)), &join(good))
        .is_none());
    // Expired: two buckets on.
    assert!(s
        .handle_datagram(now(60 * S), addr(1), &join(good))
        .is_none());
    assert_eq!(s.client_count(), 0);
    assert_eq!(s.stats.bad_cookies, 4);
    // Still good one bucket on.
    assert!(s
        .handle_datagram(now(45 * S), addr(1), &join(good))
        .is_some());
    // Every refusal was a small reply, no state.
    while let Some(tx) = s.poll_transmit() {
        assert!(tx.data.len() <= join(good).len());
    }
}

#[test]
fn a_flood_of_spoofed_joins_and_random_datagrams_creates_no_state_and_no_amplification() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(9), &yes);
    let mut x = 0x1234_5678_u64;
    let mut sent = 0usize;
    let mut replied = 0usize;
    for i in 0..200_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let from = SocketAddr::from(([10, (x >> 8) as u8, (x >> 16) as u8, x as u8], x as u16));
        let len = (x % 80) as usize;
        let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        match i % 4 {
            0 => d = join([(x % 251) as u8; COOKIE_LEN]),
            1 if d.len() >= 4 => d[..4].copy_from_slice(b"FS\x02\x01"),
            2 if d.len() >= 4 => d[..4].copy_from_slice(&[b'F', b'S', 1, (x % 9) as u8]),
            _ => (),
        }
        sent += d.len();
        assert!(s.handle_datagram(now(S), from, &d).is_none());
        while let Some(tx) = s.poll_transmit() {
            assert!(tx.data.len() <= d.len(), "a reply larger than its request");
            replied += tx.data.len();
        }
    }
    assert_eq!(s.client_count(), 1, "only the real receiver");
    assert!(replied <= sent);
    assert_eq!(s.members(0).collect::<Vec<_>>(), vec![(1, peer(9))]);
}

#[test]
fn a_hundred_thousand_join_leave_cycles_leave_nothing_behind() {
    let mut s = server();
    for i in 0..100_000u64 {
        let at = addr((i % 60_000) as u16 + 1);
        let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(i), i);
        exchange(i, &mut s, &mut c, at, &yes);
        c.leave();
        exchange(i, &mut s, &mut c, at, &yes);
        assert_eq!(s.client_count(), 0);
    }
    assert!(s.poll_event().is_none(), "events were drained by exchange");
    assert_eq!(s.members(0).count(), 0);
    assert!(s.address_of(1).is_none());
}

#[test]
fn lost_reports_become_bounded_repairs_for_joined_channels_only() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    let lost = |channel, needed| LostEntry {
        channel,
        flow: 7,
        block: 42,
        needed,
    };
    c.report_lost(&[lost(0, 5), lost(1, 5)]);
    let ev = exchange(0, &mut s, &mut c, addr(1), &yes);
    assert_eq!(
        ev,
        vec![Event::Repair {
            to: RepairTo::Receiver(1),
            channel: 0,
            flow: 7,
            block: 42,
            count: 5
        }],
        "nothing for a channel it did not join"
    );
    // A flood: never more than the burst, then the rate.
    let burst = u64::from(s.config().repair_burst);
    let mut granted = 5u64;
    for _ in 0..1000 {
        c.report_lost(&[lost(0, u16::MAX)]);
        for e in exchange(0, &mut s, &mut c, addr(1), &yes) {
            if let Event::Repair { count, .. } = e {
                granted += u64::from(count);
            }
        }
    }
    assert_eq!(granted, burst);
    c.report_lost(&[lost(0, u16::MAX)]);
    let ev = exchange(S / 2, &mut s, &mut c, addr(1), &yes);
    let rate = u64::from(s.config().repair_rate);
    assert!(
        matches!(ev[..], [Event::Repair { count, .. }] if u64::from(count) == (rate / 2).min(burst))
    );
}

#[test]
fn a_told_loss_counts_for_3_s_for_its_unicast_channels_and_tops_up_within_budget() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.unicast_losses(0, mono(0)), vec![], "nothing told yet");
    c.report_loss(0, 0.1);
    c.report_loss(1, 0.2);
    // Beyond 50 % it is sent as 50 %.
    exchange(0, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.unicast_losses(0, mono(0)), vec![(1, 0.1)]);
    assert_eq!(s.unicast_losses(1, mono(0)), vec![], "not its channel");
    assert_eq!(s.unicast_losses(0, mono(3 * S - 1)), vec![(1, 0.1)]);
    assert_eq!(s.unicast_losses(0, mono(3 * S)), vec![], "stale");
    c.report_loss(0, 0.9);
    exchange(S, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.unicast_losses(0, mono(S)), vec![(1, 0.5)]);
    c.report_loss(0, 0.0);
    exchange(S, &mut s, &mut c, addr(1), &yes);
    assert_eq!(
        s.unicast_losses(0, mono(S)),
        vec![],
        "a clean receiver costs nothing"
    );
    // A LOSS with another session, or from another address, changes nothing.
    let forged = message::write(&Message::Loss {
        session: 12345,
        channel: 0,
        loss: 5000,
    });
    s.handle_datagram(now(S), addr(1), &forged);
    c.report_loss(0, 0.3);
    let spoofed = c.poll_transmit().unwrap();
    s.handle_datagram(now(S), addr(2), &spoofed);
    assert_eq!(s.unicast_losses(0, mono(S)), vec![]);
    assert!(s.poll_transmit().is_none(), "no answer to a LOSS");
    // Repair up front draws on the receiver's budget as a LOST does.
    let burst = s.config().repair_burst;
    let mut granted = 0u64;
    for block in 0..100 {
        s.top_up(now(S), 1, 0, 7, block, 100);
        while let Some(e) = s.poll_event() {
            if let Event::Repair { count, to, .. } = e {
                assert_eq!(to, RepairTo::Receiver(1));
                granted += u64::from(count);
            }
        }
    }
    assert_eq!(granted, u64::from(burst));
    assert_eq!(s.stats.top_up_symbols, u64::from(burst));
    s.top_up(now(S), 99, 0, 7, 0, 100);
    assert!(s.poll_event().is_none(), "no such receiver");
}

#[test]
fn a_block_is_topped_up_for_what_each_told_loss_lacks_asked_once_per_loss() {
    let mut s = server();
    let mut a = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    let mut b = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 2);
    let mut clean = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 3);
    exchange(0, &mut s, &mut a, addr(1), &yes);
    exchange(0, &mut s, &mut b, addr(2), &yes);
    exchange(0, &mut s, &mut clean, addr(3), &yes);
    a.report_loss(0, 0.1);
    b.report_loss(0, 0.1);
    exchange(0, &mut s, &mut a, addr(1), &yes);
    exchange(0, &mut s, &mut b, addr(2), &yes);
    let asked = std::cell::Cell::new(0);
    let want = |loss: f64| {
        asked.set(asked.get() + 1);
        assert_eq!(loss, 0.1);
        110
    };
    s.top_up_block(now(S), (0, 7, 42), 100, want);
    let mut to = Vec::new();
    while let Some(e) = s.poll_event() {
        if let Event::Repair { count, to: t, .. } = e {
            to.push((t, count));
        }
    }
    to.sort_by_key(|(t, _)| format!("{t:?}"));
    assert_eq!(
        to,
        [(RepairTo::Receiver(1), 10), (RepairTo::Receiver(2), 10)]
    );
    assert_eq!(asked.get(), 1, "the same loss, asked once");
    assert_eq!(s.stats.top_up_symbols, 20);
    // Sent enough already: nothing more.
    s.top_up_block(now(S), (0, 7, 43), 110, |_| 110);
    assert!(s.poll_event().is_none());
}

#[test]
fn lost_from_another_address_or_session_creates_nothing() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    c.report_lost(&[LostEntry {
        channel: 0,
        flow: 0,
        block: 0,
        needed: 3,
    }]);
    let spoofed = c.poll_transmit().unwrap();
    s.handle_datagram(now(0), addr(2), &spoofed);
    assert!(s.poll_event().is_none());
    let reply = s.poll_transmit().unwrap();
    assert!(reply.data.len() <= spoofed.len());
    // A LEAVE with the wrong session does nothing either.
    s.handle_datagram(
        now(0),
        addr(1),
        &message::write(&Message::Leave { session: 1 }),
    );
    assert_eq!(s.client_count(), 1);
}

#[test]
fn a_restarted_server_is_joined_again() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    joined_channels(&mut c);
    // New server, new secret: the old session is unknown, its LOST is refused.
    let mut s = Server::new(ServerConfig::new(b"another secret".to_vec()));
    s.set_channel(0, "hd", "", None);
    c.report_lost(&[LostEntry {
        channel: 0,
        flow: 0,
        block: 0,
        needed: 3,
    }]);
    exchange(S, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.client_count(), 1, "joined the new server");
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Joined {
            new_session: true,
            ..
        })
    ));
    // And silence alone (no LOST to refuse) makes it join again too.
    let mut c = Client::new(ClientConfig::default(), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    let mut s = server();
    let t = c.poll_timeout().map(Mono::as_nanos).unwrap();
    assert!(t <= S + 3 * S);
    c.handle_timeout(mono(t));
    exchange(t, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.client_count(), 1);
}

#[test]
fn an_unanswered_hello_is_repeated_every_100_ms_for_5_s_then_backs_off() {
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    let mut at = Vec::new();
    let mut t = 0;
    while t < 10 * S {
        while c.poll_transmit().is_some() {
            at.push(t);
        }
        t = c.poll_timeout().map(Mono::as_nanos).unwrap();
        c.handle_timeout(mono(t));
    }
    let first_5s = at.iter().filter(|&&t| t < 5 * S).count();
    assert_eq!(first_5s, 50, "{at:?}");
    let last_5s = at.len() - first_5s;
    assert!((2..=6).contains(&last_5s), "backing off after 5 s: {at:?}");
    // A server that comes up at 3.05 s is joined by 3.15 s.
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    let mut t = 0;
    while t < 3_050_000_000 {
        while c.poll_transmit().is_some() {}
        t = c.poll_timeout().map(Mono::as_nanos).unwrap();
        c.handle_timeout(mono(t));
    }
    assert!(t <= 3_150_000_000);
    exchange(t, &mut s, &mut c, addr(1), &yes);
    assert_eq!(s.client_count(), 1);
}

#[test]
fn short_sessions_refresh_with_room_for_slow_answers() {
    use fanout_session::client::refresh_after;
    let d = Duration::from_nanos;
    // granted − max(1 s, 40 %), less up to 10 % of jitter, never before half of it.
    assert_eq!(refresh_after(d(2 * S), d(0)), d(S));
    assert_eq!(refresh_after(d(2 * S), d(S / 5)), d(S - S / 5));
    assert_eq!(refresh_after(d(30 * S), d(0)), d(18 * S));
    assert_eq!(refresh_after(d(S / 2), d(0)), d(S / 4));
    assert_eq!(refresh_after(d(0), d(0)), d(0));
    assert_eq!(refresh_after(d(u64::MAX), d(u64::MAX)), d(0));
}

#[test]
fn an_unanswered_client_retries_then_says_unreachable() {
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    let mut sends = 0;
    let mut t = 0;
    while t < 12 * S {
        while c.poll_transmit().is_some() {
            sends += 1;
        }
        t = c.poll_timeout().map(Mono::as_nanos).unwrap();
        c.handle_timeout(mono(t));
    }
    assert!((50..60).contains(&sends), "{sends} HELLOs, backing off");
    let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(ev, vec![ClientEvent::Unreachable]);
}

#[test]
fn end_reaches_the_channels_receivers() {
    let mut s = server();
    let mut c = Client::new(config(&["sd"], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    joined_channels(&mut c);
    s.end_channel(0);
    assert!(s.poll_transmit().is_none(), "not in hd");
    s.end_channel(1);
    let tx = s.poll_transmit().unwrap();
    c.handle_datagram(mono(0), &mut tx.data.clone());
    assert_eq!(c.poll_event(), Some(ClientEvent::Ended { channel: 1 }));
}

fn group() -> SocketAddr {
    "239.255.0.1:5700".parse().unwrap()
}

/// A server whose channel "hd" also goes to a group, with `n` multicast receivers joined.
fn multicast_server(n: u16) -> (Server, Vec<Client>) {
    let mut s = server();
    s.set_channel(0, "hd", "application/x-fanout-fec", Some(group()));
    let clients = (1..=n)
        .map(|port| {
            let cfg = ClientConfig {
                multicast: true,
                ..config(&["hd"], Stay::For(30 * S))
            };
            let mut c = Client::new(cfg, mono(0), u64::from(port));
            exchange(0, &mut s, &mut c, addr(port), &yes);
            c
        })
        .collect();
    (s, clients)
}

fn lost(block: u64, needed: u16) -> LostEntry {
    LostEntry {
        channel: 0,
        flow: 7,
        block,
        needed,
    }
}

fn repairs(s: &mut Server) -> Vec<(RepairTo, u64, u32)> {
    std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Event::Repair {
                to, block, count, ..
            } => Some((to, block, count)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_joined_reply_names_the_group_and_multicast_receivers_get_no_unicast_copies() {
    let (mut s, mut clients) = multicast_server(1);
    let mut unicast = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 9);
    exchange(0, &mut s, &mut unicast, addr(100), &yes);
    let mut got = None;
    while let Some(e) = clients[0].poll_event() {
        if let ClientEvent::Joined { channels, .. } = e {
            got = Some(channels[0].group);
        }
    }
    assert_eq!(got, Some(Some(group())));
    assert_eq!(s.members(0).count(), 2);
    assert_eq!(
        s.unicast_members(0).collect::<Vec<_>>(),
        vec![(2, peer(100))]
    );
    // Asking for unicast copies again (a multicast receiver falling back).
    let g = s.generation();
    clients[0].set_multicast(false, mono(S));
    exchange(S, &mut s, &mut clients[0], addr(1), &yes);
    assert_ne!(s.generation(), g);
    assert_eq!(s.unicast_members(0).count(), 2);
    // A channel without a group goes to everyone as unicast copies.
    s.set_channel(0, "hd", "application/x-fanout-fec", None);
    clients[0].set_multicast(true, mono(2 * S));
    exchange(2 * S, &mut s, &mut clients[0], addr(1), &yes);
    assert_eq!(s.unicast_members(0).count(), 2);
}

#[test]
fn reports_of_one_block_from_several_multicast_receivers_become_one_group_repair() {
    let (mut s, mut clients) = multicast_server(50);
    std::iter::from_fn(|| s.poll_event()).for_each(drop);
    let t = S;
    for (i, c) in clients.iter_mut().enumerate() {
        c.report_lost(&[lost(42, 3 + (i % 8) as u16)]);
        exchange(t, &mut s, c, addr(i as u16 + 1), &yes);
    }
    assert!(repairs(&mut s).is_empty(), "gathered, not answered yet");
    s.handle_timeout(now(t + nanos(s.config().group_window)));
    assert_eq!(
        repairs(&mut s),
        vec![(RepairTo::Group, 42, 10)],
        "the largest need, once"
    );
    // Reports sent before the repair arrived: covered.
    let t = t + nanos(s.config().group_window) + 1;
    for (i, c) in clients.iter_mut().enumerate().take(20) {
        c.report_lost(&[lost(42, 10)]);
        exchange(t, &mut s, c, addr(i as u16 + 1), &yes);
    }
    s.handle_timeout(now(t + nanos(s.config().group_window)));
    assert!(repairs(&mut s).is_empty());
    assert_eq!(s.stats.group_reports_covered, 20);
    // Asking for more than the last round sent starts a new one.
    clients[0].report_lost(&[lost(42, 11)]);
    exchange(t, &mut s, &mut clients[0], addr(1), &yes);
    clients[1].report_lost(&[lost(42, 12)]);
    exchange(t, &mut s, &mut clients[1], addr(2), &yes);
    s.handle_timeout(now(t + nanos(s.config().group_window)));
    assert_eq!(repairs(&mut s), vec![(RepairTo::Group, 42, 12)]);
}

#[test]
fn one_multicast_reporter_is_repaired_alone() {
    let (mut s, mut clients) = multicast_server(3);
    std::iter::from_fn(|| s.poll_event()).for_each(drop);
    // A LOST in another receiver's name (its address, a guessed session) gathers nothing.
    let spoofed = message::write(&Message::Lost {
        session: 12345,
        entries: vec![lost(9, 500)],
    });
    assert!(s.handle_datagram(now(S), addr(1), &spoofed).is_none());
    assert_eq!(
        s.poll_timeout().map(Mono::as_nanos),
        Some(30 * S),
        "only the receivers' expiry"
    );
    clients[2].report_lost(&[lost(9, 4)]);
    exchange(S, &mut s, &mut clients[2], addr(3), &yes);
    assert!(s
        .poll_timeout()
        .map(Mono::as_nanos)
        .is_some_and(|t| t <= S + nanos(s.config().group_window)));
    s.handle_timeout(now(S + nanos(s.config().group_window)));
    assert_eq!(repairs(&mut s), vec![(RepairTo::Receiver(3), 9, 4)]);
}

#[test]
fn a_storm_of_reports_is_bounded_per_block_and_by_the_group_credit() {
    let (mut s, mut clients) = multicast_server(100);
    std::iter::from_fn(|| s.poll_event()).for_each(drop);
    let mut per_block = std::collections::HashMap::<u64, u64>::new();
    let mut total = 0u64;
    // Every receiver reports the same 10 blocks every 10 ms for a second.
    for step in 0..100u64 {
        let t = S + step * 10_000_000;
        for (i, c) in clients.iter_mut().enumerate() {
            let entries: Vec<LostEntry> = (0..10).map(|b| lost(b, 30)).collect();
            c.report_lost(&entries);
            exchange(t, &mut s, c, addr(i as u16 + 1), &yes);
        }
        s.handle_timeout(now(t));
        for (to, block, count) in repairs(&mut s) {
            assert_eq!(to, RepairTo::Group);
            *per_block.entry(block).or_default() += u64::from(count);
            total += u64::from(count);
        }
    }
    // One round of 30 per block per window at most, over the second.
    let rounds = S / nanos(s.config().group_window) + 1;
    assert!(
        per_block.values().all(|&n| n <= 30 * rounds),
        "{per_block:?}"
    );
    let cfg = s.config();
    assert!(
        total <= u64::from(cfg.repair_burst) + u64::from(cfg.repair_rate),
        "{total}"
    );
    assert!(total > 0);
}

#[test]
fn a_tcp_receiver_joins_with_its_first_message_and_leaves_by_closing() {
    let mut s = server();
    let mut c = Client::new_stream(config(&["sd"], Stay::For(30 * S)), mono(0), 4);
    let at = addr(7000);
    let join = c.poll_transmit().expect("a JOIN at once");
    assert!(matches!(
        message::parse_message(&join),
        Ok(Message::Join { cookie, .. }) if cookie == [0; COOKIE_LEN]
    ));
    // The same bytes over UDP do not pass: no cookie.
    assert!(s.handle_datagram(now(0), at, &join).is_none());
    let req = s
        .handle_stream(now(0), at, &join)
        .expect("no cookie needed");
    s.accept(now(0), req);
    assert_eq!(s.members(1).collect::<Vec<_>>(), vec![(1, Peer::Tcp(at))]);
    let reply = std::iter::from_fn(|| s.poll_transmit())
        .find(|t| t.to == Peer::Tcp(at))
        .unwrap();
    c.handle_datagram(mono(0), &mut reply.data.clone());
    assert!(c.is_joined());
    assert_eq!(Peer::Tcp(at).to_string(), "tcp:192.0.2.1:7000");
    assert_eq!("tcp:192.0.2.1:7000".parse::<Peer>(), Ok(Peer::Tcp(at)));
    s.connection_closed(at);
    assert_eq!(s.client_count(), 0);
}

#[test]
fn a_keepalive_reaches_the_channels_receivers_and_keeps_them_from_starting_over() {
    let mut s = server();
    let mut hd = Client::new(
        ClientConfig {
            channels: vec!["hd".into()],
            ..ClientConfig::default()
        },
        Mono::ZERO,
        1,
    );
    let mut sd = Client::new(
        ClientConfig {
            channels: vec!["sd".into()],
            ..ClientConfig::default()
        },
        Mono::ZERO,
        2,
    );
    exchange(0, &mut s, &mut hd, addr(1), &yes);
    exchange(0, &mut s, &mut sd, addr(2), &yes);
    // 2.5 s of silence, then a keepalive on "hd" only.
    s.keepalive(0);
    let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, peer(1));
    hd.handle_datagram(mono(2_500_000_000), &mut sent[0].data.clone());
    // At 3 s the silent one starts over (a HELLO), the one kept alive does not.
    hd.handle_timeout(mono(3 * S));
    sd.handle_timeout(mono(3 * S));
    assert!(hd.poll_transmit().is_none());
    assert!(sd.poll_transmit().is_some());
}

#[test]
fn with_20_percent_loss_both_ways_most_joins_take_under_a_second() {
    let mut times = Vec::new();
    for seed in 1..=200u64 {
        let mut s = server();
        let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), seed);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut lost = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 5 == 0
        };
        let mut t = 0;
        while s.client_count() == 0 && t < 30 * S {
            while let Some(d) = c.poll_transmit() {
                if lost() {
                    continue;
                }
                if let Some(req) = s.handle_datagram(now(t), addr(1), &d) {
                    s.accept(now(t), req);
                }
            }
            while let Some(tx) = s.poll_transmit() {
                if !lost() {
                    c.handle_datagram(mono(t), &mut tx.data.clone());
                }
            }
            if s.client_count() == 0 {
                t = c.poll_timeout().map(Mono::as_nanos).unwrap();
                c.handle_timeout(mono(t));
            }
        }
        times.push(t);
    }
    times.sort_unstable();
    let p90 = times[times.len() * 9 / 10];
    assert!(p90 < S, "90th percentile {p90} ns: {times:?}");
    assert!(times[times.len() - 1] < 3 * S, "{times:?}");
}

/// A server with `passphrase` (few PBKDF2 rounds: the test is about the protocol) and a
/// client with `theirs`, joined; the client's events.
fn join_with(passphrase: Option<&str>, theirs: Option<&str>) -> (Server, Client, Vec<ClientEvent>) {
    let mut cfg = ServerConfig::new(b"k".to_vec());
    cfg.passphrase = passphrase.map(str::to_owned);
    cfg.kdf_iterations = 1000;
    let mut s = Server::new(cfg);
    s.set_channel(0, "hd", "", None);
    let mut c = Client::new(
        ClientConfig {
            passphrase: theirs.map(str::to_owned),
            ..config(&["hd"], Stay::For(30 * S))
        },
        Mono::ZERO,
        1,
    );
    exchange(0, &mut s, &mut c, addr(1), &yes);
    let events = std::iter::from_fn(|| c.poll_event()).collect();
    (s, c, events)
}

#[test]
fn sealed_data_is_taken_once_from_the_server_and_never_from_anyone_else() {
    for pass in [None, Some("correct horse battery")] {
        let (s, mut c, events) = join_with(pass, pass);
        assert!(
            matches!(events[0], ClientEvent::Joined { .. }),
            "{events:?}"
        );
        let sealer = s.sealer(0).unwrap();
        let mut d = Vec::new();
        sealer.seal(0, b"the stream", false, &mut d);
        assert_eq!(
            d[message::DATA_HEADER_LEN..][..10] == *b"the stream",
            pass.is_none(),
            "encrypted under a passphrase only"
        );
        let mut again = d.clone();
        assert_eq!(
            c.handle_datagram(mono(S), &mut d)
                .map(|d| d.payload.to_vec()),
            Some(b"the stream".to_vec())
        );
        assert!(c.handle_datagram(mono(S), &mut again).is_none(), "a replay");
        // What an attacker makes without the key: plain DATA, or sealed under another key.
        let mut plain = message::data_header(0, 99, false).to_vec();
        plain.extend_from_slice(b"injected");
        assert!(c.handle_datagram(mono(S), &mut plain).is_none());
        let (other, ..) = join_with(pass, pass);
        let mut d = Vec::new();
        other.sealer(0).unwrap().seal(0, b"injected", false, &mut d);
        d.clear();
        other.sealer(0).unwrap().seal(0, b"injected", false, &mut d);
        assert!(c.handle_datagram(mono(S), &mut d).is_none());
        assert_eq!((c.stats.forged, c.stats.replayed), (2, 1));
    }
}

#[test]
fn a_wrong_or_missing_passphrase_or_a_downgrade_is_said_and_the_receiver_leaves() {
    for (server, client, said) in [
        (
            Some("correct horse battery"),
            Some("wrong horse battery!"),
            "wrong passphrase",
        ),
        (Some("correct horse battery"), None, "set its passphrase"),
        (None, Some("correct horse battery"), "does not encrypt"),
    ] {
        let (s, _, events) = join_with(server, client);
        match &events[..] {
            [ClientEvent::Failed { text }] => assert!(text.contains(said), "{text}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.client_count(), 0, "{said}: the receiver left at once");
    }
}

#[test]
fn a_storm_of_loss_reports_draws_no_more_than_the_channels_repair_budget() {
    let mut cfg = ServerConfig::new(b"k".to_vec());
    cfg.max_clients_per_host = 0;
    cfg.repair_burst = 10;
    let mut s = Server::new(cfg);
    s.set_channel(0, "hd", "", None);
    let mut clients: Vec<Client> = (1..=20)
        .map(|port| {
            let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), port);
            exchange(0, &mut s, &mut c, addr(port as u16), &yes);
            c
        })
        .collect();
    repairs(&mut s);
    let storm = |s: &mut Server, clients: &mut [Client], t: u64, block: u64| -> u64 {
        let mut granted = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            c.report_lost(&[lost(block, 10)]);
            for e in exchange(t, s, c, addr(i as u16 + 1), &yes) {
                if let Event::Repair { count, .. } = e {
                    granted += u64::from(count);
                }
            }
        }
        granted
    };
    // Each receiver may have 10, 200 in all; the channel starts with four bursts: 40.
    assert_eq!(storm(&mut s, &mut clients, S, 1), 40);
    assert_eq!(s.stats.repairs_over_budget, 160);
    // Nothing sent since: nothing more, whatever the receivers' own credit.
    assert_eq!(storm(&mut s, &mut clients, 10 * S, 2), 0);
    // 5 packets of the channel earn 20 repair packets (400 %).
    s.note_sent(0, 5);
    assert_eq!(storm(&mut s, &mut clients, 20 * S, 3), 20);
}

/// A JOIN with every field given.
fn join_msg(nonce: u64, cookie: Cookie, stay: Stay, channels: &[&str]) -> Vec<u8> {
    message::write(&Message::Join {
        nonce,
        cookie,
        stay,
        multicast: false,
        token: vec![],
        channels: channels.iter().map(|c| c.to_string()).collect(),
    })
}

/// The server's next reply, parsed.
fn reply(s: &mut Server) -> Message {
    message::parse_message(&s.poll_transmit().expect("a reply").data).unwrap()
}

/// The contract points docs/session-protocol.md states, one by one.
#[test]
fn the_protocol_doc_holds_point_by_point() {
    // HELLO: at least 32 bytes in all, the 4-byte header included.
    let hello = message::write(&Message::Hello { nonce: 1 });
    assert_eq!(hello.len(), 32);
    assert!(message::parse_message(&hello[..31]).is_err());

    // JOIN's nonce is the receiver's choice, echoed, not tied to the HELLO's.
    let mut s = server();
    let cookie = cookie_for(&mut s, 0, addr(1));
    let req = s
        .handle_datagram(
            now(0),
            addr(1),
            &join_msg(77, cookie, Stay::For(20 * S), &[]),
        )
        .expect("taken");
    s.accept(now(0), req);
    let Message::Joined {
        nonce,
        session,
        expires_in,
        channels,
        ..
    } = reply(&mut s)
    else {
        panic!("no JOINED")
    };
    assert_eq!(nonce, 77);
    // "expires in": the time left when sent.
    assert_eq!(expires_in, 20 * S);
    // Every channel: in the order they were made (sd after hd here).
    let names: Vec<_> = channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["hd", "sd"]);

    // A refused refresh leaves the session as it was.
    let req = s.handle_datagram(
        now(S),
        addr(1),
        &join_msg(78, cookie, Stay::For(50 * S), &["xx"]),
    );
    assert!(req.is_none());
    match reply(&mut s) {
        Message::Refused { reason, text, .. } => {
            assert_eq!(reason, Reason::UnknownChannel);
            assert_eq!(text, "no channel xx");
        }
        m => panic!("{m:?}"),
    }
    let id = s.clients().next().unwrap().0;
    assert_eq!(s.channels_of(id), &[0, 1]);
    s.handle_timeout(now(20 * S));
    assert_eq!(s.client_count(), 0, "removed at the old expiry");
    assert!(s
        .handle_datagram(
            now(21 * S),
            addr(1),
            &join_msg(79, cookie, Stay::For(S), &[])
        )
        .is_some());
    let _ = session;

    // A JOIN for 0 ns: in and out at once.
    let mut s = server();
    let cookie = cookie_for(&mut s, 0, addr(2));
    let req = s
        .handle_datagram(now(0), addr(2), &join_msg(1, cookie, Stay::For(0), &[]))
        .unwrap();
    s.accept(now(0), req);
    assert!(matches!(
        reply(&mut s),
        Message::Joined { expires_in: 0, .. }
    ));
    assert_eq!(s.client_count(), 0);

    // Over TCP: HELLO answered with COOKIE even first; a bare JOIN joins, and another
    // refreshes the same session.
    let mut s = server();
    let tcp = addr(3);
    s.handle_stream(now(0), tcp, &message::write(&Message::Hello { nonce: 5 }));
    assert!(matches!(reply(&mut s), Message::Cookie { nonce: 5, .. }));
    let req = s
        .handle_stream(
            now(0),
            tcp,
            &join_msg(1, [0xEE; COOKIE_LEN], Stay::For(10 * S), &["hd"]),
        )
        .unwrap();
    s.accept(now(0), req);
    let Message::Joined { session: first, .. } = reply(&mut s) else {
        panic!()
    };
    let req = s
        .handle_stream(
            now(5 * S),
            tcp,
            &join_msg(2, [0; COOKIE_LEN], Stay::For(10 * S), &["hd"]),
        )
        .unwrap();
    s.accept(now(5 * S), req);
    let Message::Joined { session: again, .. } = reply(&mut s) else {
        panic!()
    };
    assert_eq!(first, again, "a refresh keeps the session");
    s.handle_timeout(now(12 * S));
    assert_eq!(s.client_count(), 1, "the refresh moved the expiry");
}

#[test]
fn a_join_after_the_eager_window_is_sent_four_times_then_hello_again() {
    let mut s = server();
    let mut c = Client::new(config(&["hd"], Stay::For(30 * S)), mono(0), 1);
    // Nobody answers the HELLOs for 6 s.
    let mut t = 0;
    while t < 6 * S {
        while c.poll_transmit().is_some() {}
        t = c.poll_timeout().map(Mono::as_nanos).unwrap();
        c.handle_timeout(mono(t));
    }
    // Then a cookie: JOINs from here on are outside the eager window.
    let hello = std::iter::from_fn(|| c.poll_transmit()).last().unwrap();
    let Ok(Message::Hello { nonce }) = message::parse_message(&hello) else {
        panic!()
    };
    let cookie = cookie_for(&mut s, t, addr(1));
    let t0 = t;
    c.handle_datagram(
        mono(t),
        &mut message::write(&Message::Cookie { nonce, cookie }),
    );
    let mut sent = Vec::new();
    for _ in 0..5 {
        for d in std::iter::from_fn(|| c.poll_transmit()) {
            let kind = match message::parse_message(&d) {
                Ok(Message::Join { .. }) => "JOIN",
                Ok(Message::Hello { .. }) => "HELLO",
                _ => "?",
            };
            sent.push((kind, (t - t0) / 100_000_000));
        }
        t = c.poll_timeout().map(Mono::as_nanos).unwrap();
        c.handle_timeout(mono(t));
    }
    // In tenths of a second.
    assert_eq!(
        sent,
        [
            ("JOIN", 0),
            ("JOIN", 2),
            ("JOIN", 6),
            ("JOIN", 14),
            ("HELLO", 30)
        ]
    );
}

#[test]
fn a_receiver_asking_for_every_channel_gets_one_made_after_it_joined_with_its_key() {
    // An edge that has not joined its origin yet: no channel at all.
    let mut s = Server::new(ServerConfig::new(b"k".to_vec()));
    let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    assert_eq!(joined_channels(&mut c), Vec::<String>::new());
    s.set_channel(0, "hd", "video/mpegts", None);
    exchange(S, &mut s, &mut c, addr(1), &yes);
    let id = s.clients().next().unwrap().0;
    assert_eq!(s.channels_of(id), &[0]);
    // It joined again for the key: the channel's sealed data opens.
    let mut d = Vec::new();
    s.sealer(0).unwrap().seal(0, b"late channel", false, &mut d);
    assert_eq!(
        c.handle_datagram(mono(2 * S), &mut d)
            .map(|d| d.payload.to_vec()),
        Some(b"late channel".to_vec())
    );
}

#[test]
fn a_channel_made_again_under_its_number_reaches_receivers_with_its_new_key() {
    let mut s = server();
    let mut c = Client::new(config(&[], Stay::For(30 * S)), mono(0), 1);
    exchange(0, &mut s, &mut c, addr(1), &yes);
    s.remove_channel(0);
    exchange(S, &mut s, &mut c, addr(1), &yes);
    s.set_channel(0, "hd", "", None);
    exchange(2 * S, &mut s, &mut c, addr(1), &yes);
    let mut d = Vec::new();
    s.sealer(0).unwrap().seal(0, b"again", false, &mut d);
    assert_eq!(
        c.handle_datagram(mono(3 * S), &mut d)
            .map(|d| d.payload.to_vec()),
        Some(b"again".to_vec())
    );
}

#[test]
fn a_group_loses_what_its_middle_member_told_and_is_topped_up_as_a_group() {
    let (mut s, mut clients) = multicast_server(3);
    assert_eq!(s.group_loss(0, mono(S)), Some(0.0), "nobody told a loss");
    assert_eq!(s.group_loss(1, mono(S)), None, "no group");
    // One lossy member of three: the group is fine, that one asks on its own.
    clients[0].report_loss(0, 0.3);
    exchange(S, &mut s, &mut clients[0], addr(1), &yes);
    assert_eq!(s.group_loss(0, mono(S)), Some(0.0));
    assert_eq!(
        s.unicast_losses(0, mono(S)),
        vec![],
        "its repair is the group's"
    );
    clients[1].report_loss(0, 0.1);
    exchange(S, &mut s, &mut clients[1], addr(2), &yes);
    assert_eq!(s.group_loss(0, mono(S)), Some(0.1));
    s.top_up_group(now(S), 0, 7, 42, 12);
    assert_eq!(
        s.poll_event(),
        Some(Event::Repair {
            to: RepairTo::Group,
            channel: 0,
            flow: 7,
            block: 42,
            count: 12
        })
    );
    assert_eq!(s.stats.top_up_symbols, 12);
    assert_eq!(s.group_loss(0, mono(4 * S)), Some(0.0), "stale");
}
