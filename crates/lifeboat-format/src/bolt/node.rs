//! Branch and leaf page views: bounds-checked element access over a byte slice.

use super::{
    flags, le_u16, le_u32, le_u64, page_type_name, FormatError, Result, ELEM_SIZE, PAGE_HEADER_SIZE,
};

/// bbolt's key size limit.
pub const MAX_KEY_SIZE: usize = 32768;

/// A key for messages: text when printable, else hex; shortened.
pub(crate) fn show(k: &[u8]) -> String {
    let cut = &k[..k.len().min(64)];
    let more = if k.len() > 64 { "…" } else { "" };
    if cut.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("{:?}{more}", String::from_utf8_lossy(cut))
    } else {
        format!("0x{}{more}", hex::encode(cut))
    }
}

/// A branch or leaf node over page bytes (a page span, or an inline bucket's page image).
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    data: &'a [u8],
    flags: u16,
    count: usize,
    page: Option<u64>,
    /// File offset of `data[0]`, for messages.
    offset: u64,
}

/// A leaf element, borrowed from the page.
#[derive(Debug, Clone, Copy)]
pub struct LeafElem<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Offset of the key within the page data.
    pub key_offset: usize,
}

/// A branch element, borrowed from the page.
#[derive(Debug, Clone, Copy)]
pub struct BranchElem<'a> {
    pub key: &'a [u8],
    pub pgid: u64,
    /// Offset of the key within the page data.
    pub key_offset: usize,
}

impl<'a> Node<'a> {
    /// View `data` as a node. Requires a readable header of type branch or leaf; elements
    /// are checked as they are accessed.
    pub fn new(data: &'a [u8], page: Option<u64>, offset: u64) -> Result<Node<'a>> {
        let (Some(fl), Some(count)) = (le_u16(data, 8), le_u16(data, 10)) else {
            return Err(FormatError::corrupt(
                page,
                Some(offset),
                "page header truncated",
            ));
        };
        if fl != flags::BRANCH && fl != flags::LEAF {
            return Err(FormatError::corrupt(
                page,
                Some(offset),
                format!("invalid type: {} (want branch or leaf)", page_type_name(fl)),
            ));
        }
        Ok(Node {
            data,
            flags: fl,
            count: usize::from(count),
            page,
            offset,
        })
    }

    pub fn flags(&self) -> u16 {
        self.flags
    }
    pub fn is_leaf(&self) -> bool {
        self.flags == flags::LEAF
    }
    pub fn is_branch(&self) -> bool {
        self.flags == flags::BRANCH
    }
    pub fn count(&self) -> usize {
        self.count
    }
    pub fn page(&self) -> Option<u64> {
        self.page
    }
    /// File offset of the node's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    fn err(&self, at: usize, msg: String) -> FormatError {
        FormatError::corrupt(self.page, Some(self.offset + at as u64), msg)
    }

    fn elem_at(&self, i: usize) -> Result<usize> {
        if i >= self.count {
            return Err(self.err(0, format!("element {i} past count {}", self.count)));
        }
        let at = PAGE_HEADER_SIZE + ELEM_SIZE * i;
        if at + ELEM_SIZE > self.data.len() {
            return Err(self.err(
                at,
                format!(
                    "element {i} of {} lies outside the page ({} bytes)",
                    self.count,
                    self.data.len()
                ),
            ));
        }
        Ok(at)
    }

