//! Buckets and the cursor that streams a bucket's entries in key order, validating every
//! page it loads before any entry of it is used.

use super::{
    le_u64, page_type_name, Db, FormatError, Node, Result, BUCKET_HEADER_SIZE, MAX_DEPTH,
    PAGE_HEADER_SIZE,
};
use crate::io::ReadAt;

/// Where a bucket's tree lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRoot {
    /// A tree rooted at this page.
    Page(u64),
    /// An inline bucket: the page image stored in the parent's value, with the file
    /// offset of that image (for messages).
    Inline { data: Vec<u8>, offset: u64 },
}

impl BucketRoot {
    /// Decode a bucket value (header + optional inline page). `at` is (page, offset) of the
    /// value, for messages.
    pub fn parse(v: &[u8], at: (Option<u64>, u64)) -> Result<BucketRoot> {
        let root = le_u64(v, 0).ok_or_else(|| {
            FormatError::corrupt(
                at.0,
                Some(at.1),
                format!(
                    "bucket value of {} bytes is shorter than its header",
                    v.len()
                ),
            )
        })?;
        if root != 0 {
            return Ok(BucketRoot::Page(root));
        }
        let data = v.get(BUCKET_HEADER_SIZE..).unwrap_or_default();
        if data.len() < PAGE_HEADER_SIZE {
            return Err(FormatError::corrupt(
                at.0,
                Some(at.1),
                format!("inline bucket value of {} bytes has no page", v.len()),
            ));
        }
        Ok(BucketRoot::Inline {
            data: data.to_vec(),
            offset: at.1 + BUCKET_HEADER_SIZE as u64,
        })
    }
}

/// A bucket: read with [`Bucket::get`], [`Bucket::last`] or a [`Cursor`].
pub struct Bucket<'db, R> {
    pub(super) db: &'db Db<R>,
    pub(super) root: BucketRoot,
}

/// One leaf entry yielded by a cursor. Borrowed from the cursor's current page.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Leaf element flags ([`BUCKET_LEAF_FLAG`] for sub-buckets).
    pub flags: u32,
    /// Page the entry is on (None for an inline bucket).
    pub page: Option<u64>,
    /// File offset of the key bytes.
    pub offset: u64,
}

impl<'db, R: ReadAt> Bucket<'db, R> {
    pub fn root(&self) -> &BucketRoot {
        &self.root
    }

    /// Value of `key`, or None. Sub-bucket entries are returned like any value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key)?.map(|(_, v, _)| v))
    }

    /// (flags, value, (page, offset of value)) of `key`.
    #[allow(clippy::type_complexity)]
    pub(super) fn get_entry(
        &self,
        key: &[u8],
    ) -> Result<Option<(u32, Vec<u8>, (Option<u64>, u64))>> {
        let mut c = self.cursor();
        match c.seek(key)? {
            Some(e) if e.key == key => Ok(Some((
                e.flags,
                e.value.to_vec(),
                (e.page, e.offset + key.len() as u64),
            ))),
            _ => Ok(None),
        }
    }

    /// The last entry (largest key), or None when empty. Reads only the rightmost path.
    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut c = self.cursor();
        Ok(c.last()?.map(|e| (e.key.to_vec(), e.value.to_vec())))
    }

    /// A cursor positioned before the first entry.
    pub fn cursor(&self) -> Cursor<'db, R> {
        Cursor {
            db: self.db,
            root: self.root.clone(),
            stack: Vec::new(),
            state: CursorState::Unstarted,
            loads: 0,
        }
    }
}

struct Frame {
    /// Page bytes (or inline page image).
    data: Vec<u8>,
    page: Option<u64>,
    offset: u64,
    is_leaf: bool,
    count: usize,
    idx: usize,
    /// The separator this page's keys must stay below, from the branches above: a
    /// child's keys lie in `[its element's key, the next element's key or this bound)`.
    hi: Option<Vec<u8>>,
}

impl Frame {
    fn node(&self) -> Result<Node<'_>> {
        Node::new(&self.data, self.page, self.offset)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorState {
    Unstarted,
    /// The top frame's `idx` is the entry last returned.
    At,
    Done,
}

/// Streams a bucket's entries in key order, holding one page per tree level.
///
/// Every page is validated as it is loaded, as strictly as the checker does for one page
/// (id in range, header id, branch/leaf type, every element's bounds, keys non-empty,
/// ascending and within the parent's separators), before any of its entries is used: a
/// reader never answers from a page that fails a check. A cycle cannot loop forever:
/// descent is capped at [`MAX_DEPTH`] levels and every descent step is to a distinct page.
pub struct Cursor<'db, R> {
    db: &'db Db<R>,
    root: BucketRoot,
    stack: Vec<Frame>,
    state: CursorState,
    /// Pages loaded so far: a well-formed walk loads each page once, so more loads than
    /// pages means a page is referenced twice (and a hostile DAG could loop for ages).
    loads: u64,
}

