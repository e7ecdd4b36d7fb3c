//! The etcd requests a WAL entry carries: a hand-written subset of `etcdserverpb`
//! (raft_internal.proto and rpc.proto of 3.5, prost derive, no protoc), enough to say what
//! each entry asks etcd to do. Their own module because the restore writer will encode them
//! too. Field numbers are etcd's; fields etcd added later decode as unknown and are skipped.

use prost::Message;

/// A subset of `etcdserverpb.InternalRaftRequest` (raft_internal.proto, 3.5).
#[derive(Clone, PartialEq, Message)]
pub struct InternalRaftRequest {
    #[prost(message, optional, tag = "100")]
    pub header: Option<RequestHeader>,
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub v2: Option<Vec<u8>>,
    #[prost(message, optional, tag = "3")]
    pub range: Option<RangeRequest>,
    #[prost(message, optional, tag = "4")]
    pub put: Option<PutRequest>,
    #[prost(message, optional, tag = "5")]
    pub delete_range: Option<DeleteRangeRequest>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub txn: Option<Vec<u8>>,
    #[prost(message, optional, tag = "7")]
    pub compaction: Option<CompactionRequest>,
    #[prost(message, optional, tag = "8")]
    pub lease_grant: Option<LeaseGrantRequest>,
    #[prost(message, optional, tag = "9")]
    pub lease_revoke: Option<LeaseRevokeRequest>,
    #[prost(message, optional, tag = "10")]
    pub alarm: Option<AlarmRequest>,
    #[prost(message, optional, tag = "11")]
    pub lease_checkpoint: Option<LeaseCheckpointRequest>,
    #[prost(bytes = "vec", optional, tag = "1000")]
    pub auth_enable: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "1011")]
    pub auth_disable: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "1012")]
    pub authenticate: Option<Vec<u8>>,
    #[prost(message, optional, tag = "1100")]
    pub auth_user_add: Option<NameRequest>,
    #[prost(message, optional, tag = "1101")]
    pub auth_user_delete: Option<NameRequest>,
    #[prost(message, optional, tag = "1103")]
    pub auth_user_change_password: Option<NameRequest>,
    #[prost(message, optional, tag = "1104")]
    pub auth_user_grant_role: Option<NameRequest>,
    #[prost(message, optional, tag = "1105")]
    pub auth_user_revoke_role: Option<NameRequest>,
    #[prost(message, optional, tag = "1200")]
    pub auth_role_add: Option<NameRequest>,
    #[prost(message, optional, tag = "1201")]
    pub auth_role_delete: Option<NameRequest>,
    #[prost(message, optional, tag = "1203")]
    pub auth_role_grant_permission: Option<NameRequest>,
    #[prost(message, optional, tag = "1204")]
    pub auth_role_revoke_permission: Option<NameRequest>,
    #[prost(message, optional, tag = "1300")]
    pub cluster_version_set: Option<ClusterVersionSetRequest>,
    #[prost(message, optional, tag = "1301")]
    pub cluster_member_attr_set: Option<ClusterMemberAttrSetRequest>,
    #[prost(message, optional, tag = "1302")]
    pub downgrade_info_set: Option<DowngradeInfoSetRequest>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RequestHeader {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub username: String,
    #[prost(uint64, tag = "3")]
    pub auth_revision: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Compare {
    #[prost(int32, tag = "1")]
    pub result: i32,
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(int64, optional, tag = "4")]
    pub version: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    pub create_revision: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub mod_revision: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub value: Option<Vec<u8>>,
    #[prost(int64, optional, tag = "8")]
    pub lease: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RequestOp {
    #[prost(message, optional, tag = "1")]
    pub request_range: Option<RangeRequest>,
    #[prost(message, optional, tag = "2")]
    pub request_put: Option<PutRequest>,
    #[prost(message, optional, tag = "3")]
    pub request_delete_range: Option<DeleteRangeRequest>,
    /// A nested `TxnRequest`, decoded on demand (recursion).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub request_txn: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CompactionRequest {
    #[prost(int64, tag = "1")]
    pub revision: i64,
    #[prost(bool, tag = "2")]
    pub physical: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    pub id: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct AlarmRequest {
    #[prost(int32, tag = "1")]
    pub action: i32,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int32, tag = "3")]
    pub alarm: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct LeaseCheckpointRequest {
    #[prost(message, repeated, tag = "1")]
    pub checkpoints: Vec<LeaseCheckpoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LeaseCheckpoint {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub remaining_ttl: i64,
}

/// Auth requests whose first field is a name (user or role).
#[derive(Clone, PartialEq, Message)]
pub struct NameRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClusterVersionSetRequest {
    #[prost(string, tag = "1")]
    pub ver: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClusterMemberAttrSetRequest {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    #[prost(message, optional, tag = "2")]
    pub member_attributes: Option<Attributes>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Attributes {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub client_urls: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DowngradeInfoSetRequest {
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    #[prost(string, tag = "2")]
    pub ver: String,
}

/// The legacy v2 `etcdserverpb.Request` (3.4 publishes member attributes with it).
#[derive(Clone, PartialEq, Message)]
pub struct RequestV2 {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(string, tag = "3")]
    pub path: String,
    #[prost(string, tag = "4")]
    pub val: String,
}
