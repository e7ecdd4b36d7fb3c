//! `member/snap/db` as check-member needs it, through the bbolt reader of `format::bolt` and
//! `format::etcd`: can bbolt open it (meta pages, formats §1.2), and the raft position and
//! membership etcd stored in it (formats §2.2, §7.4).

use serde::Serialize;

use crate::format::{bolt, etcd};
use crate::io::ReadAt;

#[derive(Debug, Clone, Serialize)]
pub struct DbCheck {
    /// File size.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Transaction id of the meta bbolt would use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txid: Option<u64>,
    /// `meta/consistent_index`: the last raft index applied to this db.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_index: Option<u64>,
    /// `meta/term`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Main revision of the newest key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Member ids (hex) in bucket `members`.
    pub members: Vec<crate::format::etcd::MemberId>,
    /// Raised alarms, e.g. `NOSPACE`.
    pub alarms: Vec<String>,
    /// Problems that stop bbolt or etcd from using the file.
    pub fatal: Vec<String>,
    /// Problems bbolt works around (one bad meta page ...).
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub member_ids: Vec<u64>,
    /// (id, name, peer URLs) from bucket `members`.
    #[serde(skip)]
    pub member_infos: Vec<(u64, String, Vec<String>)>,
    /// Every page was checked (not only the metas and etcd's small buckets).
    pub walked: bool,
}

/// Open the db like bbolt and read etcd's summary of it; with `walk`, also run the strict
/// structural check over every page (`format::bolt::check`).
pub fn check(src: &dyn ReadAt, walk: bool) -> DbCheck {
    let mut out = DbCheck {
        size: src.size(),
        page_size: None,
        txid: None,
        consistent_index: None,
        term: None,
        revision: None,
        members: Vec::new(),
        alarms: Vec::new(),
        fatal: Vec::new(),
        warnings: Vec::new(),
        member_ids: Vec::new(),
        member_infos: Vec::new(),
        walked: false,
    };
    let db = match bolt::Db::open(src) {
        Ok(db) => db,
        Err(e) => {
            out.fatal.push(format!("bbolt cannot open it: {e}"));
            return out;
        }
    };
    out.page_size = Some(db.page_size);
    out.txid = Some(db.meta.txid);
    for p in bolt::check_meta(src) {
        out.warnings.push(p.message);
    }
    if walk {
        let r = bolt::check::check_db(
            &db,
            &bolt::check::CheckOptions { max_problems: 20 },
            &mut (),
        );
        for p in &r.problems {
            let at = match (p.page, p.offset) {
                (Some(pg), _) => format!("page {pg}: "),
                (None, Some(o)) => format!("offset {o}: "),
                _ => String::new(),
            };
            out.fatal.push(format!("{at}{}", p.message));
        }
        if r.problems_not_shown > 0 {
            out.fatal.push(format!(
                "... and {} more page problems",
                r.problems_not_shown
            ));
        }
        out.walked = true;
    }
    match etcd::summary_of(&db) {
        Ok(s) => {
            out.consistent_index = Some(s.consistent_index);
            out.term = Some(s.term);
            out.revision = Some(s.revision);
            out.member_ids = s.members.iter().map(|m| m.id).collect();
            out.member_infos = s
                .members
                .iter()
                .map(|m| (m.id, m.name.clone(), m.peer_urls.clone()))
                .collect();
            out.members = s
                .members
                .iter()
                .map(|m| crate::format::etcd::MemberId(m.id))
                .collect();
            out.alarms = s
                .alarms
                .iter()
                .map(|a| format!("{} on {:x}", a.alarm, a.member_id))
                .collect();
        }
        Err(e) => out
            .fatal
            .push(format!("etcd's buckets do not read back: {e}")),
    }
    out
}
