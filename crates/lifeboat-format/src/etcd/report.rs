//! The full offline report of an etcd database (`lifeboat inspect`): one pass that checks
//! the bbolt structure, computes etcdutl's hash and hashkv, and gathers what fills the file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use super::hashkv::{fingerprint, HashKv, PrePass};
use super::{buckets, summary_of, KeyValueRef, Lease, RevKey, Summary};
use crate::bolt::{
    check_db, BucketStats, CheckOptions, Db, EntryVisitor, PageCounts, Problem, VisitEntry,
};
use crate::io::ReadAt;

use super::k8s::K8sState;
pub use super::k8s::{k8s_split, K8sSummary, PrefixUsage};

/// What to compute besides the basics.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// hashkv revision (0: the snapshot's revision).
    pub hashkv_rev: i64,
    /// Kubernetes summary (keys and bytes per `/registry/<resource>`).
    pub k8s: bool,
    /// With `k8s`: also per namespace.
    pub by_namespace: bool,
    /// How many largest keys/objects to list.
    pub top: usize,
    pub max_problems: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            hashkv_rev: 0,
            k8s: false,
            by_namespace: false,
            top: 10,
            max_problems: 1000,
        }
    }
}

/// A large value in bucket `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LargeKey {
    /// The user key (lossy UTF-8).
    pub key: String,
    /// Main revision of the entry.
    pub revision: i64,
    /// Value bytes.
    pub size: u64,
}

/// The `inspect` report. Field names promised in docs/json.md are kept; more are added.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// What every backup records too ([`Summary`]: revision, compaction, raft fields,
    /// members, cluster version, alarms, auth, sizes): top-level fields in JSON.
    #[serde(flatten)]
    pub summary: Summary,
    /// Entries in all buckets (etcdutl 3.5's totalKey).
    pub total_entries: u64,
    /// User keys whose latest revision is a put.
    pub live_keys: u64,
    /// Entries in bucket `key` (all revisions).
    pub key_revisions: u64,
    /// Delete markers in bucket `key`.
    pub tombstones: u64,
    pub leases: u64,
    /// CRC-32C `etcdutl snapshot status` prints as its hash.
    pub etcdutl_hash: u32,
    /// hashkv at `hashkv_revision` (null when etcd would refuse that revision), once etcd
    /// has finished the compaction scheduled in the database.
    pub hashkv: Option<u32>,
    pub hashkv_revision: i64,
    /// What etcd answers while it has not finished that compaction, when it differs (no
    /// key is live at `hashkv_revision`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_while_compacting: Option<u32>,
    /// Every answer (for callers that predict what a restore answers).
    #[serde(skip)]
    pub hashkv_answers: Option<super::hashkv::Answers>,
    /// Why hashkv is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_error: Option<String>,
    /// Reachable pages × page size.
    pub in_use_size: u64,
    /// Free pages × page size: what a defrag would give back.
    pub free_size: u64,
    pub pages: PageCounts,
    pub current_meta: usize,
    pub why_current_meta: String,
    pub buckets: Vec<BucketStats>,
    pub largest_keys: Vec<LargeKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sSummary>,
    pub ok: bool,
    pub problems: Vec<Problem>,
    /// Problems found beyond the ones listed.
    pub problems_not_shown: u64,
    /// False when no meta page was usable: every other field is then empty.
    pub opened: bool,
}

/// Keeps the N largest (size, key, rev).
pub(super) struct TopN {
    pub(super) n: usize,
    heap: BinaryHeap<Reverse<(u64, Vec<u8>, i64)>>,
}

impl TopN {
    pub(super) fn new(n: usize) -> Self {
        TopN {
            n,
            heap: BinaryHeap::new(),
        }
    }
    pub(super) fn offer(&mut self, size: u64, key: &[u8], rev: i64) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Reverse((size, key.to_vec(), rev)));
        } else if self.heap.peek().is_some_and(|Reverse((s, _, _))| size > *s) {
            self.heap.pop();
            self.heap.push(Reverse((size, key.to_vec(), rev)));
        }
    }
    pub(super) fn into_sorted(self) -> Vec<(u64, Vec<u8>, i64)> {
        let mut v: Vec<_> = self.heap.into_iter().map(|Reverse(x)| x).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        v
    }
}

