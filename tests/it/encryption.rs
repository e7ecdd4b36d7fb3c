//! Client-side encryption (age) end to end against a real etcd: an encrypted backup holds
//! no plaintext, round-trips through `fetch` and `etcdutl snapshot restore`, reads through
//! `inspect`/`get DEST:ID` with the identity, and refuses clearly without it or with the
//! wrong one (exit 2: a configuration error, never damage). One cluster for the local cases; S3 on s3s-fs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;
use age::secrecy::ExposeSecret;

const NEEDLE: &str = "PLAINTEXT-NEEDLE-d41d8cd98f00b204";

/// A fresh age key pair: the identity file (as age-keygen writes it) and the public key.
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "# created: by a test\n# public key: {public}\n{}\n",
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    (path, public)
}

fn lifeboat_env(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(lifeboat());
    cmd.args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("LIFEBOAT_IDENTITY")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lifeboat")
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn backup(c: &Cluster, extra: &[&str]) -> serde_json::Value {
    let mut a = args(&["backup", "-o", "json"]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(c.conn_args());
    let o = lifeboat_env(&a, &[]);
    assert_exit(&o, 0);
    json(&o)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_backups_round_trip_and_need_the_key() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/enc/", 200, 100);
    c.put("/enc/needle", NEEDLE);
    let keys = TempDir::new().unwrap();
    let (identity, public) = keypair(keys.path(), "ops.key");
    let (wrong, _) = keypair(keys.path(), "other.key");
    let identity = identity.to_str().unwrap();
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();

    let m = backup(&c, &["--to", d, "--encrypt-to", &public]);
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["encryption"], "age", "{m}");
    assert_eq!(m["recipients"], serde_json::json!([public]), "{m}");
    // Stored: an age file, with no plaintext of the value in it.
    let raw = std::fs::read(dest.path().join(format!("{id}.db.zst"))).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(&raw, NEEDLE.as_bytes()));
    assert_eq!(raw.len() as u64, m["stored_size"].as_u64().unwrap());
    // The manifest is plaintext and holds no secret.
    let manifest =
        std::fs::read_to_string(dest.path().join(format!("{id}.manifest.json"))).unwrap();
    assert!(!manifest.contains("AGE-SECRET-KEY"), "{manifest}");

    // list needs no key, and says which backups are encrypted; so does backup's text.
    let o = lifeboat_env(&args(&["list", "--from", d]), &[]);
    assert_exit(&o, 0);
    let listed = stdout(&o);
    let header = listed.lines().next().unwrap();
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    let col = header
        .find("ENCRYPTED")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row.get(col..), Some("age"), "{listed}");
    let mut a = args(&["backup", "--to", d, "--encrypt-to", &public]);
    a.extend(c.conn_args());
    let o = lifeboat_env(&a, &[]);
    assert_exit(&o, 0);
    let short: String = public.chars().take(20).collect();
    assert!(
        stdout(&o).contains(&format!("encryption:    age, to {short}…")),
        "{}",
        stdout(&o)
    );
    // verify without a key says which key is needed (exit 2).
    let o = lifeboat_env(&args(&["verify", "--from", d, &id]), &[]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("backup {id} in {d} is encrypted to {public}"))
            && e.contains("--identity FILE"),
        "{e}"
    );
    // The right key verifies.
    assert_exit(
        &lifeboat_env(
            &args(&["verify", "--from", d, &id, "--identity", identity]),
            &[],
        ),
        0,
    );
    wrong_key_is_a_configuration_error(&c, dest.path(), &id, &public, &wrong);

    // inspect and get DEST:ID with the key (flag and environment).
    let spec = format!("{d}:{id}");
    let o = lifeboat_env(&args(&["inspect", &spec, "--identity", identity]), &[]);
    assert_exit(&o, 0);
    let o = lifeboat_env(
        &args(&["get", &spec, "/enc/needle"]),
        &[("LIFEBOAT_IDENTITY", identity)],
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(NEEDLE), "{}", stdout(&o));
    let o = lifeboat_env(&args(&["get", &spec, "/enc/needle"]), &[]);
    assert_exit(&o, 2);
    // The data object copied out on its own reads as a FILE with the key.
    let object = dest.path().join(format!("{id}.db.zst"));
    let object = object.to_str().unwrap();
    let o = lifeboat_env(
        &args(&["get", object, "/enc/needle", "--identity", identity]),
        &[],
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(NEEDLE), "{}", stdout(&o));
    let o = lifeboat_env(&args(&["inspect", object]), &[]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("age-encrypted"), "{}", stderr(&o));

    // fetch decrypts into a snapshot that etcdutl restores (hash checked) and etcd serves.
    let snap = dest.path().join("snap.db");
    let o = lifeboat_env(
        &args(&[
            "fetch",
            "--from",
            d,
            &id,
            "--out",
            snap.to_str().unwrap(),
            "--identity",
            identity,
        ]),
        &[],
    );
    assert_exit(&o, 0);
    let r = Cluster::single(
        &etcd35(),
        Opts {
            restore_from: Some(snap),
            ..Opts::default()
        },
    );
    assert!(r.ctl_ok(&["get", "/enc/needle"]).contains(NEEDLE));
    drop(r);

    // restore plan verifies and reads the backup with the identity; without it, exit 2.
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"new\"\nold_cluster_token = \"{}\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"a\"\npeer_urls = [\"http://127.0.0.1:2380\"]\nclient_urls = [\"http://127.0.0.1:2379\"]\ndata_dir = \"{}\"\nhost = \"no-such-host.invalid\"\n",
            c.token,
            work.path().join("member-a").display()
        ),
    )
    .unwrap();
    let from = format!("{d}:{id}");
    let plan = |extra: &[&str]| {
        let mut a = args(&["restore", "plan", "--from", &from, "--topology"]);
        a.push(topo.to_str().unwrap().to_string());
        a.extend(args(&["--out", work.path().join("plan").to_str().unwrap()]));
        a.extend(args(extra));
        lifeboat_env(&a, &[])
    };
    let o = plan(&[]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--identity"), "{}", stderr(&o));
    assert!(
        !work.path().join("plan").exists(),
        "nothing written without the key"
    );
    let o = plan(&["--identity", identity]);
    assert_exit(&o, 0);
    assert!(work.path().join("plan/plan.json").is_file());

    // A recipients file with a bad line: exit 2 naming the file and line, nothing stored.
    let bad = keys.path().join("recipients.txt");
    std::fs::write(&bad, format!("# team\n{public}\nage1typo\n")).unwrap();
    let mut a = args(&[
        "backup",
        "--to",
        d,
        "--encrypt-to-file",
        bad.to_str().unwrap(),
    ]);
    a.extend(c.conn_args());
    let o = lifeboat_env(&a, &[]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("recipients.txt line 3"),
        "{}",
        stderr(&o)
    );

    // SSH ed25519 recipient, opened with the SSH private key.
    if Command::new("ssh-keygen").arg("-?").output().is_ok() {
        let key = keys.path().join("id_ed25519");
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let ssh_dest = TempDir::new().unwrap();
        let sd = ssh_dest.path().to_str().unwrap();
        let m = backup(&c, &["--to", sd, "--encrypt-to", public.trim()]);
        let sid = m["id"].as_str().unwrap();
        assert!(
            m["recipients"][0]
                .as_str()
                .unwrap()
                .starts_with("ssh-ed25519 "),
            "{m}"
        );
        let o = lifeboat_env(
            &args(&[
                "get",
                &format!("{sd}:{sid}"),
                "/enc/needle",
                "--identity",
                key.to_str().unwrap(),
            ]),
            &[],
        );
        assert_exit(&o, 0);
        assert!(stdout(&o).contains(NEEDLE));
    } else {
        println!("note: ssh-keygen not installed; the SSH recipient case was skipped");
    }

    // Fan-out from the config file: a plain copy and an encrypted one from one stream.
    let plain = TempDir::new().unwrap();
    let secret = TempDir::new().unwrap();
    let recipients = keys.path().join("team.txt");
    std::fs::write(&recipients, format!("# ops\n\n{public}\n")).unwrap();
    let cfg = keys.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[destination]]\nurl = {:?}\n\n[[destination]]\nurl = {:?}\nencrypt_to_file = {:?}\n\n[encryption]\nidentity = {:?}\n",
            plain.path(),
            secret.path(),
            recipients,
            identity
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let m = backup(&c, &["--config", cfg]);
    let fid = m["id"].as_str().unwrap();
    let plain_obj = std::fs::read(plain.path().join(format!("{fid}.db.zst"))).unwrap();
    let secret_obj = std::fs::read(secret.path().join(format!("{fid}.db.zst"))).unwrap();
    assert!(
        plain_obj.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "zstd magic"
    );
    assert!(secret_obj.starts_with(b"age-encryption.org/v1\n"));
    for (dir, enc) in [(&plain, "none"), (&secret, "age")] {
        let p = dir.path().to_str().unwrap();
        let o = lifeboat_env(&args(&["list", "--from", p, "-o", "json"]), &[]);
        assert_eq!(json(&o)[0]["encryption"], enc);
        // The config file's [encryption] identity opens the encrypted copy.
        assert_exit(
            &lifeboat_env(&args(&["verify", "--from", p, fid, "--config", cfg]), &[]),
            0,
        );
    }
}

