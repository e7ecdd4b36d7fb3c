//! The benchmark examples' values: half pseudo-random text, half repetitive (JSON-like), so
//! they compress about as well as real Kubernetes objects do, neither trivially nor not at
//! all. Shared by `fill` and `pitr_load` (`#[path]`: examples have no library of their own).

/// The value number `i`, `size` bytes long (deterministic).
pub fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    while v.len() < size / 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(alphabet[(x % alphabet.len() as u64) as usize]);
    }
    let filler = br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"namespace":"default"}}"#;
    while v.len() < size {
        let take = (size - v.len()).min(filler.len());
        v.extend_from_slice(&filler[..take]);
    }
    v
}
