//! `pysaas enqueue` and `pysaas jobs …`: a thin client of the HTTP API.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// Where the API is and how to authenticate.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// API base URL.
    #[arg(long, env = "PYSAAS_API", default_value = DEFAULT_API)]
    api: String,
    /// API key (default: `.pysaas/admin.key`, written by `pysaas dev`).
    #[arg(long, env = "PYSAAS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> Result<reqwest::Client> {
        let key = self
            .api_key
            .clone()
            .or_else(|| crate::security::local_admin_key(std::path::Path::new(".pysaas")));
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }
}

/// `pysaas enqueue` options.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job kind, e.g. system.sleep.
    kind: String,
    /// Payload as JSON.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Queue (default: the kind's).
    #[arg(long)]
    queue: Option<String>,
    /// Priority 0..=9.
    #[arg(long)]
    priority: Option<i16>,
    /// Earliest start, RFC 3339.
    #[arg(long)]
    run_at: Option<String>,
    /// Idempotency key.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// `pysaas schedules` options.
#[derive(Debug, Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum SchedulesCommand {
    /// List schedules with their next fire times.
    List,
    /// Show one schedule.
    Show { name: String },
    /// Create a schedule.
    Create {
        name: String,
        /// Cron expression, seconds first (`0 */5 * * * *`).
        #[arg(long)]
        cron: String,
        /// Job kind each tick enqueues.
        #[arg(long)]
        kind: String,
        /// Payload as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// skip, fire_once or catch_up.
        #[arg(long)]
        misfire: Option<String>,
    },
    /// Pause a schedule.
    Pause { name: String },
    /// Resume a paused schedule.
    Resume { name: String },
    /// Enqueue the schedule's job now.
    Trigger { name: String },
    /// Delete a schedule.
    Delete { name: String },
}

/// `pysaas jobs` options.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one job.
    Show { id: String },
    /// Cancel a job.
    Cancel { id: String },
    /// Retry a finished job.
    Retry { id: String },
}

async fn call(request: reqwest::RequestBuilder) -> Result<Value> {
    let response = request
        .send()
        .await
        .context("cannot reach the PySaaS API (is it running? see --api)")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body.get("detail").and_then(Value::as_str).unwrap_or("");
        bail!(
            "{status}: {detail}\n{}",
            serde_json::to_string_pretty(&body)?
        );
    }
    Ok(body)
}

fn print(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `pysaas enqueue`: submits one job and prints it.
pub async fn enqueue(args: EnqueueArgs) -> Result<()> {
    let payload: Value =
        serde_json::from_str(&args.payload).context("--payload is not valid JSON")?;
    let mut body = json!({ "kind": args.kind, "payload": payload });
    for (key, value) in [
        ("queue", args.queue.map(Value::from)),
        ("priority", args.priority.map(Value::from)),
        ("run_at", args.run_at.map(Value::from)),
        ("idempotency_key", args.idempotency_key.map(Value::from)),
    ] {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let client = args.api.client()?;
    print(&call(client.post(format!("{}/v1/jobs", args.api.api)).json(&body)).await?)
}

/// `pysaas jobs …`: lists, shows, cancels or retries jobs.
pub async fn jobs(args: JobsArgs) -> Result<()> {
    let client = args.api.client()?;
    let base = args.api.api.trim_end_matches('/');
    let value = match args.command {
        JobsCommand::List {
            state,
            kind,
            queue,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(state.map(|v| ("state", v)));
            query.extend(kind.map(|v| ("kind", v)));
            query.extend(queue.map(|v| ("queue", v)));
            call(client.get(format!("{base}/v1/jobs")).query(&query)).await?
        }
        JobsCommand::Show { id } => call(client.get(format!("{base}/v1/jobs/{id}"))).await?,
        JobsCommand::Cancel { id } => {
            call(client.post(format!("{base}/v1/jobs/{id}/cancel"))).await?
        }
        JobsCommand::Retry { id } => {
            call(client.post(format!("{base}/v1/jobs/{id}/retry"))).await?
        }
    };
    print(&value)
}

/// `pysaas schedules …`: manages cron schedules.
pub async fn schedules(args: SchedulesArgs) -> Result<()> {
    let client = args.api.client()?;
    let base = format!("{}/v1/schedules", args.api.api.trim_end_matches('/'));
    let one = |name: &str| format!("{base}/{name}");
    let value = match args.command {
        SchedulesCommand::List => call(client.get(&base)).await?,
        SchedulesCommand::Show { name } => call(client.get(one(&name))).await?,
        SchedulesCommand::Create {
            name,
            cron,
            kind,
            payload,
            timezone,
            misfire,
        } => {
            let payload: Value =
                serde_json::from_str(&payload).context("--payload is not valid JSON")?;
            let mut body = json!({"name": name, "cron": cron, "kind": kind, "payload": payload, "timezone": timezone});
            if let Some(misfire) = misfire {
                body["misfire"] = Value::from(misfire);
            }
            call(client.post(&base).json(&body)).await?
        }
        SchedulesCommand::Pause { name } => {
            call(client.post(format!("{}/pause", one(&name)))).await?
        }
        SchedulesCommand::Resume { name } => {
            call(client.post(format!("{}/resume", one(&name)))).await?
        }
        SchedulesCommand::Trigger { name } => {
            call(client.post(format!("{}/trigger", one(&name)))).await?
        }
        SchedulesCommand::Delete { name } => {
            let response = client
                .delete(one(&name))
                .send()
                .await
                .context("cannot reach the PySaaS API (is it running? see --api)")?;
            if !response.status().is_success() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                bail!("{}", serde_json::to_string_pretty(&body)?);
            }
            json!({"deleted": name})
        }
    };
    print(&value)
}
