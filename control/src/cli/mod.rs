//! The `hami` command line: argument types (clap derive, env fallbacks) and
//! the wiring behind each subcommand.

/// `println!` that reports a closed stdout as an error instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` that reports a closed stdout as an error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod client;
mod client_tls;
mod kubeconfig;
mod service_accounts;
mod serving;
mod sim;
mod simclusters;
mod token;
mod up;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hami: one control plane for many GPU clusters.
#[derive(Parser, Debug)]
#[command(name = "hami", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (API server over the embedded store).
    Up(Box<up::UpArgs>),
    /// Create or update objects from YAML files (server-side apply).
    Apply(ApplyArgs),
    /// Show objects of a kind.
    Get(GetArgs),
    /// Delete objects named in files, or one object by kind and name.
    Delete(DeleteArgs),
    /// Print the CustomResourceDefinitions of hami's kinds as YAML.
    Crds,
    /// What-if placement over a described fleet (no servers).
    Sim(sim::SimArgs),
    /// Bootstrap tokens that join member clusters (create, list, delete).
    Token(token::TokenArgs),
}

/// How client commands reach the server.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// kubeconfig of the hami API server.
    #[arg(
        long,
        env = "KUBECONFIG",
        default_value = "hami-data/kubeconfig",
        global = true
    )]
    pub kubeconfig: PathBuf,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// File, directory (every .yaml/.yml/.json in it) or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long, env = "HAMI_NAMESPACE")]
    pub namespace: Option<String>,
    /// Field manager recorded by server-side apply.
    #[arg(long, default_value = "hami")]
    pub field_manager: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Yaml,
    Json,
    Name,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind, resource, or short name (deploy, pp, ...).
    pub kind: String,
    /// One object's name; all objects when absent.
    pub name: Option<String>,
    /// Namespace (default: "default").
    #[arg(short = 'n', long, env = "HAMI_NAMESPACE")]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format (default: a table).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kind and name of one object (when no -f is given).
    pub target: Vec<String>,
    /// Files naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[arg(short = 'n', long, env = "HAMI_NAMESPACE")]
    pub namespace: Option<String>,
    /// Succeed when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Parses the arguments and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(run(cli)) {
        // `hami crds | head`: the reader went away; nothing left to say.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(*args).await,
        Command::Apply(args) => client::apply(args).await,
        Command::Get(args) => client::get(args).await,
        Command::Delete(args) => client::delete(args).await,
        Command::Sim(args) => sim::run(args),
        Command::Token(args) => token::run(args).await,
        Command::Crds => {
            for crd in hami_api::crds() {
                outln!("---\n{}", serde_saphyr::to_string(&crd)?);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn get_parses_short_flags() {
        let cli = Cli::try_parse_from(["hami", "get", "deploy", "web", "-n", "prod", "-o", "yaml"])
            .unwrap();
        let Command::Get(args) = cli.command else {
            panic!("not get")
        };
        assert_eq!(args.kind, "deploy");
        assert_eq!(args.name.as_deref(), Some("web"));
        assert_eq!(args.namespace.as_deref(), Some("prod"));
        assert_eq!(args.output, Some(Output::Yaml));
    }
}