impl<'db, R: ReadAt> Cursor<'db, R> {
    fn load(&mut self, id: u64, lo: Option<Vec<u8>>, hi: Option<Vec<u8>>) -> Result<Frame> {
        self.loads += 1;
        if self.loads > self.db.meta.pgid.saturating_add(2 * MAX_DEPTH as u64) {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                "bucket tree visits more pages than the file has (a page is referenced twice)",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
            ));
        }
        if self.stack.iter().any(|f| f.page == Some(id)) {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                format!("page {id} is its own ancestor (cycle)"),
            ));
        }
        let p = self.db.page(id)?;
        let n = p.node()?;
        n.validate(lo.as_deref(), hi.as_deref())?;
        let (is_leaf, count) = (n.is_leaf(), n.count());
        Ok(Frame {
            page: Some(id),
            offset: p.offset,
            data: p.data,
            is_leaf,
            count,
            idx: 0,
            hi,
        })
    }

    fn root_frame(&mut self) -> Result<Frame> {
        match &self.root {
            BucketRoot::Page(id) => self.load(*id, None, None),
            BucketRoot::Inline { data, offset } => {
                let n = Node::new(data, None, *offset)?;
                if !n.is_leaf() {
                    return Err(FormatError::corrupt(
                        None,
                        Some(*offset),
                        format!(
                            "inline bucket page has type {}, want leaf",
                            page_type_name(n.flags())
                        ),
                    ));
                }
                n.validate(None, None)?;
                let count = n.count();
                Ok(Frame {
                    data: data.clone(),
                    page: None,
                    offset: *offset,
                    is_leaf: true,
                    count,
                    idx: 0,
                    hi: None,
                })
            }
        }
    }

    /// Child page id of branch frame `f` at its current index, and the separators that
    /// bound the child's keys.
    #[allow(clippy::type_complexity)]
    fn child_of(f: &Frame) -> Result<(u64, Option<Vec<u8>>, Option<Vec<u8>>)> {
        let n = f.node()?;
        let e = n.branch(f.idx)?;
        let hi = if f.idx + 1 < f.count {
            Some(n.branch(f.idx + 1)?.key.to_vec())
        } else {
            f.hi.clone()
        };
        Ok((e.pgid, Some(e.key.to_vec()), hi))
    }

    /// From the current top frame (a branch at some idx, or a leaf), descend to a leaf,
    /// taking the first (or last) child at every level below.
    fn descend(&mut self, rightmost: bool) -> Result<()> {
        loop {
            let Some(top) = self.stack.last() else {
                return Ok(());
            };
            if top.is_leaf {
                return Ok(());
            }
            if top.idx >= top.count {
                return Err(FormatError::corrupt(
                    top.page,
                    Some(top.offset),
                    "empty branch page",
                ));
            }
            let (child, lo, hi) = Self::child_of(top)?;
            let mut f = self.load(child, lo, hi)?;
            if rightmost {
                f.idx = f.count.saturating_sub(1);
            }
            self.stack.push(f);
        }
    }

    /// The entry the cursor is at (the one last returned), without moving.
    pub fn current(&self) -> Result<Option<Entry<'_>>> {
        if self.state != CursorState::At {
            return Ok(None);
        }
        self.here()
    }

    fn here(&self) -> Result<Option<Entry<'_>>> {
        let Some(f) = self.stack.last() else {
            return Ok(None);
        };
        if !f.is_leaf || f.idx >= f.count {
            return Ok(None);
        }
        let n = f.node()?;
        let e = n.leaf(f.idx)?;
        Ok(Some(Entry {
            key: e.key,
            value: e.value,
            flags: e.flags,
            page: f.page,
            offset: f.offset + e.key_offset as u64,
        }))
    }

    /// Move to the next leaf entry after the current top-of-stack position (which may be
    /// past the end of its leaf), climbing and descending as needed. Skips empty leaves.
    fn advance(&mut self) -> Result<bool> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(false);
            };
            if top.is_leaf && top.idx < top.count {
                return Ok(true);
            }
            // Leaf exhausted (or empty): pop until a branch has a next child.
            self.stack.pop();
            loop {
                let Some(b) = self.stack.last_mut() else {
                    return Ok(false);
                };
                b.idx += 1;
                if b.idx < b.count {
                    break;
                }
                self.stack.pop();
            }
            self.descend(false)?;
        }
    }

    /// The first entry.
    pub fn first(&mut self) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let f = self.root_frame()?;
        self.stack.push(f);
        self.descend(false)?;
        if self.advance()? {
            self.state = CursorState::At;
            self.here()
        } else {
            self.state = CursorState::Done;
            Ok(None)
        }
    }

    /// The last entry.
    pub fn last(&mut self) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let mut f = self.root_frame()?;
        f.idx = f.count.saturating_sub(1);
        self.stack.push(f);
        self.descend(true)?;
        // An empty rightmost leaf (possible after deletes before a rebalance) would need a
        // backwards step; bbolt rebalances on commit, so treat it as the end.
        let found = self.here()?.is_some();
        self.state = if found {
            CursorState::At
        } else {
            CursorState::Done
        };
        self.here()
    }

    /// Position at the first entry with key >= `key` and return it.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let f = self.root_frame()?;
        self.stack.push(f);
        while let Some(top) = self.stack.last_mut() {
            let n = Node::new(&top.data, top.page, top.offset)?;
            if top.is_leaf {
                top.idx = n.leaf_search(key)?;
                break;
            }
            // Last element whose key <= search key, or 0.
            top.idx = n.branch_search(key)?;
            let (child, lo, hi) = Self::child_of(top)?;
            let f = self.load(child, lo, hi)?;
            self.stack.push(f);
        }
        if self.advance()? {
            self.state = CursorState::At;
            self.here()
        } else {
            self.state = CursorState::Done;
            Ok(None)
        }
    }

    /// The next entry (the first one on the first call).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        match self.state {
            CursorState::Unstarted => self.first(),
            CursorState::Done => Ok(None),
            CursorState::At => {
                if let Some(top) = self.stack.last_mut() {
                    top.idx += 1;
                }
                if self.advance()? {
                    self.here()
                } else {
                    self.state = CursorState::Done;
                    Ok(None)
                }
            }
        }
    }
}
