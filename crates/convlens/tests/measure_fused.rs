//! The one-pass variance entropies and basis moments of `measure_layer` against the former
//! two-pass computation: numpy's mean, exactly centred rows, then the spectrum
//! (`variance_spectrum`, which still uses that path) and the entropy rules, rebuilt here from
//! the public API; and the basis moments against the db build's accumulation loop.

mod common;

use convlens::measure::{
    entropy_base10, entropy_max_threshold, measure_layer, scale_filter, sparse_mask,
    tcq_sparse_mask, variance_spectrum, LayerMetrics, LayerShape,
};
use convlens::numeric::Moments;

/// The entropies of the former implementation, from the selected rows.
struct Reference {
    paper: f64,
    tcq: (f64, f64),
    clean: (f64, f64),
}

/// numpy: `X.mean(axis=0)` summed row by row, then the number of exactly zero centred columns.
fn zero_cols(rows: &[f64], k: usize) -> usize {
    let n = rows.len() / k;
    (0..k)
        .filter(|&t| {
            let mean = rows.chunks_exact(k).fold(0.0, |a, r| a + r[t]) / n as f64;
            rows.chunks_exact(k).all(|r| r[t] - mean == 0.0)
        })
        .count()
}

/// torchconvquality's `variance_entropy` as `reference.py` ports it (see `tcq_entropy`).
fn tcq_reference(rows: &[f64], k: usize) -> (f64, f64) {
    let n = rows.len() / k;
    let e = match n {
        0 => 0.0,
        1 => f64::NAN,
        _ => {
            let v = variance_spectrum(rows, k);
            let mut den: f64 = v.iter().sum();
            if den == 0.0 {
                den = 1.0;
            }
            let ratio: Vec<f64> = v.iter().map(|x| x / den).collect();
            if ratio.iter().sum::<f64>() == 0.0 {
                0.0
            } else if zero_cols(rows, k) > 0 {
                f64::NAN
            } else {
                -ratio
                    .iter()
                    .filter(|&&r| r != 0.0)
                    .map(|&r| r * r.log10())
                    .sum::<f64>()
            }
        }
    };
    (e, e / entropy_max_threshold(n))
}

fn reference(w: &[f32], k: usize) -> Reference {
    let (_, paper_sparse) = sparse_mask(w, k);
    let tcq_sparse = tcq_sparse_mask(w, k);
    let (mut scaled, mut raw, mut clean) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = vec![0f64; k];
    for (i, f) in w.chunks_exact(k).enumerate() {
        if !paper_sparse[i] {
            scale_filter(f, &mut buf);
            scaled.extend_from_slice(&buf);
        }
        raw.extend(f.iter().map(|&x| f64::from(x)));
        if !tcq_sparse[i] {
            clean.extend(f.iter().map(|&x| f64::from(x)));
        }
    }
    let paper = if scaled.len() < 2 * k {
        f64::NAN
    } else {
        entropy_base10(&variance_spectrum(&scaled, k))
    };
    Reference {
        paper,
        tcq: tcq_reference(&raw, k),
        clean: tcq_reference(&clean, k),
    }
}

/// Σx and Σxxᵀ of the l∞-scaled non-sparse filters, each product split exactly into two
/// doubles and every sum compensated (Neumaier): correct to about 1e-16 relative per entry.
fn exact_reference(w: &[f32], k: usize, layer_norm: f64) -> Moments {
    let limit = layer_norm / 100.0;
    let mut m = Moments::new(k);
    let mut comp_sum = vec![0f64; k];
    let mut comp_outer = vec![0f64; k * k];
    let add = |s: &mut f64, c: &mut f64, x: f64| {
        let t = *s + x;
        *c += if s.abs() >= x.abs() {
            (*s - t) + x
        } else {
            (x - t) + *s
        };
        *s = t;
    };
    let mut x = vec![0f64; k];
    for f in w.chunks_exact(k) {
        let linf = f.iter().fold(0f32, |a, &v| a.max(v.abs()));
        if f64::from(linf) > limit {
            scale_filter(f, &mut x);
            m.n += 1;
            for a in 0..k {
                add(&mut m.sum[a], &mut comp_sum[a], x[a]);
                for b in 0..k {
                    let p = x[a] * x[b];
                    let e = x[a].mul_add(x[b], -p);
                    let (s, c) = (&mut m.outer[a * k + b], &mut comp_outer[a * k + b]);
                    add(s, c, p);
                    add(s, c, e);
                }
            }
        }
    }
    for (s, c) in m.sum.iter_mut().zip(&comp_sum) {
        *s += c;
    }
    for (s, c) in m.outer.iter_mut().zip(&comp_outer) {
        *s += c;
    }
    m
}

