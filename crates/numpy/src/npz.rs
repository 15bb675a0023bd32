//! `.npz` archives: zip files of `.npy` members.

use std::io::{Cursor, Read};

use convlens_core::limits::{MAX_NAME_LEN, MAX_TENSORS};
use convlens_core::{Blob, Checkpoint, Format, NamedTensor};
use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::{parse_header, strings_of, tensor_of, Kind, NpyError};

/// A deflated member may expand to at most this many times its compressed size (with a floor of
/// [`MIN_INFLATE_CAP`] bytes for tiny members).
pub const MAX_INFLATE_RATIO: u64 = 64;
/// Largest decompressed member accepted (16 GiB).
pub const MAX_INFLATED_BYTES: u64 = 16 << 30;
/// Decompression cap of small members, in bytes.
pub const MIN_INFLATE_CAP: u64 = 1 << 20;
/// Read buffer for decompression.
const CHUNK: usize = 64 << 10;

/// `order_source` of a `.npz` checkpoint.
pub const ORDER_NPZ: &str = "npz archive order";

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

fn zip_err(e: ZipError) -> NpyError {
    match e {
        ZipError::Io(io) => NpyError::Zip(format!("truncated or unreadable archive: {io}")),
        other => NpyError::Zip(other.to_string()),
    }
}

fn open(bytes: &[u8]) -> Result<Archive<'_>, NpyError> {
    convlens_core::zip_end::check_end_record(bytes).map_err(NpyError::Zip)?;
    ZipArchive::new(convlens_core::zip_end::BoundedReader::new(bytes)).map_err(zip_err)?;
    let archive = ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    if archive.len() > MAX_TENSORS {
        return Err(NpyError::TooManyMembers(archive.len()));
    }
    Ok(archive)
}

/// Array name of a member: its file name without `.npy`, as `numpy.load` reports it.
fn array_name(member: &str) -> &str {
    member.strip_suffix(".npy").unwrap_or(member)
}

/// One member's bytes: a view of the input when stored, decompressed (under a cap) when
/// deflated. `None` for directory entries.
fn member_bytes(
    archive: &mut Archive<'_>,
    data: &Blob,
    index: usize,
) -> Result<Option<(String, Blob)>, NpyError> {
    let raw = archive.by_index_raw(index).map_err(zip_err)?;
    let name = raw.name().to_string();
    if name.len() > MAX_NAME_LEN {
        return Err(NpyError::NameTooLong(name.len()));
    }
    let fail = |msg: String| NpyError::Member {
        name: name.clone(),
        source: Box::new(NpyError::Extract(msg)),
    };
    if raw.is_dir() {
        return Ok(None);
    }
    if raw.encrypted() {
        return Err(fail("encrypted members are not supported".to_string()));
    }
    let (size, csize, crc, start) = (
        raw.size(),
        raw.compressed_size(),
        raw.crc32(),
        raw.data_start(),
    );
    match raw.compression() {
        CompressionMethod::Stored => {
            if size != csize {
                return Err(fail(format!(
                    "stored member declares {size} bytes but occupies {csize}"
                )));
            }
            let range = usize::try_from(start)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(s, n)| Some(s..s.checked_add(n)?));
            let blob = range.and_then(|r| data.slice(r)).ok_or_else(|| {
                fail(format!(
                    "data at offset {start} of {size} bytes runs past the end of the archive ({} bytes)",
                    data.len()
                ))
            })?;
            let actual = crc32fast::hash(blob.as_slice());
            if actual != crc {
                return Err(fail(format!(
                    "CRC-32 {actual:08x} does not match the recorded {crc:08x}"
                )));
            }
            Ok(Some((name, blob)))
        }
        CompressionMethod::Deflated => {
            drop(raw);
            let cap = csize
                .saturating_mul(MAX_INFLATE_RATIO)
                .clamp(MIN_INFLATE_CAP, MAX_INFLATED_BYTES);
            if size > cap {
                return Err(fail(format!(
                    "declared size {size} bytes from {csize} compressed exceeds the decompression cap of {cap} bytes (possible zip bomb)"
                )));
            }
            let mut reader = archive.by_index(index).map_err(zip_err)?;
            let mut out: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| fail(format!("decompression failed: {e}")))?;
                if n == 0 {
                    break;
                }
                // size <= cap, so this also bounds the output by the cap
                if out.len() as u64 + n as u64 > size {
                    return Err(fail(format!(
                        "inflates past its declared size of {size} bytes"
                    )));
                }
                out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            }
            if out.len() as u64 != size {
                return Err(fail(format!(
                    "inflates to {} bytes, not the declared {size}",
                    out.len()
                )));
            }
            Ok(Some((name, Blob::from_vec(out))))
        }
        other => Err(fail(format!("unsupported compression method {other}"))),
    }
}

fn in_member(name: &str) -> impl Fn(NpyError) -> NpyError + '_ {
    move |e| NpyError::Member {
        name: name.to_string(),
        source: Box::new(e),
    }
}

/// Reads an `.npz` archive: its numeric arrays in archive order, named without `.npy`. Stored
/// members are viewed in place; deflated ones are decompressed under a size cap. String arrays
/// and types convlens does not read are skipped with a note; object arrays are refused.
pub fn read_npz(data: Blob) -> Result<Checkpoint, NpyError> {
    let bytes = data.as_slice();
    let mut archive = open(bytes)?;
    let mut tensors = Vec::new();
    let mut notes = Vec::new();
    for i in 0..archive.len() {
        let Some((member, blob)) = member_bytes(&mut archive, &data, i)? else {
            continue;
        };
        let header = parse_header(blob.as_slice()).map_err(in_member(&member))?;
        let name = array_name(&member).to_string();
        match header.kind {
            Kind::Unicode(..) | Kind::Bytes(_) => {
                notes.push(format!(
                    "array '{name}' holds strings ('{}'), not a tensor; skipped",
                    header.descr
                ));
                continue;
            }
            Kind::Unsupported => {
                notes.push(format!(
                    "array '{name}' has dtype '{}', which convlens does not read; skipped",
                    header.descr
                ));
                continue;
            }
            Kind::Object | Kind::Numeric(..) => {}
        }
        let tensor = tensor_of(&header, &blob).map_err(in_member(&member))?;
        tensors.push(NamedTensor { name, tensor });
    }
    let mut ckpt = Checkpoint::from_tensors(Format::Npz, tensors, ORDER_NPZ);
    ckpt.notes = notes;
    Ok(ckpt)
}

/// The values of the string array `name` (e.g. `image_names`) of an `.npz` archive, in C order,
/// trailing NULs removed as numpy does.
pub fn read_npz_strings(data: Blob, name: &str) -> Result<Vec<String>, NpyError> {
    let bytes = data.as_slice();
    let mut archive = open(bytes)?;
    let with_suffix = format!("{name}.npy");
    let names: Vec<&str> = (0..archive.len())
        .map(|i| archive.name_for_index(i).unwrap_or_default())
        .collect();
    let found = names
        .iter()
        .position(|&m| m == name)
        .or_else(|| names.iter().position(|&m| m == with_suffix));
    let index = found.ok_or_else(|| NpyError::NoSuchArray(name.to_string()))?;
    let (member, blob) = member_bytes(&mut archive, &data, index)?
        .ok_or_else(|| NpyError::NoSuchArray(name.to_string()))?;
    let header = parse_header(blob.as_slice()).map_err(in_member(&member))?;
    strings_of(&header, blob.as_slice()).map_err(in_member(&member))
}
