//! Corrupted copies of the fixtures: exit 3 naming the damaged page, and random damage to a
//! real db never panics.

use super::*;

/// The key bucket's root page (a branch page in the fixtures) and two of its children.
fn key_branch(img: &[u8]) -> (u64, u64, u64) {
    let db = Db::open(img).unwrap();
    let b = db.bucket(b"key").unwrap().unwrap();
    let BucketRoot::Page(root) = b.root().clone() else {
        panic!("key bucket is inline")
    };
    let p = db.page(root).unwrap();
    let n = p.node().unwrap();
    assert!(n.is_branch(), "key bucket root {root} is not a branch");
    (root, n.branch(0).unwrap().pgid, n.branch(1).unwrap().pgid)
}

fn write_copy(name: &str, img: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("inspect-corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, img).unwrap();
    p
}

/// Run inspect on a damaged copy: exit 3, and some problem names `page`.
#[track_caller]
fn expect_problem(name: &str, img: &[u8], page: Option<u64>, needle: &str) -> serde_json::Value {
    let p = write_copy(name, img);
    let (o, j) = inspect_json(&[p.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(j["ok"], false);
    let probs = j["problems"].as_array().unwrap();
    assert!(
        probs
            .iter()
            .any(|x| x["page"].as_u64() == page && x["message"].as_str().unwrap().contains(needle)),
        "{name}: no problem on page {page:?} containing {needle:?}: {probs:#?}"
    );
    // Text output says the same, and exits the same.
    let o = run_lifeboat(["inspect", p.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(stdout(&o).contains("PROBLEM"), "{}", stdout(&o));
    j
}

#[test]
fn corrupted_copies_exit_3_naming_the_page() {
    let f = fx35();
    let snap = std::fs::read(&f.snap).unwrap();
    let db_len = snap.len() - 32;
    let data = &snap[..db_len];
    let ps = 4096usize;
    let (branch, c0, c1) = key_branch(data);
    let elem = |i: usize| branch as usize * ps + 16 + 16 * i; // branch element i

    // 1. A flipped byte in meta page 0 (its txid): checksum error, meta 1 used.
    let mut img = snap.clone();
    img[16 + 48] ^= 0x40;
    let j = expect_problem("meta0.db", &img, Some(0), "checksum error");
    assert_eq!(j["current_meta"], 1);
    assert_eq!(
        j["etcdutl_hash"], f.status["hash"],
        "meta 1 describes the same tree"
    );

    // 2. A flipped byte in a branch page: the child id of element 0 points far away.
    let mut img = data.to_vec();
    img[elem(0) + 8 + 5] ^= 0x01;
    expect_problem("branch.db", &img, Some(branch), "out of bounds");

    // 3. Page id out of range: element 1's child is the high-water mark + 5.
    let hwm = Db::open(data).unwrap().meta.pgid;
    let mut img = data.to_vec();
    img[elem(1) + 8..elem(1) + 16].copy_from_slice(&(hwm + 5).to_le_bytes());
    expect_problem("oob.db", &img, Some(branch), &format!("page {}", hwm + 5));

    // 4. A page referenced twice: element 1's child is element 0's child.
    let mut img = data.to_vec();
    img[elem(1) + 8..elem(1) + 16].copy_from_slice(&c0.to_le_bytes());
    assert_ne!(c0, c1);
    expect_problem("twice.db", &img, Some(c0), "multiple references");

    // 5. A flipped byte in a leaf value: the protobuf tag of a KeyValue breaks.
    let ldb = Db::open(data).unwrap();
    let mut leaf = c0;
    while ldb.page(leaf).unwrap().node().unwrap().is_branch() {
        leaf = ldb
            .page(leaf)
            .unwrap()
            .node()
            .unwrap()
            .branch(0)
            .unwrap()
            .pgid;
    }
    let lp = ldb.page(leaf).unwrap();
    let e = lp.node().unwrap().leaf(0).unwrap();
    let val_at = leaf as usize * ps + e.key_offset + e.key.len();
    let mut img = data.to_vec();
    img[val_at] = 0x0b; // field 1, wire type 3 (groups): not a KeyValue
    expect_problem("leafvalue.db", &img, Some(leaf), "not an mvccpb.KeyValue");

    // 6. A flipped byte inside a value that leaves the structure intact: only the
    //    snapshot's SHA-256 trailer can tell.
    let mut img = snap.clone();
    let last = e.value.len() - 1;
    img[val_at + last] ^= 0x01;
    expect_problem("trailer.db", &img, None, "SHA-256");
    // ... and without the trailer nothing structural is wrong.
    let p = write_copy("notrailer.db", &img[..db_len]);
    assert_exit(&run_lifeboat(["inspect", p.to_str().unwrap()]), 0);

    // 7. A truncated file: half of it.
    let half = &data[..(data.len() / 2) & !4095];
    expect_problem("truncated.db", half, Some(0), "truncated");

    // 8. Both meta pages damaged: nothing can be read.
    let mut img = data.to_vec();
    img[16] ^= 1;
    img[ps + 16] ^= 1;
    expect_problem("nometa.db", &img, Some(0), "no valid meta page");

    // 9. A leaf element whose key runs past the page.
    let mut img = data.to_vec();
    let le = leaf as usize * ps + 16 + 12; // vsize of element 0
    img[le..le + 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    expect_problem("elembounds.db", &img, Some(leaf), "runs past the page span");

    // 10. Keys out of order against the branch separator.
    let mut img = data.to_vec();
    let sep = elem(1);
    let pos = u32::from_le_bytes(img[sep..sep + 4].try_into().unwrap()) as usize;
    let k_at = sep + pos;
    img[k_at..k_at + 8].fill(0); // separator 1 becomes revision 0: below separator 0
    let j = expect_problem(
        "order.db",
        &img,
        Some(branch),
        "not greater than the previous key",
    );
    assert!(!j["problems"].as_array().unwrap().is_empty());
}

/// Random damage never panics, never reads out of bounds, and always ends (in-process).
#[test]
fn random_damage_to_a_real_db_never_panics() {
    use lifeboat::format::bolt::{check, CheckOptions};
    let f = fx34();
    let snap = std::fs::read(&f.snap).unwrap();
    let data = &snap[..snap.len() - 32];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let hwm = Db::open(data).unwrap().meta.pgid as usize;
    for round in 0..300 {
        let mut img = data.to_vec();
        let flips = 1 + (next() % 8) as usize;
        for _ in 0..flips {
            // Bias towards page headers and element arrays, where damage bites.
            let page = (next() as usize) % hwm;
            let off = if next() % 2 == 0 {
                (next() % 128) as usize
            } else {
                (next() % 4096) as usize
            };
            let at = page * 4096 + off;
            if at < img.len() {
                img[at] = next() as u8;
            }
        }
        let r = check(&img[..], &CheckOptions::default(), &mut ());
        let _ = r.ok();
        if round % 50 == 0 {
            let cut = (next() as usize) % img.len();
            let _ = check(&img[..cut], &CheckOptions::default(), &mut ());
        }
    }
}
