//! A small bbolt *writer* for tests, property tests and fuzz seeds: builds a valid
//! NoFreelistSync database image (like a `Tx.WriteTo` snapshot) from sorted buckets.
//!
//! It packs leaves greedily, builds branch levels above them, makes small buckets inline
//! like bbolt does, and spills large values into overflow pages. Not used by the tool itself.

use super::{
    flags, meta_checksum, BUCKET_LEAF_FLAG, ELEM_SIZE, MAGIC, PAGE_HEADER_SIZE, PGID_NO_FREELIST,
    VERSION,
};

/// Entries of one bucket: (key, value), sorted by key, unique.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Builds a database image.
pub struct DbBuilder {
    page_size: usize,
    /// Page images, starting at page 2; each is a multiple of the page size.
    pages: Vec<u8>,
    next: u64,
    /// Allow inline buckets (bbolt's rule: small, single leaf).
    pub inline: bool,
    /// Leaf fill target in bytes (defaults to the page size); smaller values make deeper trees.
    pub fill: usize,
    pub txid: u64,
    /// Write a persisted freelist page holding these ids (None: NoFreelistSync, like etcd
    /// on Linux). Ids past the built pages are allowed (to make broken files).
    pub freelist: Option<Vec<u64>>,
}

impl DbBuilder {
    pub fn new(page_size: usize) -> Self {
        DbBuilder {
            page_size,
            pages: Vec::new(),
            next: 2,
            inline: true,
            fill: page_size,
            txid: 5,
            freelist: None,
        }
    }

    fn put_page(&mut self, image: Vec<u8>) -> u64 {
        let id = self.next;
        let n = image.len().div_ceil(self.page_size).max(1);
        let mut image = image;
        image.resize(n * self.page_size, 0);
        // Fix the header: id and overflow.
        image[0..8].copy_from_slice(&id.to_le_bytes());
        image[12..16].copy_from_slice(&((n - 1) as u32).to_le_bytes());
        self.pages.extend_from_slice(&image);
        self.next += n as u64;
        id
    }

    /// Write a tree of (flags, key, value) entries; returns the root page id.
    fn write_tree(&mut self, entries: &[(u32, Vec<u8>, Vec<u8>)]) -> u64 {
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut start = 0;
        while start < entries.len() || (start == 0 && entries.is_empty()) {
            let mut size = PAGE_HEADER_SIZE;
            let mut end = start;
            while end < entries.len() {
                let e = &entries[end];
                let add = ELEM_SIZE + e.1.len() + e.2.len();
                if end > start && size + add > self.fill {
                    break;
                }
                size += add;
                end += 1;
            }
            let chunk: Vec<(u32, &[u8], &[u8])> = entries[start..end]
                .iter()
                .map(|(f, k, v)| (*f, k.as_slice(), v.as_slice()))
                .collect();
            let first = chunk.first().map(|c| c.1.to_vec()).unwrap_or_default();
            let id = self.put_page(super::write::leaf_image(&chunk));
            level.push((first, id));
            if entries.is_empty() {
                break;
            }
            start = end;
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            let mut start = 0;
            while start < level.len() {
                let mut size = PAGE_HEADER_SIZE;
                let mut end = start;
                while end < level.len() {
                    let add = ELEM_SIZE + level[end].0.len();
                    if end > start + 1 && size + add > self.fill {
                        break;
                    }
                    size += add;
                    end += 1;
                }
                let id = self.put_page(super::write::branch_image(&level[start..end]));
                up.push((level[start].0.clone(), id));
                start = end;
            }
            level = up;
        }
        level[0].1
    }

    /// The value of a bucket entry for these entries (inline if bbolt would inline it).
    fn bucket_value(&mut self, entries: &Entries) -> Vec<u8> {
        let size: usize = PAGE_HEADER_SIZE
            + entries
                .iter()
                .map(|(k, v)| ELEM_SIZE + k.len() + v.len())
                .sum::<usize>();
        let mut v = vec![0u8; 16];
        if self.inline && size <= self.page_size / 4 {
            let refs: Vec<(u32, &[u8], &[u8])> = entries
                .iter()
                .map(|(k, v)| (0, k.as_slice(), v.as_slice()))
                .collect();
            v.extend_from_slice(&super::write::leaf_image(&refs));
        } else {
            let e: Vec<(u32, Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (0, k.clone(), v.clone()))
                .collect();
            let root = self.write_tree(&e);
            v[0..8].copy_from_slice(&root.to_le_bytes());
        }
        v
    }

