//! Checksums over data files that may be sparse. A crafted index can name gigabytes over a
//! file whose length is a claim, not bytes on disk: the holes are zeros, so their checksum is
//! computed, not read, and what is read is bounded by what the disk really holds.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Bytes read (and checksummed) at a time.
const CHUNK: u64 = 1 << 20;

/// CRC-32C of `len` zero bytes, in O(log² len) without touching memory.
pub fn zeros_crc(len: u64) -> u32 {
    let (mut crc, mut have) = (0u32, 0u64);
    // Doubling: `block` is the CRC of `bit` zeros.
    let (mut block, mut bit) = (crc32c::crc32c(&[0]), 1u64);
    while have < len {
        if len - have >= bit && (len - have) & bit != 0 {
            crc = combine(crc, block, bit);
            have += bit;
        }
        block = combine(block, block, bit);
        bit = bit.saturating_mul(2);
    }
    crc
}

fn combine(a: u32, b: u32, len_b: u64) -> u32 {
    crc32c::crc32c_combine(a, b, usize::try_from(len_b).unwrap_or(usize::MAX))
}

/// Where the next data (`whence` = `SEEK_DATA`) or hole (`SEEK_HOLE`) at or after `at`
/// begins, at most `end`. A file system that cannot say reports all data, no hole.
fn seek(f: &File, at: u64, end: u64, whence: libc::c_int) -> u64 {
    // Where the file system cannot say, everything is data: read, never assumed zeros.
    let unknown = if whence == libc::SEEK_DATA { at } else { end };
    let Ok(off) = libc::off_t::try_from(at) else {
        return unknown;
    };
    // SAFETY: a plain syscall on a descriptor we own; data is read with pread, so moving the
    // file offset changes nothing.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    match u64::try_from(r) {
        Ok(r) => r.min(end),
        // ENXIO for SEEK_DATA: nothing but hole up to the end of the file.
        Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => end,
        Err(_) => unknown,
    }
}

/// Whether `start..end` of `f` has a hole in it: bytes never written, zeros.
pub fn has_hole(f: &File, start: u64, end: u64) -> bool {
    start < end && seek(f, start, end, libc::SEEK_HOLE) < end
}

/// CRC-32C of bytes `start..end` of `f`: holes computed, data read in bounded chunks.
pub fn range_crc(f: &File, start: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<u32> {
    // Past the end of the file there is nothing, not zeros.
    if end > f.metadata()?.len() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut crc = 0;
    let mut at = start;
    while at < end {
        let data = seek(f, at, end, libc::SEEK_DATA).max(at);
        if data > at {
            crc = combine(crc, zeros_crc(data - at), data - at);
            at = data;
            continue;
        }
        let hole = seek(f, at, end, libc::SEEK_HOLE).max(at + 1).min(end);
        while at < hole {
            let n = (hole - at).min(CHUNK) as usize;
            buf.resize(n, 0);
            f.read_exact_at(buf, at)?;
            crc = crc32c::crc32c_append(crc, buf);
            at += n as u64;
        }
    }
    Ok(crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_crc_is_the_crc_of_zeros() {
        for len in [0u64, 1, 2, 3, 7, 64, 1000, 4097, 1 << 20] {
            assert_eq!(
                zeros_crc(len),
                crc32c::crc32c(&vec![0; len as usize]),
                "{len}"
            );
        }
    }

    #[test]
    fn range_crc_reads_data_and_computes_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Data, a hole of 3 MiB, data, a hole to the end.
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 3 << 20).unwrap();
        f.set_len(5 << 20).unwrap();
        let all = std::fs::read(&path).unwrap();
        let mut buf = Vec::new();
        for (a, b) in [
            (0, 5 << 20),
            (2, 4 << 20),
            (4096, 3 << 20),
            (3 << 20, 5 << 20),
        ] {
            let want = crc32c::crc32c(&all[a..b]);
            assert_eq!(range_crc(&f, a as u64, b as u64, &mut buf).unwrap(), want);
        }
        assert!(buf.len() <= CHUNK as usize);
        assert!(has_hole(&f, 8192, 2 << 20));
        assert!(has_hole(&f, 0, 2 << 20));
        assert!(!has_hole(&f, 0, 4));
    }
}
