//! MT19937, the 32-bit Mersenne Twister behind Caffe's `caffe::rng_t` (`boost::mt19937`), written out so the
//! stream can never change with a dependency's version.

const N: usize = 624;
const M: usize = 397;

/// The standard MT19937 (Matsumoto & Nishimura 1998; `std::mt19937`, `boost::mt19937`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    next: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// Seeded as `boost::mt19937(seed)` / `std::mt19937(seed)` (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, next: N }
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Mt19937;

    #[test]
    fn matches_the_cpp_standard_and_gxx() {
        // [rand.predef]: the 10000th output of a default-constructed std::mt19937 (seed 5489) is 4123659995.
        let mut rng = Mt19937::new(5489);
        let first: Vec<u32> = (0..8).map(|_| rng.next_u32()).collect();
        // Printed by std::mt19937(5489u) compiled with g++ 12.
        assert_eq!(
            first,
            [3499211612, 581869302, 3890346734, 3586334585, 545404204, 4161255391, 3922919429, 949333985]
        );
        let mut rng = Mt19937::new(5489);
        let tenth_thousand = (0..10_000).map(|_| rng.next_u32()).last();
        assert_eq!(tenth_thousand, Some(4_123_659_995));
        // Seed 1701 (the fixtures' solver seed), from the same g++ program.
        let mut rng = Mt19937::new(1701);
        assert_eq!(
            [rng.next_u32(), rng.next_u32(), rng.next_u32()],
            [384112814, 2227967492, 495543390]
        );
    }
}
