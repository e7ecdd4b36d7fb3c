//! S3 destinations against a real S3 server (s3s-fs on 127.0.0.1): multipart backup,
//! list/verify/fetch/inspect from S3, fan-out to local + S3, and the errors an operator
//! meets first (missing bucket, wrong credentials).
#![cfg(feature = "s3")]

use crate::common::s3::*;
use crate::common::*;

/// The requests of a backup carry no checksum the SDK adds by default since 2025 (a CRC32
/// in an `aws-chunked` body's trailer, and asking for checksums back), which many
/// S3-compatible servers refuse: plain bodies, parts included, and plain reads.
fn assert_plain_requests(heads: &[String]) {
    let parts = heads
        .iter()
        .filter(|h| h.starts_with("put ") && h.contains("partnumber="))
        .count();
    assert!(parts >= 3, "{parts} parts in {heads:#?}");
    for h in heads {
        for refused in [
            "aws-chunked",
            "x-amz-checksum",
            "x-amz-sdk-checksum-algorithm",
            "x-amz-trailer",
        ] {
            assert!(!h.contains(refused), "{refused} in:\n{h}");
        }
    }
    assert!(heads.iter().any(|h| h.starts_with("get ")), "{heads:#?}");
    // A whole object in one PUT (the manifest) carries its Content-MD5, which the server
    // checks; parts do not (the data object is read back against its SHA-256).
    for h in heads.iter().filter(|h| h.starts_with("put ")) {
        assert_eq!(
            h.contains("\r\ncontent-md5: "),
            !h.contains("partnumber="),
            "{h}"
        );
    }
}

