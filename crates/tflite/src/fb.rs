//! Bounds-checked access to flatbuffer tables, vectors and strings.
//!
//! Every read is checked against the buffer: offsets beyond the file, vtables outside it, and
//! vector lengths that do not fit the bytes that follow are errors, never panics. Tables are
//! reached only by following the schema from the root (forward `uoffset`s), so the reader
//! cannot loop whatever the offsets are; a table may be shared by several parents, which the
//! callers account for with a [`Budget`].

use crate::TfliteError;

/// Reads `N` bytes at `pos`.
fn bytes<const N: usize>(
    buf: &[u8],
    pos: usize,
    what: &'static str,
) -> Result<[u8; N], TfliteError> {
    let end = pos.checked_add(N);
    match end.and_then(|e| buf.get(pos..e)) {
        Some(s) => {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            Ok(a)
        }
        None => Err(TfliteError::OutOfBounds {
            what,
            offset: pos as u64,
            len: N as u64,
            size: buf.len(),
        }),
    }
}

pub(crate) fn read_u32(buf: &[u8], pos: usize, what: &'static str) -> Result<u32, TfliteError> {
    bytes::<4>(buf, pos, what).map(u32::from_le_bytes)
}

fn read_u16(buf: &[u8], pos: usize, what: &'static str) -> Result<u16, TfliteError> {
    bytes::<2>(buf, pos, what).map(u16::from_le_bytes)
}

/// `pos + u32 at pos`: the target of a forward offset, checked to lie inside the buffer.
fn follow(buf: &[u8], pos: usize, what: &'static str) -> Result<usize, TfliteError> {
    let off = read_u32(buf, pos, what)?;
    let target = pos
        .checked_add(off as usize)
        .filter(|&t| t < buf.len())
        .ok_or(TfliteError::OutOfBounds {
            what,
            offset: pos as u64 + u64::from(off),
            len: 1,
            size: buf.len(),
        })?;
    Ok(target)
}

/// A table: its position and its vtable.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vt: usize,
    vt_len: usize,
    what: &'static str,
}

impl<'a> Table<'a> {
    /// The root table of a flatbuffer.
    pub(crate) fn root(buf: &'a [u8], what: &'static str) -> Result<Self, TfliteError> {
        let pos = follow(buf, 0, what)?;
        Table::at(buf, pos, what)
    }

    /// The table at `pos`, with its vtable checked to lie inside the buffer.
    fn at(buf: &'a [u8], pos: usize, what: &'static str) -> Result<Self, TfliteError> {
        let soff = i32::from_le_bytes(bytes::<4>(buf, pos, what)?);
        let vt = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(i64::from(soff)))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(TfliteError::BadTable {
                what,
                offset: pos as u64,
                reason: format!("vtable offset {soff} points before the start of the file"),
            })?;
        let vt_len = usize::from(read_u16(buf, vt, what)?);
        if vt_len < 4 || vt_len % 2 != 0 || vt.checked_add(vt_len).is_none_or(|e| e > buf.len()) {
            return Err(TfliteError::BadTable {
                what,
                offset: pos as u64,
                reason: format!("vtable at byte {vt} has an invalid length {vt_len}"),
            });
        }
        Ok(Table {
            buf,
            pos,
            vt,
            vt_len,
            what,
        })
    }

    /// Position of field `id`, `None` when absent.
    fn field(&self, id: usize) -> Result<Option<usize>, TfliteError> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vt_len {
            return Ok(None);
        }
        let off = read_u16(self.buf, self.vt + slot, self.what)?;
        if off == 0 {
            return Ok(None);
        }
        Ok(Some(self.pos + usize::from(off)))
    }

    fn scalar<const N: usize>(&self, id: usize) -> Result<Option<[u8; N]>, TfliteError> {
        match self.field(id)? {
            None => Ok(None),
            Some(p) => bytes::<N>(self.buf, p, self.what).map(Some),
        }
    }

    pub(crate) fn u8(&self, id: usize, default: u8) -> Result<u8, TfliteError> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }

    pub(crate) fn i8(&self, id: usize, default: i8) -> Result<i8, TfliteError> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] as i8))
    }

    pub(crate) fn i32(&self, id: usize, default: i32) -> Result<i32, TfliteError> {
        Ok(self.scalar::<4>(id)?.map_or(default, i32::from_le_bytes))
    }

    pub(crate) fn u32(&self, id: usize, default: u32) -> Result<u32, TfliteError> {
        Ok(self.scalar::<4>(id)?.map_or(default, u32::from_le_bytes))
    }

    pub(crate) fn u64(&self, id: usize, default: u64) -> Result<u64, TfliteError> {
        Ok(self.scalar::<8>(id)?.map_or(default, u64::from_le_bytes))
    }

    /// Sub-table `id`.
    pub(crate) fn table(
        &self,
        id: usize,
        what: &'static str,
    ) -> Result<Option<Table<'a>>, TfliteError> {
        match self.field(id)? {
            None => Ok(None),
            Some(p) => {
                let t = follow(self.buf, p, what)?;
                Table::at(self.buf, t, what).map(Some)
            }
        }
    }

    /// Vector `id` of `elem`-byte elements, its length checked against the bytes that follow.
    pub(crate) fn vector(
        &self,
        id: usize,
        elem: usize,
        what: &'static str,
    ) -> Result<Option<Vector<'a>>, TfliteError> {
        let Some(p) = self.field(id)? else {
            return Ok(None);
        };
        let t = follow(self.buf, p, what)?;
        let len = read_u32(self.buf, t, what)? as usize;
        let start = t + 4;
        let need = len.checked_mul(elem);
        if need
            .and_then(|n| start.checked_add(n))
            .is_none_or(|end| end > self.buf.len())
        {
            return Err(TfliteError::OutOfBounds {
                what,
                offset: start as u64,
                len: (len as u64).saturating_mul(elem as u64),
                size: self.buf.len(),
            });
        }
        Ok(Some(Vector {
            buf: self.buf,
            start,
            len,
            elem,
            what,
        }))
    }

    /// String `id` (invalid UTF-8 replaced), empty when absent.
    pub(crate) fn string(&self, id: usize, what: &'static str) -> Result<String, TfliteError> {
        Ok(match self.vector(id, 1, what)? {
            None => String::new(),
            Some(v) => String::from_utf8_lossy(v.bytes()).into_owned(),
        })
    }

    /// Length in bytes of string `id` without reading it (0 when absent).
    pub(crate) fn string_len(&self, id: usize, what: &'static str) -> Result<usize, TfliteError> {
        Ok(self.vector(id, 1, what)?.map_or(0, |v| v.len()))
    }
}

