// SPDX-License-Identifier: MPL-2.0

//! Only the sender speaks: every DATA datagram is sealed with its channel's key (AES-GCM),
//! authenticated always and, under a passphrase, encrypted. A channel's key goes to a
//! receiver only in JOINED, the answer to its proven JOIN; under a passphrase it travels
//! wrapped by a key derived from the passphrase (PBKDF2-HMAC-SHA-256). Byte layout and threat
//! model: docs/session-protocol.md, "Sealed data".

use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes192;
use aes_gcm::{AeadInOut, Aes128Gcm, Aes256Gcm, AesGcm, KeyInit};

use crate::message::DATA_HEADER_LEN;

/// The GCM tag after every sealed DATA body.
pub const TAG_LEN: usize = 16;
/// Random per channel key: the first half of every nonce made with it.
pub const NONCE_SALT_LEN: usize = 6;
/// A DATA datagram's counter: the second half of its nonce, never repeated under one key.
pub const COUNTER_LEN: usize = 6;
/// The counter's top bit is the answer flag ([`crate::message::DATA_ANSWER`]).
pub const MAX_COUNTER: u64 = crate::message::DATA_ANSWER - 1;
/// The passphrase's salt, random per server start.
pub const KDF_SALT_LEN: usize = 16;
/// PBKDF2 rounds a server asks for: about 40 ms once per start and per receiver.
pub const DEFAULT_KDF_ITERATIONS: u32 = 100_000;
/// More rounds than this in a JOINED are refused: a forged JOINED must not keep a receiver
/// busy for minutes.
pub const MAX_KDF_ITERATIONS: u32 = 10_000_000;
/// A wrapped key's own nonce.
pub const WRAP_NONCE_LEN: usize = 12;
/// Counters a receiver remembers behind the newest, to take reordered datagrams once.
pub const REPLAY_WINDOW: u64 = 4096;
/// A passphrase's length, as srtsink takes it.
pub const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// AES key length: 16, 24 or 32 bytes (srtsink's `pbkeylen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLen(u8);

impl KeyLen {
    pub const DEFAULT: KeyLen = KeyLen(16);

    pub fn new(bytes: u32) -> Option<KeyLen> {
        matches!(bytes, 16 | 24 | 32).then_some(KeyLen(bytes as u8))
    }

    pub fn bytes(self) -> usize {
        usize::from(self.0)
    }

    /// A channel key's material: the AES key, then its nonce salt.
    pub fn material_len(self) -> usize {
        self.bytes() + NONCE_SALT_LEN
    }
}

enum Cipher {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

impl Cipher {
    fn new(key: &[u8]) -> Option<Cipher> {
        Some(match key.len() {
            16 => Cipher::A128(Aes128Gcm::new_from_slice(key).ok()?),
            24 => Cipher::A192(Aes192Gcm::new_from_slice(key).ok()?),
            32 => Cipher::A256(Aes256Gcm::new_from_slice(key).ok()?),
            _ => return None,
        })
    }

    /// Encrypts `buf` in place (nothing, if empty) and returns the tag over it and `aad`.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Array::from(*nonce);
        let tag = match self {
            Cipher::A128(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
            Cipher::A192(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
            Cipher::A256(c) => c.encrypt_inout_detached(&nonce, aad, buf.into()),
        };
        // Fails only past GCM's 64 GiB per message: a datagram never is.
        tag.expect("a datagram is within GCM's limits").into()
    }

    /// Checks the tag over `buf` and `aad`, decrypting `buf` in place; false if forged.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let nonce = Array::from(*nonce);
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        let tag = Array::from(tag);
        match self {
            Cipher::A128(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            Cipher::A192(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            Cipher::A256(c) => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
        }
        .is_ok()
    }
}

fn nonce(salt: &[u8; NONCE_SALT_LEN], counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_SALT_LEN].copy_from_slice(salt);
    n[NONCE_SALT_LEN..].copy_from_slice(&counter.to_be_bytes()[8 - COUNTER_LEN..]);
    n
}

/// One channel's DATA key, as JOINED hands it to receivers.
pub struct ChannelKey {
    material: Vec<u8>,
    cipher: Cipher,
    salt: [u8; NONCE_SALT_LEN],
    /// Bodies are encrypted (a passphrase is set), not only authenticated.
    encrypt: bool,
}

impl ChannelKey {
    /// A new random key.
    pub fn random(len: KeyLen, encrypt: bool) -> ChannelKey {
        let mut material = vec![0u8; len.material_len()];
        // Without the system's randomness nothing is safe to send: better to stop.
        getrandom::fill(&mut material).expect("the system's random numbers");
        ChannelKey::from_material(&material, encrypt).expect("the length is right")
    }