/// One cluster, one server: a multipart backup of ≥ 3 parts (5 MiB parts, > 10 MiB stored),
/// then every read path from S3, and fan-out to a local directory and S3 from one stream.
#[test]
fn multipart_backup_reads_back_and_fans_out() {
    let c = Cluster::single(&etcd35(), Opts::default());
    // ~24 MiB of hex values: zstd halves them, leaving > 10 MiB to store.
    c.fill_random("/big/", 2400, 10 * 1024);
    c.put("/s3/needle", "found-me");
    let s3 = S3Server::start(&["backups"]);
    let dest = "s3://backups/etcd/prod";

    let mut args = vec!["backup".to_string(), "--to".into(), dest.into()];
    args.extend(c.conn_args());
    args.extend(["-o".into(), "json".into()]);
    // Through a proxy that keeps the request heads: plain bodies, no SDK checksums.
    let proxy = Proxy::start(s3.port);
    let (k, v) = proxy.env();
    let o = s3.lifeboat_with(&args, &[("LIFEBOAT_S3_PART_SIZE", "5M"), (k, &v)]);
    assert_exit(&o, 0);
    assert_plain_requests(&proxy.heads());
    let m = json(&o);
    let id = m["id"].as_str().unwrap().to_string();
    let stored = m["stored_size"].as_u64().unwrap();
    assert!(
        stored > 10 << 20,
        "want ≥ 3 parts of 5 MiB, stored {stored}"
    );
    // The objects are where the prefix says, and nothing else is.
    let on_server: Vec<String> = std::fs::read_dir(s3.root.path().join("backups/etcd/prod"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(on_server.len(), 2, "{on_server:?}");

    let o = s3.lifeboat(["list", "--from", dest, "-o", "json"]);
    assert_exit(&o, 0);
    let l = json(&o);
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l[0]["id"].as_str(), Some(id.as_str()));

    let o = s3.lifeboat(["verify", "--from", dest, &id]);
    assert_exit(&o, 0);

    let out = TempDir::new().unwrap();
    let snap = out.path().join("snap.db");
    let o = s3.lifeboat([
        "fetch",
        "--from",
        dest,
        "latest",
        "--out",
        snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    // The db and etcd's 32-byte SHA-256 trailer, as `etcdctl snapshot save` writes it.
    assert_eq!(
        std::fs::metadata(&snap).unwrap().len(),
        m["db_size"].as_u64().unwrap() + 32
    );

    // inspect and get read pages through positional reads of the remote object.
    let o = s3.lifeboat(["inspect", &format!("{dest}:{id}")]);
    assert_exit(&o, 0);
    let o = s3.lifeboat(["get", &format!("{dest}:{id}"), "/s3/needle"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("found-me"), "{}", stdout(&o));

    // Fan-out: one stream, a local directory and S3.
    let local = TempDir::new().unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        local.path().display().to_string(),
        "--to".into(),
        "s3://backups/fanout".into(),
    ];
    args.extend(c.conn_args());
    let o = s3.lifeboat(&args);
    assert_exit(&o, 0);
    for from in [local.path().to_str().unwrap(), "s3://backups/fanout"] {
        let o = s3.lifeboat(["list", "--from", from, "-o", "json"]);
        assert_exit(&o, 0);
        assert_eq!(json(&o).as_array().unwrap().len(), 1, "{from}");
    }
}

/// A missing bucket and wrong credentials fail with exit 1, naming endpoint and bucket.
#[test]
fn missing_bucket_and_wrong_credentials_name_endpoint_and_bucket() {
    let s3 = S3Server::start(&["backups"]);
    let o = s3.lifeboat(["list", "--from", "s3://nosuchbucket/x"]);
    assert_exit(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains(&s3.endpoint()) && e.contains("nosuchbucket") && e.contains("does not exist"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    let o = s3.lifeboat_with(
        ["list", "--from", "s3://backups/x"],
        &[("AWS_SECRET_ACCESS_KEY", "wrong")],
    );
    assert_exit(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains(&s3.endpoint()) && e.contains("backups") && e.contains("wrong credentials"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // No credentials at all (no AWS_* variables, an empty HOME): one line saying what to
    // set, for every path that reaches S3.
    let home = TempDir::new().unwrap();
    for cmd in [
        vec!["list", "--from", "s3://backups/x"],
        vec!["verify", "--from", "s3://backups/x", "--all"],
        vec![
            "backup",
            "--to",
            "s3://backups/x",
            "--endpoints",
            "http://127.0.0.1:1",
        ],
    ] {
        let o = std::process::Command::new(lifeboat())
            .args(&cmd)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("LIFEBOAT_S3_ENDPOINT", s3.endpoint())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_exit(&o, 1);
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{cmd:?}: {e}");
        assert!(
            e.contains("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
                && e.contains(&s3.endpoint()),
            "{cmd:?}: {e}"
        );
    }
}

/// An upload a killed run left behind is invisible to `list` and aborted by `cleanup`
/// (moto: s3s-fs cannot list multipart uploads).
#[test]
fn cleanup_aborts_stale_multipart_uploads() {
    let s3 = S3Server::start_moto();
    s3.boto(
        "s3.create_bucket(Bucket='bkt')\n\
         s3.create_multipart_upload(Bucket='bkt', Key='p/stale.db.zst')\n\
         s3.create_multipart_upload(Bucket='bkt', Key='elsewhere/other.db.zst')",
    );
    let o = s3.lifeboat(["list", "--from", "s3://bkt/p", "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o).as_array().unwrap().len(), 0);

    // --dry-run says what it would abort and aborts nothing.
    let o = s3.lifeboat([
        "cleanup",
        "--from",
        "s3://bkt/p",
        "--older-than",
        "0s",
        "--dry-run",
    ]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("would abort upload p/stale.db.zst"),
        "{}",
        stdout(&o)
    );
    let left = s3.boto("print(len(s3.list_multipart_uploads(Bucket='bkt').get('Uploads', [])))");
    assert_eq!(left.trim(), "2", "--dry-run aborted something");

    let o = s3.lifeboat(["cleanup", "--from", "s3://bkt/p", "--older-than", "0s"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("p/stale.db.zst"), "{}", stdout(&o));
    let left = s3.boto(
        "print(sorted(u['Key'] for u in s3.list_multipart_uploads(Bucket='bkt').get('Uploads', [])))",
    );
    assert_eq!(
        left.trim(),
        "['elsewhere/other.db.zst']",
        "outside the prefix: kept"
    );
}

/// Fan-out where one destination cannot work (a missing bucket): the other still stores
/// the backup, the failure names the endpoint and the bucket, the JSON lists each
/// destination, and the exit code is 1.
#[test]
fn one_failing_destination_does_not_cost_the_others() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let s3 = S3Server::start(&["backups"]);
    let local = TempDir::new().unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        local.path().display().to_string(),
        "--to".into(),
        "s3://missing-bucket/p".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(c.conn_args());
    let o = s3.lifeboat(&args);
    assert_exit(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("missing-bucket") && e.contains(&s3.endpoint()) && e.contains("does not exist"),
        "{e}"
    );
    assert_eq!(e.matches("error:").count(), 1, "one error line: {e}");
    let doc = json(&o);
    assert!(doc["id"].is_string(), "{doc}");
    let per = doc["destinations"].as_array().unwrap();
    assert_eq!(per.len(), 2, "{doc}");
    assert_eq!(per[0]["stored"], true, "{doc}");
    assert_eq!(per[1]["stored"], false, "{doc}");
    assert!(
        per[1]["error"].as_str().unwrap().contains("missing-bucket"),
        "{doc}"
    );
    let o = s3.lifeboat([
        "list",
        "--from",
        local.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o).as_array().unwrap().len(), 1);

    // A server that ignores object lock and SSE (s3s-fs accepts the headers and applies
    // neither): checked after writing, the S3 copy fails naming the endpoint and what is
    // lacking, and nothing of it is left; the local copy is stored.
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        local.path().display().to_string(),
        "--to".into(),
        "s3://backups/locked".into(),
        "--s3-sse".into(),
        "aws:kms".into(),
        "--s3-object-lock".into(),
        "governance".into(),
        "--s3-retain-for".into(),
        "1d".into(),
    ];
    args.extend(c.conn_args());
    let o = s3.lifeboat(&args);
    assert_exit(&o, 1);
    let e = stderr(&o);
    assert_eq!(e.matches("error:").count(), 1, "one error line: {e}");
    assert!(
        e.contains(&s3.endpoint())
            && e.contains("bucket backups")
            && e.contains("object lock: no GOVERNANCE retention")
            && e.contains("server-side encryption")
            && e.contains("aws:kms")
            && e.contains("was removed"),
        "{e}"
    );
    let o = s3.lifeboat(["list", "--from", "s3://backups/locked", "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o).as_array().unwrap().len(), 0);
    let left: Vec<_> = std::fs::read_dir(s3.root.path().join("backups/locked"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let o = s3.lifeboat([
        "list",
        "--from",
        local.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(json(&o).as_array().unwrap().len(), 2);
}

/// `cleanup` against a server without ListMultipartUploads (s3s-fs): one warning line
/// saying so, exit 0, and the JSON says it too.
#[test]
fn cleanup_on_a_server_that_cannot_list_uploads_says_so() {
    let s3 = S3Server::start(&["backups"]);
    let o = s3.lifeboat(["cleanup", "--from", "s3://backups/p"]);
    assert_exit(&o, 0);
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("warning:")
            && e.contains("cannot list multipart uploads")
            && e.contains(&s3.endpoint()),
        "{e}"
    );
    let o = s3.lifeboat(["cleanup", "--from", "s3://backups/p", "-o", "json"]);
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1, "{doc}");
}

/// Object lock (moto: a bucket made with object lock enabled): retention, SSE and storage
/// class are set on both objects, each body carrying its Content-MD5; `list` shows the
/// date, and prune keeps a locked backup whole, saying why. Then multipart uploads on moto.
#[test]
fn object_lock_sets_retention_and_prune_keeps_locked_backups() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let s3 = S3Server::start_moto();
    s3.boto("s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)");
    let dest = "s3://locked/etcd";
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.into(),
        "--s3-object-lock".into(),
        "governance".into(),
        "--s3-retain-for".into(),
        "1d".into(),
        "--s3-sse".into(),
        "AES256".into(),
        "--s3-storage-class".into(),
        "STANDARD_IA".into(),
    ];
    args.extend(c.conn_args());
    // Through a proxy that keeps the request heads: every body written with retention
    // carries its Content-MD5, the integrity header S3 requires with object lock.
    let proxy = Proxy::start(s3.port);
    let (k, v) = proxy.env();
    for _ in 0..2 {
        let o = s3.lifeboat_with(&args, &[(k, &v)]);
        assert_exit(&o, 0);
    }
    let puts: Vec<String> = proxy
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("put "))
        .collect();
    assert_eq!(puts.len(), 4, "{puts:#?}");
    for h in &puts {
        assert!(h.contains("\r\ncontent-md5: "), "{h}");
        assert!(
            !h.contains("x-amz-checksum") && !h.contains("aws-chunked"),
            "{h}"
        );
    }
    let heads = s3.boto(
        "for o in s3.list_objects_v2(Bucket='locked', Prefix='etcd/')['Contents']:\n    \
         h = s3.head_object(Bucket='locked', Key=o['Key'])\n    \
         print(o['Key'], h.get('ObjectLockMode'), h.get('ObjectLockRetainUntilDate') is not None, \
         h.get('ServerSideEncryption'), h.get('StorageClass'))",
    );
    let lines: Vec<&str> = heads.lines().collect();
    assert_eq!(lines.len(), 4, "{heads}");
    for l in &lines {
        assert!(l.ends_with("GOVERNANCE True AES256 STANDARD_IA"), "{heads}");
    }

    let o = s3.lifeboat(["list", "--from", dest, "-o", "json"]);
    assert_exit(&o, 0);
    let listed = json(&o);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for m in listed.as_array().unwrap() {
        assert!(m["retain_until"].is_string(), "{m}");
    }
    let o = s3.lifeboat(["list", "--from", dest]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("RETAIN-UNTIL"), "{}", stdout(&o));

    let o = s3.lifeboat(["prune", "--from", dest, "--keep-last", "1"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("object-locked until"), "{}", stderr(&o));
    let o = s3.lifeboat(["list", "--from", dest, "-o", "json"]);
    assert_eq!(json(&o).as_array().unwrap().len(), 2, "nothing removed");
    let n = s3.boto(
        "print(len(s3.list_object_versions(Bucket='locked', Prefix='etcd/').get('DeleteMarkers', [])))",
    );
    assert_eq!(n.trim(), "0", "no delete was even tried");
    multipart_on_moto(&c, &s3, &args);
}

/// Multipart uploads on moto: moto 5 answers CompleteMultipartUpload with a body the SDK
/// cannot read (`CompleteMultipartUploadResponse`), which is accepted once the object is
/// there whole; and with object lock every part carries its Content-MD5 (moto 5 then
/// leaves the object without the retention asked on CreateMultipartUpload, which lifeboat
/// refuses, naming it).
fn multipart_on_moto(c: &Cluster, s3: &S3Server, lock_args: &[String]) {
    // ~12 MiB of hex values: more than one part of 5 MiB once compressed.
    c.fill_random("/big/", 1200, 10 * 1024);
    s3.boto("s3.create_bucket(Bucket='plain')");
    let parts = [("LIFEBOAT_S3_PART_SIZE", "5M")];
    let mut args = vec!["backup", "--to", "s3://plain/etcd", "-o", "json"];
    let conn = c.conn_args();
    args.extend(conn.iter().map(String::as_str));
    let o = s3.lifeboat_with(&args, &parts);
    assert_exit(&o, 0);
    assert!(
        json(&o)["stored_size"].as_u64().unwrap() > 5 << 20,
        "{}",
        stdout(&o)
    );
    let o = s3.lifeboat(["verify", "--from", "s3://plain/etcd", "latest"]);
    assert_exit(&o, 0);

    let proxy = Proxy::start(s3.port);
    let (k, v) = proxy.env();
    let mut args = lock_args.to_vec();
    args[2] = "s3://locked/multipart".into();
    let o = s3.lifeboat_with(&args, &[parts[0], (k, &v)]);
    if o.status.code() != Some(0) {
        assert_exit(&o, 1);
        assert!(
            stderr(&o).contains("no GOVERNANCE retention"),
            "{}",
            stderr(&o)
        );
    }
    let heads = proxy.heads();
    let uploads: Vec<&String> = heads.iter().filter(|h| h.contains("partnumber=")).collect();
    assert!(uploads.len() >= 2, "{heads:#?}");
    for h in uploads {
        assert!(h.contains("\r\ncontent-md5: "), "{h}");
    }
}

/// The S3 server killed during a multipart upload: the backup fails cleanly (exit 1, one
/// error line naming endpoint and bucket), and once the server is back on the same
/// storage nothing is listed and no object was written. (s3s-fs cannot list multipart
/// uploads, so `cleanup` of the upload left behind is covered on moto above.)
#[test]
fn server_killed_mid_upload_fails_cleanly_and_lists_nothing() {
    let c = Cluster::single(&etcd35(), Opts::default());
    // ~24 MiB of hex values (~12 MiB stored): several 5 MiB parts.
    c.fill_random("/big/", 2400, 10 * 1024);
    let mut s3 = S3Server::start(&["backups"]);
    let dest = "s3://backups/killed";
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.into(),
        "--s3-part-size".into(),
        "5M".into(),
        // Slow enough that the server dies with parts still to come.
        "--rate-limit".into(),
        "4M".into(),
        "--retries".into(),
        "0".into(),
    ];
    args.extend(c.conn_args());
    let mut run = s3.spawn_lifeboat(&args, &[]);
    // The first part is on the server's disk: the upload is under way.
    let has_part = |root: &std::path::Path| {
        std::fs::read_dir(root).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".upload_id-")
        })
    };
    while !has_part(s3.root.path()) {
        assert!(
            run.try_wait().unwrap().is_none(),
            "backup ended before any part"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s3.kill();
    let o = run.wait_with_output().unwrap();
    assert_exit(&o, 1);
    let e = stderr(&o);
    let errors: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    assert!(
        errors[0].contains(&s3.endpoint()) && errors[0].contains("bucket backups"),
        "{e}"
    );

    s3.restart();
    let o = s3.lifeboat(["list", "--from", dest, "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o).as_array().unwrap().len(), 0);
    let objects = s3.root.path().join("backups/killed");
    let stored: Vec<_> = std::fs::read_dir(&objects)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
}

/// An S3-only backup reads its object once: the stream spools the database to the temp
/// dir (it fits in memory many times over), the hashkv walk reads the spool and the
/// read-back is the stored digest. The manifest's hashkv is etcd's own at the backup's
/// revision, and the same as a local backup's and as the ranged walk's (no room for a
/// spool), plain and encrypted; the spool leaves nothing behind. (A database too large to
/// spool while streaming is spooled by the read-back instead: `spool.rs`'s unit tests.)
#[test]
fn s3_read_back_spools_once_and_the_hashkv_stays_etcds() {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    // Several frames of 1 MiB, and a tree deep enough to jump around the file.
    c.fill_random("/spool/", 600, 8 * 1024);
    let s3 = S3Server::start(&["backups"]);
    let tmp = TempDir::new().unwrap();
    let spool_dir = tmp.path().join("spool");
    std::fs::create_dir(&spool_dir).unwrap();
    let spool_env = spool_dir.to_str().unwrap();
    let missing = tmp.path().join("missing");
    let age_id = age::x25519::Identity::generate();
    let key = age_id.to_public().to_string();
    let identity = tmp.path().join("ops.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &identity,
            format!("{}\n", age_id.to_string().expose_secret()),
        )
        .unwrap();
    }
    let backup = |to: &str, extra: &[&str], tmpdir: &str| {
        let mut args = vec!["backup".to_string(), "--to".into(), to.into(), "-v".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(c.conn_args());
        args.extend(["-o".into(), "json".into()]);
        let o = s3.lifeboat_with(&args, &[("TMPDIR", tmpdir)]);
        assert_exit(&o, 0);
        (json(&o), stderr(&o))
    };
    let local = TempDir::new().unwrap();
    let (m_local, _) = backup(local.path().to_str().unwrap(), &[], spool_env);
    let (m_spool, log) = backup("s3://backups/spool", &[], spool_env);
    assert!(log.contains("the stream spools the database"), "{log}");
    assert!(!log.contains("the read-back spools"), "{log}");
    let (m_ranged, log) = backup("s3://backups/ranged", &[], missing.to_str().unwrap());
    assert!(log.contains("ranged reads instead"), "{log}");
    assert!(!log.contains("spools the database"), "{log}");
    let (m_enc, log) = backup("s3://backups/enc", &["--encrypt-to", &key], spool_env);
    assert!(log.contains("spools the database"), "{log}");
    let (m_full, log) = backup("s3://backups/full", &["--read-back", "full"], spool_env);
    assert!(log.contains("spools the database"), "{log}");
    // The unlinked spool never shows in the directory, and nothing is left.
    assert_eq!(std::fs::read_dir(&spool_dir).unwrap().count(), 0);

    let rev = m_spool["revision"].as_i64().unwrap();
    let live: serde_json::Value = serde_json::from_str(&c.ctl_ok(&[
        "endpoint",
        "hashkv",
        "--rev",
        &rev.to_string(),
        "-w",
        "json",
    ]))
    .unwrap();
    let want = live[0]["HashKV"]["hash"].as_u64().expect("etcd's hashkv");
    for m in [&m_local, &m_spool, &m_ranged, &m_enc, &m_full] {
        assert_eq!(m["revision"].as_i64(), Some(rev), "{m}");
        assert_eq!(m["hashkv"].as_u64(), Some(want), "{m}");
    }
    // What was spooled was stored whole: verify reads it from S3 again.
    let id = m_spool["id"].as_str().unwrap();
    let o = s3.lifeboat(["verify", "--from", "s3://backups/spool", id]);
    assert_exit(&o, 0);
    // The encrypted one boots in `restore test` with the recorded hashkv.
    let o = s3.lifeboat([
        "restore",
        "test",
        "--from",
        "s3://backups/enc",
        "--etcd",
        bins.etcd.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["hashkv"].as_u64(), Some(want), "{r}");
    assert_eq!(r["hashkv_expected"].as_u64(), Some(want), "{r}");
}
