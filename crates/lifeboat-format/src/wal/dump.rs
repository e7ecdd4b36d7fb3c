//! Describing WAL records for people and scripts (`lifeboat wal dump`): entry type, term,
//! index, and for normal entries what the request does (formats §5.5), decoded with the
//! request messages of [`super::requests`].

use prost::Message;
use serde::Serialize;

pub use super::requests::*;

use super::record::{
    self, ConfChange, ConfChangeV2, Entry, HardState, Metadata, Record, WalSnapshot,
};

/// A key for display: printable ASCII as is, everything else escaped.
pub fn show_key(k: &[u8]) -> String {
    let mut s = String::with_capacity(k.len() + 2);
    s.push('"');
    for &b in k {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// `key` with `range_end` as etcdctl would describe it.
pub fn show_range(key: &[u8], end: &[u8]) -> String {
    if end.is_empty() {
        return show_key(key);
    }
    if end == [0] {
        return format!("{}.. (all keys from)", show_key(key));
    }
    let mut prefix_end = key.to_vec();
    while let Some(last) = prefix_end.pop() {
        if last < 0xff {
            prefix_end.push(last + 1);
            break;
        }
    }
    if prefix_end == end {
        return format!("prefix {}", show_key(key));
    }
    format!("[{}, {})", show_key(key), show_key(end))
}

/// Operations shown per txn branch before "(+N more)".
const OPS_SHOWN: usize = 3;

fn describe_ops(ops: &[RequestOp], depth: u32) -> Vec<String> {
    let mut v: Vec<String> = ops
        .iter()
        .take(OPS_SHOWN)
        .map(|op| {
            if let Some(p) = &op.request_put {
                format!("put {} ({} bytes)", show_key(&p.key), p.value.len())
            } else if let Some(d) = &op.request_delete_range {
                format!("delete {}", show_range(&d.key, &d.range_end))
            } else if let Some(r) = &op.request_range {
                format!("get {}", show_range(&r.key, &r.range_end))
            } else if let Some(t) = &op.request_txn {
                if depth > 8 {
                    "txn (nested too deep)".into()
                } else {
                    match TxnRequest::decode(t.as_slice()) {
                        Ok(t) => describe_txn(&t, depth + 1),
                        Err(e) => format!("txn (undecodable: {e})"),
                    }
                }
            } else {
                "empty op".into()
            }
        })
        .collect();
    if ops.len() > OPS_SHOWN {
        v.push(format!("(+{} more)", ops.len() - OPS_SHOWN));
    }
    v
}

fn describe_txn(t: &TxnRequest, depth: u32) -> String {
    let cmp: Vec<String> = t
        .compare
        .iter()
        .map(|c| {
            let target = ["version", "create", "mod", "value", "lease"]
                .get(c.target as usize)
                .copied()
                .unwrap_or("?");
            let op = ["=", ">", "<", "!="]
                .get(c.result as usize)
                .copied()
                .unwrap_or("?");
            let v = if let Some(v) = c.version {
                v.to_string()
            } else if let Some(v) = c.create_revision {
                v.to_string()
            } else if let Some(v) = c.mod_revision {
                v.to_string()
            } else if let Some(v) = &c.value {
                show_key(v)
            } else if let Some(v) = c.lease {
                v.to_string()
            } else {
                "0".into()
            };
            format!("{target}({}) {op} {v}", show_key(&c.key))
        })
        .collect();
    format!(
        "txn if [{}] then [{}] else [{}]",
        cmp.join(", "),
        describe_ops(&t.success, depth).join("; "),
        describe_ops(&t.failure, depth).join("; ")
    )
}

/// What a normal entry's payload asks etcd to do: (kind, description).
pub fn describe_request(data: &[u8]) -> (&'static str, String) {
    if data.is_empty() {
        return ("noop", "leader no-op".into());
    }
    let r = match InternalRaftRequest::decode(data) {
        Ok(r) => r,
        Err(_) => {
            return match RequestV2::decode(data) {
                Ok(v) => ("v2", format!("v2 {} {} {}", v.method, v.path, v.val)),
                Err(e) => ("undecodable", format!("undecodable request: {e}")),
            }
        }
    };
    kv_request(&r)
        .or_else(|| lease_request(&r))
        .or_else(|| cluster_request(&r))
        .or_else(|| auth_request(&r))
        .unwrap_or_else(|| ("other", format!("request id {:x} (kind not decoded)", r.id)))
}

/// What a request is called (`--type`) and what it does, when it is of a function's kind.
type Said = Option<(&'static str, String)>;

/// Keys: put, delete, txn, compaction, range.
fn kv_request(r: &InternalRaftRequest) -> Said {
    if let Some(p) = &r.put {
        let mut s = format!("put {} ({} bytes)", show_key(&p.key), p.value.len());
        if p.lease != 0 {
            s.push_str(&format!(" lease {:x}", p.lease));
        }
        return Some(("put", s));
    }
    if let Some(d) = &r.delete_range {
        return Some((
            "delete-range",
            format!("delete {}", show_range(&d.key, &d.range_end)),
        ));
    }
    if let Some(t) = &r.txn {
        return Some(match TxnRequest::decode(t.as_slice()) {
            Ok(t) => ("txn", describe_txn(&t, 0)),
            Err(e) => ("txn", format!("txn (undecodable: {e})")),
        });
    }
    if let Some(c) = &r.compaction {
        return Some((
            "compaction",
            format!(
                "compact to revision {}{}",
                c.revision,
                if c.physical { " (physical)" } else { "" }
            ),
        ));
    }
    if let Some(q) = &r.range {
        return Some(("range", format!("get {}", show_range(&q.key, &q.range_end))));
    }
    None
}

/// Leases: grant, revoke, checkpoint.
fn lease_request(r: &InternalRaftRequest) -> Said {
    if let Some(l) = &r.lease_grant {
        return Some((
            "lease-grant",
            format!("lease grant {:x} ttl {}s", l.id, l.ttl),
        ));
    }
    if let Some(l) = &r.lease_revoke {
        return Some(("lease-revoke", format!("lease revoke {:x}", l.id)));
    }
    if let Some(l) = &r.lease_checkpoint {
        let c: Vec<String> = l
            .checkpoints
            .iter()
            .map(|c| format!("{:x}={}s", c.id, c.remaining_ttl))
            .collect();
        return Some((
            "lease-checkpoint",
            format!("lease checkpoint {}", c.join(" ")),
        ));
    }
    None
}

/// The cluster itself: alarms, versions, member attributes, downgrades, v2 requests.
fn cluster_request(r: &InternalRaftRequest) -> Said {
    if let Some(a) = &r.alarm {
        let action = ["get", "activate", "deactivate"]
            .get(a.action as usize)
            .copied()
            .unwrap_or("?");
        let alarm = ["none", "NOSPACE", "CORRUPT"]
            .get(a.alarm as usize)
            .copied()
            .unwrap_or("?");
        return Some((
            "alarm",
            format!("alarm {action} {alarm} member {:x}", a.member_id),
        ));
    }
    if let Some(v) = &r.cluster_version_set {
        return Some(("cluster-version", format!("set cluster version {}", v.ver)));
    }
    if let Some(m) = &r.cluster_member_attr_set {
        let (name, urls) = m
            .member_attributes
            .as_ref()
            .map(|a| (a.name.clone(), a.client_urls.join(",")))
            .unwrap_or_default();
        return Some((
            "member-attr",
            format!(
                "publish member {:x} name {name} client urls {urls}",
                m.member_id
            ),
        ));
    }
    if let Some(d) = &r.downgrade_info_set {
        return Some((
            "downgrade",
            format!("downgrade enabled={} target {}", d.enabled, d.ver),
        ));
    }
    if let Some(v2) = &r.v2 {
        return Some(match RequestV2::decode(v2.as_slice()) {
            Ok(v) => ("v2", format!("v2 {} {} {}", v.method, v.path, v.val)),
            Err(e) => ("v2", format!("v2 (undecodable: {e})")),
        });
    }
    None
}

/// Authentication and users/roles.
fn auth_request(r: &InternalRaftRequest) -> Said {
    let auth = [
        (r.auth_enable.is_some(), "auth enable".to_string()),
        (r.auth_disable.is_some(), "auth disable".to_string()),
        (r.authenticate.is_some(), "authenticate".to_string()),
    ];
    for (present, s) in auth {
        if present {
            return Some(("auth", s));
        }
    }
    let named = [
        (&r.auth_user_add, "user add"),
        (&r.auth_user_delete, "user delete"),
        (&r.auth_user_change_password, "user change password"),
        (&r.auth_user_grant_role, "user grant role"),
        (&r.auth_user_revoke_role, "user revoke role"),
        (&r.auth_role_add, "role add"),
        (&r.auth_role_delete, "role delete"),
        (&r.auth_role_grant_permission, "role grant permission"),
        (&r.auth_role_revoke_permission, "role revoke permission"),
    ];
    for (n, what) in named {
        if let Some(n) = n {
            return Some(("auth", format!("{what} {}", n.name)));
        }
    }
    None
}

/// One record, described.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    pub file: String,
    pub offset: u64,
    pub record: u64,
    #[serde(rename = "type")]
    pub rtype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// For normal entries: put, delete-range, txn, compaction, lease-grant, ... or noop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'static str>,
    pub summary: String,
    /// Member JSON of a conf change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<serde_json::Value>,
    /// The record was read past a failure (salvage), etcd would not see it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub salvaged: bool,
}

/// A frame that failed to decode, described where etcd meets it, with what etcd does.
pub fn describe_failure(file: &str, f: &super::Failure, salvaged: bool) -> Described {
    let verdict = if f.is_unexpected_eof() && f.in_last_file {
        "torn write: etcd truncates the log here"
    } else if f.is_unexpected_eof() {
        "unexpected EOF outside the last file: etcd cannot repair"
    } else {
        "corrupt: etcd refuses to start"
    };
    Described {
        file: file.to_string(),
        offset: f.offset,
        record: f.number,
        rtype: "damaged",
        entry_type: None,
        term: None,
        index: None,
        request: None,
        summary: format!("{} ({verdict})", f.kind),
        member: None,
        salvaged,
    }
}

/// One line of `wal dump`'s text output.
pub fn text_line(d: &Described) -> String {
    let mut line = format!("{}:{} #{} {}", d.file, d.offset, d.record, d.rtype);
    if let Some(t) = d.entry_type {
        line.push_str(&format!(" {t}"));
    }
    if let (Some(t), Some(i)) = (d.term, d.index) {
        line.push_str(&format!(" term={t} index={i}"));
    }
    line.push(' ');
    line.push_str(&d.summary);
    if d.salvaged {
        line.push_str("  [salvaged: etcd stops before this record]");
    }
    line
}

/// Describe one record.
pub fn describe(file: &str, offset: u64, number: u64, rec: &Record<'_>) -> Described {
    let mut d = Described {
        file: file.to_string(),
        offset,
        record: number,
        rtype: record::type_name(rec.rtype),
        entry_type: None,
        term: None,
        index: None,
        request: None,
        summary: String::new(),
        member: None,
        salvaged: false,
    };
    let data = rec.data();
    match rec.rtype {
        record::CRC => d.summary = format!("crc {:08x}", rec.crc),
        record::METADATA => {
            d.summary = match Metadata::decode(data) {
                Ok(m) => format!("member {:x} cluster {:x}", m.node_id, m.cluster_id),
                Err(e) => format!("undecodable metadata: {e}"),
            }
        }
        record::STATE => {
            d.summary = match HardState::decode(data) {
                Ok(h) => format!(
                    "hardstate term {} vote {:x} commit {}",
                    h.term, h.vote, h.commit
                ),
                Err(e) => format!("undecodable hardstate: {e}"),
            }
        }
        record::SNAPSHOT => {
            d.summary = match WalSnapshot::decode(data) {
                Ok(s) => {
                    d.index = Some(s.index);
                    d.term = Some(s.term);
                    let voters = s
                        .conf_state
                        .map(|c| {
                            c.voters
                                .iter()
                                .map(|v| format!("{v:x}"))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    format!(
                        "snapshot index {} term {} voters [{voters}]",
                        s.index, s.term
                    )
                }
                Err(e) => format!("undecodable snapshot record: {e}"),
            }
        }
        record::ENTRY => match Entry::decode(data) {
            Ok(e) => {
                d.term = Some(e.term);
                d.index = Some(e.index);
                d.entry_type = Some(record::entry_type_name(e.etype));
                match e.etype {
                    record::ENTRY_NORMAL => {
                        let (kind, s) = describe_request(e.data);
                        d.request = Some(kind);
                        d.summary = s;
                    }
                    record::ENTRY_CONF_CHANGE => match ConfChange::decode(e.data) {
                        Ok(c) => {
                            d.summary = format!(
                                "{} {:x}",
                                record::conf_change_type_name(c.change_type),
                                c.node_id
                            );
                            d.member = serde_json::from_slice(c.context).ok();
                            if let Some(m) = &d.member {
                                d.summary.push(' ');
                                d.summary.push_str(&m.to_string());
                            }
                        }
                        Err(e) => d.summary = format!("undecodable conf change: {e}"),
                    },
                    record::ENTRY_CONF_CHANGE_V2 => match ConfChangeV2::decode(e.data) {
                        Ok(c) => {
                            let ch: Vec<String> = c
                                .changes
                                .iter()
                                .map(|(t, id)| {
                                    format!("{} {id:x}", record::conf_change_type_name(*t))
                                })
                                .collect();
                            d.summary = format!("conf change v2 [{}]", ch.join(", "));
                            d.member = serde_json::from_slice(c.context).ok();
                        }
                        Err(e) => d.summary = format!("undecodable conf change v2: {e}"),
                    },
                    t => d.summary = format!("entry type {t}"),
                }
            }
            Err(e) => d.summary = format!("undecodable entry: {e}"),
        },
        t => d.summary = format!("unknown record type {t}"),
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let put = InternalRaftRequest {
            put: Some(PutRequest {
                key: b"/a".to_vec(),
                value: b"xyz".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (k, s) = describe_request(&put.encode_to_vec());
        assert_eq!((k, s.as_str()), ("put", "put \"/a\" (3 bytes)"));
        let del = InternalRaftRequest {
            delete_range: Some(DeleteRangeRequest {
                key: b"/p/".to_vec(),
                range_end: b"/p0".to_vec(),
            }),
            ..Default::default()
        };
        assert_eq!(
            describe_request(&del.encode_to_vec()).1,
            "delete prefix \"/p/\""
        );
        assert_eq!(describe_request(&[]).0, "noop");
        assert_eq!(show_key(b"a\x00"), "\"a\\x00\"");
    }
}
