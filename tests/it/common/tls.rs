//! A throwaway CA with server and client certificates for test clusters that serve TLS.

use super::*;

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.
pub struct Tls {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Tls {
    pub fn generate() -> Tls {
        Tls::generate_with_no_ip_server().0
    }

    /// [`Tls::generate`], plus a second server certificate and key of the same CA that name
    /// only `localhost` (no IP SAN), for the tests of a certificate that does not match.
    pub fn generate_with_no_ip_server() -> (Tls, PathBuf, PathBuf) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            SanType,
        };
        let dir = TempDir::new().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lifeboat test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_ip = |cn: &str, server: bool, ip: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            if ip {
                p.subject_alt_names
                    .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            }
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = if server {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            } else {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            };
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let leaf = |cn: &str, server: bool| leaf_ip(cn, server, true);
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let ca = write("ca.crt", &ca_cert.pem());
        let (sc, sk) = leaf("etcd-server", true);
        let (cc, ck) = leaf("root", false);
        let (nc, nk) = leaf_ip("etcd-server", true, false);
        let no_ip_cert = write("server-no-ip.crt", &nc);
        let no_ip_key = write("server-no-ip.key", &nk);
        let tls = Tls {
            ca,
            server_cert: write("server.crt", &sc),
            server_key: write("server.key", &sk),
            client_cert: write("client.crt", &cc),
            client_key: write("client.key", &ck),
            dir,
        };
        (tls, no_ip_cert, no_ip_key)
    }
}
