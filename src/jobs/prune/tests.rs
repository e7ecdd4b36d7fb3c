use super::*;
use crate::catalog::retention::VerifyState;
use crate::catalog::Manifest;
use crate::store::local::LocalStore;
use std::io::Read;

const GOLDEN: &str =
    include_str!("../../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");
const GOLDEN_NAME: &str = "20261129T053645.864Z-650b5d21591bfd0.manifest.json";

/// A store with `hours` hourly backups (manifest + a small data object each).
fn store_with(hours: u32) -> (tempfile::TempDir, LocalStore, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), false).unwrap();
    let base = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME).unwrap();
    let mut ids = Vec::new();
    for h in 0..hours {
        let t = time::macros::datetime!(2026-11-01 00:00 UTC) + time::Duration::hours(i64::from(h));
        let mut m = base.clone();
        m.id = catalog::BackupId::new(t, 0x650b5d21591bfd0);
        m.object = catalog::data_name(&m.id);
        m.format_version = catalog::FORMAT_VERSION;
        m.revision = 100 * (i64::from(h) + 1);
        store.put_bytes(&m.object, b"data").unwrap();
        store
            .put_bytes(&catalog::manifest_name(&m.id), &m.seal().unwrap())
            .unwrap();
        ids.push(m.id.to_string());
    }
    (dir, store, ids)
}

#[test]
fn segments_only_removed_backups_could_start_from_go_with_them() {
    let (dir, store, _) = store_with(4); // revisions 100, 200, 300, 400
    let cluster = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME)
        .unwrap()
        .cluster_id
        .0;
    let seg = |c: u64, first: i64, last: i64| {
        format!(
            "capture-{c:016x}-{first:020}-{last:020}-{:013}.seg",
            1_796_000_000_000i64
        )
    };
    let names = [
        seg(cluster, 101, 200),
        seg(cluster, 201, 300),
        seg(cluster, 301, 350),
        seg(cluster, 351, 400),
        seg(cluster ^ 1, 1, 10), // another cluster: no kept backup of it, kept
    ];
    for n in &names {
        store.put_bytes(n, b"segment").unwrap();
    }
    // keep_last(2) keeps 300 and 400: segments ending at or before 300 are unreachable.
    let r = prune(&store, &keep_last(2), true, WAIT).unwrap();
    assert_eq!((r.segments_removed, r.segments_removed_bytes), (2, 14));
    assert!(names.iter().all(|n| dir.path().join(n).exists()), "dry run");
    let r = prune(&store, &keep_last(2), false, WAIT).unwrap();
    assert_eq!(r.segments_removed, 2);
    let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
    assert_eq!(left, [false, false, true, true, true]);
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["segments_removed"], 2);
}

fn keep_last(n: u32) -> Policy {
    Policy {
        keep_last: Some(n),
        ..Policy::default()
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn prune_removes_manifest_data_and_record_and_keeps_the_rest() {
    let (_d, store, ids) = store_with(4);
    verified::write_record(
        &store,
        &verified::VerifyRecord {
            id: ids[0].clone(),
            verified_at: "2026-11-02T00:00:00Z".into(),
            ok: true,
            problems: vec![],
        },
    )
    .unwrap();
    let dry = prune(&store, &keep_last(2), true, WAIT).unwrap();
    assert_eq!((dry.kept, dry.removed), (2, 2));
    assert_eq!(
        store.list("").unwrap().len(),
        9,
        "dry run removed something"
    );
    let r = prune(&store, &keep_last(2), false, WAIT).unwrap();
    assert_eq!((r.kept, r.removed, r.removed_bytes), (2, 2, 2 * 647));
    let (left, bad) = catalog::list(&store).unwrap();
    assert!(bad.is_empty());
    let left: Vec<&str> = left.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(left, [ids[3].as_str(), ids[2].as_str()]);
    let names: Vec<String> = store
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(catalog::orphans(&store).unwrap().is_empty());
}

#[test]
fn a_failed_scrub_is_kept_and_not_the_newest_good() {
    let (_d, store, ids) = store_with(3);
    verified::write_record(
        &store,
        &verified::VerifyRecord {
            id: ids[2].clone(),
            verified_at: "2026-11-02T00:00:00Z".into(),
            ok: false,
            problems: vec!["flipped byte".into()],
        },
    )
    .unwrap();
    let r = prune(&store, &keep_last(1), false, WAIT).unwrap();
    let kept: Vec<(&str, VerifyState)> = r
        .backups
        .iter()
        .filter(|b| b.action == Action::Keep)
        .map(|b| (b.id.as_str(), b.verify))
        .collect();
    assert_eq!(
        kept,
        [
            (ids[2].as_str(), VerifyState::Failed),
            (ids[1].as_str(), VerifyState::Unchecked)
        ]
    );
    assert_eq!(r.removed, 1);
}

/// A store whose reads of one object fail as an outage would.
struct Flaky {
    inner: LocalStore,
    broken: String,
}

impl Store for Flaky {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self, name: &str) -> Result<Box<dyn crate::store::ObjectWriter>> {
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> Result<Box<dyn crate::io::ReadAt>> {
        self.inner.open(name)
    }
    fn load(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Box<dyn Read + Send>> {
        if name == self.broken {
            return Err(Error::store(
                self.location(),
                crate::error::StoreErrorKind::Transient,
                format!("read {name}: connection reset"),
            ));
        }
        self.inner.load(name, offset, len)
    }
    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.inner.stat(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.inner.remove(name)
    }
    fn lock(&self, wait: Duration) -> Result<Box<dyn crate::store::StoreLock>> {
        self.inner.lock(wait)
    }
    fn clean_partials(&self) -> Result<Vec<String>> {
        self.inner.clean_partials()
    }
}

#[test]
fn a_listing_that_fails_part_way_removes_nothing() {
    let (_d, inner, ids) = store_with(4);
    let before = inner.list("").unwrap().len();
    let store = Flaky {
        inner,
        broken: catalog::manifest_name(&ids[1]),
    };
    let e = prune(&store, &keep_last(1), false, WAIT).unwrap_err();
    assert!(e.to_string().contains("nothing removed"), "{e}");
    assert_eq!(e.exit_code(), crate::ExitCode::Failed);
    // The store's error keeps its kind (a transient one can be retried, and the
    // metrics and `-o json` say `store`), and names the object it failed at.
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(e.kind_name(), "store");
    assert!(
        e.to_string()
            .contains(&catalog::manifest_name(&ids[1]).to_string()),
        "{e}"
    );
    assert_eq!(store.inner.list("").unwrap().len(), before);
}

#[test]
fn rejected_manifests_are_left_alone() {
    let (_d, store, ids) = store_with(3);
    let name = catalog::manifest_name(&ids[0]);
    store.remove(&name).unwrap();
    store.put_bytes(&name, b"{not json").unwrap();
    let r = prune(&store, &keep_last(1), false, WAIT).unwrap();
    assert_eq!((r.kept, r.removed, r.rejected.len()), (1, 1, 1));
    assert!(store.stat(&name).unwrap().is_some());
    assert!(store.stat(&catalog::data_name(&ids[0])).unwrap().is_some());
}

#[test]
fn an_empty_policy_touches_nothing() {
    let (_d, store, _) = store_with(2);
    let e = prune(&store, &Policy::default(), false, WAIT).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    assert_eq!(store.list("").unwrap().len(), 4);
}