/// The db build's `Acc::add` loop: Σx and Σxxᵀ of the l∞-scaled non-sparse filters.
fn acc_reference(w: &[f32], k: usize, layer_norm: f64) -> Moments {
    let limit = layer_norm / 100.0;
    let mut m = Moments::new(k);
    let mut x = vec![0f64; k];
    for f in w.chunks_exact(k) {
        let linf = f.iter().fold(0f32, |a, &v| a.max(v.abs()));
        if f64::from(linf) > limit {
            scale_filter(f, &mut x);
            m.add(&x);
        }
    }
    m
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// `rel(a, b) <= tol`, or both below 1e-14: the entropy of a rank-deficient spectrum (fewer
/// filters than taps) whose small eigenvalues are rounding noise, in either computation.
fn entropy_close(a: f64, b: f64, tol: f64) -> bool {
    rel(a, b) <= tol || (a.abs() < 1e-14 && b.abs() < 1e-14)
}

fn shape(n: usize, kh: usize, kw: usize) -> LayerShape {
    LayerShape {
        out_channels: n,
        in_per_group: 1,
        kh,
        kw,
        groups: 1,
    }
}

/// Checks every entropy of `m` against the reference to `tol` (relative; NaN must match NaN);
/// returns the largest relative difference.
fn check_entropies(w: &[f32], k: usize, m: &LayerMetrics, tol: f64, what: &str) -> f64 {
    let r = reference(w, k);
    let mut worst = 0f64;
    for (name, got, want) in [
        ("paper", m.variance_entropy, r.paper),
        ("tcq", m.tcq.variance_entropy, r.tcq.0),
        ("tcq norm", m.tcq.variance_entropy_norm, r.tcq.1),
        ("tcq clean", m.tcq.variance_entropy_clean, r.clean.0),
        (
            "tcq clean norm",
            m.tcq.variance_entropy_clean_norm,
            r.clean.1,
        ),
    ] {
        assert!(
            entropy_close(got, want, tol),
            "{what} {name}: {got} vs {want} (rel {:e})",
            rel(got, want)
        );
        worst = worst.max(rel(got, want));
    }
    worst
}

/// Largest difference of two basis moments, relative to each entry's Cauchy-Schwarz scale
/// `sqrt(Σx_a² Σx_b²)` (Σx: `sqrt(n Σx_a²)`), and element-wise relative.
fn basis_diff(got: &Moments, want: &Moments) -> (f64, f64) {
    assert_eq!(got.dim, want.dim);
    assert_eq!(got.n, want.n);
    let k = got.dim;
    let (mut scaled, mut elementwise) = (0f64, 0f64);
    for a in 0..k {
        for b in 0..k {
            let (g, w) = (got.outer[a * k + b], want.outer[a * k + b]);
            assert_eq!(g, got.outer[b * k + a], "outer not symmetric");
            let s = (want.outer[a * k + a] * want.outer[b * k + b]).sqrt();
            if s > 0.0 {
                scaled = scaled.max((g - w).abs() / s);
            }
            elementwise = elementwise.max(rel(g, w));
        }
        elementwise = elementwise.max(rel(got.sum[a], want.sum[a]));
        let s = (got.n as f64 * want.outer[a * k + a]).sqrt();
        if s > 0.0 {
            scaled = scaled.max((got.sum[a] - want.sum[a]).abs() / s);
        }
    }
    (scaled, elementwise)
}

/// All conv layers of a model file as (name, OIHW weights, LayerShape), like `quality` sees them.
fn layers(path: &std::path::Path) -> Vec<(String, Vec<f32>, LayerShape)> {
    let ckpt = convlens::read::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    convlens::extract::extract(&ckpt)
        .layers
        .iter()
        .map(|l| {
            let (out, inpg) = if l.transposed {
                (l.shape[1], l.shape[0])
            } else {
                (l.out_channels, l.in_per_group)
            };
            let s = LayerShape {
                out_channels: out,
                in_per_group: inpg,
                kh: l.kh,
                kw: l.kw,
                groups: 1,
            };
            (l.name.clone(), l.weights_oihw(), s)
        })
        .collect()
}

#[test]
fn real_layers_match_the_two_pass_entropies_and_the_db_sums() {
    let mut files = Vec::new();
    for name in [
        "resnet20_normal_s0.safetensors",
        "resnet20_robust_s0.safetensors",
        "mobilenetv2_x0_5_normal_s0.safetensors",
        "vgg11_w16_robust_s0.safetensors",
        "wrn16_2_robust_s0.safetensors",
    ] {
        files.extend(common::zoo_file(name));
    }
    for rel_path in ["facenet-pytorch/onet.pt", "facenet-pytorch/pnet.pt"] {
        files.extend(common::third_party_file(rel_path));
    }
    let (mut n_layers, mut kernels) = (0, std::collections::BTreeSet::new());
    let (mut worst_scaled, mut worst_elem) = (0f64, 0f64);
    let mut worst_exact = (0f64, 0f64);
    let mut worst_entropy = 0f64;
    for path in &files {
        for (name, w, s) in layers(path) {
            let k = s.kh * s.kw;
            let what = format!("{} {name}", path.display());
            let m = measure_layer(&w, &s);
            worst_entropy = worst_entropy.max(check_entropies(&w, k, &m, 1e-12, &what));
            let got = m.basis_moments.as_ref().expect("basis moments");
            let acc = acc_reference(&w, k, m.layer_norm);
            let (scaled, elem) = basis_diff(got, &acc);
            assert!(
                scaled <= 1e-13,
                "{what}: basis moments differ by {scaled:e}"
            );
            // element by element, entries that cancel (|Σx_a x_b| << the scale) carry the
            // rounding of either sum: against exact sums, the fused ones are within 1e-12 or
            // no further off than the `Acc::add` ones
            let exact = exact_reference(&w, k, m.layer_norm);
            let (_, err) = basis_diff(got, &exact);
            let (_, err_acc) = basis_diff(&acc, &exact);
            assert!(
                err <= err_acc.max(1e-12),
                "{what}: basis moments {err:e} from exact sums (Acc::add: {err_acc:e})"
            );
            worst_scaled = worst_scaled.max(scaled);
            worst_elem = worst_elem.max(elem);
            worst_exact = (worst_exact.0.max(err), worst_exact.1.max(err_acc));
            n_layers += 1;
            kernels.insert(k);
        }
    }
    eprintln!(
        "{n_layers} layers, kernel sizes {kernels:?}; entropies within {worst_entropy:e}; basis moments vs Acc::add: {worst_scaled:e} \
         of sqrt(Σx_a² Σx_b²), {worst_elem:e} element-wise; element-wise from exact sums: \
         fused {:e}, Acc::add {:e}",
        worst_exact.0, worst_exact.1
    );
    assert!(n_layers >= 40 && kernels.contains(&9) && kernels.contains(&1));
}

/// Pseudo-random filters in [-0.5, 0.5), every 7th shrunk (sparse for both rules), every 11th
/// larger.
fn random(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * k)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            match i / k % 77 {
                f if f % 7 == 3 => u * 1e-4,
                f if f % 11 == 5 => u * 4.0,
                _ => u,
            }
        })
        .collect()
}

