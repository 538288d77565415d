//! A small deterministic xorshift64 generator shared by the property tests and the
//! benchmarks (`#[path]`-included), so that runs are reproducible from their seed.

/// xorshift64: seed must be non-zero.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[inline(always)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    #[allow(dead_code)]
    #[inline(always)]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