    /// The key in `material` (the AES key, then the nonce salt); `None` if its length is
    /// not one of a key's.
    pub fn from_material(material: &[u8], encrypt: bool) -> Option<ChannelKey> {
        let key_len = material.len().checked_sub(NONCE_SALT_LEN)?;
        let cipher = Cipher::new(&material[..key_len])?;
        Some(ChannelKey {
            material: material.to_vec(),
            cipher,
            salt: material[key_len..].try_into().ok()?,
            encrypt,
        })
    }

    pub fn material(&self) -> &[u8] {
        &self.material
    }

    pub fn encrypts(&self) -> bool {
        self.encrypt
    }
}

/// Seals a channel's DATA datagrams: the sender's side of a [`ChannelKey`]. Shared by every
/// thread that sends the channel: the counter is atomic.
pub struct Sealer {
    key: ChannelKey,
    counter: AtomicU64,
}

impl Sealer {
    pub fn new(key: ChannelKey) -> Sealer {
        Sealer {
            key,
            counter: AtomicU64::new(0),
        }
    }

    pub fn key(&self) -> &ChannelKey {
        &self.key
    }

    /// Appends the whole DATA datagram of `channel` carrying `payload` to `out`: header
    /// (with the `answer` flag), body, tag. `false` (nothing appended) once the key's
    /// counters ran out, after 2^47 datagrams: a server restart makes a new key.
    pub fn seal(&self, channel: u16, payload: &[u8], answer: bool, out: &mut Vec<u8>) -> bool {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        if counter > MAX_COUNTER {
            return false;
        }
        let start = out.len();
        out.extend_from_slice(&crate::message::data_header(channel, counter, answer));
        out.extend_from_slice(payload);
        let n = nonce(&self.key.salt, counter);
        let body_at = start + DATA_HEADER_LEN;
        let tag = if self.key.encrypt {
            let (aad, body) = out[start..].split_at_mut(body_at - start);
            self.key.cipher.seal(&n, aad, body)
        } else {
            self.key.cipher.seal(&n, &out[start..], &mut [])
        };
        out.extend_from_slice(&tag);
        true
    }
}

/// Why a DATA datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Its tag does not check out: not sealed by the server, or changed on the way.
    Forged,
    /// Its counter was taken already, or is too far behind the newest to tell.
    Replayed,
}

/// Opens a channel's DATA datagrams: the receiver's side of a [`ChannelKey`], with the
/// counters seen, so a datagram replayed is taken once at most.
pub struct Opener {
    key: ChannelKey,
    /// The newest counter taken, and which of the [`REPLAY_WINDOW`] before it were.
    newest: Option<u64>,
    seen: Vec<u64>,
}

impl Opener {
    pub fn new(key: ChannelKey) -> Opener {
        Opener {
            key,
            newest: None,
            seen: vec![0; (REPLAY_WINDOW / 64) as usize],
        }
    }

    pub fn encrypts(&self) -> bool {
        self.key.encrypt
    }

    pub fn material(&self) -> &[u8] {
        self.key.material()
    }

