//! Writing the `member/snap/*.snap` file of a restored member (formats §7.3): a
//! `raftpb.Snapshot` of the v2 store that holds only the members' raft attributes, as
//! etcd 3.5's `etcdutl snapshot restore` writes it and etcd 3.4 reads membership from.
//!
//! The v2 store's JSON is produced by hand in exactly Go's `encoding/json` output (field
//! order of the Go structs, map keys sorted, HTML-safe string escaping, 1000 event slots),
//! because the equivalence test demands etcdutl's bytes.

use crate::wal::record::encode;
use crate::wal::write::{conf_state, RestoreStyle};

/// Capacity of the v2 store's event history (`EventHistory`'s queue).
pub const EVENT_CAPACITY: usize = 1000;

/// One member for the v2 store: id and its sorted, normalised peer URLs.
pub struct V2Member<'a> {
    pub id: u64,
    pub peer_urls: &'a [String],
}

/// A Go `encoding/json` string literal (HTML-safe, as `json.Marshal` writes it).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"peerURLs":[...]}`: a member's `RaftAttributes` as Go marshals them.
pub fn raft_attributes_json(peer_urls: &[String]) -> String {
    let urls: Vec<String> = peer_urls.iter().map(|u| go_json_string(u)).collect();
    format!("{{\"peerURLs\":[{}]}}", urls.join(","))
}

/// A member's JSON as stored in the `members` bucket and in ConfChange contexts.
pub fn member_json(id: u64, peer_urls: &[String], name: &str) -> String {
    let urls: Vec<String> = peer_urls.iter().map(|u| go_json_string(u)).collect();
    let mut s = format!("{{\"id\":{id},\"peerURLs\":[{}]", urls.join(","));
    if !name.is_empty() {
        s.push_str(&format!(",\"name\":{}", go_json_string(name)));
    }
    s.push('}');
    s
}

fn node(path: &str, index: usize, value: &str, children: Option<&str>) -> String {
    format!(
        "{{\"Path\":{},\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":\"0001-01-01T00:00:00Z\",\"Value\":{},\"Children\":{}}}",
        go_json_string(path),
        go_json_string(value),
        children.unwrap_or("null")
    )
}

/// The v2 store JSON after adding `members` (ascending id; at most [`EVENT_CAPACITY`]).
pub fn v2_store_json(members: &[V2Member<'_>]) -> String {
    v2_store_json_styled(members, RestoreStyle::Etcd35)
}

/// [`v2_store_json`] as `style`'s etcdutl writes it (3.6+ counts one failed Get). 3.6+ adds
/// the members in map order, so with several members its creation indexes vary from run
/// to run; this writes them in ascending id order, as 3.5 does.
pub fn v2_store_json_styled(members: &[V2Member<'_>], style: RestoreStyle) -> String {
    let gets_fail = style.v2_gets_fail();
    let n = members.len();
    // Creation order is ascending id (index i+1); Go prints map keys sorted as strings.
    let mut by_key: Vec<(String, usize, &V2Member<'_>)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{:x}", m.id), i + 1, m))
        .collect();
    by_key.sort_by(|a, b| a.0.cmp(&b.0));
    let member_nodes: Vec<String> = by_key
        .iter()
        .map(|(hex, i, m)| {
            let dir = format!("/0/members/{hex}");
            let attr = node(
                &format!("{dir}/raftAttributes"),
                *i,
                &raft_attributes_json(m.peer_urls),
                None,
            );
            let children = format!("{{\"raftAttributes\":{attr}}}");
            format!(
                "{}:{}",
                go_json_string(hex),
                node(&dir, *i, "", Some(&children))
            )
        })
        .collect();
    let members_dir = if n == 0 {
        String::new()
    } else {
        let ch = format!("{{{}}}", member_nodes.join(","));
        format!("\"members\":{}", node("/0/members", 1, "", Some(&ch)))
    };
    let zero = node("/0", 0, "", Some(&format!("{{{members_dir}}}")));
    let one = node("/1", 0, "", Some("{}"));
    let root = node("/", 0, "", Some(&format!("{{\"0\":{zero},\"1\":{one}}}")));
    let mut events: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "{{\"action\":\"create\",\"node\":{{\"key\":{},\"value\":{},\"modifiedIndex\":{},\"createdIndex\":{}}}}}",
                go_json_string(&format!("/0/members/{:x}/raftAttributes", m.id)),
                go_json_string(&raft_attributes_json(m.peer_urls)),
                i + 1,
                i + 1
            )
        })
        .collect();
    events.resize(EVENT_CAPACITY.max(n), "null".into());
    let start = if n == 0 { 0 } else { 1 };
    format!(
        "{{\"Root\":{root},\"WatcherHub\":{{\"EventHistory\":{{\"Queue\":{{\"Events\":[{}],\"Size\":{n},\"Front\":0,\"Back\":{n},\"Capacity\":{EVENT_CAPACITY}}},\"StartIndex\":{start},\"LastIndex\":{n}}}}},\"CurrentIndex\":{n},\"Stats\":{{\"getsSuccess\":0,\"getsFail\":{gets_fail},\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},\"CurrentVersion\":2}}",
        events.join(",")
    )
}

/// File name and bytes of the restored snap file: `0000000000000001-<N>.snap` holding
/// `raftpb.Snapshot{v2 store, metadata{voters, index N, term 1}}` in `snappb.snapshot`.
pub fn restore_snap(members: &[V2Member<'_>]) -> (String, Vec<u8>) {
    restore_snap_styled(members, RestoreStyle::Etcd35)
}

/// [`restore_snap`] as `style`'s etcdutl writes it.
pub fn restore_snap_styled(members: &[V2Member<'_>], style: RestoreStyle) -> (String, Vec<u8>) {
    let n = members.len() as u64;
    let data = v2_store_json_styled(members, style);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cs = conf_state(&ids, style);
    let mut meta = Vec::new();
    encode::field_bytes(&mut meta, 1, &cs);
    encode::field_varint(&mut meta, 2, n);
    encode::field_varint(&mut meta, 3, 1);
    let mut snap = Vec::new();
    encode::field_bytes(&mut snap, 1, data.as_bytes());
    encode::field_bytes(&mut snap, 2, &meta);
    let mut file = Vec::new();
    encode::field_varint(&mut file, 1, u64::from(crc32c::crc32c(&snap)));
    encode::field_bytes(&mut file, 2, &snap);
    (format!("{:016x}-{:016x}.snap", 1, n), file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escaping() {
        assert_eq!(
            go_json_string("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
    }

    #[test]
    fn restored_snap_decodes_with_the_reader() {
        let u = vec!["http://127.0.0.1:2380".to_string()];
        let (name, b) = restore_snap(&[V2Member {
            id: 7,
            peer_urls: &u,
        }]);
        assert_eq!(name, "0000000000000001-0000000000000001.snap");
        let m = super::super::decode(&b).unwrap();
        assert_eq!((m.index, m.term), (1, 1));
    }
}
