//! The commands each finding asks for, written out with this cluster's values (endpoints,
//! member ids, names, peer URLs), so that an operator can run them as printed. Every remedy
//! ends with the section of docs/cluster-health.md that explains it.

use crate::source::etcd::{ClusterView, MemberInfo};

/// The page every remedy links into; its section anchors are the check names.
pub const DOC: &str = "docs/cluster-health.md";

/// `docs/cluster-health.md#<check>`.
pub fn doc_link(check: &str) -> String {
    format!("{DOC}#{check}")
}

/// What remedies need to know about the cluster.
pub struct Cluster<'a> {
    pub view: &'a ClusterView,
    /// The endpoints that answered, comma-separated (for `etcdctl --endpoints=`).
    pub endpoints: String,
}

impl<'a> Cluster<'a> {
    pub fn new(view: &'a ClusterView) -> Self {
        let mut eps: Vec<&str> = view
            .endpoints
            .iter()
            .filter(|s| s.reachable)
            .map(|s| s.endpoint.as_str())
            .collect();
        eps.dedup();
        let endpoints = if eps.is_empty() {
            view.endpoints
                .iter()
                .map(|s| s.endpoint.as_str())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            eps.join(",")
        };
        Cluster { view, endpoints }
    }

    /// `etcdctl --endpoints=... ARGS` against the members that answer (TLS flags as for
    /// lifeboat, if the cluster needs them).
    pub fn ctl(&self, args: &str) -> String {
        format!("etcdctl --endpoints={} {args}", self.endpoints)
    }

    /// Compact to the current revision, defragment every member that answers one at a
    /// time, and disarm the alarms: the way out of NOSPACE.
    pub fn free_space(&self) -> String {
        let eps: Vec<&str> = self.endpoints.split(',').collect();
        format!(
            "`rev=$({} | grep -o '\"revision\":[0-9]*' | head -1 | cut -d: -f2)`; `{}`; `for ep in {}; do etcdctl --endpoints=$ep defrag; done` (one member at a time: a defrag blocks its member); `{}`",
            self.ctl("endpoint status -w json"),
            self.ctl("compact $rev"),
            eps.join(" "),
            self.ctl("alarm disarm")
        )
    }

    /// `m0=http://10.0.0.1:2380,m1=...`: etcd's --initial-cluster for the current members.
    pub fn initial_cluster(&self) -> String {
        self.view
            .members
            .iter()
            .filter(|m| !m.name.is_empty())
            .flat_map(|m| m.peer_urls.iter().map(move |u| format!("{}={u}", m.name)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How to replace a member whose data cannot be trusted, in the order that works:
    /// remove, add (prints its environment), wipe, start as `existing`.
    pub fn replace_member(&self, m: &MemberInfo) -> String {
        let peer = m
            .peer_urls
            .first()
            .cloned()
            .unwrap_or_else(|| "PEER_URL".into());
        format!(
            "`{}`; `{}`; on its host stop etcd, move its data dir aside, and start it with --initial-cluster-state=existing and the --initial-cluster that `member add` printed",
            self.ctl(&format!("member remove {:x}", m.id)),
            self.ctl(&format!("member add {} --peer-urls={peer}", m.name)),
        )
    }

    /// The host part of a member's first peer URL: where to look.
    pub fn host_of(&self, m: &MemberInfo) -> String {
        m.peer_urls
            .first()
            .or(m.client_urls.first())
            .map(|u| {
                let hp = crate::source::etcd::strip_scheme(u);
                hp.rsplit_once(':').map_or(hp, |(h, _)| h).to_string()
            })
            .unwrap_or_else(|| "its host".into())
    }
}
