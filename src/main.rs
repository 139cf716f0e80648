//! `pysaas`: the one binary. `dev` runs everything in one process on SQLite; `api`, `worker`,
//! `scheduler` and `migrate` are the production roles; `enqueue` and `jobs` talk to a running API; `bench`
//! measures throughput and latency. This file only parses the command line: the roles are
//! composed by [`pysaas::App`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pysaas::{app, bench, client, App, Config};

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
    /// On failure, print the whole error chain with its backtrace (if RUST_BACKTRACE is set).
    #[arg(long, global = true)]
    debug: bool,
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
    /// The audit and analytics consumers: from Kafka (a consumer group per consumer) when
    /// `events.kafka_brokers` is set, else from the outbox. Needs `events.enabled`.
    Analytics,
    /// Create or upgrade the database schema.
    Migrate,
    /// Administration straight on the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Submit a job through the API.
    Enqueue(client::EnqueueArgs),
    /// Inspect and manage jobs through the API.
    Jobs(client::JobsArgs),
    /// Manage cron schedules through the API.
    Schedules(client::SchedulesArgs),
    /// Check an API key and store it for this API in the per-user credentials file.
    Login(client::LoginArgs),
    /// Forget the stored key for this API.
    Logout(client::LoginArgs),
    /// Measure drain throughput, steady-state latency and the bare store ceiling.
    Bench(bench::BenchArgs),
    /// A local payment provider speaking Stripe's PaymentIntents subset that billing uses, for
    /// development and tests (`pysaas dev` starts one itself).
    PaymentsSim {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: String,
        /// The one secret key it accepts (default: any `sk_…`).
        #[arg(long, env = "PYSAAS_BILLING_PROVIDER_KEY", hide_env_values = true)]
        secret_key: Option<String>,
    },
    /// The event streams' catalogue (`docs/events.md`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Print the OpenAPI document of the built-in kinds (what `/openapi.json` serves), e.g. to
    /// generate a client.
    Openapi,
    /// Autoscaling: replay a load ramp through a pool's HPA.
    #[command(subcommand)]
    Autoscale(AutoscaleCommand),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise: the image's health check (it has no
    /// curl), e.g. `pysaas probe http://127.0.0.1:9090/readyz`.
    Probe {
        /// The URL.
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Print a shell completion script: `pysaas completions bash > /etc/bash_completion.d/pysaas`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load the file, environment and Vault, validate, and print the effective configuration as
    /// TOML with secrets and URL passwords redacted.
    Check,
}

#[derive(Debug, Subcommand)]
enum AutoscaleCommand {
    /// Replay a load ramp (by default 1k queued, a surge to about 20k, then nothing) through the
    /// HPA of one worker pool as the manifest defines it, reading the queue gauges as
    /// prometheus-adapter does, and print the replica count over time.
    Simulate(pysaas::autoscale::SimulateArgs),
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print every event type with the JSON Schema of its data, as one JSON document.
    Schemas,
    /// Print the catalogue section of `docs/events.md`; with `--write FILE`, replace that
    /// section of FILE (between its `catalog:begin` and `catalog:end` markers) instead.
    Docs {
        /// The file to update.
        #[arg(long)]
        write: Option<PathBuf>,
    },
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
        /// Without PYSAAS_DATABASE_URL: the dev store in this directory (default ./.pysaas, as
        /// `pysaas dev`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Stop recording events for every process of the store (a process with `events.enabled`
    /// turns them on again when it starts; one without leaves them as they are).
    DisableEvents,
}