    /// Leaf element `i`, with key and value bounds checked against the page span.
    pub fn leaf(&self, i: usize) -> Result<LeafElem<'a>> {
        let at = self.elem_at(i)?;
        let d = self.data;
        let (Some(fl), Some(pos), Some(ksize), Some(vsize)) = (
            le_u32(d, at),
            le_u32(d, at + 4),
            le_u32(d, at + 8),
            le_u32(d, at + 12),
        ) else {
            return Err(self.err(at, format!("element {i} truncated")));
        };
        let start = at as u64 + u64::from(pos);
        let kend = start + u64::from(ksize);
        let vend = kend + u64::from(vsize);
        if vend > d.len() as u64 {
            return Err(self.err(
                at,
                format!(
                    "leaf element {i}: key+value [{start}, {vend}) runs past the page span ({} bytes)",
                    d.len()
                ),
            ));
        }
        // In range of a usize: bounded by d.len().
        let (start, kend, vend) = (start as usize, kend as usize, vend as usize);
        Ok(LeafElem {
            flags: fl,
            key: d.get(start..kend).unwrap_or_default(),
            value: d.get(kend..vend).unwrap_or_default(),
            key_offset: start,
        })
    }

    /// Branch element `i`, with key bounds checked against the page span.
    pub fn branch(&self, i: usize) -> Result<BranchElem<'a>> {
        let at = self.elem_at(i)?;
        let d = self.data;
        let (Some(pos), Some(ksize), Some(pgid)) =
            (le_u32(d, at), le_u32(d, at + 4), le_u64(d, at + 8))
        else {
            return Err(self.err(at, format!("element {i} truncated")));
        };
        let start = at as u64 + u64::from(pos);
        let kend = start + u64::from(ksize);
        if kend > d.len() as u64 {
            return Err(self.err(
                at,
                format!(
                    "branch element {i}: key [{start}, {kend}) runs past the page span ({} bytes)",
                    d.len()
                ),
            ));
        }
        let (start, kend) = (start as usize, kend as usize);
        Ok(BranchElem {
            key: d.get(start..kend).unwrap_or_default(),
            pgid,
            key_offset: start,
        })
    }

    /// Everything a reader relies on in this node, checked before any element is used:
    /// the elements fit the page, every key and value lies inside it, keys are non-empty,
    /// within bbolt's limit, strictly ascending, and inside `[lo, hi)` (the separators of
    /// the branch above, when known); a branch is not empty. The first fault is returned,
    /// so that no answer is ever computed from a page that would fail the strict check.
    pub fn validate(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Result<()> {
        let kind = page_type_name(self.flags);
        let need = PAGE_HEADER_SIZE + ELEM_SIZE * self.count;
        if need > self.data.len() {
            return Err(self.err(
                0,
                format!(
                    "{kind} page: {} elements need {need} bytes, the page has {}",
                    self.count,
                    self.data.len()
                ),
            ));
        }
        if self.is_branch() && self.count == 0 {
            return Err(self.err(0, "branch page with no elements".into()));
        }
        let mut prev: Option<&[u8]> = None;
        for i in 0..self.count {
            let (key, at) = if self.is_leaf() {
                let e = self.leaf(i)?;
                (e.key, e.key_offset)
            } else {
                let e = self.branch(i)?;
                (e.key, e.key_offset)
            };
            let fault = if key.is_empty() {
                Some("zero-length key".to_string())
            } else if key.len() > MAX_KEY_SIZE {
                Some(format!("key of {} bytes exceeds {MAX_KEY_SIZE}", key.len()))
            } else if let Some(p) = prev.filter(|p| key <= *p) {
                Some(format!(
                    "key {} is not greater than the previous key {}",
                    show(key),
                    show(p)
                ))
            } else if let Some(lo) = lo.filter(|lo| key < *lo) {
                Some(format!(
                    "key {} is below the separator {} in the parent branch",
                    show(key),
                    show(lo)
                ))
            } else {
                hi.filter(|hi| key >= *hi).map(|hi| {
                    format!(
                        "key {} is not below the next separator {} in an ancestor branch",
                        show(key),
                        show(hi)
                    )
                })
            };
            if let Some(f) = fault {
                return Err(self.err(at, format!("{kind} element {i}: {f}")));
            }
            prev = Some(key);
        }
        Ok(())
    }

    /// Key of element `i` (either kind).
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        if self.is_leaf() {
            Ok(self.leaf(i)?.key)
        } else {
            Ok(self.branch(i)?.key)
        }
    }

    /// Index of the first leaf element with key >= `key` (may equal `count`).
    pub fn leaf_search(&self, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.leaf(mid)?.key < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Index of the last branch element with key <= `key`, or 0 if none qualifies.
    pub fn branch_search(&self, key: &[u8]) -> Result<usize> {
        let (mut lo, mut hi) = (0usize, self.count);
        // First index with element key > key.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.branch(mid)?.key <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.saturating_sub(1))
    }
}