#[test]
fn kernel_sizes_and_tails_match_the_reference() {
    for k in [9usize, 25, 1, 4, 49] {
        for n in [2usize, 3, 7, 8, 9, 63, 64, 65, 100, 2047, 2048, 2049, 5000] {
            let w = random(n, k, (n * 31 + k) as u64);
            let kh = if k == 4 {
                2
            } else {
                (k as f64).sqrt() as usize
            };
            let m = measure_layer(&w, &shape(n, kh, k / kh));
            check_entropies(&w, k, &m, 1e-12, &format!("k {k} n {n}"));
            let (scaled, _) = basis_diff(
                m.basis_moments.as_ref().expect("basis"),
                &acc_reference(&w, k, m.layer_norm),
            );
            assert!(scaled <= 1e-12, "k {k} n {n}: basis {scaled:e}");
        }
    }
}

#[test]
fn a_large_common_offset_keeps_its_precision() {
    // every tap = 1000 + noise of 1e-2: the raw selections' variances are 1e-4 of offsets 1e3
    for k in [9usize, 25] {
        let n = 3000;
        let w: Vec<f32> = random(n, k, 7)
            .iter()
            .map(|&x| 1000.0 + x.clamp(-0.5, 0.5) * 0.02)
            .collect();
        let kh = (k as f64).sqrt() as usize;
        let m = measure_layer(&w, &shape(n, kh, kh));
        assert!(m.tcq.variance_entropy.is_finite() && m.variance_entropy.is_finite());
        check_entropies(&w, k, &m, 1e-12, &format!("offset k {k}"));
    }
}

