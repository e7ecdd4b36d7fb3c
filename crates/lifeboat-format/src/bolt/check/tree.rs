//! The walk of a bucket's tree: branch and leaf elements, key order against the page and
//! the separators above, inline and nested buckets, and what the visitor and the hash see.

use super::*;

impl<R: ReadAt> Walker<'_, R> {
    /// Walk one bucket's tree.
    pub(super) fn walk(
        &mut self,
        root: BucketRoot,
        mode: Mode<'_>,
        from: From,
        visitor: &mut dyn EntryVisitor,
    ) {
        let top_name: Option<Vec<u8>> = match &mode {
            Mode::Top(n) => Some(n.to_vec()),
            _ => None,
        };
        let mut stats = BucketStats {
            name: top_name
                .as_deref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            ..BucketStats::default()
        };
        if let Some(n) = &top_name {
            visitor.bucket(n);
            self.hash = crc32c::crc32c_append(self.hash, n);
        }
        match root {
            BucketRoot::Inline { data, offset } => {
                self.walk_inline(&data, offset, &mode, &mut stats, visitor)
            }
            BucketRoot::Page(root) => {
                stats.depth = self.walk_pages(root, &mode, from, &mut stats, visitor);
            }
        }
        if top_name.is_some() {
            // etcdutl's hash continues with this bucket's content after its name.
            self.hash =
                crc32c::crc32c_combine(self.hash, stats.content_crc, stats.content_len as usize);
            self.report.total_entries += stats.entries;
            self.report.buckets.push(stats);
        }
    }

    /// An inline bucket: one leaf page image inside its parent's value.
    fn walk_inline(
        &mut self,
        data: &[u8],
        offset: u64,
        mode: &Mode<'_>,
        stats: &mut BucketStats,
        visitor: &mut dyn EntryVisitor,
    ) {
        stats.inline = true;
        if matches!(mode, Mode::Root) {
            self.problem(None, Some(offset), "the root bucket is inline");
        }
        match Node::new(data, None, offset) {
            Ok(n) if n.is_leaf() => {
                self.leaf(&n, mode, None, None, true, stats, visitor);
            }
            Ok(n) => self.problem(
                None,
                Some(offset),
                format!(
                    "inline bucket page has type {}, want leaf",
                    page_type_name(n.flags())
                ),
            ),
            Err(e) => self.push(e),
        }
    }

    /// A tree of pages, depth first with an explicit stack; returns its depth.
    fn walk_pages(
        &mut self,
        root: u64,
        mode: &Mode<'_>,
        from: From,
        stats: &mut BucketStats,
        visitor: &mut dyn EntryVisitor,
    ) -> u32 {
        let mut stack: Vec<BranchFrame> = vec![BranchFrame {
            children: vec![Child {
                pgid: root,
                lo: Vec::new(),
                hi: None,
                from,
            }],
            next: 0,
        }];
        let mut depth = 0u32;
        // A bbolt B+tree is balanced: every leaf of one bucket sits at one depth.
        let mut leaf_depth: Option<usize> = None;
        while let Some(top) = stack.last_mut() {
            let Some(c) = top.children.get(top.next) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let (pgid, lo, hi, cfrom) = (c.pgid, c.lo.clone(), c.hi.clone(), c.from);
            let level = stack.len(); // 1 = bucket root
            let Some((h, data)) = self.tree_page(pgid, level, cfrom) else {
                continue;
            };
            depth = depth.max(level as u32);
            stats.overflow_pages += u64::from(h.overflow);
            self.report.pages.overflow += u64::from(h.overflow);
            let node = match Node::new(&data, Some(pgid), pgid * self.ps()) {
                Ok(n) => n,
                Err(e) => {
                    self.push(e);
                    continue;
                }
            };
            if !self.count_fits(&node) {
                continue;
            }
            let lo = (!lo.is_empty()).then_some(lo);
            if node.is_leaf() {
                match leaf_depth {
                    None => leaf_depth = Some(level),
                    Some(d) if d != level => self.problem(
                        Some(pgid),
                        Some(pgid * self.ps()),
                        format!(
                            "leaf page {pgid} at depth {level}, but this bucket's first leaf is at depth {d} (a leaf where a branch belongs, or the reverse)"
                        ),
                    ),
                    Some(_) => {}
                }
                stats.leaf_pages += 1;
                self.report.pages.leaf += 1;
                let is_root = level == 1;
                self.leaf(
                    &node,
                    mode,
                    lo.as_deref(),
                    hi.as_deref(),
                    is_root,
                    stats,
                    visitor,
                );
            } else {
                stats.branch_pages += 1;
                self.report.pages.branch += 1;
                let children = self.branch(&node, lo.as_deref(), hi.as_deref());
                if !children.is_empty() {
                    stack.push(BranchFrame { children, next: 0 });
                }
            }
        }
        depth
    }

    /// Read a page of a tree at `level`: depth, header, type and span checked and the span
    /// marked reached. None (after reporting) when it must not be descended into.
    fn tree_page(&mut self, pgid: u64, level: usize, from: From) -> Option<(PageHeader, Vec<u8>)> {
        if level > MAX_DEPTH {
            self.problem(
                Some(pgid),
                Some(pgid.saturating_mul(self.ps())),
                format!("tree deeper than {MAX_DEPTH} levels"),
            );
            return None;
        }
        let h = self.read_header(pgid, from)?;
        if h.flags != flags::BRANCH && h.flags != flags::LEAF {
            // Still account the span so it is not reported as free/unreachable twice.
            self.mark(pgid, h.overflow, from);
            self.problem(
                Some(pgid),
                Some(pgid * self.ps()),
                format!(
                    "page {pgid}: invalid type: {} (a tree page must be branch or leaf; referenced from page {})",
                    page_type_name(h.flags),
                    from.page.map(|p| p.to_string()).unwrap_or("?".into())
                ),
            );
            return None;
        }
        if !self.mark(pgid, h.overflow, from) {
            return None;
        }
        let data = self.read_span(pgid, h.overflow)?;
        Some((h, data))
    }

    /// Element count fits in the page span.
    pub(super) fn count_fits(&mut self, n: &Node<'_>) -> bool {
        let need = PAGE_HEADER_SIZE + ELEM_SIZE * n.count();
        if need > n.data().len() {
            self.problem(
                n.page(),
                Some(n.offset()),
                format!(
                    "{} page: {} elements need {need} bytes, the page has {}",
                    page_type_name(n.flags()),
                    n.count(),
                    n.data().len()
                ),
            );
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn key_problems(
        &mut self,
        n: &Node<'_>,
        i: usize,
        key: &[u8],
        key_off: u64,
        prev: Option<&[u8]>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) {
        let kind = page_type_name(n.flags());
        if key.is_empty() {
            self.problem(
                n.page(),
                Some(key_off),
                format!("{kind} element {i}: zero-length key"),
            );
        }
        if key.len() > MAX_KEY_SIZE {
            self.problem(
                n.page(),
                Some(key_off),
                format!(
                    "{kind} element {i}: key of {} bytes exceeds {MAX_KEY_SIZE}",
                    key.len()
                ),
            );
        }
        if let Some(p) = prev {
            if key <= p {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is not greater than the previous key {}",
                        show(key),
                        show(p)
                    ),
                );
            }
        }
        if let Some(lo) = lo {
            if key < lo {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is below the separator {} in the parent branch",
                        show(key),
                        show(lo)
                    ),
                );
            }
        }
        if let Some(hi) = hi {
            if key >= hi {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is not below the next separator {} in an ancestor branch",
                        show(key),
                        show(hi)
                    ),
                );
            }
        }
    }

    /// Check a branch page's elements; returns the children to visit, in order.
    pub(super) fn branch(
        &mut self,
        n: &Node<'_>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Vec<Child> {
        if n.count() == 0 {
            self.problem(n.page(), Some(n.offset()), "branch page with no elements");
            return Vec::new();
        }
        let mut elems: Vec<(Vec<u8>, u64, u64)> = Vec::with_capacity(n.count());
        let mut prev: Option<Vec<u8>> = None;
        for i in 0..n.count() {
            let e = match n.branch(i) {
                Ok(e) => e,
                Err(e) => {
                    self.push(e);
                    continue;
                }
            };
            let key_off = n.offset() + e.key_offset as u64;
            self.key_problems(n, i, e.key, key_off, prev.as_deref(), lo, hi);
            if prev.as_deref().is_some_and(|p| e.key <= p) {
                // Out of order: its range would be meaningless; skip the child.
                continue;
            }
            prev = Some(e.key.to_vec());
            let elem_off = n.offset() + (PAGE_HEADER_SIZE + ELEM_SIZE * i) as u64;
            elems.push((e.key.to_vec(), e.pgid, elem_off));
        }
        let mut out = Vec::with_capacity(elems.len());
        let mut it = elems.into_iter().peekable();
        while let Some((key, pgid, off)) = it.next() {
            let next_hi = it.peek().map(|(k, _, _)| k.clone());
            let child_hi = match next_hi {
                Some(k) => Some(k),
                None => hi.map(|h| h.to_vec()),
            };
            out.push(Child {
                pgid,
                lo: key,
                hi: child_hi,
                from: From {
                    page: n.page(),
                    offset: Some(off + 8),
                },
            });
        }
        out
    }

    /// Check a leaf (page or inline) and hand its entries on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn leaf(
        &mut self,
        n: &Node<'_>,
        mode: &Mode<'_>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        is_bucket_root: bool,
        stats: &mut BucketStats,
        visitor: &mut dyn EntryVisitor,
    ) {
        if !self.count_fits(n) {
            return;
        }
        // bbolt merges underfull nodes on commit; an empty non-root leaf is odd but
        // harmless, so it is not reported.
        let _ = is_bucket_root;
        let mut prev: Option<&[u8]> = None;
        for i in 0..n.count() {
            let e = match n.leaf(i) {
                Ok(e) => e,
                Err(e) => {
                    self.push(e);
                    continue;
                }
            };
            let key_off = n.offset() + e.key_offset as u64;
            self.key_problems(n, i, e.key, key_off, prev, lo, hi);
            if prev.is_none_or(|p| e.key > p) {
                prev = Some(e.key);
            }
            if e.value.len() > MAX_VALUE_SIZE {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "leaf element {i}: value of {} bytes exceeds the limit",
                        e.value.len()
                    ),
                );
            }
            if e.flags & !BUCKET_LEAF_FLAG != 0 {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!("leaf element {i}: unknown flags {:#x}", e.flags),
                );
            }
            let is_bucket = e.flags & BUCKET_LEAF_FLAG != 0;
            let val_off = key_off + e.key.len() as u64;
            match mode {
                Mode::Root => {
                    if !is_bucket {
                        self.problem(
                            n.page(),
                            Some(key_off),
                            format!("top-level entry {} is not a bucket", show(e.key)),
                        );
                        continue;
                    }
                    match self.bucket_root(e.value, n, val_off) {
                        Some(r) => self.walk(
                            r,
                            Mode::Top(e.key),
                            From {
                                page: n.page(),
                                offset: Some(val_off),
                            },
                            visitor,
                        ),
                        None => {
                            // Still a bucket as far as the hash is concerned.
                            self.hash = crc32c::crc32c_append(self.hash, e.key);
                        }
                    }
                }
                Mode::Top(name) => {
                    stats.entries += 1;
                    stats.key_bytes += e.key.len() as u64;
                    stats.content_crc = crc32c::crc32c_append(stats.content_crc, e.key);
                    stats.content_len += e.key.len() as u64;
                    if is_bucket {
                        self.nested(e.value, n, val_off);
                    } else {
                        stats.value_bytes += e.value.len() as u64;
                        stats.content_crc = crc32c::crc32c_append(stats.content_crc, e.value);
                        stats.content_len += e.value.len() as u64;
                    }
                    visitor.entry(&VisitEntry {
                        bucket: name,
                        key: e.key,
                        value: e.value,
                        flags: e.flags,
                        page: n.page(),
                        offset: key_off,
                    });
                }
                Mode::Nested => {
                    if is_bucket {
                        self.nested(e.value, n, val_off);
                    }
                }
            }
        }
    }

    pub(super) fn nested(&mut self, v: &[u8], n: &Node<'_>, val_off: u64) {
        if n.page().is_none() {
            self.problem(
                None,
                Some(val_off),
                "inline bucket contains a sub-bucket (bbolt never inlines those)",
            );
            return;
        }
        if let Some(r) = self.bucket_root(v, n, val_off) {
            self.pending.push((
                r,
                From {
                    page: n.page(),
                    offset: Some(val_off),
                },
            ));
        }
    }

    /// Decode a bucket value; reports and returns None when unusable.
    pub(super) fn bucket_root(
        &mut self,
        v: &[u8],
        n: &Node<'_>,
        val_off: u64,
    ) -> Option<BucketRoot> {
        match BucketRoot::parse(v, (n.page(), val_off)) {
            Ok(BucketRoot::Page(p)) => {
                if v.len() != BUCKET_HEADER_SIZE {
                    self.problem(
                        n.page(),
                        Some(val_off),
                        format!(
                            "bucket value with root page {p} is {} bytes, want {BUCKET_HEADER_SIZE}",
                            v.len()
                        ),
                    );
                }
                Some(BucketRoot::Page(p))
            }
            Ok(r) => Some(r),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }
}
