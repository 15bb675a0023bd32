//! Orthogonality of a layer's out-channels (orthogonality.ipynb `ortho_cond`).
//!
//! The Gram matrix `W W^T` of the L2-normalised rows is computed by a small blocked kernel that
//! converts the `f32` rows to normalised `f64` while packing them, one block of [`KC`] columns at
//! a time, so that no normalised copy of the layer is ever held (a 1024×1024×3×3 layer would
//! need 75 MB). Only the upper triangle is computed, in row strips whose buffer is bounded by
//! [`STRIP_VALUES`].
//!
//! Every Gram entry is summed in a fixed order — one fused multiply-add chain from 0 per block
//! of [`KC`] columns, the block sums added left to right — which is exactly what
//! `matrixmultiply::dgemm` (kc = 256) does on CPUs with FMA; the row terms are added in row
//! order. The result therefore does not depend on the number of threads, and it is
//! bit-identical to the dgemm-based implementation it replaces (a test checks this).

use rayon::prelude::*;

/// Columns per accumulation block (matrixmultiply's dgemm `kc`).
const KC: usize = 256;

/// Rows per parallel task: their packed block (`MC × KC` values, 128 KiB) stays in L2 while
/// the column panels stream past.
const MC: usize = 64;

/// Largest Gram strip, in `f64` values (16 MiB); a strip holds at least [`MC`] rows.
const STRIP_VALUES: usize = 1 << 21;

/// Paper orthogonality of `n` rows of length `len` (row-major `rows`):
/// `1 - sum|W W^T - I| / (n (n - 1))` over the L2-normalised rows (a zero row stays zero, so an
/// all-zero layer gives `1 - 1/(n-1)`). NaN when `n < 2` or `rows.len() != n * len`.
pub fn orthogonality(rows: &[f32], n: usize, len: usize) -> f64 {
    orthogonality_strips(rows, n, len, STRIP_VALUES)
}

/// [`orthogonality`] with Gram strips of at most `strip_values` values (at least [`MC`] rows).
fn orthogonality_strips(rows: &[f32], n: usize, len: usize, strip_values: usize) -> f64 {
    orthogonality_with(rows, n, len, strip_values, &Kernel::detect())
}

/// [`orthogonality_strips`] with a given micro-kernel.
fn orthogonality_with(
    rows: &[f32],
    n: usize,
    len: usize,
    strip_values: usize,
    kernel: &Kernel,
) -> f64 {
    if n < 2 || n.checked_mul(len) != Some(rows.len()) {
        return f64::NAN;
    }
    let denom = n as f64 * (n - 1) as f64;
    if len == 0 {
        // every row is zero: |0 - 1| on each diagonal entry
        return 1.0 - n as f64 / denom;
    }

    // Row norms (a zero row is divided by 1): each row's sum of squares in column order, eight
    // rows interleaved so that their sums do not wait on each other.
    let mut norms = vec![0f64; n];
    norms
        .par_chunks_mut(8)
        .zip(rows.par_chunks(8 * len))
        .for_each(|(out, block)| {
            let mut acc = [0f64; 8];
            for p in 0..len {
                for (a, row) in acc.iter_mut().zip(block.chunks_exact(len)) {
                    let x = f64::from(row[p]);
                    *a += x * x;
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                let t = a.sqrt();
                *o = if t == 0.0 { 1.0 } else { t };
            }
        });

    let padded = n.next_multiple_of(kernel.nr);
    let strip = (strip_values / padded).max(MC) / MC * MC;
    let gram = Gram {
        rows,
        norms: &norms,
        n,
        len,
    };
    let mut total = 0f64;
    for i0 in (0..n).step_by(strip) {
        let i1 = (i0 + strip).min(n);
        for term in gram.strip_terms(i0, i1, kernel) {
            total += term;
        }
    }
    1.0 - total / denom
}

/// The rows whose normalised Gram matrix is computed.
struct Gram<'a> {
    rows: &'a [f32],
    norms: &'a [f64],
    n: usize,
    len: usize,
}

/// Arguments of one task: a group of up to [`MC`] strip rows against the packed column block.
struct Tiles<'a> {
    /// Packed normalised rows `i0..n` (zero-padded to a multiple of `nr`), columns of the
    /// current block: panel `q` holds rows `i0 + q*nr ..`, value `(row r, column p)` at
    /// `q*nr*kc + p*nr + r`.
    pack: &'a [f64],
    /// Columns in the current block.
    kc: usize,
    /// Row length of the strip buffer (`n - i0` padded to a multiple of `nr`).
    width: usize,
    /// First row of the group, relative to the strip.
    g0: usize,
    /// First block: store instead of add.
    first: bool,
}