#[test]
fn constant_taps_follow_the_tcq_rules() {
    // tap 4 is 0.25 in every filter: a structurally zero tap -> tcq NaN, paper finite
    let n = 100;
    let mut w = random(n, 9, 3);
    for f in w.chunks_exact_mut(9) {
        f[4] = 0.25;
        f[0] = 0.75; // the l-inf tap of most filters: their scaled tap 0 is exactly 1
    }
    let m = measure_layer(&w, &shape(n, 3, 3));
    assert!(m.tcq.variance_entropy.is_nan() && m.tcq.variance_entropy_clean.is_nan());
    assert!(m.variance_entropy.is_finite());
    check_entropies(&w, 9, &m, 1e-12, "constant taps");

    // identical filters: every centred value is 0 -> tcq 0, paper NaN (0/0 spectrum)
    let f = [0.5f32, -0.25, 1.0, 0.0, 0.125, -1.0, 0.75, 0.5, 0.25];
    let w: Vec<f32> = f.iter().copied().cycle().take(9 * 37).collect();
    let m = measure_layer(&w, &shape(37, 3, 3));
    assert_eq!(m.tcq.variance_entropy, 0.0);
    assert_eq!(m.tcq.variance_entropy_clean, 0.0);
    assert!(m.variance_entropy.is_nan());
    check_entropies(&w, 9, &m, 0.0, "identical filters");
    let b = m.basis_moments.expect("basis");
    assert_eq!(b.n, 37);
    // dyadic values: the sums are exact
    assert_eq!(b.sum[2], 37.0);
    assert_eq!(b.outer[2 * 9 + 5], -37.0);
}

#[test]
fn one_and_two_selected_filters_and_none() {
    // 3 filters; `big` is the layer maximum, `small` filters are sparse for both rules
    let big = [1.0f32, -0.5, 0.25, 0.0, 0.5, 0.5, -1.0, 0.0, 0.25];
    let other = [0.5f32, 0.25, -0.5, 0.125, 0.0, 0.0, 0.5, -0.25, 0.0];
    let small = [1e-4f32, 0.0, -1e-4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    // (no filter at all is selected only in an all-zero layer, below)
    for (filters, n_sel) in [
        (vec![big, small, small], 1),
        (vec![big, small, other], 2),
        (vec![small, other, big, small], 2),
    ] {
        let w: Vec<f32> = filters.concat();
        let n = filters.len();
        let m = measure_layer(&w, &shape(n, 3, 3));
        assert_eq!(m.n_nonsparse, n_sel);
        check_entropies(&w, 9, &m, 1e-12, &format!("{n_sel} selected"));
        let b = m.basis_moments.expect("basis");
        assert_eq!(b.n, m.n_nonsparse as u64);
        let want = acc_reference(&w, 9, m.layer_norm);
        assert_eq!(b.n, want.n);
        for (g, e) in b.outer.iter().zip(&want.outer) {
            assert!((g - e).abs() <= 1e-15, "{n_sel}: {g} vs {e}");
        }
    }
    // an all-zero layer: everything sparse, no filter for the paper entropy or the basis
    let m = measure_layer(&[0.0; 27], &shape(3, 3, 3));
    assert!(m.variance_entropy.is_nan());
    assert_eq!(m.tcq.variance_entropy, 0.0);
    let b = m.basis_moments.expect("basis");
    assert_eq!((b.n, b.sum.len(), b.outer.len()), (0, 9, 81));
    assert!(b.outer.iter().all(|&x| x == 0.0));
}

#[test]
fn long_kernels_have_no_basis_moments() {
    let m = measure_layer(&[0.5f32; 2 * 33 * 33], &shape(2, 33, 33));
    assert!(m.basis_moments.is_none() && m.variance_entropy.is_nan());
}

#[test]
fn results_are_bit_identical_for_one_and_two_threads() {
    for (n, kh, kw) in [(9000usize, 3usize, 3usize), (3000, 5, 5), (20000, 1, 1)] {
        let w = random(n, kh * kw, 99);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| measure_layer(&w, &shape(n, kh, kw)))
        };
        let (a, b) = (run(1), run(2));
        let bits = |m: &LayerMetrics| {
            let mut v: Vec<u64> = [
                m.variance_entropy,
                m.tcq.variance_entropy,
                m.tcq.variance_entropy_norm,
                m.tcq.variance_entropy_clean,
                m.tcq.variance_entropy_clean_norm,
            ]
            .iter()
            .map(|x| x.to_bits())
            .collect();
            let bm = m.basis_moments.as_ref().expect("basis");
            v.extend(bm.sum.iter().chain(&bm.outer).map(|x| x.to_bits()));
            v
        };
        assert_eq!(bits(&a), bits(&b), "{n} x {kh}x{kw}");
    }
}

#[test]
fn non_finite_weights_give_what_the_reference_gives() {
    for (k, bad) in [
        (9usize, f32::NAN),
        (9, f32::INFINITY),
        (25, f32::NAN),
        (1, f32::NAN),
    ] {
        for at in [0usize, 5, 77 * k + k / 2] {
            let n = 300;
            let mut w = random(n, k, 4);
            w[at] = bad;
            let kh = (k as f64).sqrt() as usize;
            let m = measure_layer(&w, &shape(n, kh, kh));
            check_entropies(&w, k, &m, 1e-12, &format!("k {k} {bad} at {at}"));
        }
    }
}
