fn main() {
    let p = std::env::args().nth(1).unwrap();
    let f = lifeboat::io::FileReader::open(std::path::Path::new(&p)).unwrap();
    let t = std::time::Instant::now();
    let r = lifeboat::format::bolt::check(&f, &Default::default(), &mut ());
    eprintln!("{:?}", t.elapsed());
    println!("{}", serde_json::to_string(&r).unwrap());
}
