fn main() {
    let p = std::env::args().nth(1).unwrap();
    let rev: i64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let f = lifeboat::io::FileReader::open(std::path::Path::new(&p)).unwrap();
    let db = lifeboat::format::bolt::Db::open(&f).unwrap();
    let r = lifeboat::format::etcd::hashkv::hashkv(&db, rev).unwrap();
    println!("{:?}", r.map(|x| x.0));
}
