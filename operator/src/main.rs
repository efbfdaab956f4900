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
    /// Print, as multi-document YAML, every object the operator would apply for a ChatCluster.
    Render(RenderArgs),
    /// Run a ChatCluster on this machine: redis-server, chat-nodes with sidecars and HAProxy as
    /// local processes, until Ctrl-C.
    Local(chatcluster_operator::local::LocalArgs),
    /// Run the controller against the cluster of the kubeconfig (or the in-cluster config).
    Run(chatcluster_operator::controller::RunArgs),
    /// Print the RBAC rules the operator needs, as a ClusterRole (for the Helm chart).
    Rbac,
}

/// Flags of `render`.
#[derive(clap::Args, Debug)]
struct RenderArgs {
    /// The ChatCluster manifest to render.
    #[arg(
        short = 'f',
        long = "filename",
        env = "CHATCLUSTER_RENDER_FILE",
        default_value = "examples/chatcluster.yaml"
    )]
    file: std::path::PathBuf,
    /// Namespace for a manifest that names none.
    #[arg(
        short = 'n',
        long,
        env = "CHATCLUSTER_RENDER_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    /// HAProxy cookie key written into the generated Secret; empty means a fresh random key.
    #[arg(
        long,
        env = "CHATCLUSTER_RENDER_COOKIE_KEY",
        default_value = "",
        hide_env_values = true
    )]
    cookie_key: String,
    #[command(flatten)]
    defaults: chatcluster_operator::defaults::OperatorDefaults,
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use chatcluster_operator::{desired::secret, render};
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let cc = render::parse_chatcluster(&text, &args.namespace)
        .with_context(|| format!("{}", args.file.display()))?;
    let key = if args.cookie_key.is_empty() {
        secret::generate_cookie_key()
    } else {
        args.cookie_key
    };
    let yaml = render::render_yaml(&cc, &args.defaults, &key)
        .with_context(|| format!("{}", args.file.display()))?;
    print!("{yaml}");
    Ok(())
}

fn local(args: chatcluster_operator::local::LocalArgs) -> anyhow::Result<()> {
    chatcluster_common::init_tracing(chatcluster_common::LogFormat::Text);
    tokio::runtime::Runtime::new()?.block_on(chatcluster_operator::local::run(args))?;
    Ok(())
}

fn run(args: chatcluster_operator::controller::RunArgs) -> anyhow::Result<()> {
    chatcluster_common::init_tracing(args.log_format);
    let shutdown = chatcluster_common::shutdown_signal();
    tokio::runtime::Runtime::new()?
        .block_on(chatcluster_operator::controller::run(args, shutdown))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", chatcluster_operator::crd::crd_yaml()),
        Command::Render(args) => render(args)?,
        Command::Local(args) => local(args)?,
        Command::Run(args) => run(args)?,
        Command::Rbac => print!("{}", chatcluster_operator::rbac::cluster_role_yaml()),
    }
    Ok(())
}
