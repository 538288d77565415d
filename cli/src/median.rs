//! The median of repeated measurements (shared with `benches/compare.rs` and `benches/rss.rs`
//! by `#[path]`).

/// The median of `v` (the mean of the middle two for an even count); `v` is sorted.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
