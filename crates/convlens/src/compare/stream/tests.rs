//! The vector kernels against the portable ones, on every vector unit of the machine:
//! random runs, bin edges, NaN and infinities, bins without the edge rule, and every model of
//! the fixture database (whose runs are checked against the shard too).

use super::kernels::{hist_run9, range_run9};
use super::passes::{coefficient_range, ModelHists};
use super::project::{FastBins, Proj9};
use super::shards::{for_each_filter, for_each_run, layer_views};
#[cfg(target_arch = "x86_64")]
use super::simd;
use crate::compare::basis::{Basis, Moments};
use crate::compare::divergence::Bins;
use crate::db::Db;
use crate::measure::scale_filter;

/// SplitMix64 numbers in [-1, 1).
pub(super) fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// A vector unit of this machine, or the portable kernels.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The vector units of this machine (each is checked against `Unit::Scalar`).
fn vector_units() -> Vec<Unit> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if simd::Avx2::detect().is_some() {
            v.push(Unit::Avx2);
        } else {
            eprintln!("no AVX2 on this machine: its kernels are not checked");
        }
        if simd::Avx512::detect().is_some() {
            v.push(Unit::Avx512);
        } else {
            eprintln!("no AVX-512 on this machine: its kernels are not checked");
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn hist_on(
    u: Unit,
    p: &Proj9,
    fb: &FastBins,
    ffb: Option<&FastBins>,
    limit: f64,
    cells: [Option<usize>; 2],
    run: &[f32],
    h: &mut ModelHists,
) {
    match u {
        Unit::Scalar => hist_run9(p, fb, ffb, limit, cells, run, h),
        #[cfg(target_arch = "x86_64")]
        Unit::Avx2 => simd::avx2::hist_run9(
            simd::Avx2::detect().unwrap(),
            p,
            fb,
            ffb,
            limit,
            cells,
            run,
            h,
        ),
        #[cfg(target_arch = "x86_64")]
        Unit::Avx512 => simd::avx512::hist_run9(
            simd::Avx512::detect().unwrap(),
            p,
            fb,
            ffb,
            limit,
            cells,
            run,
            h,
        ),
    }
}

fn range_on(u: Unit, p: &Proj9, run: &[f32], l9: &mut [f64; 9], h9: &mut [f64; 9]) {
    match u {
        Unit::Scalar => range_run9(p, run, l9, h9),
        #[cfg(target_arch = "x86_64")]
        Unit::Avx2 => simd::avx2::range_run9(simd::Avx2::detect().unwrap(), p, run, l9, h9),
        #[cfg(target_arch = "x86_64")]
        Unit::Avx512 => simd::avx512::range_run9(simd::Avx512::detect().unwrap(), p, run, l9, h9),
    }
}

/// Bit-identical floats (any NaN equals any NaN: NaN payloads are not part of the result).
fn same_f64(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{what}[{i}]: {x:e} vs {y:e}"
        );
    }
}

fn same_hists(what: &str, a: &ModelHists, b: &ModelHists) {
    assert_eq!(a.n, b.n, "{what}: n");
    assert_eq!(a.counts, b.counts, "{what}: counts");
    assert_eq!(a.fine, b.fine, "{what}: fine counts");
    same_f64(&format!("{what}: Σc"), &a.sum, &b.sum);
    same_f64(&format!("{what}: Σc²"), &a.sum_sq, &b.sum_sq);
}

/// A run of filters of one layer, its sparse limit and its cells.
type Run<'a> = (&'a [f32], f64, [Option<usize>; 2]);

/// Feeds `runs` (with their limits and cells) to every unit and checks that the vector
/// units give exactly the scalar kernels' histograms, sums and ranges.
fn check_units(what: &str, p: &Proj9, bins: &Bins, fine: Option<&Bins>, runs: &[Run]) {
    let fb = FastBins::new(bins);
    let ffb = fine.map(FastBins::new);
    let fresh = || ModelHists::new(9, bins.len(), fine.map_or(0, |f| f.len()));
    let mut want = fresh();
    let (mut wl, mut wh) = ([f64::INFINITY; 9], [f64::NEG_INFINITY; 9]);
    for &(run, limit, cells) in runs {
        hist_on(
            Unit::Scalar,
            p,
            &fb,
            ffb.as_ref(),
            limit,
            cells,
            run,
            &mut want,
        );
        range_on(Unit::Scalar, p, run, &mut wl, &mut wh);
    }
    for u in vector_units() {
        let mut got = fresh();
        let (mut gl, mut gh) = ([f64::INFINITY; 9], [f64::NEG_INFINITY; 9]);
        for &(run, limit, cells) in runs {
            hist_on(u, p, &fb, ffb.as_ref(), limit, cells, run, &mut got);
            range_on(u, p, run, &mut gl, &mut gh);
        }
        same_hists(&format!("{what} {u:?}"), &want, &got);
        same_f64(&format!("{what} {u:?} min"), &wl, &gl);
        same_f64(&format!("{what} {u:?} max"), &wh, &gh);
    }
}

