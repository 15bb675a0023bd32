//! Summation in numpy's order.

/// Summation in numpy's order (`np.sum` of a contiguous float64 array: pairwise with 8
/// accumulators), so that sums agree bit for bit with the notebooks.
pub fn np_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut s = 0.0;
        for &x in a {
            s += x;
        }
        s
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_numpy_order() {
        // 1e16 + 1 + 1 ... : numpy's 8-accumulator order differs from a left fold
        let mut a = vec![1.0f64; 17];
        a[0] = 1e16;
        let np = np_sum(&a);
        // r0 = 1e16 + 1 (lost) + ..., numpy: ((r0+r1)+(r2+r3))+... with r0 = 1e16+1 = 1e16, others 2
        let expected = ((1e16 + 2.0) + (2.0 + 2.0)) + ((2.0 + 2.0) + (2.0 + 2.0)) + 1.0;
        assert_eq!(np, expected);
    }
}
