//! Builders for small pickles, torch zip archives and legacy streams.

use std::io::Write;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A protocol-2 pickle under construction.
pub struct Pk(pub Vec<u8>);

impl Default for Pk {
    fn default() -> Self {
        Self::new()
    }
}

impl Pk {
    pub fn new() -> Self {
        Pk(vec![0x80, 2])
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(op);
        self
    }
    pub fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    pub fn tuple(&mut self) -> &mut Self {
        self.op(b't')
    }
    pub fn none(&mut self) -> &mut Self {
        self.op(b'N')
    }
    pub fn reduce(&mut self) -> &mut Self {
        self.op(b'R')
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X');
        self.raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
    }
    pub fn int(&mut self, i: i64) -> &mut Self {
        if (0..256).contains(&i) {
            self.op(b'K').op(i as u8)
        } else if (0..65536).contains(&i) {
            self.op(b'M').raw(&(i as u16).to_le_bytes())
        } else if i32::try_from(i).is_ok() {
            self.op(b'J').raw(&(i as i32).to_le_bytes())
        } else {
            self.op(0x8a).op(8).raw(&i.to_le_bytes())
        }
    }
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    pub fn int_tuple(&mut self, v: &[i64]) -> &mut Self {
        self.mark();
        for &i in v {
            self.int(i);
        }
        self.tuple()
    }
    /// `collections.OrderedDict()`
    pub fn ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').reduce()
    }
    /// `('storage', torch.<storage>, key, 'cpu', numel)` + BINPERSID
    pub fn storage(&mut self, storage: &str, key: &str, numel: i64) -> &mut Self {
        self.mark()
            .str("storage")
            .global("torch", storage)
            .str(key)
            .str("cpu")
            .int(numel)
            .tuple()
            .op(b'Q')
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`
    pub fn tensor_v2(
        &mut self,
        storage: &str,
        key: &str,
        numel: i64,
        offset: i64,
        size: &[i64],
        stride: &[i64],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").mark();
        self.storage(storage, key, numel)
            .int(offset)
            .int_tuple(size)
            .int_tuple(stride)
            .op(0x89)
            .ordered_dict()
            .tuple()
            .reduce()
    }
    /// Legacy persistent id `('storage', torch.<storage>, key, 'cpu', numel, view)` + BINPERSID
    pub fn legacy_storage(
        &mut self,
        storage: &str,
        key: &str,
        numel: i64,
        view: Option<(&str, i64, i64)>,
    ) -> &mut Self {
        self.mark()
            .str("storage")
            .global("torch", storage)
            .str(key)
            .str("cpu")
            .int(numel);
        match view {
            None => self.none(),
            Some((k, o, n)) => self.mark().str(k).int(o).int(n).tuple(),
        };
        self.tuple().op(b'Q')
    }
    pub fn stop(&mut self) -> Vec<u8> {
        self.op(b'.');
        std::mem::take(&mut self.0)
    }
}

/// A state dict pickle `OrderedDict(name -> _rebuild_tensor_v2(...))`, one storage per tensor:
/// (name, storage type, key, numel, offset, size, stride).
pub type TensorSpec<'a> = (&'a str, &'a str, &'a str, i64, i64, &'a [i64], &'a [i64]);

pub fn state_dict_pickle(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut p = Pk::new();
    p.ordered_dict().mark();
    for (name, st, key, numel, off, size, stride) in tensors {
        p.str(name).tensor_v2(st, key, *numel, *off, size, stride);
    }
    p.op(b'u').stop()
}

/// A torch zip archive `<prefix>/data.pkl`, `<prefix>/data/<key>`, plus `extra` members.
pub fn torch_zip(
    prefix: &str,
    data_pkl: &[u8],
    storages: &[(&str, Vec<u8>)],
    extra: &[(&str, &[u8])],
    method: CompressionMethod,
) -> Vec<u8> {
    let mut w = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    w.start_file(format!("{prefix}/data.pkl"), opts).unwrap();
    w.write_all(data_pkl).unwrap();
    for (name, bytes) in extra {
        w.start_file(format!("{prefix}/{name}"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    for (key, bytes) in storages {
        w.start_file(format!("{prefix}/data/{key}"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A legacy stream: header pickles, `object`, the key list and the storage records.
pub fn legacy_stream(object: &[u8], storages: &[(&str, i64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.");
    out.extend(Pk::new().int(1001).stop());
    let mut sys = Pk::new();
    sys.op(b'}')
        .mark()
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88)
        .op(b'u');
    out.extend(sys.stop());
    out.extend(object);
    let mut keys = Pk::new();
    keys.op(b']').mark();
    for (k, _, _) in storages {
        keys.str(k);
    }
    keys.op(b'e');
    out.extend(keys.stop());
    for (_, count, bytes) in storages {
        out.extend(count.to_le_bytes());
        out.extend(bytes);
    }
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