    /// Checks (and, if encrypted, decrypts in place) a whole DATA datagram with counter
    /// `counter`; returns the packet it carries.
    pub fn open<'a>(&mut self, counter: u64, datagram: &'a mut [u8]) -> Result<&'a [u8], Rejected> {
        let Some(end) = datagram.len().checked_sub(TAG_LEN) else {
            return Err(Rejected::Forged);
        };
        if end < DATA_HEADER_LEN {
            return Err(Rejected::Forged);
        }
        if self.taken(counter) {
            return Err(Rejected::Replayed);
        }
        let (sealed, tag) = datagram.split_at_mut(end);
        let n = nonce(&self.key.salt, counter);
        let genuine = if self.key.encrypt {
            let (header, payload) = sealed.split_at_mut(DATA_HEADER_LEN);
            self.key.cipher.open(&n, header, payload, tag)
        } else {
            // Header and packet are the associated data, as they lie: no copy.
            self.key.cipher.open(&n, sealed, &mut [], tag)
        };
        if !genuine {
            return Err(Rejected::Forged);
        }
        self.take(counter);
        Ok(&datagram[DATA_HEADER_LEN..end])
    }

    fn bit(counter: u64) -> (usize, u64) {
        let i = counter % REPLAY_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn taken(&self, counter: u64) -> bool {
        match self.newest {
            None => false,
            Some(newest) if counter > newest => false,
            Some(newest) if newest - counter >= REPLAY_WINDOW => true,
            Some(_) => {
                let (w, b) = Opener::bit(counter);
                self.seen[w] & b != 0
            }
        }
    }

    fn take(&mut self, counter: u64) {
        let newest = self.newest.unwrap_or(counter);
        if counter > newest || self.newest.is_none() {
            // Forget the counters that fall out of the window.
            let gap = counter.saturating_sub(newest);
            if gap >= REPLAY_WINDOW || self.newest.is_none() {
                self.seen.iter_mut().for_each(|w| *w = 0);
            } else {
                for c in newest + 1..=counter {
                    let (w, b) = Opener::bit(c);
                    self.seen[w] &= !b;
                }
            }
            self.newest = Some(counter);
        }
        let (w, b) = Opener::bit(counter);
        self.seen[w] |= b;
    }
}

/// The key a passphrase gives, with the server's salt and rounds: it wraps the channel keys
/// in JOINED.
pub struct PassphraseKey {
    cipher: Cipher,
}

impl PassphraseKey {
    /// PBKDF2-HMAC-SHA-256 of `passphrase` with `salt`, `iterations` rounds, `len` bytes.
    pub fn derive(passphrase: &str, salt: &[u8], iterations: u32, len: KeyLen) -> PassphraseKey {
        let mut key = vec![0u8; len.bytes()];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(passphrase.as_bytes(), salt, iterations, &mut key);
        PassphraseKey {
            cipher: Cipher::new(&key).expect("a key length"),
        }
    }

    /// `material` encrypted and tagged under a fresh random nonce: nonce, ciphertext, tag.
    pub fn wrap(&self, material: &[u8]) -> Vec<u8> {
        let mut n = [0u8; WRAP_NONCE_LEN];
        getrandom::fill(&mut n).expect("the system's random numbers");
        let mut out = n.to_vec();
        let mut body = material.to_vec();
        let tag = self.cipher.seal(&n, b"fanout channel key", &mut body);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }

