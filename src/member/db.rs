//! The least check-member needs from `member/snap/db` until the strict bbolt checker of
//! `format::bolt` / `format::etcd` is merged: can bbolt open it? (formats §1.2: magic,
//! version and FNV-1a checksum of the two meta pages; bbolt uses the valid one with the larger
//! txid and fails only when both are bad.)

use serde::Serialize;

use crate::io::ReadAt;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DbCheck {
    pub size: u64,
    pub page_size: Option<u32>,
    /// Transaction id of the meta bbolt would use.
    pub txid: Option<u64>,
    /// Problems that stop bbolt from opening the file.
    pub fatal: Vec<String>,
    /// Problems bbolt works around (one bad meta page).
    pub warnings: Vec<String>,
}

struct Meta {
    page_size: u32,
    txid: u64,
}

fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Validate the meta in one page image (header at 0, meta at 16).
fn meta(page: &[u8]) -> Result<Meta, String> {
    let magic = u32_at(page, 16).ok_or("page too short")?;
    if magic != 0xED0C_DAED {
        return Err(format!("invalid database (magic {magic:08x})"));
    }
    let version = u32_at(page, 20).ok_or("page too short")?;
    if version != 2 {
        return Err(format!("version mismatch ({version})"));
    }
    let stored = u64_at(page, 72).ok_or("page too short")?;
    let computed = fnv1a64(page.get(16..72).ok_or("page too short")?);
    // bbolt 1.3.6 (etcd 3.5.1) skips the test when the stored checksum is 0.
    if stored != 0 && stored != computed {
        return Err(format!(
            "checksum error (stored {stored:016x}, computed {computed:016x})"
        ));
    }
    Ok(Meta {
        page_size: u32_at(page, 24).ok_or("page too short")?,
        txid: u64_at(page, 64).ok_or("page too short")?,
    })
}

/// Check the two meta pages of a db file.
pub fn check(db: &dyn ReadAt) -> DbCheck {
    let size = db.size();
    let mut out = DbCheck {
        size,
        page_size: None,
        txid: None,
        fatal: Vec::new(),
        warnings: Vec::new(),
    };
    let first = match db.read_vec_at(0, 4096.min(size as usize)) {
        Ok(b) => b,
        Err(e) => {
            out.fatal.push(format!("cannot read the db: {e}"));
            return out;
        }
    };
    let m0 = meta(&first);
    // Page size: meta0's when valid, else the OS page size (4096), as bbolt 1.3.6 does.
    let ps = match &m0 {
        Ok(m) if m.page_size >= 512 && m.page_size.is_power_of_two() => m.page_size,
        _ => 4096,
    };
    let m1 = db
        .read_vec_at(u64::from(ps), 4096.min(ps as usize))
        .map_err(|e| format!("cannot read meta page 1: {e}"))
        .and_then(|p| meta(&p));
    match (&m0, &m1) {
        (Ok(a), Ok(b)) => {
            let cur = if b.txid > a.txid { b } else { a };
            out.page_size = Some(cur.page_size);
            out.txid = Some(cur.txid);
        }
        (Ok(a), Err(e)) | (Err(e), Ok(a)) => {
            let which = if m0.is_ok() { 1 } else { 0 };
            out.warnings.push(format!(
                "meta page {which} is bad ({e}); bbolt uses the other one (txid {})",
                a.txid
            ));
            out.page_size = Some(a.page_size);
            out.txid = Some(a.txid);
        }
        (Err(e0), Err(e1)) => out.fatal.push(format!(
            "both meta pages are bad: meta 0: {e0}; meta 1: {e1}"
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(txid: u64) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[8..10].copy_from_slice(&4u16.to_le_bytes());
        p[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        p[20..24].copy_from_slice(&2u32.to_le_bytes());
        p[24..28].copy_from_slice(&4096u32.to_le_bytes());
        p[64..72].copy_from_slice(&txid.to_le_bytes());
        let c = fnv1a64(&p[16..72]);
        p[72..80].copy_from_slice(&c.to_le_bytes());
        p
    }

    #[test]
    fn metas() {
        let mut db = page(4);
        db.extend(page(5));
        let c = check(&db);
        assert_eq!((c.txid, c.fatal.len(), c.warnings.len()), (Some(5), 0, 0));
        db[4096 + 70] ^= 1;
        let c = check(&db);
        assert_eq!((c.txid, c.warnings.len()), (Some(4), 1));
        db[30] ^= 1;
        assert_eq!(check(&db).fatal.len(), 1);
    }
}
