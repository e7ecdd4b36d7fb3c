//! The checks of pages as pages: both metas, page headers and spans (range, bounds,
//! header id, multiple references) and the persisted freelist.

use super::*;

impl<R: ReadAt> Walker<'_, R> {
    pub(super) fn check_metas(&mut self) {
        let size = self.db.source().size();
        for (i, slot) in self.db.metas.iter().enumerate() {
            let page = Some(i as u64);
            let off = Some(slot.offset);
            if let Some(f) = &slot.fault {
                let msg = format!("meta {i}: {f}");
                self.problem(page, off, msg);
                continue;
            }
            if let Some(h) = slot.header {
                if h.id != i as u64 || h.flags != flags::META || h.count != 0 || h.overflow != 0 {
                    self.problem(
                        page,
                        off,
                        format!(
                            "meta {i}: page header id {} flags {:#x} count {} overflow {}, want id {i} flags 0x4 count 0 overflow 0",
                            h.id, h.flags, h.count, h.overflow
                        ),
                    );
                }
            }
            if let Some(m) = slot.meta {
                if m.page_size != self.db.page_size {
                    self.problem(
                        page,
                        off,
                        format!(
                            "meta {i}: page size {} differs from the current meta's {}",
                            m.page_size, self.db.page_size
                        ),
                    );
                }
                for p in crate::bolt::meta::meta_sanity(i, &m, slot.offset, size) {
                    self.problem(p.page, p.offset, p.message);
                }
            }
            if slot.offset != i as u64 * self.ps() {
                self.problem(
                    page,
                    off,
                    format!(
                        "meta {i} found at offset {} (page size {})",
                        slot.offset,
                        self.ps()
                    ),
                );
            }
        }
    }

    /// Read the header of page `id`, checking id range, file bounds and header id.
    pub(super) fn read_header(&mut self, id: u64, from: From) -> Option<PageHeader> {
        if id >= self.hwm {
            self.problem(
                from.page,
                from.offset,
                format!(
                    "reference to page {id}: out of bounds (high-water mark {})",
                    self.hwm
                ),
            );
            return None;
        }
        if id >= self.present {
            self.problem(
                from.page,
                from.offset,
                format!(
                    "reference to page {id}: past the end of the data ({} bytes, {} whole pages)",
                    self.db.source().size(),
                    self.present
                ),
            );
            return None;
        }
        let off = id * self.ps();
        let mut hb = [0u8; PAGE_HEADER_SIZE];
        if let Err(e) = self.read_at(off, &mut hb) {
            self.push(e);
            return None;
        }
        let h = PageHeader::parse(&hb)?;
        if h.id != id {
            self.problem(
                Some(id),
                Some(off),
                format!(
                    "page {id} has id {} in its header (referenced from page {})",
                    h.id,
                    from.page.map(|p| p.to_string()).unwrap_or("?".into())
                ),
            );
            return None;
        }
        Some(h)
    }

    /// Mark `id ..= id+overflow` reachable. Returns false (after reporting) when the span is
    /// out of range or any page in it was already reached: the caller must not descend.
    pub(super) fn mark(&mut self, id: u64, overflow: u32, from: From) -> bool {
        let last = id.saturating_add(u64::from(overflow));
        if last >= self.hwm || last >= self.present {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "page {id}: overflow {overflow} runs to page {last}, past {} (high-water mark {}, {} pages in the data)",
                    if last >= self.hwm { "the high-water mark" } else { "the end of the data" },
                    self.hwm,
                    self.present
                ),
            );
            return false;
        }
        let mut ok = true;
        for p in id..=last {
            if self.reached.set(p) {
                self.problem(
                    Some(p),
                    Some(p * self.ps()),
                    format!(
                        "page {p}: multiple references (again from page {} offset {})",
                        from.page.map(|p| p.to_string()).unwrap_or("?".into()),
                        from.offset.map(|p| p.to_string()).unwrap_or("?".into())
                    ),
                );
                ok = false;
            } else if self.freed.as_ref().is_some_and(|f| f.get(p)) {
                self.problem(
                    Some(p),
                    Some(p * self.ps()),
                    format!("page {p}: reachable freed"),
                );
            }
        }
        ok
    }

    /// Read a whole reachable page span (header already validated).
    pub(super) fn read_span(&mut self, id: u64, overflow: u32) -> Option<Vec<u8>> {
        let len = (u64::from(overflow) + 1) * self.ps();
        let len = usize::try_from(len).ok()?;
        let mut buf = vec![0u8; len];
        if let Err(e) = self.read_at(id * self.ps(), &mut buf) {
            self.push(e);
            return None;
        }
        Some(buf)
    }

    pub(super) fn check_freelist(&mut self) {
        let id = self.db.meta.freelist;
        let from = From {
            page: Some(self.db.current as u64),
            offset: Some(self.db.current as u64 * self.ps() + 48),
        };
        let Some(h) = self.read_header(id, from) else {
            return;
        };
        if h.flags != flags::FREELIST {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "freelist page {id} has type {}, want freelist",
                    page_type_name(h.flags)
                ),
            );
            return;
        }
        if !self.mark(id, h.overflow, from) {
            return;
        }
        self.report.pages.freelist = u64::from(h.overflow) + 1;
        let Some(data) = self.read_span(id, h.overflow) else {
            return;
        };
        let (n, start) = if h.count == 0xFFFF {
            (le_u64(&data, 16).unwrap_or(u64::MAX), 24usize)
        } else {
            (u64::from(h.count), 16usize)
        };
        let fits = (data.len().saturating_sub(start) / 8) as u64;
        if n > fits {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "freelist count {n} does not fit in its {} pages",
                    h.overflow + 1
                ),
            );
            return;
        }
        let mut freed = Bitmap::new(self.present);
        let mut prev: Option<u64> = None;
        for i in 0..n as usize {
            let at = start + 8 * i;
            let Some(p) = le_u64(&data, at) else { break };
            let off = Some(id * self.ps() + at as u64);
            if p < 2 || p >= self.hwm {
                self.problem(
                    Some(id),
                    off,
                    format!("freelist entry {i}: page {p} outside [2, {})", self.hwm),
                );
                continue;
            }
            if prev.is_some_and(|q| p < q) {
                self.problem(Some(id), off, format!("freelist entry {i}: ids not sorted"));
            }
            prev = Some(p);
            if freed.set(p) {
                self.problem(Some(id), off, format!("page {p}: already freed"));
            }
        }
        self.freed = Some(freed);
    }
}