    /// What [`Self::wrap`] wrapped; `None` if it does not open (a wrong passphrase).
    pub fn unwrap(&self, wrapped: &[u8]) -> Option<Vec<u8>> {
        let n: [u8; WRAP_NONCE_LEN] = wrapped.get(..WRAP_NONCE_LEN)?.try_into().ok()?;
        let rest = &wrapped[WRAP_NONCE_LEN..];
        let len = rest.len().checked_sub(TAG_LEN)?;
        let mut body = rest[..len].to_vec();
        self.cipher
            .open(&n, b"fanout channel key", &mut body, &rest[len..])
            .then_some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{self, Datagram};

    fn open_datagram(o: &mut Opener, d: &mut [u8]) -> Result<Vec<u8>, Rejected> {
        let (channel, counter) = match message::parse(d) {
            Ok(Datagram::Data(data)) => (data.channel, data.counter),
            _ => panic!("not DATA"),
        };
        let _ = channel;
        o.open(counter, d).map(|p| p.to_vec())
    }

    #[test]
    fn sealed_data_opens_once_and_any_change_is_forged() {
        for (len, encrypt) in [(16, false), (16, true), (24, true), (32, false), (32, true)] {
            let key = ChannelKey::random(KeyLen::new(len).unwrap(), encrypt);
            let material = key.material().to_vec();
            let s = Sealer::new(key);
            let mut o = Opener::new(ChannelKey::from_material(&material, encrypt).unwrap());
            let mut d = Vec::new();
            assert!(s.seal(7, b"a packet", false, &mut d));
            assert_eq!(d.len(), message::DATA_HEADER_LEN + 8 + TAG_LEN);
            assert_eq!(d[message::DATA_HEADER_LEN..][..8] == *b"a packet", !encrypt);
            for i in 0..d.len() {
                let mut bad = d.clone();
                bad[i] ^= 1;
                if message::parse(&bad).is_ok_and(|m| matches!(m, Datagram::Data(_))) {
                    assert!(open_datagram(&mut o, &mut bad).is_err(), "byte {i} changed");
                }
            }
            assert_eq!(open_datagram(&mut o, &mut d.clone()).unwrap(), b"a packet");
            assert_eq!(open_datagram(&mut o, &mut d), Err(Rejected::Replayed));
            // Another key's datagram is forged.
            let other = Sealer::new(ChannelKey::random(KeyLen::new(len).unwrap(), encrypt));
            let mut d = Vec::new();
            other.seal(7, b"a packet", false, &mut d);
            d.clear();
            other.seal(7, b"a packet", false, &mut d);
            assert_eq!(open_datagram(&mut o, &mut d), Err(Rejected::Forged));
        }
    }

    #[test]
    fn reordered_datagrams_are_taken_once_and_old_ones_never() {
        let key = ChannelKey::random(KeyLen::DEFAULT, false);
        let material = key.material().to_vec();
        let s = Sealer::new(key);
        let mut o = Opener::new(ChannelKey::from_material(&material, false).unwrap());
        let sealed: Vec<Vec<u8>> = (0..REPLAY_WINDOW + 10)
            .map(|i| {
                let mut d = Vec::new();
                s.seal(0, &i.to_be_bytes(), i % 2 == 0, &mut d);
                d
            })
            .collect();
        // 5 first, then 0..5 late: all taken once.
        for i in [5, 0, 1, 2, 3, 4, 6] {
            assert!(open_datagram(&mut o, &mut sealed[i].clone()).is_ok(), "{i}");
            assert!(
                open_datagram(&mut o, &mut sealed[i].clone()).is_err(),
                "{i} again"
            );
        }
        // Far ahead: what falls out of the window is refused, what is within is taken.
        let last = sealed.len() - 1;
        assert!(open_datagram(&mut o, &mut sealed[last].clone()).is_ok());
        assert_eq!(
            open_datagram(&mut o, &mut sealed[7].clone()),
            Err(Rejected::Replayed)
        );
        assert!(open_datagram(&mut o, &mut sealed[last - 5].clone()).is_ok());
    }

    #[test]
    fn a_wrapped_key_opens_with_the_passphrase_only() {
        let salt = [3u8; KDF_SALT_LEN];
        let right = PassphraseKey::derive("correct horse battery", &salt, 1000, KeyLen::DEFAULT);
        let wrong = PassphraseKey::derive("wrong horse battery!", &salt, 1000, KeyLen::DEFAULT);
        let key = ChannelKey::random(KeyLen::new(32).unwrap(), true);
        let wrapped = right.wrap(key.material());
        assert_eq!(right.unwrap(&wrapped).as_deref(), Some(key.material()));
        assert_eq!(wrong.unwrap(&wrapped), None);
        assert_eq!(right.unwrap(&wrapped[..10]), None);
    }
}
