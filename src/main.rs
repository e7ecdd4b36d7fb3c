#![deny(unsafe_code)]

fn main() {
    std::process::exit(lifeboat::cli::main());
}