/// Exit codes: 0 success; 1 any other failure; 2 usage (bad arguments, or a request the API
/// refused as invalid); 3 not found; 4 authentication or authorisation; 5 the API or its store
/// unreachable or failing.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let debug = cli.debug;
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            if debug {
                eprintln!("error: {err:?}");
            } else {
                eprintln!("error: {err:#}");
            }
            let code = err
                .downcast_ref::<client::ClientError>()
                .map_or(1, |e| e.class as u8);
            std::process::ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
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
            Command::Login(args) => client::login(args).await,
            Command::Logout(args) => client::logout(args),
            Command::Events(EventsCommand::Schemas) => {
                let doc = pysaas_jobs::events::catalog_document();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
            Command::Events(EventsCommand::Docs { write: None }) => {
                print!("{}", pysaas_jobs::events::catalog_markdown());
                Ok(())
            }
            Command::Events(EventsCommand::Docs { write: Some(file) }) => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let updated =
                    pysaas_jobs::events::replace_catalog_section(&text).with_context(|| {
                        format!("{} has no catalog:begin/end markers", file.display())
                    })?;
                std::fs::write(&file, updated)
                    .with_context(|| format!("writing {}", file.display()))?;
                Ok(())
            }
            Command::Openapi => {
                let registry = pysaas_workers::Handlers::builtin().registry();
                let doc = pysaas_api::openapi_document(&registry);
                println!("{}", serde_json::to_string_pretty(&doc)?);
                Ok(())
            }
            Command::PaymentsSim { listen, secret_key } => {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                println!(
                    "payments-sim listening on http://{}",
                    listener.local_addr()?
                );
                pysaas::payments_sim::serve(listener, secret_key, app::shutdown_signal()).await?;
                Ok(())
            }
            Command::Autoscale(AutoscaleCommand::Simulate(args)) => pysaas::autoscale::run(&args),
            Command::Probe { url, timeout_ms } => client::probe(&url, timeout_ms).await,
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "pysaas",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            command => {
                let mut config = Config::load_unvalidated(cli.config.as_deref())?;
                // A benchmark's figures go to stdout; only errors are logged unless asked.
                let quiet = matches!(command, Command::Bench(_) | Command::Config(_));
                app::init_tracing(
                    &config,
                    if quiet {
                        app::LOG_QUIET
                    } else {
                        app::LOG_DEFAULT
                    },
                );
                // File and environment, then the command line, then Vault; validated once.
                match &command {
                    Command::Dev { listen, data_dir } => {
                        config.api.listen = listen.clone().unwrap_or(config.api.listen);
                        config.store.data_dir = data_dir.clone().unwrap_or(config.store.data_dir);
                    }
                    Command::Api { listen } => {
                        config.api.listen = listen.clone().unwrap_or(config.api.listen);
                    }
                    Command::Worker {
                        queues,
                        concurrency,
                    } => {
                        if !queues.is_empty() {
                            config.worker.queues = queues.clone();
                        }
                        config.worker.concurrency =
                            concurrency.unwrap_or(config.worker.concurrency);
                    }
                    _ => {}
                }
                let vault = pysaas::apply_vault(&mut config).await?;
                config.validate()?;
                // Spans of the long-running roles go to the collector, if one is configured;
                // the guard flushes them when the role returns.
                let role = match &command {
                    Command::Dev { .. } => Some("dev"),
                    Command::Api { .. } => Some("api"),
                    Command::Worker { .. } => Some("worker"),
                    Command::Scheduler => Some("scheduler"),
                    Command::Analytics => Some("analytics"),
                    _ => None,
                };
                let _otlp = match role {
                    Some(role) => pysaas::otel::install(
                        config.otlp_endpoint.as_deref(),
                        &format!("pysaas-{role}"),
                    )?,
                    None => None,
                };
                let app = |config| App::new(config).with_vault(vault.clone());
                match command {
                    Command::Dev { .. } => app(config).run_dev().await,
                    Command::Api { .. } => app(config).run_api().await,
                    Command::Worker { .. } => app(config).run_worker().await,
                    Command::Config(ConfigCommand::Check) => {
                        print!("{}", config.to_redacted_toml()?);
                        eprintln!("configuration is valid");
                        Ok(())
                    }
                    Command::Scheduler => app(config).run_scheduler().await,
                    Command::Analytics => app(config).run_consumers().await,
                    Command::Migrate => app::migrate(config).await,
                    Command::Admin(AdminCommand::CreateKey {
                        tenant,
                        name,
                        scopes,
                        data_dir,
                    }) => {
                        if let Some(dir) = data_dir {
                            config.store.data_dir = dir;
                        }
                        app::create_key(config, tenant, name, scopes).await
                    }
                    Command::Admin(AdminCommand::DisableEvents) => {
                        app::disable_events(config).await
                    }
                    Command::Bench(args) => bench::run(config, args).await,
                    Command::Enqueue(_)
                    | Command::Jobs(_)
                    | Command::Schedules(_)
                    | Command::Login(_)
                    | Command::Logout(_)
                    | Command::Openapi
                    | Command::Events(_)
                    | Command::PaymentsSim { .. }
                    | Command::Autoscale(_)
                    | Command::Probe { .. }
                    | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    })
}
