//! Point-in-time restore with `--compact` on real etcd: the window compacted at R-1 as it
//! is replayed. What the restored member serves (`serves_from`, after `restore plan
//! --compact` and `restore apply` in `plan.rs`), and the offline replay at every measured
//! revision (`replays`).

use std::time::Duration;

use super::{rt, same_kvs, to_record, Measured, Run};
use crate::common::Cluster;
use etcd_client::{Client, WatchOptions};
use lifeboat::format::capture::Record;
use lifeboat::restore::replay::{replay, replay_compacted, replay_held};

/// The member restored to `m.revision` with `--compact`: the live keys at R as the live
/// cluster had them, R-2 refused as compacted, and a watch from R replaying exactly the
/// changes made at R.
pub(super) fn serves_from(c: &Cluster, run: &Run, m: &Measured) {
    let r = m.revision;
    let got: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "", "--from-key", "-w", "json"])).unwrap();
    assert_eq!(got["header"]["revision"].as_i64(), Some(r));
    same_kvs(
        &got["kvs"],
        &m.kvs,
        &format!("compacted restore's keys at {r}"),
    );
    let o = c.ctl(&["get", "/p/a", "--rev", &(r - 2).to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("compacted"),
        "revision {} after a compacted restore to {r}: {err}",
        r - 2
    );
    let want: Vec<Record> = run
        .records
        .iter()
        .filter(|x| matches!(x, Record::Put(_) | Record::Delete { .. }) && x.revision() == r)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    let got = rt().block_on(async {
        let mut cl = Client::connect([c.endpoints()], None).await.unwrap();
        let opts = WatchOptions::new().with_all_keys().with_start_revision(r);
        let mut w = cl.watch("", Some(opts)).await.unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let msg = tokio::time::timeout(Duration::from_secs(20), w.message())
                .await
                .expect("the restored member serves a watch from R")
                .unwrap()
                .unwrap();
            assert!(!msg.canceled(), "watch from {r}: {}", msg.cancel_reason());
            for e in msg.events() {
                got.push(to_record(e.event_type(), e.kv().unwrap()));
            }
        }
        got
    });
    assert_eq!(got, want, "watch from {r} on the compacted restore");
}

/// Offline, at every measured revision R: the compacted replay proves the live hash at R
/// on the records, holds the same keys at R as the whole replay, hashes at R as the whole
/// replay does with the compaction at R-1; a wrong live hash at R is refused, and a wrong
/// older one (history the compaction drops) is not looked at.
pub(super) fn replays(run: &Run) {
    let mut away = 0;
    for m in &run.measured {
        let r = m.revision;
        let (img, c) = replay_compacted(&run.db, &run.records, r, 256).unwrap();
        assert_eq!(c.checked, vec![r]);
        away += c.replay.stats.compacted_away;
        assert_eq!(c.replay.stats.compact_revision, Some(r - 1));
        let (whole, w) = replay(&run.db, &run.records, r).unwrap();
        assert_eq!(
            (c.replay.stats.puts, c.replay.stats.deletes),
            (w.replay.stats.puts, w.replay.stats.deletes)
        );
        let hash = |img: &[u8], compact: Option<i64>| {
            let db = lifeboat::format::bolt::Db::open(img).unwrap();
            lifeboat::format::etcd::hashkv::hashkv(&db, r, compact)
                .unwrap()
                .unwrap()
                .0
        };
        assert_eq!(c.hashkv, Some(hash(&img, None)));
        assert_eq!(hash(&whole, Some(r - 1)), hash(&img, None));
        // Read once (held), or twice when the held changes outgrow the budget: the same.
        for budget in [1 << 30, 2048] {
            let (held, h) = replay_held(&run.db, &run.records, r, 256, budget).unwrap();
            assert_eq!((h.checked, h.hashkv), (c.checked.clone(), c.hashkv));
            assert_eq!(h.replay.stats, c.replay.stats);
            assert_eq!(hash(&held, None), hash(&img, None));
        }
    }
    assert!(away > 0, "nothing compacted away");
    let all: Vec<i64> = run.measured.iter().map(|m| m.revision).collect();
    let last = *all.last().unwrap();
    let wrong = |at: i64| {
        let mut bad = run.records.clone();
        for x in bad.iter_mut() {
            if let Record::LiveHash { revision, hash, .. } = x {
                if *revision == at {
                    *hash ^= 1;
                }
            }
        }
        replay_compacted(&run.db, &bad, last, 256)
    };
    let e = wrong(last).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(e.to_string().contains(&format!("revision {last}")), "{e}");
    assert_eq!(wrong(all[1]).unwrap().1.checked, vec![last]);
}
