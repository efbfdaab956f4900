//! `chatcluster-operator`: parses flags and hands over to the library.

use clap::{Parser, Subcommand};

/// The chatcluster Kubernetes operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the ChatCluster CRD as YAML (what `crds/chatcluster.yaml` holds).
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", chatcluster_operator::crd::crd_yaml()),
    }
    Ok(())
}
