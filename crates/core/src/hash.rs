//! The one stable hash of the project: 64-bit FNV-1a.
//!
//! Stable means the same bytes give the same value on every platform, in every build and in
//! every release: it names files (the `-u<unit>` tag of a split answer's parts), so changing it
//! would leave a rerun's files beside the old ones instead of replacing them. std's hashers
//! promise none of that. The simulator uses it too, for its deterministic per-series data and
//! per-request fault draws. Not for hash tables fed by a server (no DoS resistance) and not
//! cryptographic.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over several byte strings in turn, as if they were one (`write` them in order).
///
/// ```
/// use vscope_core::hash::{StableHasher, stable_hash};
/// let h = StableHasher::new().write(b"vscope.vm.cpu.usage.perc").write(&[0]).write(b"dc1");
/// assert_eq!(h.finish(), stable_hash(b"vscope.vm.cpu.usage.perc\0dc1"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableHasher(u64);

impl StableHasher {
    /// The hash of nothing yet.
    pub const fn new() -> StableHasher {
        StableHasher(OFFSET_BASIS)
    }

    /// Adds `bytes`.
    #[must_use]
    pub const fn write(self, bytes: &[u8]) -> StableHasher {
        let mut h = self.0;
        let mut i = 0;
        while i < bytes.len() {
            h = (h ^ bytes[i] as u64).wrapping_mul(PRIME);
            i += 1;
        }
        StableHasher(h)
    }

    /// The hash of everything written.
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for StableHasher {
    fn default() -> StableHasher {
        StableHasher::new()
    }
}

/// The stable hash of `bytes` (64-bit FNV-1a).
pub const fn stable_hash(bytes: &[u8]) -> u64 {
    StableHasher::new().write(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned outputs: a change here renames files written by earlier releases.
    #[test]
    fn outputs_are_pinned() {
        // The FNV-1a 64 reference vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
        // What a split answer's unit tag is made from: metric, NUL, datacenter.
        assert_eq!(
            stable_hash(b"vscope.vm.cpu.usage.perc\0dc1"),
            0x66fb_2db3_84b8_bb6b
        );
        assert_eq!(stable_hash(b"vm-01254"), 0xc0aa_b5f3_e9c7_ff3f);
    }

    #[test]
    fn writing_in_pieces_is_writing_the_whole() {
        let whole = stable_hash(b"vscope.vm.cpu.usage.perc\0dc1");
        let pieces = StableHasher::default()
            .write(b"vscope.vm.")
            .write(b"")
            .write(b"cpu.usage.perc\0dc1")
            .finish();
        assert_eq!(pieces, whole);
    }
}