/// A basis fitted to pseudo-random filters, as the study fits one.
fn fitted_projection() -> Proj9 {
    let v = values(7, 9 * 500);
    let mut m = Moments::new(9);
    let mut x = [0.0; 9];
    for f in v.chunks_exact(9) {
        let f32s: Vec<f32> = f.iter().map(|&a| a as f32).collect();
        scale_filter(&f32s, &mut x);
        m.add(&x);
    }
    let basis = Basis::fit(&m).unwrap();
    Proj9::new(&basis, &basis.mean_projection()).unwrap()
}

/// The identity basis with a zero mean: the coefficients are the scaled taps, exactly.
fn identity_projection() -> Proj9 {
    Proj9 {
        ct: std::array::from_fn(|a| std::array::from_fn(|j| f64::from(u8::from(a == j)))),
        mp: [0.0; 9],
    }
}

/// Pseudo-random 3×3 filters: dense ones of varied scale, sparse (tiny) ones, zero ones.
fn random_filters(seed: u64, n: usize) -> Vec<f32> {
    let v = values(seed, n * 10);
    let mut out = Vec::with_capacity(n * 9);
    for f in v.chunks_exact(10) {
        let kind = ((f[9] + 1.0) * 8.0) as usize;
        let scale = match kind {
            0 => 0.0,
            1 | 2 => 1e-4,
            _ => 0.05 * (kind as f64),
        };
        out.extend(f[..9].iter().map(|&a| (a * scale) as f32));
    }
    out
}

/// Every run length 0..40 (so every tail length of 8- and 4-lane blocks), with sparse
/// filters mixed in, on bins narrower than the coefficients (some fall outside; the
/// bins' ends are coefficients of the runs, so some fall exactly on them).
#[test]
fn vector_kernels_match_scalar_on_random_runs() {
    for (name, p) in [
        ("fitted", fitted_projection()),
        ("identity", identity_projection()),
    ] {
        let data = random_filters(11, (0..40).sum::<usize>() + 40);
        let mut runs = Vec::new();
        let mut at = 0;
        for len in 0..40 {
            // layers alternate between two depth cells and none
            let cells = [Some(0), [Some(3), Some(7), None][len % 3]];
            runs.push((&data[at * 9..(at + len) * 9], 1e-3, cells));
            at += len;
        }
        let mut cs: Vec<f64> = data
            .chunks_exact(9)
            .flat_map(|f| p.coefficients(f.try_into().unwrap()).1)
            .collect();
        cs.sort_by(f64::total_cmp);
        let (lo, hi) = (cs[cs.len() / 20], cs[cs.len() - cs.len() / 20]);
        for n in [1, 7, 70] {
            let bins = Bins::new(lo, hi, n);
            check_units(&format!("{name} {n} bins"), &p, &bins, None, &runs);
        }
        let bins = Bins::new(lo, hi, 70);
        let fine = Bins::new(lo, hi, 2048);
        check_units(&format!("{name} fine"), &p, &bins, Some(&fine), &runs);
        // one run of everything, all filters kept, none kept
        let all = [(&data[..], 0.0, [Some(0), Some(5)])];
        check_units(&format!("{name} all"), &p, &bins, Some(&fine), &all);
        let none = [(&data[..], 1e9, [Some(0), Some(5)])];
        check_units(&format!("{name} none kept"), &p, &bins, None, &none);
        // a single cell, and the same cell twice (left to the scalar kernel)
        let one = [(&data[..], 1e-3, [Some(2), None])];
        check_units(&format!("{name} one cell"), &p, &bins, None, &one);
        let twice = [(&data[..], 1e-3, [Some(4), Some(4)])];
        check_units(&format!("{name} same cell twice"), &p, &bins, None, &twice);
    }
}

/// With the identity basis the coefficients are the taps: filters with taps exactly on
/// the edges of 64 bins over [-1, 1] (and one float either side of them).
#[test]
fn vector_kernels_match_scalar_on_bin_edges() {
    let p = identity_projection();
    let bins = Bins::new(-1.0, 1.0, 64);
    let fine = Bins::new(-1.0, 1.0, 2048);
    let mut taps: Vec<f32> = Vec::new();
    for &e in bins.edges() {
        let e = e as f32;
        taps.extend([e, e.next_up(), e.next_down()]);
    }
    taps.extend([-1.5, 1.5, 0.0, -0.0]);
    // filters whose largest |tap| is 1 (so the scaled taps are the taps)
    let mut data = Vec::new();
    for (i, w) in taps.chunks(8).enumerate() {
        let mut f = [0.0f32; 9];
        f[..w.len()].copy_from_slice(w);
        f[8] = if i % 2 == 0 { 1.0 } else { -1.0 };
        let big = f[..8].iter().any(|v| v.abs() > 1.0);
        if !big {
            data.extend_from_slice(&f);
        }
        // the same taps at other positions
        f.rotate_left(3);
        if !big {
            data.extend_from_slice(&f);
        }
    }
    assert!(data.len() / 9 > 40);
    for start in 0..9 {
        let runs = [(&data[start * 9..], 0.5, [Some(0), Some(1)])];
        check_units("edges", &p, &bins, Some(&fine), &runs);
    }
}

