// SPDX-License-Identifier: MPL-2.0

//! UDP GRO on receive: the kernel hands over a run of datagrams from one sender, of one
//! size (the last may be shorter), in one read, with that size in a control message. One
//! read and one buffer for many datagrams instead of one each; where the kernel refuses
//! (older ones), reads are one datagram each, as before.

use std::io::IoSliceMut;
use std::net::UdpSocket;
use std::ops::Range;
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};

/// The most a read takes: the largest UDP payload GRO coalesces to.
pub const MAX_READ: usize = 65_535;

/// Asks the kernel to coalesce; false where it refuses.
pub fn enable(socket: &UdpSocket) -> bool {
    socket::setsockopt(socket, sockopt::UdpGroSegment, &true).is_ok()
}

/// Reads one datagram, or a coalesced run of them, into `buf`: its length and the size of
/// its segments (`None`: one datagram).
pub fn recv(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<usize>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(i32);
    let msg = socket::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let mut segment = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(size) = c {
                segment = usize::try_from(size).ok().filter(|&s| s > 0);
            }
        }
    }
    Ok((msg.bytes, segment))
}

/// The datagrams in a read of `len` bytes coalesced at `segment` bytes each; an empty
/// datagram is one too (it is counted, as anything that arrives).
pub fn segments(len: usize, segment: Option<usize>) -> impl Iterator<Item = Range<usize>> {
    let step = segment.unwrap_or(len).max(1);
    let empty = (len == 0).then_some(0..0);
    (0..len)
        .step_by(step)
        .map(move |start| start..start.saturating_add(step).min(len))
        .chain(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_cut_at_its_segment_size_the_last_shorter() {
        let cut: Vec<_> = segments(10, Some(4)).collect();
        assert_eq!(cut, [0..4, 4..8, 8..10]);
        let whole: Vec<Range<usize>> = segments(10, None).collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0], 0..10);
        let empty: Vec<Range<usize>> = segments(0, Some(4)).collect();
        assert_eq!(
            (empty.len(), empty[0].is_empty()),
            (1, true),
            "an empty datagram"
        );
        assert_eq!(segments(3, Some(0)).collect::<Vec<_>>(), [0..1, 1..2, 2..3]);
    }

    #[test]
    fn datagrams_sent_back_to_back_come_whole_with_or_without_gro() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let on = enable(&rx);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000]).collect();
        for d in &sent {
            tx.send(d).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = vec![0u8; MAX_READ];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        while got.len() < sent.len() {
            let (n, segment) = recv(&rx, &mut buf).unwrap();
            got.extend(segments(n, segment).map(|r| buf[r].to_vec()));
        }
        assert_eq!(got, sent, "GRO on: {on}");
    }
}
