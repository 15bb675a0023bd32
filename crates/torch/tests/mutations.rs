//! Deterministic mutation testing on real files (a small stand-in for the cargo-fuzz target):
//! flipped bytes, overwritten runs and truncations must give `Ok` or `Err`, never a panic.

mod common;
use common::fixture;
use convlens_core::Blob;

/// xorshift64*: a tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, src: &[u8], hot: usize) -> Vec<u8> {
    let mut b = src.to_vec();
    match rng.below(4) {
        0 => b.truncate(rng.below(b.len())),
        1 => {
            for _ in 0..1 + rng.below(8) {
                // mostly inside the pickle region, where the structure is
                let i = rng.below(hot.min(b.len()));
                b[i] = rng.next() as u8;
            }
        }
        2 => {
            let i = rng.below(hot.min(b.len()));
            let v = [0x00, 0xff, 0x80, 0x7f, b'(', b'.', b'R', b'h', b'q'][rng.below(9)];
            for x in b.iter_mut().skip(i).take(1 + rng.below(6)) {
                *x = v;
            }
        }
        _ => {
            let i = rng.below(hot.min(b.len()));
            let j = rng.below(hot.min(b.len()));
            let (lo, hi) = (i.min(j), i.max(j));
            let chunk = b[lo..hi.min(lo + 16)].to_vec();
            let at = rng.below(b.len());
            for (k, c) in chunk.into_iter().enumerate() {
                if let Some(x) = b.get_mut(at + k) {
                    *x = c;
                }
            }
        }
    }
    b
}

fn run(rel: &str, hot: usize, iterations: usize, seed: u64) {
    let src = std::fs::read(fixture(rel)).unwrap();
    let mut rng = Rng(seed);
    let mut ok = 0;
    for _ in 0..iterations {
        let b = mutate(&mut rng, &src, hot);
        if let Ok(ck) = convlens_torch::read(Blob::from_vec(b)) {
            ok += 1;
            for t in &ck.tensors {
                let _ = t.tensor.to_f64();
            }
        }
    }
    eprintln!("{rel}: {ok}/{iterations} mutants still read");
}

fn iterations() -> usize {
    std::env::var("CONVLENS_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn mutated_legacy_streams_never_panic() {
    run("third_party/facenet-pytorch/pnet.pt", 2000, iterations(), 1);
    run("third_party/lpips/alex_v0.0.pth", 900, iterations(), 2);
}

#[test]
fn mutated_zip_archives_never_panic() {
    run(
        "zoo/cifar10-mini/resnet20_robust_s0.pt",
        16_000,
        iterations(),
        3,
    );
}

#[test]
fn mutated_torchscript_never_panics() {
    let b = std::fs::read(fixture(
        "zoo/cifar10-mini/resnet20_robust_s0.torchscript.pt",
    ))
    .unwrap();
    run(
        "zoo/cifar10-mini/resnet20_robust_s0.torchscript.pt",
        b.len(),
        iterations(),
        4,
    );
}