/// The hashkv computation's pre-pass, ready for the walk to feed (or why there is none:
/// a refused revision, or a `key` bucket that cannot be read, which is also a problem).
fn prepare_hashkv<R: ReadAt>(
    db: &Db<R>,
    rev: i64,
    s: &Summary,
    prepass: Option<PrePass>,
    problems: &mut Vec<Problem>,
) -> (Option<HashKv>, Option<String>) {
    match HashKv::prepare(
        db,
        rev,
        s.revision,
        s.finished_compact_revision,
        s.scheduled_compact_revision,
        prepass,
    ) {
        Ok(Ok(mut h)) => {
            h.enable_passthrough();
            (Some(h), None)
        }
        Ok(Err(refused)) => (None, Some(refused.to_string())),
        Err(e) => {
            problems.push(e.to_problem());
            (None, Some(format!("cannot read bucket key: {e}")))
        }
    }
}

/// The `n` largest values, one entry each.
fn largest(candidates: TopN, n: usize) -> Vec<LargeKey> {
    let mut top = TopN::new(n);
    for (s, k, r) in candidates.into_sorted() {
        top.offer(s, &k, r);
    }
    top.into_sorted()
        .into_iter()
        .map(|(size, key, revision)| LargeKey {
            key: String::from_utf8_lossy(&key).into_owned(),
            revision,
            size,
        })
        .collect()
}

/// The visitor that turns the check's walk into the etcd report.
struct Visitor {
    hashkv: Option<HashKv>,
    /// Entries with main <= this are the survivors of a finished compaction.
    unique_upto: i64,
    /// Live keys by counting generations (exact when nothing was compacted).
    live: i64,
    /// Puts at or below `unique_upto` whose key has no later revision.
    live_compacted: u64,
    key_revisions: u64,
    tombstones: u64,
    leases: u64,
    top: TopN,
    k8s: Option<K8sState>,
    problems: Vec<Problem>,
    max_problems: usize,
    dropped: u64,
}

impl Visitor {
    fn problem(&mut self, e: &VisitEntry<'_>, msg: String) {
        if self.problems.len() < self.max_problems {
            self.problems
                .push(Problem::new(e.page, Some(e.offset), msg));
        } else {
            self.dropped += 1;
        }
    }

    fn key_entry(&mut self, e: &VisitEntry<'_>) {
        self.key_revisions += 1;
        let Some(rk) = RevKey::parse(e.key) else {
            if let Some(h) = &mut self.hashkv {
                h.feed(e.key, e.value);
            }
            self.problem(
                e,
                format!(
                    "bucket key: key {} is not a revision",
                    crate::bolt::check::show(e.key)
                ),
            );
            return;
        };
        let decoded = KeyValueRef::decode(e.value);
        // One fingerprint per entry at most, shared by hashkv and the live-key count.
        let fp = match (&decoded, &self.hashkv) {
            (Ok(kv), Some(h))
                if h.wants_fingerprint(&rk)
                    || (!rk.tombstone && rk.rev.main <= self.unique_upto) =>
            {
                Some(fingerprint(kv.key))
            }
            _ => None,
        };
        if let Some(h) = &mut self.hashkv {
            h.feed_parsed(e.key, e.value, rk, fp);
        }
        let kv = match decoded {
            Ok(kv) => kv,
            Err(err) => {
                self.problem(
                    e,
                    format!(
                        "bucket key: revision {}/{}: value is not an mvccpb.KeyValue: {err}",
                        rk.rev.main, rk.rev.sub
                    ),
                );
                return;
            }
        };
        if e.value.is_empty() {
            // 3.5.10+ `restore --bump-revision --mark-compacted` leaves an empty marker.
            return;
        }
        if kv.key.is_empty() {
            self.problem(
                e,
                format!(
                    "bucket key: revision {}/{}: KeyValue without a key",
                    rk.rev.main, rk.rev.sub
                ),
            );
            return;
        }
        if !rk.tombstone && kv.mod_revision != rk.rev.main {
            self.problem(
                e,
                format!(
                    "bucket key: revision {}/{}: mod_revision {} differs from the revision",
                    rk.rev.main, rk.rev.sub, kv.mod_revision
                ),
            );
        }
        if rk.tombstone {
            self.tombstones += 1;
            if rk.rev.main > self.unique_upto {
                self.live -= 1;
            }
        } else {
            if kv.version == 1 || rk.rev.main <= self.unique_upto {
                self.live += 1;
            }
            if rk.rev.main <= self.unique_upto
                && self
                    .hashkv
                    .as_ref()
                    .zip(fp)
                    .is_some_and(|(h, fp)| !h.seen_after_fp(fp))
            {
                self.live_compacted += 1;
            }
            self.top.offer(kv.value.len() as u64, kv.key, rk.rev.main);
        }
        if let Some(k) = &mut self.k8s {
            let entry_len = (e.key.len() + e.value.len()) as u64;
            if kv.key.starts_with(b"/registry/") {
                k.feed(
                    kv.key,
                    rk.rev.main,
                    rk.tombstone,
                    kv.value.len() as u64,
                    entry_len,
                );
            }
        }
    }
}

