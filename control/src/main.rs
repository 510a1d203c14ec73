//! The `hami` binary: see [`hami_control::cli`].

fn main() -> anyhow::Result<()> {
    hami_control::cli::main()
}
