//! Synthetic model zoo for the filter-database scale benchmark.
//!
//! Writes pairs of robust / normal checkpoints (safetensors, float32, `key_order` metadata) with
//! wide-ResNet layer shapes until the requested number of 3×3 filters is reached, plus
//! `meta.csv` (Name, Robust, Network, Training-Dataset, Seed) and `pairings.csv`.
//!
//! Weights: per filter `std · (a·noise + Σ c_r·P_r)` with Kaiming-normal-sized noise, a smooth
//! low-rank part (blob, two gradients, centre-surround) whose strength differs between robust
//! and normal models, a per-out-channel scale (BatchNorm-like) and a share of near-zero
//! ("sparse") filters that grows with depth and is larger for robust models.
//!
//! usage: convlens-synth OUT_DIR --filters 100M [--threads 2] [--mix all|cifar]
//! (`--mix cifar` leaves out wide_resnet50_2, whose 1×1 layers add 40 % to its file size:
//! for disks too small for the default mix)
//! writes OUT_DIR/zoo/*.safetensors, OUT_DIR/meta.csv, OUT_DIR/pairings.csv

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One tensor of a checkpoint.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Convolution weight `[o, i, k, k]`; `depth` in 0..1 (position in the network).
    Conv {
        depth: f64,
    },
    /// BatchNorm weight (≈1), bias / running mean (≈0), running var (≈1).
    BnWeight,
    BnBias,
    BnVar,
    /// Linear layer.
    Linear,
}

struct Arch {
    name: &'static str,
    tensors: Vec<Tensor>,
}

impl Arch {
    fn filters3x3(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| matches!(t.kind, Kind::Conv { .. }) && t.shape[2] == 3)
            .map(|t| (t.shape[0] * t.shape[1]) as u64)
            .sum()
    }

    fn bytes(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64 * 4)
            .sum()
    }
}

struct Builder {
    tensors: Vec<(String, Vec<usize>, bool)>, // name, shape, is_conv
    bn: Vec<(String, usize)>,
    out: Vec<Tensor>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            tensors: Vec::new(),
            bn: Vec::new(),
            out: Vec::new(),
        }
    }
    fn conv(&mut self, name: &str, o: usize, i: usize, k: usize) {
        self.tensors
            .push((format!("{name}.weight"), vec![o, i, k, k], true));
    }
    fn bn(&mut self, name: &str, c: usize) {
        self.tensors
            .push((format!("{name}.weight"), vec![c], false));
        self.tensors.push((format!("{name}.bias"), vec![c], false));
        self.tensors
            .push((format!("{name}.running_mean"), vec![c], false));
        self.tensors
            .push((format!("{name}.running_var"), vec![c], false));
        self.bn.push((name.to_string(), c));
    }
    fn linear(&mut self, name: &str, o: usize, i: usize) {
        self.tensors
            .push((format!("{name}.weight"), vec![o, i], false));
        self.tensors.push((format!("{name}.bias"), vec![o], false));
    }
    fn finish(mut self, name: &'static str) -> Arch {
        let n_conv = self.tensors.iter().filter(|t| t.2).count().max(2);
        let mut ci = 0usize;
        for (n, shape, is_conv) in std::mem::take(&mut self.tensors) {
            let kind = if is_conv {
                let d = ci as f64 / (n_conv - 1) as f64;
                ci += 1;
                Kind::Conv { depth: d }
            } else if shape.len() == 2 {
                Kind::Linear
            } else if n.ends_with(".running_var") || n.ends_with(".weight") {
                if n.ends_with(".running_var") {
                    Kind::BnVar
                } else {
                    Kind::BnWeight
                }
            } else if n.ends_with(".bias") && n.starts_with("fc") {
                Kind::Linear
            } else {
                Kind::BnBias
            };
            self.out.push(Tensor {
                name: n,
                shape,
                kind,
            });
        }
        Arch {
            name,
            tensors: self.out,
        }
    }
}

/// CIFAR wide ResNet WRN-d-k (pre-activation basic blocks, d = 6n + 4).
fn wrn_cifar(name: &'static str, depth: usize, widen: usize) -> Arch {
    let n = (depth - 4) / 6;
    let mut b = Builder::new();
    b.conv("conv1", 16, 3, 3);
    let mut inp = 16;
    for (g, w) in [16 * widen, 32 * widen, 64 * widen].into_iter().enumerate() {
        for blk in 0..n {
            let p = format!("block{}.layer.{blk}", g + 1);
            b.bn(&format!("{p}.bn1"), inp);
            b.conv(&format!("{p}.conv1"), w, inp, 3);
            b.bn(&format!("{p}.bn2"), w);
            b.conv(&format!("{p}.conv2"), w, w, 3);
            if inp != w {
                b.conv(&format!("{p}.convShortcut"), w, inp, 1);
            }
            inp = w;
        }
    }
    b.bn("bn1", inp);
    b.linear("fc", 10, inp);
    b.finish(name)
}

