fn main() {
    println!("quarrel");
}
