use super::*;
use crate::format::bolt::{build::etcd_like, check, CheckOptions, EntryVisitor};

struct Nothing;
impl EntryVisitor for Nothing {}

fn spec(n: usize) -> RestoreSpec {
    RestoreSpec {
        members: (0..n)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                peer_urls: vec![format!("http://127.0.0.1:{}", 2380 + i)],
            })
            .collect(),
        token: "t".into(),
        bump_revision: None,
        mark_compacted: false,
    }
}

fn sha(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

#[test]
fn three_members_from_one_read() {
    let img = etcd_like(4096, 30, 10);
    let tmp = tempfile::tempdir().unwrap();
    let targets: Vec<(String, PathBuf, Option<PathBuf>)> = (0..3)
        .map(|i| (format!("m{i}"), tmp.path().join(format!("d{i}")), None))
        .collect();
    let out = write_member_dirs(&img, Some(sha(&img)), &spec(3), &targets).unwrap();
    assert_eq!(out.len(), 3);
    let first_db = std::fs::read(tmp.path().join("d0/member/snap/db")).unwrap();
    for w in &out {
        let m = w.data_dir.join("member");
        let dbb = std::fs::read(m.join("snap/db")).unwrap();
        assert_eq!(dbb, first_db, "every member's db is the same bytes");
        let r = check(&dbb, &CheckOptions::default(), &mut Nothing);
        assert!(r.ok(), "{:?}", r.problems);
        let db = Db::open(&dbb).unwrap();
        let members = db.bucket(b"members").unwrap().unwrap();
        let key = format!("{:x}", w.member_id);
        let json = members.get(key.as_bytes()).unwrap().unwrap();
        assert!(String::from_utf8(json)
            .unwrap()
            .contains(&format!("\"name\":\"{}\"", w.name)));
        let meta = db.bucket(b"meta").unwrap().unwrap();
        assert_eq!(meta.get(b"consistent_index").unwrap(), Some(u64_be(3)));
        assert_eq!(meta.get(b"term").unwrap(), Some(u64_be(1)));
        let wal = std::fs::metadata(m.join("wal").join(crate::format::wal::write::FIRST_SEGMENT))
            .unwrap();
        assert_eq!(wal.len(), 64_000_000);
        let snap = std::fs::read(m.join("snap/0000000000000001-0000000000000003.snap")).unwrap();
        let sm = crate::format::snap::decode(&snap).unwrap();
        assert_eq!((sm.index, sm.term), (3, 1));
    }
    // Nothing left beside the targets.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn bad_digest_and_busy_dirs_write_nothing() {
    let img = etcd_like(4096, 5, 10);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let e = write_member_dir(&img, Some([0; 32]), &spec(1), "m0", &d, None).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(e.to_string().contains("nothing was restored"), "{e}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("x"), b"x").unwrap();
    let e = write_member_dir(&img, None, &spec(1), "m0", &d, None).unwrap_err();
    assert!(e.to_string().contains("is not empty"), "{e}");
    let e =
        write_member_dir(&img, None, &spec(1), "nope", &tmp.path().join("n"), None).unwrap_err();
    assert!(e.to_string().contains("not in the restored cluster"), "{e}");
    let mut s = spec(1);
    s.mark_compacted = true;
    assert!(matches!(
        write_member_dir(&img, None, &s, "m0", &tmp.path().join("n"), None),
        Err(Error::Usage(_))
    ));
}

#[test]
fn bump_appends_one_revision_and_marks_it_compacted() {
    let img = etcd_like(1024, 400, 40);
    let mut s = spec(1);
    s.bump_revision = Some(1000);
    s.mark_compacted = true;
    let p = restore_patch(&img, &s).unwrap();
    let mut out = img.clone();
    p.apply_to(&mut out);
    let r = check(&out, &CheckOptions::default(), &mut Nothing);
    assert!(r.ok(), "{:?}", r.problems);
    let db = Db::open(&out).unwrap();
    let (k, v) = db.bucket(b"key").unwrap().unwrap().last().unwrap().unwrap();
    // etcd_like's last revision is 401.
    assert_eq!(k, rev_key(1401, 0));
    assert!(v.is_empty());
    let meta = db.bucket(b"meta").unwrap().unwrap();
    assert_eq!(
        meta.get(b"scheduledCompactRev").unwrap(),
        Some(rev_key(1401, 0))
    );
}

#[test]
fn separate_wal_dir() {
    let img = etcd_like(4096, 5, 10);
    let tmp = tempfile::tempdir().unwrap();
    let (d, w) = (tmp.path().join("data"), tmp.path().join("wal"));
    std::fs::create_dir(&d).unwrap(); // empty: accepted
    write_member_dir(&img, None, &spec(1), "m0", &d, Some(&w)).unwrap();
    assert!(w.join(crate::format::wal::write::FIRST_SEGMENT).is_file());
    assert!(!d.join("member/wal").exists());
    assert!(d.join("member/snap/db").is_file());
    let inside = tmp.path().join("d2");
    let e =
        write_member_dir(&img, None, &spec(1), "m0", &inside, Some(&inside.join("w"))).unwrap_err();
    assert!(e.to_string().contains("inside data dir"), "{e}");
}

#[test]
fn adopting_a_fetched_file_writes_what_copying_writes() {
    let img = etcd_like(4096, 30, 10);
    let tmp = tempfile::tempdir().unwrap();
    let copied = tmp.path().join("copied");
    write_member_dir(&img, Some(sha(&img)), &spec(3), "m1", &copied, None).unwrap();
    // A fetched snapshot: the image and etcd's 32-byte trailer, beside the target.
    let fetched = tmp.path().join(".fetched.db");
    std::fs::write(&fetched, [img.as_slice(), &sha(&img)].concat()).unwrap();
    let adopted = tmp.path().join("adopted");
    let target = ("m1".to_string(), adopted.clone(), None);
    let w = write_member_dir_adopting(
        &fetched,
        img.len() as u64,
        &spec(3),
        target,
        RestoreStyle::Etcd35,
    )
    .unwrap();
    assert_eq!(w.data_dir, adopted);
    assert!(!fetched.exists(), "the fetched file became the member's db");
    for f in ["snap/db", "snap/0000000000000001-0000000000000003.snap"] {
        let (a, b) = (
            copied.join("member").join(f),
            adopted.join("member").join(f),
        );
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(&b).unwrap(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(adopted.join("member/snap/db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A busy target: refused before the file is touched; a short file: refused too.
    let again = tmp.path().join(".again.db");
    std::fs::write(&again, &img).unwrap();
    let target = ("m1".to_string(), adopted.clone(), None);
    let e = write_member_dir_adopting(
        &again,
        img.len() as u64,
        &spec(3),
        target,
        RestoreStyle::Etcd35,
    )
    .unwrap_err();
    assert!(e.to_string().contains("is not empty"), "{e}");
    assert!(again.exists());
    let target = ("m1".to_string(), tmp.path().join("short"), None);
    let e = write_member_dir_adopting(
        &again,
        img.len() as u64 + 1,
        &spec(3),
        target,
        RestoreStyle::Etcd35,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(!tmp.path().join("short").exists());
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "nothing half-written is left: {names:?}");
}
