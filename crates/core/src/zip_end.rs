//! A cheap, strict check of a zip archive's end-of-central-directory record, made before an
//! archive is handed to the `zip` crate.
//!
//! The `zip` crate (2.x) looks for the end record by trying every `PK\x05\x06` signature in the
//! whole file, from the end, and for each one searches forward for the central directory: a
//! file full of such signatures takes time quadratic in its size (a 400 KB file 0.6 s, a 4 MB
//! one about a minute; found by fuzzing `torch/read`). Real archives have their end record in
//! the last 64 KiB (22 bytes plus a comment of at most 65,535) and a central directory where it
//! says; [`check_end_record`] accepts exactly those, in time linear in 64 KiB, so that the `zip`
//! crate then finds the record at its first try.
//!
//! When that first record is fine but the directory it points to is not (a broken entry, a bad
//! extra field), the `zip` crate goes on to every earlier signature, again quadratic. A trial
//! open through a [`BoundedReader`], which fails once it has read a few times the file's size,
//! makes that case linear too: a reader opens the archive through it first, then for real.

/// Length of the end-of-central-directory record without its comment.
const END_LEN: usize = 22;
/// Longest comment an end record can announce.
const MAX_COMMENT: usize = u16::MAX as usize;
const END_SIG: &[u8; 4] = b"PK\x05\x06";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const ZIP64_LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Checks that `bytes` end like a zip archive: the last end-of-central-directory signature lies
/// in the final 64 KiB, its comment fits in the file, and its central directory starts with a
/// central-directory header where the record says (at its offset, or right before the record
/// when data was prepended), or a Zip64 locator precedes it. The error says what is wrong.
pub fn check_end_record(bytes: &[u8]) -> Result<(), String> {
    let len = bytes.len();
    if len < END_LEN {
        return Err(format!("{len} bytes are too short for a zip archive"));
    }
    let first = len.saturating_sub(END_LEN + MAX_COMMENT);
    let Some(at) = (first..=len - END_LEN)
        .rev()
        .find(|&i| &bytes[i..i + 4] == END_SIG)
    else {
        return Err("no zip end-of-central-directory record in the last 64 KiB".into());
    };
    let comment = u16_at(bytes, at + 20);
    if at + END_LEN + comment > len {
        return Err(format!(
            "the zip end record at byte {at} announces a {comment}-byte comment past the end of the file"
        ));
    }
    let entries = u16_at(bytes, at + 10);
    let size = u32_at(bytes, at + 12);
    let offset = u32_at(bytes, at + 16);
    let zip64 = [4, 6, 8, 10]
        .iter()
        .any(|&f| u16_at(bytes, at + f) == 0xFFFF)
        || size == 0xFFFF_FFFF
        || offset == 0xFFFF_FFFF;
    if zip64 {
        return if at >= 20 && &bytes[at - 20..at - 16] == ZIP64_LOCATOR_SIG {
            Ok(())
        } else {
            Err(format!(
                "the zip end record at byte {at} asks for Zip64 but has no Zip64 locator"
            ))
        };
    }
    if entries == 0 {
        return Ok(());
    }
    let central_at = |start: usize| {
        start.checked_add(4).is_some_and(|e| e <= at) && &bytes[start..start + 4] == CENTRAL_SIG
    };
    if central_at(offset) || at.checked_sub(size).is_some_and(central_at) {
        Ok(())
    } else {
        Err(format!(
            "the zip end record at byte {at} puts the central directory at byte {offset} ({size} bytes), where there is none"
        ))
    }
}

/// Bytes of reading (or 16 per seek or empty read) a [`BoundedReader`] over `len` bytes allows.
pub fn read_budget(len: usize) -> u64 {
    (len as u64).saturating_mul(4).saturating_add(1 << 20)
}

/// The message of the I/O error a [`BoundedReader`] returns once its budget is spent.
pub const BUDGET_SPENT: &str =
    "finding the zip directory took more reading than four times the file (a file of many end-record signatures?)";

/// A `Read + Seek` cursor over a byte slice that fails once it has read [`read_budget`] bytes:
/// bounds the work a zip directory search does on a hostile file.
pub struct BoundedReader<'a> {
    bytes: &'a [u8],
    pos: u64,
    left: u64,
}

impl<'a> BoundedReader<'a> {
    /// A reader at the start of `bytes` with the budget [`read_budget`] of their length.
    pub fn new(bytes: &'a [u8]) -> Self {
        BoundedReader {
            bytes,
            pos: 0,
            left: read_budget(bytes.len()),
        }
    }