/// NaN and infinite taps (never stored by a database) give the scalar kernels' answers
/// too, and no out-of-bounds access.
#[test]
fn vector_kernels_match_scalar_on_nan_and_inf() {
    let p = fitted_projection();
    let mut data = random_filters(5, 64);
    for (i, v) in [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
    ]
    .into_iter()
    .enumerate()
    {
        let len = data.len();
        data[i * 37 % len] = v;
        data[(i * 53 + 200) % len] = v;
    }
    let bins = Bins::new(-2.0, 2.0, 70);
    let fine = Bins::new(-2.0, 2.0, 2048);
    let runs = [(&data[..], 1e-3, [Some(0), Some(2)])];
    check_units("nan/inf", &p, &bins, Some(&fine), &runs);
    let runs = [(&data[..], f64::NAN, [Some(0), Some(2)])];
    check_units("nan limit", &p, &bins, None, &runs);
}

/// Edges that do not follow `Bins::new`'s rule (a range too narrow for a non-zero step)
/// leave the histogram to the scalar kernel, with the same result.
#[test]
fn bins_without_the_edge_rule_fall_back_to_scalar() {
    // (hi − lo) / 70 is 0: `Bins::new` spaces the edges by another rule
    let bins = Bins::new(0.0, f64::from_bits(1), 70);
    let fb = FastBins::new(&bins);
    assert!(fb.vec.is_none());
    let p = fitted_projection();
    let data = random_filters(3, 50);
    check_units(
        "no rule",
        &p,
        &bins,
        None,
        &[(&data[..], 1e-3, [Some(0), Some(1)])],
    );
    let ok = Bins::new(-2.5, 2.4, 70);
    assert!(FastBins::new(&ok).vec.is_some());
}

/// Sparse limit, cells and first filter of a run.
type LayerRun = (f64, [Option<usize>; 2], u64);

/// Every model of a database built from the repository's fixtures: the vector kernels
/// give exactly the scalar kernels' results run by run, and the chunked reader yields
/// the shard's filters.
#[test]
fn vector_kernels_match_scalar_on_the_fixture_database() {
    use crate::db::build::{build, BuildOptions};
    let zoo = convlens_testdata::fixture("zoo/cifar10-mini");
    let dir = std::env::temp_dir().join(format!("convlens-stream-simd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = BuildOptions {
        meta: Some(zoo.join("meta.csv")),
        formats: vec!["safetensors".into()],
        ..Default::default()
    };
    build(&zoo, &dir, &opts, &|_, _, _| {}).unwrap();
    let db = Db::open(&dir).unwrap();
    assert!(db.models.len() >= 4, "{} models", db.models.len());
    // a basis of all the stored filters, as the study fits one
    let mut m = Moments::new(9);
    let mut x = [0.0; 9];
    for model in &db.models {
        for_each_filter(&db, model, [3, 3], |_, f, sparse| {
            if !sparse {
                scale_filter(f, &mut x);
                m.add(&x);
            }
        })
        .unwrap();
    }
    let basis = Basis::fit(&m).unwrap();
    let all: Vec<usize> = (0..db.models.len()).collect();
    let (lo, hi) = coefficient_range(&db, &all, [3, 3], &basis)
        .unwrap()
        .unwrap();
    let p = Proj9::new(&basis, &basis.mean_projection()).unwrap();
    let bins = Bins::new(lo, hi, 70);
    let fine = Bins::new(lo, hi, 2048);
    let mut checked = 0;
    for model in &db.models {
        let Some(shard) = model.kernel([3, 3]) else {
            continue;
        };
        // the runs, as the passes see them
        let mut runs: Vec<(Vec<f32>, LayerRun)> = Vec::new();
        let mut at = 0u64;
        for_each_run(&db, model, [3, 3], |l, run| {
            // where the run starts: the first filter of its layer at or after `at`
            let start = at.max(l.start);
            runs.push((run.to_vec(), (l.limit, [Some(0), l.cell], start)));
            at = start + (run.len() / 9) as u64;
        })
        .unwrap();
        // the runs hold exactly the shard's filters of their layers
        let path = db.dir.join(&shard.shard);
        let whole = crate::db::shard::read_filters(
            &path,
            shard.n_filters,
            3,
            3,
            0,
            shard.n_filters as usize,
        )
        .unwrap();
        let mut n_in_layers = 0;
        for l in layer_views(model, [3, 3]).iter().filter(|l| !l.skip) {
            n_in_layers += l.end - l.start;
        }
        let n_runs: u64 = runs.iter().map(|r| (r.0.len() / 9) as u64).sum();
        assert_eq!(n_runs, n_in_layers, "{}: filters in runs", model.name);
        for (run, (_, _, start)) in &runs {
            let s = *start as usize * 9;
            assert!(
                whole[s..s + run.len()] == run[..],
                "{}: run at {start}",
                model.name
            );
        }
        let views: Vec<Run> = runs.iter().map(|(r, l)| (&r[..], l.0, l.1)).collect();
        check_units(&model.name, &p, &bins, Some(&fine), &views);
        checked += 1;
    }
    assert!(checked >= 4);
    let _ = std::fs::remove_dir_all(&dir);
}
