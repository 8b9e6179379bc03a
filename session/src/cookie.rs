// SPDX-License-Identifier: MPL-2.0

//! Stateless address cookies, as DTLS HelloVerifyRequest and QUIC Retry make them: an HMAC
//! over the receiver's address, port and a time bucket. The server keeps nothing per cookie.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fanout_wire::time::{nanos, Mono};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::message::{Cookie, COOKIE_LEN};

type HmacSha256 = Hmac<Sha256>;

pub struct CookieJar {
    mac: HmacSha256,
    /// Bucket length in ns: a cookie lives one to two of them.
    bucket: u64,
}

impl CookieJar {
    pub fn new(secret: &[u8], bucket: Duration) -> CookieJar {
        CookieJar {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes any key length"),
            bucket: nanos(bucket).max(1),
        }
    }

    fn mac(&self, addr: SocketAddr, bucket: u64) -> HmacSha256 {
        let ip = match addr.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        self.mac
            .clone()
            .chain_update(bucket.to_be_bytes())
            .chain_update(ip)
            .chain_update(addr.port().to_be_bytes())
    }

    pub fn make(&self, addr: SocketAddr, now: Mono) -> Cookie {
        let tag = self
            .mac(addr, now.as_nanos() / self.bucket)
            .finalize()
            .into_bytes();
        tag[..COOKIE_LEN].try_into().unwrap()
    }

    /// Whether `cookie` was made for `addr` in this bucket or the one before; compared in
    /// constant time.
    pub fn check(&self, addr: SocketAddr, now: Mono, cookie: &Cookie) -> bool {
        let bucket = now.as_nanos() / self.bucket;
        let this = self.mac(addr, bucket).verify_truncated_left(cookie).is_ok();
        let before = bucket
            .checked_sub(1)
            .is_some_and(|b| self.mac(addr, b).verify_truncated_left(cookie).is_ok());
        this | before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn at(d: Duration) -> Mono {
        Mono::ZERO + d
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cookie_lives_one_to_two_buckets() {
        let jar = CookieJar::new(b"key", 10 * S);
        let a = addr("192.0.2.1:5000");
        let c = jar.make(a, at(19 * S));
        assert!(jar.check(a, at(19 * S), &c));
        assert!(
            jar.check(a, at(29 * S), &c),
            "the next bucket still takes it"
        );
        assert!(
            !jar.check(a, at(30 * S), &c),
            "two buckets later it is dead"
        );
        assert!(!jar.check(a, at(9 * S), &c), "nor valid before it was made");
    }

    #[test]
    fn a_cookie_is_bound_to_address_port_and_secret() {
        let jar = CookieJar::new(b"key", 10 * S);
        let c = jar.make(addr("192.0.2.1:5000"), Mono::ZERO);
        assert!(!jar.check(addr("192.0.2.1:5001"), Mono::ZERO, &c));
        assert!(!jar.check(addr("192.0.2.2:5000"), Mono::ZERO, &c));
        assert!(!jar.check(addr("[::ffff:192.0.2.2]:5000"), Mono::ZERO, &c));
        assert!(
            jar.check(addr("[::ffff:192.0.2.1]:5000"), Mono::ZERO, &c),
            "same address"
        );
        let other = CookieJar::new(b"other key", 10 * S);
        assert!(!other.check(addr("192.0.2.1:5000"), Mono::ZERO, &c));
    }
}
