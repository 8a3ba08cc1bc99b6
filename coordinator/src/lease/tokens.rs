//! Fencing tokens that a caller cannot guess.
//!
//! A token used to be the previous one plus one, so any client holding the shared auth token
//! could name another worker's live lease by adding one to its own. Each token is now 64 bits
//! from the operating system's random source, redrawn on the (2^-64) chance that this
//! coordinator already handed it out, so tokens stay unique within the run. A restarted
//! coordinator draws afresh: it repeats a token of its predecessor only with probability about
//! (tokens before × tokens after) / 2^64, and even then only a report for the same task, from
//! the worker holding it, with that token would be taken. Tokens stay `u64`, so the names they
//! go into (`attempt_{token}`, `<run>_c{token}_NNNNNN.parquet`) keep their form.

use std::collections::HashSet;

/// Hands out fencing tokens: random, never 0, never twice in this coordinator's life.
#[derive(Debug, Default)]
pub struct FencingTokens {
    issued: HashSet<u64>,
}

impl FencingTokens {
    /// No token handed out yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token not handed out before.
    pub fn next(&mut self) -> u64 {
        loop {
            let token = random_u64();
            if token != 0 && self.issued.insert(token) {
                return token;
            }
        }
    }
}

/// 64 bits from the OS random source. A v4 UUID carries 122 random bits; its two halves have
/// their fixed version and variant bits in different places, so their XOR has none fixed.
pub fn random_u64() -> u64 {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    high ^ low
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_unique_and_do_not_follow_from_one_another() {
        use std::collections::HashSet;
        let mut tokens = super::FencingTokens::new();
        let drawn: Vec<u64> = (0..1_000).map(|_| tokens.next()).collect();
        let unique: HashSet<u64> = drawn.iter().copied().collect();
        assert_eq!(unique.len(), drawn.len());
        // A guess from one's own token (the next or previous number) hits no other token.
        let guessed = drawn.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
        assert_eq!(guessed, 0);
        // Every bit varies: no fixed version or variant bits leak into tokens.
        let ones = drawn.iter().fold(0u64, |acc, t| acc | t);
        let zeros = drawn.iter().fold(0u64, |acc, t| acc | !t);
        assert_eq!((ones, zeros), (u64::MAX, u64::MAX));
    }
}
