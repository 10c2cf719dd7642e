//! A seeded xorshift64* generator for the randomized tests (unit and integration): the same seed
//! gives the same sequence, so a failing case reproduces from the seed it prints. Not for
//! anything but tests.

pub struct SeededRng(u64);

impl SeededRng {
    /// Any seed works (0 is replaced, xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The current state: `SeededRng::new(state)` continues from here (print it with a failure).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Uniform enough in `0..n` for tests (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