/// A compiled micro-kernel: tile size and the group function built for it.
struct Kernel {
    mr: usize,
    nr: usize,
    /// # Safety
    /// Only called on CPUs with the target features the function was compiled for
    /// ([`Kernel::detect`] picks it accordingly).
    group: unsafe fn(&Tiles, &mut [f64]),
    /// Packs a panel of `nr` rows (see [`Tiles::pack`]); same safety rule as `group`.
    pack: unsafe fn(&Gram, &mut [f64], usize, usize, usize),
}

impl Kernel {
    /// The portable kernel (fused multiply-adds only on aarch64).
    const PORTABLE: Kernel = Kernel {
        mr: 4,
        nr: 8,
        group: group_portable,
        pack: pack_panel::<8>,
    };

    /// The fastest kernel the running CPU supports.
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Kernel {
                    mr: 8,
                    nr: 16,
                    group: group_avx512,
                    pack: pack_avx512,
                };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel {
                    mr: 4,
                    nr: 8,
                    group: group_avx2,
                    pack: pack_avx2,
                };
            }
        }
        Kernel::PORTABLE
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn group_avx512(t: &Tiles, c: &mut [f64]) {
    group::<8, 16, true>(t, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn group_avx2(t: &Tiles, c: &mut [f64]) {
    group::<4, 8, true>(t, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_avx512(g: &Gram, panel: &mut [f64], row0: usize, p0: usize, kc: usize) {
    pack_panel::<16>(g, panel, row0, p0, kc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2(g: &Gram, panel: &mut [f64], row0: usize, p0: usize, kc: usize) {
    pack_panel::<8>(g, panel, row0, p0, kc)
}

/// Writes the normalised rows `row0 .. row0 + NR` (zero past the last row), columns
/// `p0 .. p0 + kc`, into `panel`: value `(r, p)` at `p * NR + r`.
#[inline(always)]
fn pack_panel<const NR: usize>(g: &Gram, panel: &mut [f64], row0: usize, p0: usize, kc: usize) {
    for r in 0..NR {
        let row = row0 + r;
        let dst = panel.chunks_exact_mut(NR).take(kc);
        if row >= g.n {
            for d in dst {
                d[r] = 0.0;
            }
            continue;
        }
        let t = g.norms[row];
        let src = &g.rows[row * g.len + p0..row * g.len + p0 + kc];
        for (d, &x) in dst.zip(src) {
            d[r] = f64::from(x) / t;
        }
    }
}

/// Without known FMA hardware: fused on aarch64 (always there), unfused elsewhere (a software
/// fused multiply-add would be far too slow), as matrixmultiply's kernels.
fn group_portable(t: &Tiles, c: &mut [f64]) {
    group::<4, 8, { cfg!(target_arch = "aarch64") }>(t, c)
}

/// Computes (first block) or adds (later blocks) the upper-triangle tiles of the strip rows
/// `g0 .. g0 + c.len() / width` (relative to the strip) over the packed column block.
#[inline(always)]
fn group<const MR: usize, const NR: usize, const FUSED: bool>(t: &Tiles, c: &mut [f64]) {
    let kc = t.kc;
    let panel_len = NR * kc;
    let n_panels = t.width / NR;
    let group_rows = c.len() / t.width;
    for jp in t.g0 / NR..n_panels {
        let b = &t.pack[jp * panel_len..(jp + 1) * panel_len];
        for ib in 0..group_rows / MR {
            let r0 = t.g0 + ib * MR;
            if (jp + 1) * NR <= r0 {
                // tile entirely below the diagonal
                continue;
            }
            let a = &t.pack[(r0 / NR) * panel_len + r0 % NR..(r0 / NR + 1) * panel_len];
            let mut out = Out {
                c: &mut *c,
                at: ib * MR * t.width + jp * NR,
                width: t.width,
                first: t.first,
            };
            if MR == 8 {
                micro8::<NR, FUSED>(kc, a, b, &mut out);
            } else {
                micro4::<NR, FUSED>(kc, a, b, &mut out);
            }
        }
    }
}

/// Where a micro-kernel's tile goes: row `i` of the tile at `c[at + i * width..]`.
struct Out<'a> {
    c: &'a mut [f64],
    at: usize,
    width: usize,
    first: bool,
}

impl Out<'_> {
    #[inline(always)]
    fn put(&mut self, i: usize, row: &[f64]) {
        let at = self.at + i * self.width;
        let dst = &mut self.c[at..at + row.len()];
        if self.first {
            dst.copy_from_slice(row);
        } else {
            for (d, &s) in dst.iter_mut().zip(row) {
                *d += s;
            }
        }
    }
}

/// `acc + x * b`, element-wise (one fused or unfused multiply-add per element).
#[inline(always)]
fn row_fma<const NR: usize, const FUSED: bool>(
    x: f64,
    b: &[f64; NR],
    mut acc: [f64; NR],
) -> [f64; NR] {
    for (s, &y) in acc.iter_mut().zip(b) {
        *s = if FUSED { x.mul_add(y, *s) } else { x * y + *s };
    }
    acc
}

/// Defines a micro-kernel computing a `rows × NR` tile of `A B^T` over `kc` columns, where
/// `a[p*NR + i]` is row `i` and `b[p*NR + j]` row `j` of column `p`: each entry is one
/// multiply-add chain from 0 in column order. The accumulators are separate variables (not an
/// array indexed in a loop) so that the compiler keeps each row in vector registers.
macro_rules! micro_kernel {
    ($name:ident, $rows:literal, $($acc:ident $i:literal),+) => {
        #[inline(always)]
        fn $name<const NR: usize, const FUSED: bool>(
            kc: usize,
            a: &[f64],
            b: &[f64],
            out: &mut Out,
        ) {
            $(let mut $acc = [0f64; NR];)+
            for (ap, bp) in a.chunks(NR).zip(b.chunks_exact(NR)).take(kc) {
                let (Some(ap), Some(bp)) = (ap.first_chunk::<$rows>(), bp.first_chunk::<NR>())
                else {
                    break;
                };
                $($acc = row_fma::<NR, FUSED>(ap[$i], bp, $acc);)+
            }
            $(out.put($i, &$acc);)+
        }
    };
}

micro_kernel!(micro8, 8, c0 0, c1 1, c2 2, c3 3, c4 4, c5 5, c6 6, c7 7);
micro_kernel!(micro4, 4, c0 0, c1 1, c2 2, c3 3);

impl Gram<'_> {
    /// `|G_ii - 1| + 2 sum_{j>i} |G_ij|` for the rows `i0..i1`, in row order.
    fn strip_terms(&self, i0: usize, i1: usize, k: &Kernel) -> Vec<f64> {
        let (n, len) = (self.n, self.len);
        let cols = n - i0;
        let width = cols.next_multiple_of(k.nr);
        let strip_rows = (i1 - i0).next_multiple_of(k.mr);
        let mut c = vec![0f64; strip_rows * width];
        let mut pack = vec![0f64; width * KC.min(len)];
        let nr = k.nr;
        for p0 in (0..len).step_by(KC) {
            let kc = KC.min(len - p0);
            let pack = &mut pack[..width * kc];
            pack.par_chunks_mut(nr * kc)
                .enumerate()
                .for_each(|(q, panel)| {
                    // SAFETY: `Kernel::detect` only picks a pack function whose target
                    // features the running CPU has.
                    unsafe { (k.pack)(self, panel, i0 + q * nr, p0, kc) }
                });
            let pack = &*pack;
            c.par_chunks_mut(MC * width)
                .enumerate()
                .for_each(|(g, cg)| {
                    let tiles = Tiles {
                        pack,
                        kc,
                        width,
                        g0: g * MC,
                        first: p0 == 0,
                    };
                    // SAFETY: `Kernel::detect` only picks a group function whose target
                    // features the running CPU has.
                    unsafe { (k.group)(&tiles, cg) }
                });
        }
        c.par_chunks(width)
            .take(i1 - i0)
            .enumerate()
            .map(|(r, row)| {
                // row r of the strip is global row i0 + r; its diagonal entry is at column r
                let row = &row[..cols];
                let off: f64 = row[r + 1..].iter().map(|x| x.abs()).sum();
                (row[r] - 1.0).abs() + 2.0 * off
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The previous implementation: normalised f64 copy, `matrixmultiply::dgemm` strips of 128
    /// rows against the rows from the strip's first row on.
    fn dgemm_orthogonality(rows: &[f32], n: usize, len: usize) -> f64 {
        const TILE: usize = 128;
        let denom = n as f64 * (n - 1) as f64;
        let mut a = vec![0f64; rows.len()];
        for (dst, src) in a.chunks_mut(len).zip(rows.chunks(len)) {
            let t = src
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            let t = if t == 0.0 { 1.0 } else { t };
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f64::from(s) / t;
            }
        }
        let mut c = vec![0f64; TILE.min(n) * n];
        let mut total = 0f64;
        for i0 in (0..n).step_by(TILE) {
            let mi = TILE.min(n - i0);
            let nj = n - i0;
            // SAFETY: as in the previous implementation: A = rows i0..i0+mi, B = their
            // transpose from row i0 on, C = the first mi * nj entries of `c`, all in bounds.
            unsafe {
                matrixmultiply::dgemm(
                    mi,
                    len,
                    nj,
                    1.0,
                    a.as_ptr().add(i0 * len),
                    len as isize,
                    1,
                    a.as_ptr().add(i0 * len),
                    1,
                    len as isize,
                    0.0,
                    c.as_mut_ptr(),
                    nj as isize,
                    1,
                );
            }
            for (r, row) in c[..mi * nj].chunks_exact(nj).enumerate() {
                let off: f64 = row[r + 1..].iter().map(|x| x.abs()).sum();
                total += (row[r] - 1.0).abs() + 2.0 * off;
            }
        }
        1.0 - total / denom
    }

    /// Every kernel the running CPU can run, with whether it fuses multiply-adds.
    fn kernels() -> Vec<(Kernel, bool)> {
        let mut k = vec![(Kernel::PORTABLE, cfg!(target_arch = "aarch64"))];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let avx2 = Kernel {
                    mr: 4,
                    nr: 8,
                    group: group_avx2,
                    pack: pack_avx2,
                };
                k.push((avx2, true));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                let avx512 = Kernel {
                    mr: 8,
                    nr: 16,
                    group: group_avx512,
                    pack: pack_avx512,
                };
                k.push((avx512, true));
            }
        }
        k
    }

    /// Whether matrixmultiply's dgemm uses fused multiply-adds here.
    fn dgemm_fuses() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f")
            || (is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx2"));
        #[cfg(not(target_arch = "x86_64"))]
        return cfg!(target_arch = "aarch64");
    }

    #[test]
    fn bit_identical_to_the_dgemm_implementation() {
        // several column blocks (len > KC, partial last block), partial tiles, zero rows,
        // and strips forced down to MC rows
        for (n, len, seed) in [
            (600, 7, 1),
            (37, 600, 2),
            (130, 2304 + 5, 3),
            (2, 9, 4),
            (17, 256, 5),
            (200, 513, 6),
        ] {
            let mut rows = pseudo_random(n * len, seed);
            rows[..len].fill(0.0);
            let want = dgemm_orthogonality(&rows, n, len);
            for (kernel, fused) in kernels() {
                for strip_values in [STRIP_VALUES, 1] {
                    let got = orthogonality_with(&rows, n, len, strip_values, &kernel);
                    let (mr, nr) = (kernel.mr, kernel.nr);
                    if fused && dgemm_fuses() {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{n}x{len}, {mr}x{nr} kernel: {got} vs {want}"
                        );
                    } else {
                        assert!((got - want).abs() < 1e-12, "{n}x{len}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_agree_with_a_naive_sum() {
        // 600 rows (3 tiles, last one partial) of 7 pseudo-random values, a few zero rows.
        let (n, len) = (600, 7);
        let mut rows = pseudo_random(n * len, 12345);
        for r in [0, 299, 599] {
            rows[r * len..(r + 1) * len].fill(0.0);
        }
        let norm: Vec<Vec<f64>> = rows
            .chunks(len)
            .map(|r| {
                let t = r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
                let t = if t == 0.0 { 1.0 } else { t };
                r.iter().map(|&x| f64::from(x) / t).collect()
            })
            .collect();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                let g: f64 = norm[i].iter().zip(&norm[j]).map(|(a, b)| a * b).sum();
                s += (g - if i == j { 1.0 } else { 0.0 }).abs();
            }
        }
        let naive = 1.0 - s / (n * (n - 1)) as f64;
        let fast = orthogonality(&rows, n, len);
        assert!((naive - fast).abs() < 1e-12, "{naive} vs {fast}");
    }

    #[test]
    fn bad_sizes_give_nan() {
        assert!(orthogonality(&[1.0; 5], 2, 3).is_nan());
        assert!(orthogonality(&[1.0; 3], 1, 3).is_nan());
        assert!(orthogonality(&[], usize::MAX, 2).is_nan());
    }

    #[test]
    fn empty_rows_are_zero_rows() {
        assert!((orthogonality(&[], 8, 0) - (1.0 - 1.0 / 7.0)).abs() < 1e-15);
    }
}