/// An identity that opens none of a backup's recipients is a configuration error (exit 2,
/// one line naming the file, the backup and its recipients), never damage: on every path
/// that reads backup data, and `verify --all` records nothing against the backups it could
/// not open while it still verifies (and records) the others.
fn wrong_key_is_a_configuration_error(
    c: &Cluster,
    dest: &Path,
    id: &str,
    public: &str,
    wrong: &Path,
) {
    let d = dest.to_str().unwrap();
    let w = wrong.to_str().unwrap();
    let says = format!("no identity in {w} opens backup {id} (encrypted to {public})");
    let spec = format!("{d}:{id}");
    let out = dest.join("wrong.db");
    let out = out.to_str().unwrap();
    for cmd in [
        args(&["verify", "--from", d, id, "--identity", w]),
        args(&["fetch", "--from", d, id, "--out", out, "--identity", w]),
        args(&["inspect", &spec, "--identity", w]),
        args(&["get", &spec, "/enc/needle", "--identity", w]),
    ] {
        let o = lifeboat_env(&cmd, &[]);
        assert_exit(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(&says), "{cmd:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{cmd:?}: one line: {e}");
    }
    assert!(!Path::new(out).exists(), "fetch wrote nothing");
    // JSON: the error document locates it at the flag.
    let o = lifeboat_env(
        &args(&["verify", "--from", d, id, "--identity", w, "-o", "json"]),
        &[],
    );
    assert_exit(&o, 2);
    let doc = json(&o);
    assert_eq!(doc["flag"], "--identity", "{doc}");
    assert_eq!(doc["exit_code"], 2, "{doc}");

    // verify --all with only encrypted backups: exit 2, nothing recorded.
    let records = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".verified.json"))
            .collect()
    };
    let o = lifeboat_env(
        &args(&["verify", "--from", d, "--all", "--identity", w]),
        &[],
    );
    assert_exit(&o, 2);
    assert!(stderr(&o).contains(&says), "{}", stderr(&o));
    assert!(!stdout(&o).contains("DAMAGED"), "{}", stdout(&o));
    assert!(records(dest).is_empty(), "{:?}", records(dest));

    // Beside a plain backup: the plain one is verified and recorded, the encrypted one is
    // named on stderr and left unrecorded; exit 2. Prune still counts the plain one as
    // the newest good backup and keeps the encrypted one for no "failed verification".
    let mixed = TempDir::new().unwrap();
    let md = mixed.path().to_str().unwrap();
    for name in [format!("{id}.manifest.json"), format!("{id}.db.zst")] {
        std::fs::copy(dest.join(&name), mixed.path().join(&name)).unwrap();
    }
    let plain = backup(c, &["--to", md]);
    let plain_id = plain["id"].as_str().unwrap();
    let o = lifeboat_env(
        &args(&[
            "verify",
            "--from",
            md,
            "--all",
            "--identity",
            w,
            "-o",
            "json",
        ]),
        &[],
    );
    assert_exit(&o, 2);
    let reports = json(&o);
    assert_eq!(reports.as_array().unwrap().len(), 1, "{reports}");
    assert_eq!(reports[0]["id"], plain_id, "{reports}");
    assert_eq!(reports[0]["ok"], true, "{reports}");
    assert!(stderr(&o).contains(&says), "{}", stderr(&o));
    assert_eq!(
        records(mixed.path()),
        vec![format!("{plain_id}.verified.json")]
    );
    let o = lifeboat_env(
        &args(&[
            "prune",
            "--from",
            md,
            "--keep-last",
            "1",
            "--dry-run",
            "-o",
            "json",
        ]),
        &[],
    );
    assert_exit(&o, 0);
    let plan = json(&o);
    let text = plan.to_string();
    assert!(!text.contains("failed verification"), "{text}");
}