/// torchvision wide_resnet50_2 (bottleneck blocks, 7×7 stem, 1000 classes).
fn wrn50_2() -> Arch {
    let mut b = Builder::new();
    b.conv("conv1", 64, 3, 7);
    b.bn("bn1", 64);
    let mut inp = 64;
    for (li, (planes, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let width = planes * 2;
        for blk in 0..blocks {
            let p = format!("layer{}.{blk}", li + 1);
            b.conv(&format!("{p}.conv1"), width, inp, 1);
            b.bn(&format!("{p}.bn1"), width);
            b.conv(&format!("{p}.conv2"), width, width, 3);
            b.bn(&format!("{p}.bn2"), width);
            b.conv(&format!("{p}.conv3"), planes * 4, width, 1);
            b.bn(&format!("{p}.bn3"), planes * 4);
            if blk == 0 {
                b.conv(&format!("{p}.downsample.0"), planes * 4, inp, 1);
                b.bn(&format!("{p}.downsample.1"), planes * 4);
            }
            inp = planes * 4;
        }
    }
    b.linear("fc", 1000, inp);
    b.finish("wrn50_2")
}

fn archs() -> Vec<Arch> {
    vec![
        wrn_cifar("wrn28_10", 28, 10),
        wrn_cifar("wrn28_4", 28, 4),
        wrn_cifar("wrn34_10", 34, 10),
        wrn50_2(),
        wrn_cifar("wrn16_8", 16, 8),
    ]
}

/// wyrand: small, fast, good enough for synthetic weights.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
    /// Approximately standard normal (Irwin–Hall of four 16-bit uniforms), one draw per call.
    #[inline]
    fn normal(&mut self) -> f32 {
        let r = self.next();
        let s = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
        // mean 2·65535, variance 4·65536²/12
        (s as f32 - 131_070.0) * (1.732_050_8 / 65_536.0)
    }
    #[inline]
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The smooth 3×3 patterns of the low-rank part.
const PATTERNS: [[f32; 9]; 4] = [
    [0.3, 0.6, 0.3, 0.6, 1.0, 0.6, 0.3, 0.6, 0.3],
    [-0.5, 0.0, 0.5, -1.0, 0.0, 1.0, -0.5, 0.0, 0.5],
    [-0.5, -1.0, -0.5, 0.0, 0.0, 0.0, 0.5, 1.0, 0.5],
    [-0.2, -0.5, -0.2, -0.5, 1.0, -0.5, -0.2, -0.5, -0.2],
];

struct Style {
    noise: f32,
    smooth: [f32; 4],
    sparse_base: f32,
    sparse_deep: f32,
}

const NORMAL: Style = Style {
    noise: 1.0,
    smooth: [0.5, 0.35, 0.35, 0.25],
    sparse_base: 0.005,
    sparse_deep: 0.02,
};

const ROBUST: Style = Style {
    noise: 0.75,
    smooth: [0.8, 0.55, 0.55, 0.2],
    sparse_base: 0.01,
    sparse_deep: 0.08,
};

fn fill(t: &Tensor, style: &Style, rng: &mut Rng, out: &mut Vec<f32>) {
    out.clear();
    let n: usize = t.shape.iter().product();
    match t.kind {
        Kind::Conv { depth } => {
            let (o, i, kk) = (t.shape[0], t.shape[1], t.shape[2] * t.shape[3]);
            let std = (2.0 / (o * kk) as f32).sqrt();
            let sparse_p =
                style.sparse_base + (style.sparse_deep - style.sparse_base) * depth as f32;
            // the smooth part fades with depth, more slowly for robust models
            let fade = 1.0 - 0.4 * depth as f32;
            for _ in 0..o {
                let ch = std * (0.3 * rng.normal()).exp();
                for _ in 0..i {
                    let base = out.len();
                    for _ in 0..kk {
                        out.push(style.noise * rng.normal());
                    }
                    if kk == 9 {
                        for (p, &s) in PATTERNS.iter().zip(&style.smooth) {
                            let c = s * fade * rng.normal();
                            for (x, &v) in out[base..].iter_mut().zip(p) {
                                *x += c * v;
                            }
                        }
                    }
                    let scale = if rng.uniform() < sparse_p {
                        ch * 1e-3
                    } else {
                        ch
                    };
                    for x in &mut out[base..] {
                        *x *= scale;
                    }
                }
            }
        }
        Kind::BnWeight => out.extend((0..n).map(|_| 1.0 + 0.1 * rng.normal())),
        Kind::BnBias => out.extend((0..n).map(|_| 0.1 * rng.normal())),
        Kind::BnVar => out.extend((0..n).map(|_| 1.0 + 0.1 * rng.uniform())),
        Kind::Linear => {
            let fan = *t.shape.last().unwrap_or(&1) as f32;
            out.extend((0..n).map(|_| rng.normal() / fan.sqrt()))
        }
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            _ => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The safetensors header (JSON, space-padded to a multiple of 8 bytes).
fn header(arch: &Arch) -> Vec<u8> {
    let order: Vec<String> = arch.tensors.iter().map(|t| json_str(&t.name)).collect();
    let order = format!("[{}]", order.join(","));
    let mut h = format!("{{\"__metadata__\":{{\"key_order\":{}}}", json_str(&order));
    let mut off = 0u64;
    for t in &arch.tensors {
        let n = t.shape.iter().product::<usize>() as u64 * 4;
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        h.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_str(&t.name),
            shape.join(","),
            off,
            off + n
        ));
        off += n;
    }
    h.push('}');
    let mut b = h.into_bytes();
    while b.len() % 8 != 0 {
        b.push(b' ');
    }
    b
}

fn write_model(path: &Path, arch: &Arch, robust: bool, seed: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    {
        let mut w = BufWriter::with_capacity(4 << 20, File::create(&tmp)?);
        let h = header(arch);
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        let mut rng = Rng(seed);
        let style = if robust { &ROBUST } else { &NORMAL };
        let mut vals = Vec::new();
        let mut bytes = Vec::new();
        for t in &arch.tensors {
            fill(t, style, &mut rng, &mut vals);
            bytes.clear();
            bytes.reserve(vals.len() * 4);
            for v in &vals {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&bytes)?;
        }
        w.flush()?;
    }
    std::fs::rename(&tmp, path)
}

fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        'g' | 'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0).then(|| (v * mul).round() as u64)
}

