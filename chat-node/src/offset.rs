//! Room message offsets: Redis Stream ids (`<ms>-<seq>`), parsed so they compare numerically
//! (string order is wrong: `"9-0" > "10-0"`).

use std::fmt;
use std::str::FromStr;

/// A Redis Stream id; the offset of a room message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// Milliseconds part (Redis server time when the message was stored).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl Offset {
    /// The smallest id (`0-0`), before every stored message.
    pub const ZERO: Offset = Offset { ms: 0, seq: 0 };
}

impl FromStr for Offset {
    type Err = ();
    /// Accepts `<ms>-<seq>` and `<ms>` (meaning `<ms>-0`), as Redis does.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(());
        }
        Ok(Offset {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let a: Offset = "9-5".parse().unwrap();
        let b: Offset = "10-0".parse().unwrap();
        assert!(a < b);
        assert_eq!("12".parse::<Offset>().unwrap(), Offset { ms: 12, seq: 0 });
        assert_eq!(b.to_string(), "10-0");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "1-2-3",
            "１-0",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
    }
}
