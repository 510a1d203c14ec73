use clap::Parser;

/// hami: one control plane for many GPU clusters.
#[derive(Parser, Debug)]
#[command(name = "hami", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
