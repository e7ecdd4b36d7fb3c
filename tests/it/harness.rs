//! Smoke test of the test harness itself: real etcd 3.5 and 3.4 start, serve and stop.
use crate::common::*;

#[test]
fn etcd_35_and_34_start_and_serve() {
    for bins in [etcd35(), etcd34()] {
        let c = Cluster::single(&bins, Opts::default());
        c.put("/harness/a", "1");
        c.fill("/harness/bulk/", 250, 10);
        let out = c.ctl_ok(&["get", "--prefix", "/harness/", "--keys-only"]);
        let keys = out.lines().filter(|l| !l.is_empty()).count();
        assert_eq!(keys, 251, "{} count", bins.version);
    }
}

#[test]
fn tls_cluster_requires_client_certs() {
    let tls = Tls::generate();
    let c = Cluster::single(
        &etcd35(),
        Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    );
    c.put("/tls/a", "1");
    assert!(c.ctl_ok(&["get", "/tls/a"]).contains("/tls/a"));
}
