//! The plan path of a point-in-time restore on real etcd: `restore plan --to-revision`
//! with the collected records as its source, `restore apply`, `restore test`, the node
//! script, `restore check`, and the CLI's refusals.

use std::time::Duration;

use super::{Measured, Run};
use crate::common::restore::{restore_check, start_from_plan};
use crate::common::{assert_exit, free_port, json, run_lifeboat, Bins};
use lifeboat::catalog::Access;
use lifeboat::format::capture::Record;
use lifeboat::restore::apply::{apply, ApplyOptions, DataDirWriter};
use lifeboat::restore::pitr::{self, RecordSource, SharedSource, Target};
use lifeboat::restore::plan::{make_plan, write_plan_with, PlanInput, Source};

/// The records the test collected, as capture's reader would hand them over.
struct Collected(Vec<Record>);

impl RecordSource for Collected {
    fn load(&self, after: i64, upto: i64) -> lifeboat::Result<Vec<Record>> {
        Ok(self
            .0
            .iter()
            .filter(|r| r.revision() > after && r.revision() <= upto)
            .cloned()
            .collect())
    }
    fn last_revision(&self) -> lifeboat::Result<Option<i64>> {
        Ok(self.0.iter().map(Record::revision).max())
    }
}

/// `restore plan --to-revision R` with the collected records as its source, `restore
/// apply` of the plan, the restored member started with the plan's own flags, and `lifeboat
/// restore check` (unchanged) passing against the plan's expectation.
///
/// `compact`: the same with `--compact`. The plan proves the live hash at R on the records,
/// the restored member holds every key of R as the live cluster had it, refuses revisions
/// before R-1 as compacted, answers hashkv at R as the plan expects and serves a watch from R
/// with exactly the changes made at R.
pub(super) fn plan_apply_check(bins: &Bins, run: &Run, m: &Measured, compact: bool) {
    let dir = tempfile::TempDir::new().unwrap();
    let topology = format!(
        "cluster_token = \"generate\"\netcd_version = \"{}\"\n\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
        bins.version,
        free_port(),
        free_port(),
        dir.path().join("r0").display()
    );
    let t = lifeboat::restore::topology::parse(&topology).unwrap();
    let dest = run.dest.to_str().unwrap();
    let repo = Access::default().repository(dest, false).unwrap();
    let src = Collected(run.records.clone());
    let mut chosen = pitr::choose_in(&repo, "latest", Target::Revision(m.revision), &src).unwrap();
    chosen.compact = compact;
    assert_eq!(chosen.manifest.revision, run.base);
    let mut p = make_plan(
        &t,
        &PlanInput {
            from: dest,
            manifest: &Source::of_manifest(&chosen.manifest),
            bump_revision: None,
            kubernetes: false,
            topology_file: "topology.toml",
        },
    )
    .unwrap();
    let r = repo.open_db(&chosen.manifest).unwrap();
    let kept = pitr::plan_replay(&mut p, &r, "backup", &chosen, &src, dir.path()).unwrap();
    // A compacted plan keeps what its replay committed, for `restore apply`; never from an
    // encrypted backup (the plan's directory would hold its contents decrypted).
    assert_eq!(kept.is_some(), compact);
    if compact {
        let mut encrypted = chosen.clone();
        encrypted.manifest.encryption = "age".into();
        let mut q = p.clone();
        let none = pitr::plan_replay(&mut q, &r, "backup", &encrypted, &src, dir.path()).unwrap();
        assert!(none.is_none());
        assert_eq!(q.replay.as_ref().and_then(|rp| rp.edits.as_ref()), None);
        assert_eq!(q.expected_hashkv, p.expected_hashkv);
    }
    // `restore test --to-revision R`: the sandbox etcd answers the live hashkv at R.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = lifeboat::restore::selftest::restore_test(
        &repo,
        &chosen.manifest,
        &lifeboat::restore::selftest::TestOptions {
            etcd: Some(bins.etcd.clone()),
            etcdutl: None,
            start_timeout: Duration::from_secs(60),
            runtime: rt.handle(),
            replay: Some(&chosen),
            records: Some(&src),
        },
    )
    .unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // Compacted, the hash at R leaves out the history before R-1 that the live one had.
    let want_hash = if compact {
        let rp = p.replay.as_ref().unwrap();
        assert!(rp.compacted);
        assert_eq!(rp.compact_revision, Some(m.revision - 1));
        assert_eq!(rp.live_hashes_checked, vec![m.revision]);
        // Read twice (the changes outgrow a budget of one byte): the same plan.
        let mut twice = p.clone();
        let mut small = chosen.clone();
        small.hold_bytes = 1;
        let none = pitr::plan_replay(&mut twice, &r, "backup", &small, &src, dir.path()).unwrap();
        // (Its transactions outgrow that budget too: none kept.)
        assert!(none.is_none());
        let mut want = p.replay.clone().unwrap();
        want.edits = None;
        assert_eq!(
            (&twice.replay, twice.expected_hashkv, twice.expected_keys),
            (&Some(want), p.expected_hashkv, p.expected_keys)
        );
        p.expected_hashkv.unwrap()
    } else {
        m.hash
    };
    assert_eq!(
        (report.revision, report.to_revision, report.hashkv),
        (m.revision, Some(m.revision), Some(want_hash))
    );
    drop(rt);
    assert_eq!(p.to_revision, Some(m.revision));
    assert_eq!(p.expected_revision, Some(m.revision));
    assert_eq!(p.expected_hashkv, Some(want_hash));
    let out = dir.path().join("plan");
    let extra: Vec<(&str, &[u8])> = kept.iter().map(|b| (pitr::EDITS_FILE, &b[..])).collect();
    write_plan_with(&p, &out, false, &extra).unwrap();
    let runbook = std::fs::read_to_string(out.join("RUNBOOK.md")).unwrap();
    assert!(
        runbook.contains(&format!("Point-in-time restore to revision {}", m.revision)),
        "{runbook}"
    );
    // The node script without lifeboat on PATH refuses etcd's tool fallback.
    let o = std::process::Command::new("bash")
        .arg(out.join("r0.sh"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("point-in-time"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let opts = |records: Vec<Record>| ApplyOptions {
        dry_run: false,
        writer: DataDirWriter::Native,
        manage_systemd: false,
        plan_id: lifeboat::restore::guard::PlanId::load(&out, &p).unwrap(),
        force: false,
        access: Access::default(),
        records: Some(SharedSource(std::sync::Arc::new(Collected(records)))),
        plan_dir: None,
    };
    // Records other than the plan's are refused before anything is written.
    let mut other = run.records.clone();
    other.retain(|r| !matches!(r, Record::LiveHash { .. }));
    let e = apply(&p, "r0", &opts(other.clone())).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3, "{e}");
    assert!(!dir.path().join("r0").join("member").exists());
    apply(&p, "r0", &opts(run.records.clone())).unwrap();
    if compact {
        // Applied again from the plan's kept transactions: the same database, byte for
        // byte, without the records being read (the wrong ones are given here).
        let db = dir.path().join("r0").join("member").join("snap").join("db");
        let by_records = std::fs::read(&db).unwrap();
        std::fs::remove_dir_all(dir.path().join("r0")).unwrap();
        let mut kept = opts(other);
        kept.plan_dir = Some(out.clone());
        apply(&p, "r0", &kept).unwrap();
        assert!(
            std::fs::read(&db).unwrap() == by_records,
            "the kept edits wrote another db"
        );
    }
    let plan_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan_json["to_revision"].as_i64(), Some(m.revision));
    let c = start_from_plan(bins, &plan_json);
    let o = restore_check(&out, &[]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["ok"], true);
    if compact {
        super::compacted::serves_from(&c, run, m);
    }
    drop(c);
}

/// The CLI's `restore plan --to-revision` on the destination: the target refusals that need
/// no captured records, and a plan to the backup's own revision (nothing to replay).
pub(super) fn cli_plan(bins: &Bins, run: &Run) {
    let dir = tempfile::TempDir::new().unwrap();
    let topo = dir.path().join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"generate\"\netcd_version = \"{}\"\n\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            bins.version,
            free_port(),
            free_port(),
            dir.path().join("r0").display()
        ),
    )
    .unwrap();
    let plan = |rev: i64, out: &str| {
        run_lifeboat([
            "restore",
            "plan",
            "--from",
            run.dest.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            dir.path().join(out).to_str().unwrap(),
            "--to-revision",
            &rev.to_string(),
            "-o",
            "json",
        ])
    };
    let o = plan(2, "early");
    assert_exit(&o, 2);
    let err = format!("{}{}", crate::common::stderr(&o), crate::common::stdout(&o));
    assert!(
        err.contains(&format!(
            "oldest revision that can be restored is {}",
            run.base
        )),
        "{err}"
    );
    let o = plan(run.base, "same");
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(run.base));
    assert_eq!(p["expected_revision"].as_i64(), Some(run.base));
    assert_eq!(p["replay"]["records"].as_u64(), Some(0));
}
