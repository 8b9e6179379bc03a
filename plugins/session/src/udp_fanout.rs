// SPDX-License-Identifier: MPL-2.0

//! UDP fan-out without GStreamer: the same packets to many receivers in few system calls.
//! Per receiver, consecutive equal-size packets go out as one GSO super-datagram
//! (`UDP_SEGMENT`, at most 64 segments and 65 507 bytes; the last segment may be shorter),
//! and many receivers' messages go in one `sendmmsg`. Packet bytes are never copied: each
//! message's iovecs point at the channel header and the packets themselves.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

pub const MAX_SEGMENTS: usize = 64;
pub const MAX_GSO_BYTES: usize = 65_507;
/// Messages per `sendmmsg` (the kernel takes at most UIO_MAXIOV = 1024).
const BATCH: usize = 512;

/// Counters of one receiver, updated by the streaming threads without a lock.
#[derive(Debug, Default)]
pub struct TargetStats {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub repairs: AtomicU64,
    pub gso_sends: AtomicU64,
    pub send_errors: AtomicU64,
    /// Send errors since the last success: too many and the receiver is evicted.
    pub errors_in_a_row: AtomicU64,
    /// Repair packets this receiver asked for and has not been sent yet.
    pub repair_credit: AtomicU64,
    /// Repair packets dropped: more than it asked for.
    pub repairs_refused: AtomicU64,
}

impl TargetStats {
    /// Takes one repair packet's credit, if any is left.
    pub fn take_repair_credit(&self) -> bool {
        self.repair_credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1))
            .is_ok()
    }
}

#[derive(Debug)]
pub struct Target {
    pub id: u64,
    pub addr: SocketAddr,
    pub stats: Arc<TargetStats>,
}

/// Receivers with their addresses in the form the system call takes, made once per change
/// of receivers rather than per send.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    list: Vec<Arc<Target>>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl Targets {
    pub fn new(list: Vec<Arc<Target>>) -> Targets {
        let addrs = list
            .iter()
            .map(|t| Some(SockaddrStorage::from(t.addr)))
            .collect();
        Targets { list, addrs }
    }

    pub fn list(&self) -> &[Arc<Target>] {
        &self.list
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// What one call sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    pub syscalls: u64,
    pub gso_sends: u64,
    pub errors: u64,
}

pub struct Fanout {
    socket: Arc<UdpSocket>,
    gso: AtomicBool,
}

/// Consecutive packets one GSO send takes: equal sizes, a shorter one may close the run.
fn runs(header: usize, packets: &[&[u8]], gso: bool) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < packets.len() {
        let seg = header + packets[i].len();
        let mut end = i + 1;
        let mut total = seg;
        while gso && end < packets.len() && end - i < MAX_SEGMENTS {
            let len = header + packets[end].len();
            if len > seg || total + len > MAX_GSO_BYTES {
                break;
            }
            total += len;
            end += 1;
            if len < seg {
                break;
            }
        }
        out.push(i..end);
        i = end;
    }
    out
}

impl Fanout {
    pub fn new(socket: Arc<UdpSocket>, gso: bool) -> Fanout {
        Fanout {
            socket,
            gso: AtomicBool::new(gso),
        }
    }

    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Sends every packet, each after `header`, to every target. Errors are counted against
    /// the target they happened for; nobody else waits for them. Returns what went out, and
    /// whether GSO was just found unsupported (and turned off).
    pub fn send(&self, header: &[u8], packets: &[&[u8]], targets: &Targets) -> (Sent, bool) {
        let mut sent = Sent::default();
        let mut gso_refused = false;
        if targets.is_empty() || packets.is_empty() {
            return (sent, false);
        }
        let (addrs, targets) = (&targets.addrs, &targets.list);
        let gso = self.gso();
        for run in runs(header.len(), packets, gso) {
            let run = &packets[run];
            if !self.send_run(header, run, targets, addrs, gso, &mut sent) {
                // The kernel refused GSO: off for good, this run again plainly.
                self.gso.store(false, Ordering::Relaxed);
                gso_refused = true;
                for p in run {
                    self.send_run(
                        header,
                        std::slice::from_ref(p),
                        targets,
                        addrs,
                        false,
                        &mut sent,
                    );
                }
            }
        }
        (sent, gso_refused)
    }

