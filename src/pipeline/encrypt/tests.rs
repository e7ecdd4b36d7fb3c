use std::io::{Read, Write};

use super::read::{decrypt_at, decrypt_stream, IdentitySource, Keyring, Sealed};
use super::*;
use crate::io::ReadAt;
use crate::store::local::LocalStore;
use crate::store::Store;

const SSH_ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

/// The object the tests encrypt, as messages name it.
const OBJ: Sealed<'static> = Sealed {
    object: "obj",
    what: "backup b",
    recipients: &[],
};

fn x25519() -> (age::x25519::Identity, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (id, public)
}

#[test]
fn recipients_parse_and_name_what_is_wrong() {
    let (_, public) = x25519();
    assert_eq!(parse_recipient(&public).unwrap().text(), public);
    // An SSH key's comment is not part of the key.
    let r = parse_recipient(SSH_ED25519).unwrap();
    assert!(r.text().starts_with("ssh-ed25519 AAAA") && !r.text().contains("alice"));
    for (bad, says) in [
        ("age1notakey", "age X25519"),
        ("AGE-SECRET-KEY-1QQQ", "secret key"),
        ("ssh-ed25519 AAAAnotbase64!", "SSH public key"),
        ("ecdsa-sha2-nistp256 AAAA", "not a recipient"),
        ("", "not a recipient"),
    ] {
        let e = parse_recipient(bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn recipients_files_skip_comments_and_name_the_line() {
    let (_, a) = x25519();
    let (_, b) = x25519();
    let text = format!("# ops team\n\n{a}\n  {b}  \n# old: age1xxx\n{SSH_ED25519}\n");
    let r = parse_recipients_file("keys.txt", &text).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[1].text(), b);
    let e = parse_recipients_file("keys.txt", &format!("{a}\n# c\nage1bad\n")).unwrap_err();
    assert!(e.starts_with("keys.txt line 3: "), "{e}");
    let e = parse_recipients_file("keys.txt", "# nothing\n\n").unwrap_err();
    assert!(e.contains("no recipient"), "{e}");
    // The same key twice is one recipient.
    let twice = parse_recipients_file("k", &format!("{a}\n{a}\n")).unwrap();
    assert_eq!(Encryption::new(twice).unwrap().recipients(), vec![a]);
}

#[test]
fn identity_files_parse_and_refuse_public_keys() {
    let (id, public) = x25519();
    use age::secrecy::ExposeSecret;
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("key.txt");
    std::fs::write(
        &good,
        format!(
            "# created: now\n# public key: {public}\n{}\n",
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    let src = |p: &std::path::Path| IdentitySource {
        origin: "--identity".into(),
        path: p.to_path_buf(),
    };
    Keyring::load(&src(&good)).unwrap();
    let pubfile = d.path().join("pub.txt");
    std::fs::write(&pubfile, format!("{public}\n")).unwrap();
    let e = Keyring::load(&src(&pubfile)).unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    assert!(
        e.to_string().contains("line 1: this is a public key"),
        "{e}"
    );
    let e = Keyring::load(&src(&d.path().join("missing"))).unwrap_err();
    assert!(e.to_string().starts_with("--identity: "), "{e}");
}

/// Bytes with structure, so a misplaced read shows.
fn plaintext(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn encrypted_objects_read_back_at_random_offsets_and_hash_as_stored() {
    let d = tempfile::tempdir().unwrap();
    let store = LocalStore::open(d.path(), false).unwrap();
    let (id, public) = x25519();
    let enc = Encryption::new(vec![parse_recipient(&public).unwrap()]).unwrap();
    let run = ReadBackKey::generate();
    let data = plaintext(200_000 + 17); // several 64 KiB chunks and a short last one
    let (mut w, digest) = enc.wrap(store.create("obj").unwrap(), &run, "obj").unwrap();
    for piece in data.chunks(10_007) {
        w.write_all(piece).unwrap();
    }
    w.commit().unwrap();
    let stored = store.get_bytes("obj").unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    let (len, sha) = digest.get().expect("digest after commit");
    assert_eq!(len, stored.len() as u64);
    assert_eq!(
        sha,
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&stored))
    );

    // The recipient's key and the run's read-back key both open it.
    let user = Keyring::single("test key", id);
    for keys in [&user, &run.keyring()] {
        let r = decrypt_at(store.open("obj").unwrap(), keys, &OBJ).unwrap();
        assert_eq!(r.size(), data.len() as u64);
        let mut x = 12345u64;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (x >> 33) % data.len() as u64;
            let len = ((x >> 13) % 70_000).min(data.len() as u64 - off) as usize;
            let got = r.read_vec_at(off, len).unwrap();
            assert_eq!(
                got,
                &data[off as usize..off as usize + len],
                "at {off}+{len}"
            );
        }
        assert!(r.read_vec_at(data.len() as u64 - 1, 2).is_err());
        let mut all = Vec::new();
        decrypt_stream(store.load("obj", 0, None).unwrap(), keys, &OBJ)
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, data);
    }
    // The operator's identity file without one of the recipients' keys is a configuration
    // error (exit 2) at the flag that named it, naming the file, the backup and the
    // recipients: the backup is not damaged.
    let (other, other_public) = x25519();
    let file = d.path().join("other.key");
    std::fs::write(
        &file,
        format!(
            "# public key: {other_public}\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&other.to_string())
        ),
    )
    .unwrap();
    let wrong = Keyring::load(&IdentitySource {
        origin: "--identity".into(),
        path: file.clone(),
    })
    .unwrap();
    let recipients = vec![public.clone()];
    let sealed = Sealed {
        object: "d/obj",
        what: "backup b",
        recipients: &recipients,
    };
    let e = decrypt_at(store.open("obj").unwrap(), &wrong, &sealed)
        .err()
        .unwrap();
    assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    assert_eq!(e.locator().flag.as_deref(), Some("--identity"));
    let said = e.to_string();
    assert!(
        said.contains(&format!(
            "no identity in {} opens backup b (encrypted to {public})",
            file.display()
        )),
        "{said}"
    );
    let e = decrypt_stream(store.load("obj", 0, None).unwrap(), &wrong, &sealed)
        .err()
        .unwrap();
    assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{e}");
    // A key lifeboat made itself that does not open the object: the header was changed.
    let (stranger, _) = x25519();
    let e = decrypt_at(
        store.open("obj").unwrap(),
        &Keyring::single("a read-back key", stranger),
        &sealed,
    )
    .err()
    .unwrap();
    assert_eq!(e.exit_code(), crate::ExitCode::Integrity);
}

#[test]
fn a_flipped_ciphertext_byte_is_an_error_not_data() {
    let (id, public) = x25519();
    let enc = Encryption::new(vec![parse_recipient(&public).unwrap()]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let store = LocalStore::open(d.path(), false).unwrap();
    let data = plaintext(150_000);
    let (mut w, _) = enc
        .wrap(
            store.create("obj").unwrap(),
            &ReadBackKey::generate(),
            "obj",
        )
        .unwrap();
    w.write_all(&data).unwrap();
    w.commit().unwrap();
    let stored = store.get_bytes("obj").unwrap();
    let keys = Keyring::single("k", id);
    // A byte in the second 64 KiB chunk: the chunks around it still read, it does not.
    let mut middle = stored.clone();
    middle[stored.len() / 2] ^= 1;
    let r = decrypt_at(Box::new(middle.clone()), &keys, &OBJ).unwrap();
    assert_eq!(r.read_vec_at(0, 1000).unwrap(), &data[..1000]);
    assert!(r.read_vec_at(70_000, 1000).is_err());
    // (After a failed chunk age's reader may refuse more reads: an error, never data.)
    let r = decrypt_at(Box::new(middle), &keys, &OBJ).unwrap();
    assert_eq!(
        r.read_vec_at(140_000, 1000).unwrap(),
        &data[140_000..141_000]
    );
    // The last chunk is checked on open (it tells the plaintext's length): exit 3.
    let mut last = stored.clone();
    let n = last.len();
    last[n - 10] ^= 1;
    let e = decrypt_at(Box::new(last), &keys, &OBJ).err().unwrap();
    assert_eq!(e.exit_code(), crate::ExitCode::Integrity);
    // Truncated: also refused.
    let e = decrypt_at(Box::new(stored[..n - 20].to_vec()), &keys, &OBJ)
        .err()
        .unwrap();
    assert_eq!(e.exit_code(), crate::ExitCode::Integrity);
}
