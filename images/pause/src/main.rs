//! `cairn-pause`: see the crate docs of `cairn_pause`.

fn main() {
    std::process::exit(cairn_pause::run());
}