    /// One run of packets to every target; false when GSO was refused before anything of it
    /// went out.
    fn send_run(
        &self,
        header: &[u8],
        run: &[&[u8]],
        targets: &[Arc<Target>],
        addrs: &[Option<SockaddrStorage>],
        gso: bool,
        sent: &mut Sent,
    ) -> bool {
        let iov: Vec<IoSlice> = run
            .iter()
            .flat_map(|p| [IoSlice::new(header), IoSlice::new(p)])
            .collect();
        let bytes: usize = run.iter().map(|p| header.len() + p.len()).sum();
        let segment = (header.len() + run[0].len()) as u16;
        let use_gso = gso && run.len() > 1;
        let fd = self.socket.as_raw_fd();
        let mut first = 0;
        while first < targets.len() {
            let end = (first + BATCH).min(targets.len());
            let n = end - first;
            let result = if use_gso {
                let mut headers: MultiHeaders<SockaddrStorage> =
                    MultiHeaders::preallocate(n, Some(nix::cmsg_space!(u16)));
                let cmsgs = [ControlMessage::UdpGsoSegments(&segment)];
                sendmmsg(
                    fd,
                    &mut headers,
                    std::iter::repeat_n(&iov, n),
                    &addrs[first..end],
                    cmsgs,
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count())
            } else {
                let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(n, None);
                sendmmsg(
                    fd,
                    &mut headers,
                    std::iter::repeat_n(&iov, n),
                    &addrs[first..end],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|r| r.count())
            };
            sent.syscalls += 1;
            match result {
                Ok(count) => {
                    for t in &targets[first..first + count] {
                        t.stats
                            .packets
                            .fetch_add(run.len() as u64, Ordering::Relaxed);
                        t.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        t.stats.errors_in_a_row.store(0, Ordering::Relaxed);
                        if use_gso {
                            t.stats.gso_sends.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    sent.datagrams += (count * run.len()) as u64;
                    if use_gso {
                        sent.gso_sends += count as u64;
                    }
                    // A message that failed stops the batch: the next call starts with it,
                    // and its error is then counted against its target.
                    first += count.max(1);
                }
                Err(Errno::EIO | Errno::EINVAL) if use_gso && first == 0 => {
                    return false;
                }
                Err(_) => {
                    let t = &targets[first];
                    t.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    t.stats.errors_in_a_row.fetch_add(1, Ordering::Relaxed);
                    sent.errors += 1;
                    first += 1;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_take_equal_sizes_and_a_shorter_last_one() {
        let big = [0u8; 100];
        let small = [0u8; 10];
        let p: Vec<&[u8]> = vec![&big, &big, &big, &small, &big, &small, &small];
        assert_eq!(runs(8, &p, true), vec![0..4, 4..6, 6..7]);
        assert_eq!(runs(8, &p, false).len(), 7);
        let many: Vec<&[u8]> = vec![&big; 150];
        assert_eq!(runs(8, &many, true), vec![0..64, 64..128, 128..150]);
        let jumbo = [0u8; 1400];
        let j: Vec<&[u8]> = vec![&jumbo; 64];
        let r = runs(8, &j, true);
        assert!(r.iter().all(|r| r.len() * 1408 <= MAX_GSO_BYTES));
        assert_eq!(r[0].len(), MAX_GSO_BYTES / 1408);
    }

    fn receive_all(sock: &UdpSocket) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    fn check_delivery(gso: bool) {
        let tx = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let rx: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let targets: Vec<Arc<Target>> = rx
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Arc::new(Target {
                    id: i as u64,
                    addr: s.local_addr().unwrap(),
                    stats: Arc::default(),
                })
            })
            .collect();
        // Few enough for a default receive buffer.
        let packets: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; if i == 39 { 300 } else { 1316 }])
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
        let fanout = Fanout::new(tx, gso);
        let (sent, _) = fanout.send(b"HDRHDRHD", &refs, &Targets::new(targets.clone()));
        assert_eq!(sent.datagrams, 120);
        assert_eq!(sent.errors, 0);
        if fanout.gso() {
            assert_eq!(sent.gso_sends, 3, "{sent:?}");
            assert_eq!(sent.syscalls, 1, "{sent:?}");
        }
        for (s, t) in rx.iter().zip(&targets) {
            let got = receive_all(s);
            assert_eq!(got.len(), 40);
            for (g, p) in got.iter().zip(&packets) {
                assert_eq!(&g[..8], b"HDRHDRHD");
                assert_eq!(&g[8..], &p[..]);
            }
            assert_eq!(t.stats.packets.load(Ordering::Relaxed), 40);
        }
    }

    #[test]
    fn every_receiver_gets_every_packet_with_gso() {
        check_delivery(true);
    }

    #[test]
    fn every_receiver_gets_every_packet_without_gso() {
        check_delivery(false);
    }

    #[test]
    fn a_closed_port_disturbs_nobody_else() {
        let tx = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let open = UdpSocket::bind("127.0.0.1:0").unwrap();
        let targets = Targets::new(vec![
            Arc::new(Target {
                id: 0,
                addr: closed,
                stats: Arc::default(),
            }),
            Arc::new(Target {
                id: 1,
                addr: open.local_addr().unwrap(),
                stats: Arc::default(),
            }),
        ]);
        let fanout = Fanout::new(tx, true);
        let p = [7u8; 500];
        for _ in 0..20 {
            fanout.send(b"H", &[&p, &p], &targets);
        }
        assert_eq!(receive_all(&open).len(), 40);
    }
}
