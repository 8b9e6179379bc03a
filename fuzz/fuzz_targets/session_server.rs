//! The whole server state machine, and a client beside it: random message sequences from
//! random addresses, with time going forward. Some datagrams are made valid (a real cookie,
//! a real session id) so mutations reach past the checks. What must hold: no panic; no reply
//! to an unproven address larger than its request; never more receivers than max-clients;
//! repairs only for receivers in, never more than their budget; group repairs (channel 0
//! has a multicast group) within the group's budget; keepalives only to receivers in. Peers
//! come over UDP and TCP.
#![no_main]

use std::net::SocketAddr;

use fanout_session::message::{self, LostEntry, Message, Stay};
use fanout_session::{
    Client, ClientConfig, Event, Mono, Now, Peer, Reason, RepairTo, Server, ServerConfig,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cfg = ServerConfig::new(b"fuzz".to_vec());
    cfg.max_clients = 4;
    cfg.repair_burst = 50;
    let mut server = Server::new(cfg);
    server.set_channel(0, "a", "x/y", Some("239.1.1.1:5000".parse().unwrap()));
    server.set_channel(7, "b", "", None);
    let mut client = Client::new(ClientConfig::default(), Mono::ZERO, 1);
    let mut t = 0u64;
    let mut cookies: Vec<[u8; 16]> = Vec::new();
    let mut granted = 0u64;
    let mut to_group = 0u64;
    let mut rest = data;
    while rest.len() >= 4 {
        let (head, tail) = rest.split_at(4);
        let len = usize::from(head[2]).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        t = t.saturating_add(u64::from(head[1]) * 50_000_000);
        let now = Now {
            mono: Mono::from_nanos(t),
            unix: t.wrapping_add(1 << 60),
        };
        let addr = SocketAddr::from(([10, 0, 0, head[0] % 8], 1000 + u16::from(head[0] >> 4)));
        let from = if head[0] & 8 != 0 {
            Peer::Tcp(addr)
        } else {
            Peer::Udp(addr)
        };
        let datagram = match head[3] % 6 {
            // A JOIN with the cookie the server gave this address (if it did).
            0 => {
                let cookie = cookies.last().copied().unwrap_or([0; 16]);
                message::write(&Message::Join {
                    nonce: 1,
                    cookie,
                    stay: Stay::For(u64::from(head[1]) << 28),
                    multicast: head[1] & 4 != 0,
                    token: body.to_vec(),
                    channels: if head[0] & 1 == 0 {
                        vec![]
                    } else {
                        vec!["a".into()]
                    },
                })
            }
            1 => message::write(&Message::Hello { nonce: 2 }),
            2 => message::write(&Message::Lost {
                session: u64::from_le_bytes(body.get(..8).unwrap_or(&[0; 8]).try_into().unwrap()),
                entries: vec![LostEntry {
                    channel: u16::from(head[1] & 7),
                    flow: 0,
                    block: 9,
                    needed: u16::from(head[2]) * 4,
                }],
            }),
            // Whatever the client state machine would send, and its answers back to it.
            3 => {
                client.handle_timeout(now.mono);
                if head[1] & 8 != 0 {
                    client.report_loss(0, f64::from(head[2]) / 255.0);
                }
                client.poll_transmit().unwrap_or_default()
            }
            4 => message::write(&Message::Loss {
                session: u64::from_le_bytes(body.get(..8).unwrap_or(&[0; 8]).try_into().unwrap()),
                channel: u16::from(head[1] & 7),
                loss: u16::from(head[2]) * 40,
            }),
            _ => body.to_vec(),
        };
        let verified_before = server.clients().any(|(_, a)| a == from);
        let req = match from {
            Peer::Udp(a) => server.handle_datagram(now, a, &datagram),
            Peer::Tcp(a) => server.handle_stream(now, a, &datagram),
        };
        if let Some(req) = req {
            if head[1] & 3 == 0 {
                server.refuse(req, Reason::NotAuthorized, "no");
            } else {
                server.accept(now, req);
            }
        }
        assert!(server.client_count() <= 4);
        while let Some(tx) = server.poll_transmit() {
            let proven = verified_before || server.clients().any(|(_, a)| a == tx.to);
            // What goes to an address before it proved itself: a COOKIE, or a REFUSED
            // about a bad cookie or unknown session, never larger than what came from it.
            let unproven_reply = match message::parse_message(&tx.data) {
                Ok(Message::Cookie { cookie, .. }) => {
                    cookies.push(cookie);
                    true
                }
                Ok(Message::Refused { reason, .. }) => {
                    matches!(reason, Reason::BadCookie | Reason::UnknownSession)
                }
                _ => false,
            };
            if unproven_reply && !proven {
                assert!(tx.data.len() <= datagram.len(), "amplification");
            }
            assert_eq!(tx.to, from, "a reply to another address");
            let _ = client.handle_datagram(now.mono, &mut tx.data.clone());
        }
        // Repair up front for the losses told: only to receivers in, within their budget.
        if head[3] & 0x40 != 0 {
            let most = f64::from(message::MAX_LOSS) / 10_000.0;
            for channel in [0u16, 7] {
                for (id, loss) in server.unicast_losses(channel, now.mono) {
                    assert!((0.0..=most).contains(&loss) && loss > 0.0, "{loss}");
                    server.top_up(now, id, channel, 0, 9, u16::from(head[2]));
                }
                if let Some(loss) = server.group_loss(channel, now.mono) {
                    assert_eq!(channel, 0, "a group's loss for a channel without a group");
                    assert!((0.0..=most).contains(&loss), "{loss}");
                    server.top_up_group(now, channel, 0, 9, u16::from(head[2]));
                }
                // The whole decision for a block, any sizing rule.
                let sent = u32::from(head[1]);
                let want = |loss: f64| (loss * 4000.0) as u32 + u32::from(head[2]);
                server.top_up_block(now, (channel, 0, 10), sent, want);
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                Event::Repair {
                    to: RepairTo::Receiver(id),
                    count,
                    ..
                } => {
                    assert!(server.address_of(id).is_some());
                    granted += u64::from(count);
                }
                Event::Repair {
                    to: RepairTo::Group,
                    channel,
                    count,
                    ..
                } => {
                    assert_eq!(channel, 0, "a group repair for a channel without a group");
                    to_group += u64::from(count);
                }
                _ => (),
            }
        }
        // A quiet channel's keepalive reaches its receivers and no one else.
        if head[3] & 0x20 != 0 {
            server.keepalive(u16::from(head[1] & 7));
            while let Some(tx) = server.poll_transmit() {
                assert!(
                    server.clients().any(|(_, a)| a == tx.to),
                    "a keepalive to a stranger"
                );
                let _ = client.handle_datagram(now.mono, &mut tx.data.clone());
            }
        }
        while client.poll_event().is_some() {}
        server.handle_timeout(now);
        if head[3] & 0x40 != 0 {
            server.connection_closed(addr);
        }
        // Bytes from the input are never taken as the server's data: they carry no valid tag.
        assert!(
            client
                .handle_datagram(now.mono, &mut body.to_vec())
                .is_none(),
            "forged bytes taken as data"
        );
        // What the server seals, the joined client opens, once.
        if client.is_joined() {
            let mut d = Vec::new();
            let sealer = server.sealer(0).expect("authenticated by default");
            sealer.seal(0, body, false, &mut d);
            let mut again = d.clone();
            if let Some(got) = client.handle_datagram(now.mono, &mut d) {
                assert_eq!(got.payload, body);
                assert!(
                    client.handle_datagram(now.mono, &mut again).is_none(),
                    "taken twice"
                );
            }
        }
    }
    // Never more than the burst plus the rate over the time that passed, per receiver.
    let budget = (50 + t / 1_000_000_000 * 2000 + 2000) * 64;
    assert!(granted <= budget);
    assert!(to_group <= 50 + t / 1_000_000_000 * 2000 + 2000);
});
