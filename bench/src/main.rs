//! `chatcluster-bench`: parses flags and runs one benchmark; see the library for what each does.

use anyhow::{Context, Result};
use chatcluster_bench::compare_idle::{IdleCompareArgs, run_idle_compare};
use chatcluster_bench::idle::{IdleArgs, RunReport, run_idle};
use chatcluster_bench::load::{LoadWorkerArgs, run_load_worker};
use chatcluster_bench::measure::median;
use chatcluster_bench::scenario::{BroadcastArgs, ChatArgs, run_broadcast, run_chat};
use chatcluster_bench::worker::{WorkerArgs, run_worker};
use chatcluster_common::{LogFormat, init_tracing};
use clap::{Parser, Subcommand};

/// Benchmarks for chatcluster. They print figures and stop by themselves; everything runs on
/// loopback.
#[derive(Parser, Debug)]
#[command(name = "chatcluster-bench", version, about)]
struct Cli {
    /// Log format on stderr: text or json.
    #[arg(long, env = "BENCH_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Memory (RSS) per idle WebSocket connection of a chat-node.
    Idle(IdleArgs),
    /// Idle connections on 2 nodes of each system: memory per connection and idle CPU.
    IdleCompare(IdleCompareArgs),
    /// Broadcast to one room of growing size on one pinned node, both systems.
    Broadcast(BroadcastArgs),
    /// Rooms of 10 over 2 nodes behind HAProxy with a ramped send rate, both systems
    /// (`--slow-every 100` adds 1% slow consumers).
    Chat(ChatArgs),
    /// Internal: one worker process of `idle`, started by the controller.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Internal: one load-worker process of the load scenarios, started by the controller.
    #[command(hide = true)]
    LoadWorker(LoadWorkerArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Idle(args) => {
            let reports = run_idle(&args).await.context("idle benchmark failed")?;
            println!("{}", RunReport::header());
            for (i, report) in reports.iter().enumerate() {
                println!("{}", report.row(i + 1));
            }
            let figures: Vec<f64> = reports.iter().map(RunReport::kib_per_connection).collect();
            if let Some(m) = median(&figures) {
                println!(
                    "median KiB per idle connection over {} run(s): {m:.2}",
                    figures.len()
                );
            }
        }
        Command::IdleCompare(args) => {
            run_idle_compare(&args)
                .await
                .context("idle-compare benchmark failed")?;
        }
        Command::Broadcast(args) => {
            run_broadcast(&args)
                .await
                .context("broadcast benchmark failed")?;
        }
        Command::Chat(args) => {
            run_chat(&args).await.context("chat benchmark failed")?;
        }
        Command::LoadWorker(args) => {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            run_load_worker(&args, stdin, tokio::io::stdout()).await?;
        }
        Command::Worker(args) => {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            run_worker(&args, stdin, tokio::io::stdout()).await?;
        }
    }
    Ok(())
}