/// A vector inside the buffer.
#[derive(Clone, Copy)]
pub(crate) struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
    elem: usize,
    what: &'static str,
}

impl<'a> Vector<'a> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The element bytes (checked on construction).
    pub(crate) fn bytes(&self) -> &'a [u8] {
        &self.buf[self.start..self.start + self.len * self.elem]
    }

    /// Byte range of the elements in the buffer.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len * self.elem
    }

    fn elem<const N: usize>(&self, i: usize) -> Result<[u8; N], TfliteError> {
        if i >= self.len || N != self.elem {
            return Err(TfliteError::OutOfBounds {
                what: self.what,
                offset: (self.start + i.saturating_mul(self.elem)) as u64,
                len: N as u64,
                size: self.buf.len(),
            });
        }
        bytes::<N>(self.buf, self.start + i * N, self.what)
    }

    pub(crate) fn i32(&self, i: usize) -> Result<i32, TfliteError> {
        self.elem::<4>(i).map(i32::from_le_bytes)
    }

    pub(crate) fn f32(&self, i: usize) -> Result<f32, TfliteError> {
        self.elem::<4>(i).map(f32::from_le_bytes)
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, TfliteError> {
        self.elem::<8>(i).map(i64::from_le_bytes)
    }

    pub(crate) fn u16(&self, i: usize) -> Result<u16, TfliteError> {
        self.elem::<2>(i).map(u16::from_le_bytes)
    }

    pub(crate) fn u8(&self, i: usize) -> Result<u8, TfliteError> {
        self.elem::<1>(i).map(|b| b[0])
    }

    /// Element `i` of a vector of tables.
    pub(crate) fn table(&self, i: usize) -> Result<Table<'a>, TfliteError> {
        if i >= self.len || self.elem != 4 {
            return Err(TfliteError::OutOfBounds {
                what: self.what,
                offset: (self.start + i.saturating_mul(4)) as u64,
                len: 4,
                size: self.buf.len(),
            });
        }
        let t = follow(self.buf, self.start + i * 4, self.what)?;
        Table::at(self.buf, t, self.what)
    }
}

/// A cap on the work and memory that shared tables could multiply: every element copied out
/// of the file (names, shapes, operator inputs, quantization parameters) is charged.
pub(crate) struct Budget {
    left: usize,
    total: usize,
}

impl Budget {
    pub(crate) fn new(total: usize) -> Self {
        Budget { left: total, total }
    }

    pub(crate) fn charge(&mut self, n: usize, what: &'static str) -> Result<(), TfliteError> {
        match self.left.checked_sub(n) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => Err(TfliteError::TooLarge {
                what,
                limit: self.total,
            }),
        }
    }
}
