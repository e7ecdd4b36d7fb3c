//! The page layout shared by the reader and the coming writer: the page header, page
//! types, the element sizes and the bucket value header. Element access is in `node`.

use serde::Serialize;

use super::{Node, Result};

/// Size of a page header.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of a branch or leaf element.
pub const ELEM_SIZE: usize = 16;
/// Size of a bucket header (`root`, `sequence`) at the start of a bucket value.
pub const BUCKET_HEADER_SIZE: usize = 16;
/// Leaf element flag of a sub-bucket entry.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// Page header flags.
pub mod flags {
    pub const BRANCH: u16 = 0x01;
    pub const LEAF: u16 = 0x02;
    pub const META: u16 = 0x04;
    pub const FREELIST: u16 = 0x10;
}

/// Human name of a page type, as bbolt prints it.
pub fn page_type_name(f: u16) -> String {
    match f {
        flags::BRANCH => "branch".into(),
        flags::LEAF => "leaf".into(),
        flags::META => "meta".into(),
        flags::FREELIST => "freelist".into(),
        other => format!("unknown<{other:02x}>"),
    }
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}
pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

/// The 16-byte header at the start of every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn parse(b: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            id: le_u64(b, 0)?,
            flags: le_u16(b, 8)?,
            count: le_u16(b, 10)?,
            overflow: le_u32(b, 12)?,
        })
    }
}

/// A page read from the source, with its overflow pages.
#[derive(Debug, Clone)]
pub struct Page {
    pub id: u64,
    /// Byte offset of the page.
    pub offset: u64,
    pub header: PageHeader,
    /// The whole span: header, elements, data, overflow pages.
    pub data: Vec<u8>,
}

impl Page {
    /// View the page as a branch or leaf node.
    pub fn node(&self) -> Result<Node<'_>> {
        Node::new(&self.data, Some(self.id), self.offset)
    }
}
