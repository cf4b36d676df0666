//! The scrollback: a ring of the last N bytes of console output.

use std::collections::VecDeque;

/// A byte ring that keeps the newest `capacity` bytes.
pub struct Ring {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            bytes: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(data);
    }

    /// Returns a copy of the contents, oldest first.
    pub fn snapshot(&self) -> Vec<u8> {
        let (front, back) = self.bytes.as_slices();
        [front, back].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_newest_bytes() {
        let mut ring = Ring::new(5);
        ring.push(b"abc");
        assert_eq!(ring.snapshot(), b"abc");
        ring.push(b"defg");
        assert_eq!(ring.snapshot(), b"cdefg");
        ring.push(b"0123456789");
        assert_eq!(ring.snapshot(), b"56789");
    }

    #[test]
    fn ring_of_zero_capacity_stays_empty() {
        let mut ring = Ring::new(0);
        ring.push(b"abc");
        assert!(ring.snapshot().is_empty());
    }
}
