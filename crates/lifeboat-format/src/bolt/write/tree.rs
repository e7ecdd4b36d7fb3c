//! Page images and B+tree packing for the copy-on-write writer: new pages are numbered from
//! the old high-water mark up, so nothing reachable from the old meta is ever overwritten.

use super::super::{flags, BUCKET_LEAF_FLAG, ELEM_SIZE, PAGE_HEADER_SIZE};

/// One leaf element to write: (flags, key, value).
pub type LeafItem = (u32, Vec<u8>, Vec<u8>);

/// The pages a transaction appends, numbered from the high-water mark.
pub struct PageSink {
    pub page_size: usize,
    /// First page id of `bytes`.
    pub first: u64,
    /// Page images, each a whole number of pages.
    pub bytes: Vec<u8>,
    next: u64,
}

impl PageSink {
    pub fn new(page_size: usize, hwm: u64) -> PageSink {
        PageSink {
            page_size,
            first: hwm,
            bytes: Vec::new(),
            next: hwm,
        }
    }

    /// The high-water mark after these pages.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Append a page image (header id and overflow are set here); returns its id.
    fn put(&mut self, mut image: Vec<u8>) -> u64 {
        let id = self.next;
        let n = image.len().div_ceil(self.page_size).max(1);
        image.resize(n * self.page_size, 0);
        image[0..8].copy_from_slice(&id.to_le_bytes());
        image[12..16].copy_from_slice(&((n - 1) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&image);
        // Saturates rather than wraps: `cow_patch` checks the count against the bytes.
        self.next = self.next.saturating_add(n as u64);
        id
    }

    /// Write one leaf page; returns its id.
    pub fn put_leaf(&mut self, items: &[LeafItem]) -> u64 {
        self.put(leaf_image(items))
    }

    /// Write one branch page; returns its id.
    pub fn put_branch(&mut self, children: &[(Vec<u8>, u64)]) -> u64 {
        self.put(branch_image(children))
    }
}

/// The bytes of a leaf page (id and overflow left zero): one `(flags, key, value)` per
/// element, in order. Also what the test-image builder (`bolt::build`) lays its leaves with.
pub fn leaf_image<K: AsRef<[u8]>, V: AsRef<[u8]>>(items: &[(u32, K, V)]) -> Vec<u8> {
    let n = items.len();
    let mut img = vec![0u8; PAGE_HEADER_SIZE + ELEM_SIZE * n];
    img[8..10].copy_from_slice(&flags::LEAF.to_le_bytes());
    img[10..12].copy_from_slice(&(n as u16).to_le_bytes());
    for (i, (fl, k, v)) in items.iter().enumerate() {
        let (k, v) = (k.as_ref(), v.as_ref());
        let at = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        let pos = (img.len() - at) as u32;
        img[at..at + 4].copy_from_slice(&fl.to_le_bytes());
        img[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
        img[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
        img[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        img.extend_from_slice(k);
        img.extend_from_slice(v);
    }
    img
}

/// The bytes of a branch page (id and overflow left zero).
pub fn branch_image(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let n = children.len();
    let mut img = vec![0u8; PAGE_HEADER_SIZE + ELEM_SIZE * n];
    img[8..10].copy_from_slice(&flags::BRANCH.to_le_bytes());
    img[10..12].copy_from_slice(&(n as u16).to_le_bytes());
    for (i, (k, pgid)) in children.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        let pos = (img.len() - at) as u32;
        img[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        img[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        img[at + 8..at + 16].copy_from_slice(&pgid.to_le_bytes());
        img.extend_from_slice(k);
    }
    img
}

/// Leaf size in bytes of these items, as bbolt counts it for inlining.
pub fn leaf_size(items: &[LeafItem]) -> usize {
    PAGE_HEADER_SIZE
        + items
            .iter()
            .map(|(_, k, v)| ELEM_SIZE + k.len() + v.len())
            .sum::<usize>()
}

/// Most elements in one page: its header counts them in 16 bits (a 16 MiB page of tiny
/// elements holds more), less the few a short last run may join.
const MAX_RUN: usize = u16::MAX as usize - 2;

/// Split `sizes` into runs of at most `fill` bytes each (after the page header), every run
/// holding at least `min` elements where there are that many, never leaving a last run
/// shorter than `min` (it joins the previous one).
fn runs(sizes: &[usize], fill: usize, min: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut size = PAGE_HEADER_SIZE;
        let mut end = start;
        while end < sizes.len()
            && end - start < MAX_RUN
            && (end < start + min || size + sizes[end] <= fill)
        {
            size += sizes[end];
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    if out.len() > 1 && out.last().is_some_and(|r| r.len() < min) {
        let last = out.pop().unwrap_or_default();
        if let Some(prev) = out.last_mut() {
            prev.end = last.end;
        }
    }
    out
}

/// Pack sorted items into leaf pages; returns (first key, page id) of each leaf. An empty
/// list gives one empty leaf (an empty bucket's root).
pub fn pack_leaves(sink: &mut PageSink, items: &[LeafItem]) -> Vec<(Vec<u8>, u64)> {
    if items.is_empty() {
        return vec![(Vec::new(), sink.put_leaf(&[]))];
    }
    let sizes: Vec<usize> = items
        .iter()
        .map(|(_, k, v)| ELEM_SIZE + k.len() + v.len())
        .collect();
    runs(&sizes, sink.page_size, 1)
        .into_iter()
        .map(|r| (items[r.start].1.clone(), sink.put_leaf(&items[r])))
        .collect()
}

/// Pack children into branch pages (at least two per page); returns one (first key, id)
/// per branch page.
pub fn pack_branches(sink: &mut PageSink, children: &[(Vec<u8>, u64)]) -> Vec<(Vec<u8>, u64)> {
    let sizes: Vec<usize> = children.iter().map(|(k, _)| ELEM_SIZE + k.len()).collect();
    runs(&sizes, sink.page_size, 2)
        .into_iter()
        .map(|r| (children[r.start].0.clone(), sink.put_branch(&children[r])))
        .collect()
}

/// Build branch levels over `level` until one page remains; returns the root id.
pub fn root_over(sink: &mut PageSink, mut level: Vec<(Vec<u8>, u64)>) -> u64 {
    while level.len() > 1 {
        level = pack_branches(sink, &level);
    }
    level.first().map(|c| c.1).unwrap_or(0)
}

/// A whole tree of sorted items; returns the root page id.
pub fn write_tree(sink: &mut PageSink, items: &[LeafItem]) -> u64 {
    let leaves = pack_leaves(sink, items);
    root_over(sink, leaves)
}

/// The value of a bucket entry holding `items`: inline when bbolt would inline it (one
/// leaf, no sub-buckets, at most a quarter page), else a tree of new pages. `sequence` is
/// the bucket's sequence number, kept from the old value.
pub fn bucket_value(sink: &mut PageSink, items: &[LeafItem], sequence: u64) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[8..16].copy_from_slice(&sequence.to_le_bytes());
    let has_sub = items.iter().any(|(f, _, _)| f & BUCKET_LEAF_FLAG != 0);
    if !has_sub && leaf_size(items) <= sink.page_size / 4 {
        v.extend_from_slice(&leaf_image(items));
    } else {
        let root = write_tree(sink, items);
        v[0..8].copy_from_slice(&root.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_minimum_and_fill() {
        let r = runs(&[10; 10], PAGE_HEADER_SIZE + 30, 2);
        assert!(r.iter().all(|r| r.len() >= 2));
        assert_eq!(r.last().map(|r| r.end), Some(10));
        let one = runs(&[5000], 4096, 1);
        assert_eq!(one, vec![0..1]);
    }
}
