//! The plain records the rings carry: 64 bytes each, no pointers, the same
//! layout in both processes (little-endian fields at fixed offsets).

/// Size of one record and of one ring slot.
pub const RECORD_SIZE: usize = 64;

/// One record: a kind in the first two bytes, then fields at fixed offsets.
#[derive(Copy, Clone, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Record(pub [u8; RECORD_SIZE]);

impl Default for Record {
    fn default() -> Self {
        Record([0; RECORD_SIZE])
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record(kind={}, ", self.kind())?;
        for b in &self.0[2..18] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

impl Record {
    /// A record of `kind` with every field zero.
    pub fn new(kind: u16) -> Self {
        let mut r = Record::default();
        r.0[0..2].copy_from_slice(&kind.to_le_bytes());
        r
    }

    /// The record's kind.
    pub fn kind(&self) -> u16 {
        u16::from_le_bytes([self.0[0], self.0[1]])
    }

    /// Writes `bytes` at `offset` (fields never cross the end: callers use fixed layouts).
    pub fn put(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Reads `N` bytes at `offset` (zeros past the end).
    pub fn get<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(offset..offset + N) {
            out.copy_from_slice(src);
        }
        out
    }

    /// Writes a little-endian `u64` at `offset`.
    pub fn put_u64(&mut self, offset: usize, v: u64) {
        self.put(offset, &v.to_le_bytes());
    }

    /// Reads a little-endian `u64` at `offset`.
    pub fn get_u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.get(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_stay_in_bounds() {
        let mut r = Record::new(7);
        r.put_u64(8, 0x0102_0304_0506_0708);
        r.put(16, &[9; 16]);
        r.put(60, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(r.kind(), 7);
        assert_eq!(r.get_u64(8), 0x0102_0304_0506_0708);
        assert_eq!(r.get::<16>(16), [9; 16]);
        assert_eq!(r.get::<8>(60), [0; 8], "out of bounds reads zeros");
        assert_eq!(std::mem::size_of::<Record>(), 64);
        assert_eq!(std::mem::align_of::<Record>(), 64);
    }
}
