//! The Kubernetes part of `inspect --k8s`: keys and bytes per `/registry/<resource>` and
//! per namespace, and the largest live objects, fed one `key` bucket entry at a time.

use std::collections::HashMap;

use serde::Serialize;

use super::hashkv::fingerprint;
use super::report::{LargeKey, TopN};

/// Keys and bytes under one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefixUsage {
    pub name: String,
    /// Live keys (latest revision is a put).
    pub keys: u64,
    /// Bytes of their latest values.
    pub bytes: u64,
    /// All revisions stored (puts and tombstones) under the prefix.
    pub revisions: u64,
    /// Bytes of all stored revisions (what this prefix costs in the file).
    pub revision_bytes: u64,
}

/// The Kubernetes summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct K8sSummary {
    /// Per `/registry/<resource>` (or `/registry/<group>/<resource>`), largest first.
    pub resources: Vec<PrefixUsage>,
    /// Per namespace (with `--by-namespace`), largest first; cluster-scoped objects under "".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<PrefixUsage>>,
    /// Largest live objects.
    pub largest_objects: Vec<LargeKey>,
    /// Live keys outside `/registry/`.
    pub other_keys: u64,
}

/// Kubernetes key split: (resource, namespace) of `/registry/...` keys.
pub fn k8s_split(key: &[u8]) -> Option<(String, Option<String>)> {
    let rest = key.strip_prefix(b"/registry/")?;
    let parts: Vec<&[u8]> = rest.split(|b| *b == b'/').collect();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let first = parts.first()?;
    // API groups contain a dot (CRDs, aggregated APIs): /registry/<group>/<resource>/...
    let (resource, tail) = if first.contains(&b'.') && parts.len() >= 3 {
        (
            format!("{}/{}", s(first), s(parts.get(1)?)),
            parts.get(2..)?,
        )
    } else {
        (s(first), parts.get(1..)?)
    };
    let ns = if tail.len() >= 2 {
        Some(s(tail.first()?))
    } else {
        None
    };
    Some((resource, ns))
}

#[derive(Default)]
struct Live {
    size: u64,
    res: u32,
    ns: u32,
}

pub(super) struct K8sState {
    by_namespace: bool,
    res_names: Vec<String>,
    res_idx: HashMap<String, u32>,
    ns_names: Vec<String>,
    ns_idx: HashMap<String, u32>,
    res: Vec<PrefixUsage>,
    ns: Vec<PrefixUsage>,
    live: HashMap<u128, Live>,
    top: TopN,
}

impl K8sState {
    /// `top`: how many of the largest objects to list.
    pub(super) fn new(by_namespace: bool, top: usize) -> Self {
        K8sState {
            by_namespace,
            res_names: vec![],
            res_idx: HashMap::new(),
            ns_names: vec![],
            ns_idx: HashMap::new(),
            res: vec![],
            ns: vec![],
            live: HashMap::new(),
            // Candidates that a later revision replaces are dropped at the end: keep more.
            top: TopN::new(top.saturating_mul(8)),
        }
    }

    fn idx(names: &mut Vec<String>, idx: &mut HashMap<String, u32>, name: &str) -> u32 {
        if let Some(i) = idx.get(name) {
            return *i;
        }
        let i = names.len() as u32;
        names.push(name.to_string());
        idx.insert(name.to_string(), i);
        i
    }

    pub(super) fn feed(
        &mut self,
        user_key: &[u8],
        rev: i64,
        tombstone: bool,
        value_len: u64,
        entry_len: u64,
    ) {
        let Some((resource, ns)) = k8s_split(user_key) else {
            return;
        };
        let ri = Self::idx(&mut self.res_names, &mut self.res_idx, &resource);
        let ni = if self.by_namespace {
            Self::idx(
                &mut self.ns_names,
                &mut self.ns_idx,
                ns.as_deref().unwrap_or(""),
            )
        } else {
            0
        };
        while self.res.len() <= ri as usize {
            self.res.push(PrefixUsage::default());
        }
        while self.by_namespace && self.ns.len() <= ni as usize {
            self.ns.push(PrefixUsage::default());
        }
        let fp = fingerprint(user_key);
        if let Some(old) = self.live.remove(&fp) {
            if let Some(r) = self.res.get_mut(old.res as usize) {
                r.keys = r.keys.saturating_sub(1);
                r.bytes = r.bytes.saturating_sub(old.size);
            }
            if let Some(n) = self.ns.get_mut(old.ns as usize) {
                n.keys = n.keys.saturating_sub(1);
                n.bytes = n.bytes.saturating_sub(old.size);
            }
        }
        if let Some(r) = self.res.get_mut(ri as usize) {
            r.revisions += 1;
            r.revision_bytes += entry_len;
        }
        if let Some(n) = self.ns.get_mut(ni as usize) {
            n.revisions += 1;
            n.revision_bytes += entry_len;
        }
        if !tombstone {
            if let Some(r) = self.res.get_mut(ri as usize) {
                r.keys += 1;
                r.bytes += value_len;
            }
            if let Some(n) = self.ns.get_mut(ni as usize) {
                n.keys += 1;
                n.bytes += value_len;
            }
            self.live.insert(
                fp,
                Live {
                    size: value_len,
                    res: ri,
                    ns: ni,
                },
            );
            self.top.offer(value_len, user_key, rev);
        }
    }

    pub(super) fn finish(self) -> K8sSummary {
        let name = |mut v: Vec<PrefixUsage>, names: &[String]| {
            for (i, u) in v.iter_mut().enumerate() {
                u.name = names.get(i).cloned().unwrap_or_default();
            }
            v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
            v
        };
        let live = self.live;
        let want = self.top.n / 8;
        // Keep only candidates that are still the latest revision of a live key.
        let mut largest = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (size, key, rev) in self.top.into_sorted() {
            let fp = fingerprint(&key);
            if largest.len() >= want {
                break;
            }
            if live.get(&fp).is_some_and(|l| l.size == size) && seen.insert(fp) {
                largest.push(LargeKey {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    revision: rev,
                    size,
                });
            }
        }
        K8sSummary {
            resources: name(self.res, &self.res_names),
            namespaces: self.by_namespace.then(|| name(self.ns, &self.ns_names)),
            largest_objects: largest,
            other_keys: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_keys() {
        assert_eq!(
            k8s_split(b"/registry/pods/default/web-1"),
            Some(("pods".into(), Some("default".into())))
        );
        assert_eq!(
            k8s_split(b"/registry/namespaces/default"),
            Some(("namespaces".into(), None))
        );
        assert_eq!(
            k8s_split(b"/registry/example.com/widgets/ns1/w"),
            Some(("example.com/widgets".into(), Some("ns1".into())))
        );
        assert_eq!(
            k8s_split(b"/registry/apiregistration.k8s.io/apiservices/v1.apps"),
            Some(("apiregistration.k8s.io/apiservices".into(), None))
        );
        assert_eq!(k8s_split(b"/other/x"), None);
    }
}
