//! Member and cluster ids, computed exactly as etcd computes them at bootstrap and restore.
//!
//! A member's id is the first 8 bytes (big-endian) of SHA-1 over its peer URLs, re-serialised and
//! sorted, concatenated without separators, followed by the cluster token. (`member add` at run
//! time also appends the current unix time; bootstrap and restore do not.) The cluster id is the
//! first 8 bytes of SHA-1 over the member ids, sorted ascending, each as 8 big-endian bytes.
//! etcd prints both as lower-case hex without zero padding.

use sha1::{Digest, Sha1};

use crate::{Error, Result};

/// A peer URL as etcd accepts it: scheme http, https, unix or unixs; `host:port`; no path.
///
/// Returns the URL re-serialised the way Go's `url.URL.String()` prints such a URL (scheme
/// lower-cased, host kept as given), which is what etcd hashes.
pub fn normalize_peer_url(url: &str) -> Result<String> {
    let u = url.trim();
    let bad = |why: &str| Error::Usage(format!("peer URL {url:?}: {why}"));
    let (scheme, rest) = u
        .split_once("://")
        .ok_or_else(|| bad("expected scheme://host:port"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(bad("scheme must be http, https, unix or unixs"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(bad("a peer URL has no path, query or fragment"));
    }
    if rest.contains('@') {
        return Err(bad("a peer URL has no user information"));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err(bad("port must be a number from 0 to 65535"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = rest.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None; // an IPv6 address needs brackets
    }
    Some((host, port))
}

fn sha1_u64(data: &[u8]) -> u64 {
    let d = Sha1::digest(data);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The id etcd gives a member with these peer URLs in a cluster bootstrapped or restored with
/// `token` (`--initial-cluster-token`).
pub fn member_id(peer_urls: &[String], token: &str) -> Result<u64> {
    if peer_urls.is_empty() {
        return Err(Error::Usage("a member needs at least one peer URL".into()));
    }
    let mut urls = peer_urls
        .iter()
        .map(|u| normalize_peer_url(u))
        .collect::<Result<Vec<_>>>()?;
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    let id = sha1_u64(&b);
    if id == 0 {
        return Err(Error::Usage(format!(
            "peer URLs {peer_urls:?} with this token give member id 0, which etcd refuses; choose another token"
        )));
    }
    Ok(id)
}

/// The cluster id etcd derives from its members' ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_u64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    /// Vectors computed by etcd 3.5.1's `etcdutl snapshot restore` and bootstrap.
    #[test]
    fn etcd_vectors() {
        let t = "vec-restore-token";
        let a = member_id(&urls(&["http://10.0.0.1:2380"]), t).unwrap();
        let b = member_id(&urls(&["http://10.0.0.2:2380"]), t).unwrap();
        let c = member_id(&urls(&["http://10.0.0.3:2380", "http://10.0.0.33:2380"]), t).unwrap();
        assert_eq!(format!("{a:x}"), "3431175fc878b2e0");
        assert_eq!(format!("{b:x}"), "df439d11924b6b0e");
        assert_eq!(format!("{c:x}"), "d4ab213ae8f14bd3");
        assert_eq!(format!("{:x}", cluster_id(&[c, a, b])), "abe9a7bba0564853");

        let solo = member_id(&urls(&["http://127.0.0.1:22390"]), "vec-solo-token").unwrap();
        assert_eq!(format!("{solo:x}"), "c700564f4028b56b");
        assert_eq!(format!("{:x}", cluster_id(&[solo])), "1648f861f2b6c31c");

        let src = member_id(&urls(&["http://127.0.0.1:22380"]), "vec-src-token").unwrap();
        assert_eq!(format!("{src:x}"), "ad3dd0882f6c4e00");
        assert_eq!(format!("{:x}", cluster_id(&[src])), "a5c25905a4d8f99");
    }

    #[test]
    fn peer_urls_etcd_refuses() {
        for bad in [
            "10.0.0.1:2380",
            "ftp://10.0.0.1:2380",
            "http://10.0.0.1",
            "http://10.0.0.1:2380/path",
            "http://10.0.0.1:port",
            "http://:2380",
            "http://fe80::1:2380",
        ] {
            assert!(normalize_peer_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_peer_url(" HTTPS://[fe80::1]:2380 ").unwrap(),
            "https://[fe80::1]:2380"
        );
    }
}
