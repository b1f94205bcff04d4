//! Tables built once and kept for the process, read on every call.

use std::collections::HashMap;

/// A table keyed by method path: built when the server starts, only read
/// while it serves.
pub(crate) type PathMap<V> = HashMap<&'static str, V, std::hash::BuildHasherDefault<PathHasher>>;

/// A quick hash for method paths: the length and three 8-byte words
/// (start, middle, end), mixed by multiply-rotate. Paths of one service
/// share a prefix and differ toward the end, which the last word covers;
/// lookups compare whole keys, so a rare collision costs a comparison,
/// never a wrong answer. Path tables are fixed before the first call and
/// calls only look them up, so a caller picking colliding paths slows
/// nothing but its own lookup: SipHash's protection against flooding is
/// not needed here.
#[derive(Default)]
pub(crate) struct PathHasher(u64);

impl PathHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        self.mix(bytes.len() as u64);
        if bytes.len() >= 8 {
            self.mix(word(0));
            self.mix(word(bytes.len() / 2 - 4));
            self.mix(word(bytes.len() - 8));
        } else {
            let mut short = [0u8; 8];
            short[..bytes.len()].copy_from_slice(bytes);
            self.mix(u64::from_le_bytes(short));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        // `str` ends its hash with one 0xff byte.
        self.mix(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Keeps `value` for the rest of the process. Layers keep their tables
/// this way: tonic clones the whole middleware stack for every call, and a
/// plain reference clones for free, where a shared counter would bounce
/// between CPU cores on every call. Tables are built once per server, so
/// what is kept is bounded by the servers a process builds.
pub(crate) fn forever<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tables() {
        let paths = ["/a.v1.S/Get", "/a.v1.S/Set", "/a.v1.S/GetMany", "/b/c", "/", "", "/a.v1.T/Get"];
        let table: PathMap<usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(table.get(p), Some(&i), "{p}");
        }
        for absent in ["/a.v1.S/Gex", "/a.v1.S/Get ", "/b/d", "//", "/a.v1.S/GetManx"] {
            assert_eq!(table.get(absent), None, "{absent}");
        }
    }
}