struct Model {
    name: String,
    arch: usize,
    robust: bool,
    seed: u64,
}

/// Picks robust/normal pairs, cycling through the architectures, while the total stays within
/// 2 % above `target`; stops when no architecture fits.
fn plan(archs: &[Arch], target: u64) -> Vec<Model> {
    let sizes: Vec<u64> = archs.iter().map(|a| 2 * a.filters3x3()).collect();
    let mut total = 0u64;
    let mut seeds = vec![0u64; archs.len()];
    let mut out = Vec::new();
    let limit = target + target / 50;
    loop {
        let mut added = false;
        for (ai, a) in archs.iter().enumerate() {
            if total + sizes[ai] > limit {
                continue;
            }
            let s = seeds[ai];
            seeds[ai] += 1;
            for robust in [true, false] {
                out.push(Model {
                    name: format!(
                        "{}_{}_s{s}",
                        a.name,
                        if robust { "robust" } else { "normal" }
                    ),
                    arch: ai,
                    robust,
                    seed: s,
                });
            }
            total += sizes[ai];
            added = true;
        }
        if !added {
            break;
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out: Option<PathBuf> = None;
    let mut target: Option<u64> = None;
    let mut threads = 2usize;
    let mut cifar_only = false;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--filters" => {
                target = args.get(i + 1).and_then(|s| parse_count(s));
                i += 1;
            }
            "--mix" => {
                cifar_only = args.get(i + 1).is_some_and(|m| m == "cifar");
                i += 1;
            }
            "--threads" => {
                threads = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(2);
                i += 1;
            }
            a => out = Some(PathBuf::from(a)),
        }
        i += 1;
    }
    let (Some(out), Some(target)) = (out, target) else {
        eprintln!("usage: convlens-synth OUT_DIR --filters 100M [--threads 2] [--mix all|cifar]");
        std::process::exit(2);
    };
    let mut archs = archs();
    if cifar_only {
        archs.retain(|a| a.name != "wrn50_2");
    }
    let models = plan(&archs, target);
    let zoo = out.join("zoo");
    std::fs::create_dir_all(&zoo).expect("create zoo folder");
    let n_filters: u64 = models.iter().map(|m| archs[m.arch].filters3x3()).sum();
    let n_bytes: u64 = models.iter().map(|m| archs[m.arch].bytes()).sum();
    eprintln!(
        "{} models, {} 3x3 filters, {:.1} GB of checkpoints",
        models.len(),
        n_filters,
        n_bytes as f64 / 1e9
    );
    let mut meta = String::from("Name,Robust,Network,Training-Dataset,Seed\n");
    let mut pairs = String::from("Robust,Normal,Arch,Dataset\n");
    for m in &models {
        let a = archs[m.arch].name;
        let ds = if a == "wrn50_2" {
            "imagenet"
        } else {
            "cifar10"
        };
        meta.push_str(&format!(
            "{},{},{a},{ds},{}\n",
            m.name,
            if m.robust { "True" } else { "False" },
            m.seed
        ));
        if m.robust {
            pairs.push_str(&format!("{},{a}_normal_s{},{a},{ds}\n", m.name, m.seed));
        }
    }
    std::fs::write(out.join("meta.csv"), meta).expect("write meta.csv");
    std::fs::write(out.join("pairings.csv"), pairs).expect("write pairings.csv");
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = models.get(i) else { break };
                let path = zoo.join(format!("{}.safetensors", m.name));
                if path.exists() {
                    continue;
                }
                // FNV-1a of the name: the same model gets the same weights in every zoo size
                let seed = m.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                write_model(&path, &archs[m.arch], m.robust, seed)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            });
        }
    });
    println!("{n_filters}");
}