    fn spend(&mut self, n: usize) -> std::io::Result<()> {
        let cost = (n as u64).max(16);
        if self.left < cost {
            self.left = 0;
            return Err(std::io::Error::other(BUDGET_SPENT));
        }
        self.left -= cost;
        Ok(())
    }
}

impl std::io::Read for BoundedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(self.pos)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - start);
        self.spend(n)?;
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for BoundedReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.spend(0)?;
        let (base, delta) = match to {
            std::io::SeekFrom::Start(n) => (0, n as i128),
            std::io::SeekFrom::End(d) => (self.bytes.len() as i128, d as i128),
            std::io::SeekFrom::Current(d) => (self.pos as i128, d as i128),
        };
        let new = base + delta;
        if new < 0 || new > u64::MAX as i128 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored zip with one empty member `a`, as Python's zipfile writes it.
    fn one_member(prefix: &[u8], comment: &[u8]) -> Vec<u8> {
        let mut z = prefix.to_vec();
        let local = z.len();
        z.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0a");
        let central = z.len();
        z.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0");
        z.extend_from_slice(&(local as u32 - prefix.len() as u32).to_le_bytes());
        z.push(b'a');
        let size = (z.len() - central) as u32;
        z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&((central - prefix.len()) as u32).to_le_bytes());
        z.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        z.extend_from_slice(comment);
        z
    }

    #[test]
    fn real_archive_layouts_pass() {
        assert_eq!(check_end_record(&one_member(b"", b"")), Ok(()));
        assert_eq!(check_end_record(&one_member(b"", b"a comment")), Ok(()));
        // data prepended (self-extracting archives): the directory is found before the record
        assert_eq!(
            check_end_record(&one_member(b"#!/bin/sh\nexit 0\n", b"")),
            Ok(())
        );
        // an empty archive is only its end record
        assert_eq!(
            check_end_record(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Ok(())
        );
    }

    #[test]
    fn a_file_full_of_end_signatures_is_refused_at_once() {
        // every record claims one member in a directory at byte 0, where there is none
        let mut rec = b"PK\x05\x06\0\0\0\0\x01\0\x01\0".to_vec();
        rec.extend_from_slice(&46u32.to_le_bytes());
        rec.extend_from_slice(&0u32.to_le_bytes());
        rec.extend_from_slice(&0u16.to_le_bytes());
        let mut bomb = b"PK\x03\x04".to_vec();
        bomb.extend_from_slice(&[0; 26]);
        for _ in 0..200_000 {
            bomb.extend_from_slice(&rec);
        }
        let e = check_end_record(&bomb).unwrap_err();
        assert!(e.contains("where there is none"), "{e}");
    }

    #[test]
    fn bounded_reader_reads_like_a_cursor_until_its_budget_is_spent() {
        use std::io::{Read, Seek, SeekFrom};
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut r = BoundedReader::new(&bytes);
        let mut buf = [0u8; 10];
        r.seek(SeekFrom::End(-5)).unwrap();
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], &[95, 96, 97, 98, 99]);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert!(r.seek(SeekFrom::Current(-200)).is_err());
        // the budget: 4 x 100 + 1 MiB bytes, 16 per seek
        let mut spent = 4 * 16; // the seek, the two reads and the refused seek above
        let err = loop {
            match r.seek(SeekFrom::Start(0)).and_then(|_| r.read(&mut buf)) {
                Ok(_) => spent += 16 + 16,
                Err(e) => break e,
            }
        };
        assert!(
            spent <= read_budget(100) && read_budget(100) - spent < 32,
            "{spent}"
        );
        assert_eq!(err.to_string(), BUDGET_SPENT);
        assert!(r.read(&mut buf).is_err(), "a spent reader stays spent");
    }

    #[test]
    fn broken_end_records_are_refused_with_a_reason() {
        let z = one_member(b"", b"");
        let e = check_end_record(&z[..z.len() - 1]).unwrap_err();
        assert!(e.contains("no zip end-of-central-directory record"), "{e}");
        let mut long_comment = z.clone();
        let n = long_comment.len();
        long_comment[n - 2] = 9;
        assert!(check_end_record(&long_comment)
            .unwrap_err()
            .contains("comment past the end"));
        // no directory header where the record says, nor right before the record
        let mut moved = z.clone();
        let central = moved.windows(4).position(|w| w == CENTRAL_SIG).unwrap();
        moved[central + 3] = 9;
        assert!(check_end_record(&moved)
            .unwrap_err()
            .contains("where there is none"));
        assert!(check_end_record(b"PK").unwrap_err().contains("too short"));
    }
}
