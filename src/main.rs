//! `pysaas`: the one binary. `dev` runs everything in one process on SQLite; `api`, `worker`,
//! `scheduler` and `migrate` are the production roles; `enqueue` and `jobs` talk to a running API; `bench`
//! measures throughput and latency.

mod bench;
mod client;
mod config;
mod run;
mod security;
mod vault;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "pysaas",
    version,
    about = "Typed background jobs: API, workers and scheduler"
)]
struct Cli {
    /// TOML config file (settings can also come from PYSAAS_* variables).
    #[arg(long, global = true, env = "PYSAAS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API + workers + scheduler in one process on SQLite: no servers needed.
    Dev {
        /// Listen address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Where the SQLite database lives (default ./.pysaas).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The HTTP API.
    Api {
        /// Listen address.
        #[arg(long)]
        listen: Option<String>,
    },
    /// A worker pool (standing for scheduler leader too, unless scheduler_in_workers = false).
    Worker {
        /// Queues to consume, `name` or `name=concurrency`, comma-separated.
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// Concurrency of each queue that does not set its own.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// The scheduler: stands for leader; the leader fires cron schedules exactly once, promotes
    /// delayed jobs and runs maintenance. Run two or more for availability.
    Scheduler,
    /// Create or upgrade the database schema.
    Migrate,
    /// Administration straight on the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Submit a job through the API.
    Enqueue(client::EnqueueArgs),
    /// Inspect and manage jobs through the API.
    Jobs(client::JobsArgs),
    /// Manage cron schedules through the API.
    Schedules(client::SchedulesArgs),
    /// Measure drain throughput, steady-state latency and the bare store ceiling.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an API key for a tenant and print it (once).
    CreateKey {
        /// Tenant id.
        #[arg(long, default_value = pysaas_jobs::DEFAULT_TENANT)]
        tenant: String,
        /// Label.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Scopes (repeat or comma-separate): jobs:read, jobs:write, schedules:write, admin.
        #[arg(long = "scope", value_delimiter = ',', default_value = "admin")]
        scopes: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // One TLS crypto provider for every client (ring: already built for reqwest; no C toolchain
    // beyond it). Fails only if one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Enqueue(args) => client::enqueue(args).await,
            Command::Jobs(args) => client::jobs(args).await,
            Command::Schedules(args) => client::schedules(args).await,
            command => {
                let mut config = Config::load(cli.config.as_deref())?;
                // A benchmark's figures go to stdout; only errors are logged unless asked.
                let quiet = matches!(command, Command::Bench(_));
                run::init_tracing(
                    &config,
                    if quiet {
                        run::LOG_QUIET
                    } else {
                        run::LOG_DEFAULT
                    },
                );
                vault::apply(&mut config).await?;
                match command {
                    Command::Dev { listen, data_dir } => {
                        config.listen = listen.unwrap_or(config.listen);
                        config.data_dir = data_dir.unwrap_or(config.data_dir);
                        config.listen_addr()?;
                        run::dev(config).await
                    }
                    Command::Api { listen } => {
                        config.listen = listen.unwrap_or(config.listen);
                        config.listen_addr()?;
                        run::api(config).await
                    }
                    Command::Worker {
                        queues,
                        concurrency,
                    } => {
                        if !queues.is_empty() {
                            config.queues = queues;
                        }
                        config.concurrency = concurrency.unwrap_or(config.concurrency);
                        run::worker(config).await
                    }
                    Command::Scheduler => run::scheduler(config).await,
                    Command::Migrate => run::migrate(config).await,
                    Command::Admin(AdminCommand::CreateKey {
                        tenant,
                        name,
                        scopes,
                    }) => run::create_key(config, tenant, name, scopes).await,
                    Command::Bench(args) => bench::run(config, args).await,
                    Command::Enqueue(_) | Command::Jobs(_) | Command::Schedules(_) => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    })
}