impl EntryVisitor for Visitor {
    fn entry(&mut self, e: &VisitEntry<'_>) {
        match e.bucket {
            buckets::KEY => self.key_entry(e),
            buckets::LEASE => {
                self.leases += 1;
                if let Err(err) = Lease::decode(e.value) {
                    self.problem(
                        e,
                        format!("bucket lease: value is not a leasepb.Lease: {err}"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Build the report of an opened database in one pass (plus the short hashkv pre-pass).
pub fn report<R: ReadAt>(db: &Db<R>, opts: &ReportOptions) -> Report {
    report_visiting(db, opts, &mut ())
}

/// [`report`], with `extra` shown every entry of the same walk (after the report's own
/// visitor), so a caller that needs something more from the entries does not walk the
/// database a second time.
pub fn report_visiting<R: ReadAt>(
    db: &Db<R>,
    opts: &ReportOptions,
    extra: &mut dyn EntryVisitor,
) -> Report {
    report_visiting_prepared(db, opts, extra, None)
}

/// [`report_visiting`], its hashkv's pre-pass continuing `prepass` where that fits
/// ([`HashKv::prepare_continuing`]).
pub fn report_visiting_prepared<R: ReadAt>(
    db: &Db<R>,
    opts: &ReportOptions,
    extra: &mut dyn EntryVisitor,
    prepass: Option<PrePass>,
) -> Report {
    let mut problems = Vec::new();
    let summary: Option<Summary> = match summary_of(db) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(e.to_problem());
            None
        }
    };
    let s = summary.clone().unwrap_or_else(|| Summary {
        page_size: db.page_size,
        db_size: db.db_size(),
        txid: db.meta.txid,
        ..Summary::default()
    });
    let (hashkv, hashkv_error) = match &summary {
        Some(s) => prepare_hashkv(db, opts.hashkv_rev, s, prepass, &mut problems),
        None => (None, Some("the database could not be summarised".into())),
    };
    let mut v = Visitor {
        hashkv,
        unique_upto: s
            .finished_compact_revision
            .unwrap_or(-1)
            .min(s.compact_revision.unwrap_or(-1)),
        live: 0,
        live_compacted: 0,
        key_revisions: 0,
        tombstones: 0,
        leases: 0,
        top: TopN::new(opts.top),
        k8s: opts.k8s.then(|| K8sState::new(opts.by_namespace, opts.top)),
        problems: vec![],
        max_problems: opts.max_problems,
        dropped: 0,
    };
    let chk = check_db(
        db,
        &CheckOptions {
            max_problems: opts.max_problems,
        },
        &mut (&mut v, extra),
    );
    problems.extend(chk.problems);
    problems.extend(v.problems);
    let mut dropped = chk.problems_not_shown + v.dropped;
    if problems.len() > opts.max_problems {
        dropped += (problems.len() - opts.max_problems) as u64;
        problems.truncate(opts.max_problems);
    }
    let key_content = chk
        .buckets
        .iter()
        .find(|b| b.name.as_bytes() == buckets::KEY)
        .map(|b| (b.content_crc, b.content_len))
        .unwrap_or((0, 0));
    let (hashkv_answers, hashkv_revision) = match &v.hashkv {
        Some(h) => (
            Some(h.answers_with_content(key_content.0, key_content.1)),
            h.rev,
        ),
        None => (None, opts.hashkv_rev),
    };
    let largest_keys = largest(v.top, opts.top);
    // With a compaction point, count from the pre-pass index (exact even while a
    // compaction is half done); without one, every generation's first put is present.
    let live_keys = match &v.hashkv {
        Some(h) if h.indexed() => h.live_after() + v.live_compacted,
        _ => v.live.max(0) as u64,
    };
    let mut k8s = v.k8s.map(K8sState::finish);
    if let Some(k) = &mut k8s {
        let in_registry: u64 = k.resources.iter().map(|r| r.keys).sum();
        k.other_keys = live_keys.saturating_sub(in_registry);
    }
    let ps = u64::from(db.page_size);
    let ok = problems.is_empty() && dropped == 0;
    Report {
        summary: s,
        total_entries: chk.total_entries,
        live_keys,
        key_revisions: v.key_revisions,
        tombstones: v.tombstones,
        leases: v.leases,
        etcdutl_hash: chk.etcdutl_hash,
        hashkv: hashkv_answers.map(|a| a.best()),
        hashkv_revision,
        hashkv_while_compacting: hashkv_answers.and_then(|a| a.while_compacting()),
        hashkv_answers,
        hashkv_error,
        in_use_size: chk.pages.in_use.saturating_mul(ps),
        free_size: chk.pages.free.saturating_mul(ps),
        pages: chk.pages,
        current_meta: db.current,
        why_current_meta: db.why_current.clone(),
        buckets: chk.buckets,
        largest_keys,
        k8s,
        ok,
        problems,
        problems_not_shown: dropped,
        opened: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_of_built_db() {
        let img = crate::bolt::build::etcd_like(4096, 300, 100);
        let db = Db::open(&img[..]).unwrap();
        let r = report(
            &db,
            &ReportOptions {
                k8s: true,
                ..ReportOptions::default()
            },
        );
        assert!(r.ok, "{:?}", r.problems);
        assert_eq!(r.summary.revision, 301);
        assert_eq!(r.live_keys, 300);
        assert_eq!(r.key_revisions, 300);
        assert_eq!(r.total_entries, 300 + 1 + 1 + 1 + 3);
        // The shortcut (no compaction: hashkv from the bucket's content CRC) agrees with
        // the entry-by-entry computation.
        let (slow, _) = crate::etcd::hashkv::hashkv(&db, 0, None).unwrap().unwrap();
        assert_eq!(r.hashkv, Some(slow));
        let at = ReportOptions {
            hashkv_rev: 100,
            ..ReportOptions::default()
        };
        let (slow100, _) = crate::etcd::hashkv::hashkv(&db, 100, None)
            .unwrap()
            .unwrap();
        assert_eq!(report(&db, &at).hashkv, Some(slow100));
        assert_ne!(slow, slow100);
        assert_eq!(r.largest_keys.len(), 10);
        assert_eq!(r.k8s.unwrap().other_keys, 300);
    }

    /// The embedded summary's fields are top-level JSON fields, as docs/json.md lists them;
    /// removed member ids are hex strings, as member ids are everywhere else.
    #[test]
    fn json_has_the_summary_fields_at_the_top_level() {
        let img = crate::bolt::build::etcd_like(4096, 3, 10);
        let db = Db::open(&img[..]).unwrap();
        let mut r = report(&db, &ReportOptions::default());
        r.summary.removed_members = vec![0x8e9e05c52164694d, 0xff];
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("summary").is_none(), "{v}");
        assert_eq!(v["revision"], 4);
        assert_eq!(v["page_size"], 4096);
        assert_eq!(v["db_size"], r.summary.db_size);
        assert_eq!(v["members"][0]["id"], "ad3dd0882f6c4e00");
        assert_eq!(
            v["removed_members"],
            serde_json::json!(["8e9e05c52164694d", "ff"])
        );
        assert_eq!(v["live_keys"], 3);
    }
}