#[cfg(feature = "s3")]
#[test]
fn an_encrypted_backup_to_s3_verifies_and_inspects() {
    use crate::common::s3::S3Server;
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/s3/needle", NEEDLE);
    let keys = TempDir::new().unwrap();
    let (identity, public) = keypair(keys.path(), "ops.key");
    let identity = identity.to_str().unwrap();
    let s3 = S3Server::start(&["backups"]);
    let dest = "s3://backups/enc";
    let mut a = args(&[
        "backup",
        "--to",
        dest,
        "--encrypt-to",
        &public,
        "-o",
        "json",
    ]);
    a.extend(c.conn_args());
    let o = s3.lifeboat(&a);
    assert_exit(&o, 0);
    let id = json(&o)["id"].as_str().unwrap().to_string();
    assert_exit(
        &s3.lifeboat(["verify", "--from", dest, &id, "--identity", identity]),
        0,
    );
    let o = s3.lifeboat([
        "get",
        &format!("{dest}:{id}"),
        "/s3/needle",
        "--identity",
        identity,
    ]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(NEEDLE));
    assert_exit(
        &s3.lifeboat(["inspect", &format!("{dest}:{id}"), "--identity", identity]),
        0,
    );
    assert_exit(&s3.lifeboat(["verify", "--from", dest, &id]), 2);
}
