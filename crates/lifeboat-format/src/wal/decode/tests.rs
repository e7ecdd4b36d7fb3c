use super::*;

#[test]
fn names() {
    assert_eq!(
        parse_segment_name("0000000000000001-0000000000000279.wal"),
        Some((1, 0x279))
    );
    assert_eq!(parse_segment_name("0.tmp"), None);
    assert_eq!(
        parse_segment_name("0000000000000001-0000000000000279.wal.broken"),
        None
    );
    assert_eq!(
        parse_segment_name("000000000000001-0000000000000279.wal"),
        None
    );
    assert_eq!(
        segment_name(1, 0x279),
        "0000000000000001-0000000000000279.wal"
    );
}

#[test]
fn frame_sizes() {
    assert_eq!(frame_size(0x8400_0000_0000_0004), (4, 4));
    assert_eq!(frame_size(16), (16, 0));
}

#[test]
fn sectors() {
    let mut d = vec![1u8; 1200];
    assert_eq!(zero_sector(&d, 8), None);
    // Chunk [504, 1016) in data = file [512, 1024).
    for b in d.iter_mut().skip(504).take(512) {
        *b = 0;
    }
    assert_eq!(zero_sector(&d, 8), Some(512));
    // A short zero piece at the start, up to the first boundary, counts too.
    let mut d = vec![1u8; 100];
    d[..4].fill(0);
    assert_eq!(zero_sector(&d, 508), Some(508));
    assert_eq!(zero_sector(&[], 8), None);
}