    /// Build the image of a database holding these top-level buckets (sorted by name).
    pub fn build(mut self, buckets: &[(Vec<u8>, Entries)]) -> Vec<u8> {
        let mut top = Vec::new();
        for (name, entries) in buckets {
            let v = self.bucket_value(entries);
            top.push((BUCKET_LEAF_FLAG, name.clone(), v));
        }
        let root = self.write_tree(&top);
        let freelist_page = match self.freelist.take() {
            None => PGID_NO_FREELIST,
            Some(ids) => {
                let mut img = vec![0u8; PAGE_HEADER_SIZE];
                img[8..10].copy_from_slice(&flags::FREELIST.to_le_bytes());
                if ids.len() >= 0xFFFF {
                    img[10..12].copy_from_slice(&0xFFFFu16.to_le_bytes());
                    img.extend_from_slice(&(ids.len() as u64).to_le_bytes());
                } else {
                    img[10..12].copy_from_slice(&(ids.len() as u16).to_le_bytes());
                }
                for id in ids {
                    img.extend_from_slice(&id.to_le_bytes());
                }
                self.put_page(img)
            }
        };
        let pgid = self.next;
        let ps = self.page_size;
        let mut out = vec![0u8; 2 * ps];
        for (i, txid) in [(0usize, self.txid), (1, self.txid - 1)] {
            let p = &mut out[i * ps..(i + 1) * ps];
            p[0..8].copy_from_slice(&(i as u64).to_le_bytes());
            p[8..10].copy_from_slice(&flags::META.to_le_bytes());
            let m = &mut p[16..80];
            m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            m[4..8].copy_from_slice(&VERSION.to_le_bytes());
            m[8..12].copy_from_slice(&(ps as u32).to_le_bytes());
            m[16..24].copy_from_slice(&root.to_le_bytes());
            m[32..40].copy_from_slice(&freelist_page.to_le_bytes());
            m[40..48].copy_from_slice(&pgid.to_le_bytes());
            m[48..56].copy_from_slice(&txid.to_le_bytes());
            let sum = meta_checksum(&m[..56]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        out.extend_from_slice(&self.pages);
        out
    }
}

/// Rewrite meta `i`'s checksum after editing it (for corruption tests).
pub fn fix_meta_checksum(img: &mut [u8], page_size: usize, i: usize) {
    let at = i * page_size + 16;
    if let Some(m) = img.get_mut(at..at + 64) {
        let sum = meta_checksum(&m[..56]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
    }
}

/// A small etcd-like database: the usual buckets, `n` keys in bucket `key`.
pub fn etcd_like(page_size: usize, n: usize, value_size: usize) -> Vec<u8> {
    let rev = |main: i64, sub: i64| {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&sub.to_be_bytes());
        k
    };
    let varint = |v: &mut Vec<u8>, mut x: u64| {
        while x >= 0x80 {
            v.push((x as u8) | 0x80);
            x >>= 7;
        }
        v.push(x as u8);
    };
    let mut keys = Vec::new();
    for i in 0..n {
        let main = i as u64 + 2;
        let user = format!("/k/{i:06}");
        let mut v = vec![0x0a, user.len() as u8];
        v.extend_from_slice(user.as_bytes());
        v.push(0x10);
        varint(&mut v, main);
        v.push(0x18);
        varint(&mut v, main);
        v.extend_from_slice(&[0x20, 1, 0x2a]);
        varint(&mut v, value_size as u64);
        v.extend_from_slice(&vec![b'v'; value_size]);
        keys.push((rev(main as i64, 0), v));
    }
    let b = |s: &str| s.as_bytes().to_vec();
    let buckets = vec![
        (b("alarm"), vec![]),
        (b("auth"), vec![(b("authEnabled"), vec![0])]),
        (b("authRoles"), vec![]),
        (b("authUsers"), vec![]),
        (b("cluster"), vec![(b("clusterVersion"), b("3.5.0"))]),
        (b("key"), keys),
        (b("lease"), vec![]),
        (
            b("members"),
            vec![(
                b("ad3dd0882f6c4e00"),
                b(
                    r#"{"id":12483363025470639616,"peerURLs":["http://127.0.0.1:22380"],"name":"src"}"#,
                ),
            )],
        ),
        (b("members_removed"), vec![]),
        (
            b("meta"),
            vec![
                (
                    b("confState"),
                    b(r#"{"voters":[12483363025470639616],"auto_leave":false}"#),
                ),
                (b("consistent_index"), 9u64.to_be_bytes().to_vec()),
                (b("term"), 2u64.to_be_bytes().to_vec()),
            ],
        ),
    ];
    DbBuilder::new(page_size).build(&buckets)
}
