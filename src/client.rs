//! `pysaas enqueue`, `pysaas jobs …` and `pysaas schedules …`: a client of the HTTP API.
//!
//! Output is human by default (aligned tables, a job's fields one per line) and one JSON document
//! with `-o json`. Errors are one line (the problem's title and detail, and each field at fault)
//! with an exit code by class: see [`ExitClass`].

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// What kind of failure a client command met; the process exits with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Bad command line or a request the API refused as invalid (400, 409, 413, 415, 422): 2.
    Usage = 2,
    /// No such job or schedule (404): 3.
    NotFound = 3,
    /// No credential, a bad one, or missing scope (401, 403): 4.
    Auth = 4,
    /// The API or what it depends on is unreachable or failed (5xx, connection refused): 5.
    Server = 5,
}

/// A client failure: one line for the user, and the class that picks the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// Exit class.
    pub class: ExitClass,
    /// What to print.
    pub message: String,
}

fn fail(class: ExitClass, message: impl Into<String>) -> anyhow::Error {
    ClientError {
        class,
        message: message.into(),
    }
    .into()
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and readable fields.
    Human,
    /// One JSON document (for scripts and jq).
    Json,
}

/// Where the API is, how to authenticate and how to print: accepted before or after the
/// subcommand (`pysaas jobs list --api URL` and `pysaas jobs --api URL list`).
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// API base URL.
    #[arg(long, global = true, env = "PYSAAS_API", default_value = DEFAULT_API)]
    api: String,
    /// API key or access token (else PYSAAS_API_KEY, else `<data-dir>/admin.key` written by
    /// `pysaas dev`).
    #[arg(long, global = true, env = "PYSAAS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The dev data dir whose `admin.key` is used when no key is given.
    #[arg(
        long,
        global = true,
        env = "PYSAAS_DATA_DIR",
        default_value = ".pysaas"
    )]
    data_dir: PathBuf,
    /// `human` (default) or `json`.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
}

impl ApiArgs {
    fn base(&self) -> &str {
        self.api.trim_end_matches('/')
    }

    /// The credential and where it came from (for the 401 message).
    fn credential(&self) -> (Option<String>, String) {
        if let Some(key) = &self.api_key {
            return (Some(key.clone()), "--api-key / PYSAAS_API_KEY".into());
        }
        let file = self.data_dir.join("admin.key");
        let stored = credentials_path();
        let looked = format!(
            "--api-key, PYSAAS_API_KEY, {} and {} (`pysaas login`)",
            file.display(),
            stored
                .as_ref()
                .map_or_else(|| "no credentials file".into(), |p| p.display().to_string())
        );
        if let Some(key) = crate::security::local_admin_key(&self.data_dir) {
            return (Some(key), looked);
        }
        let key = stored.and_then(|p| read_credentials(&p).remove(self.base()));
        (key, looked)
    }

    fn client(&self) -> Result<Client> {
        let (key, looked) = self.credential();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| {
                    fail(
                        ExitClass::Usage,
                        "the API key has characters a header cannot carry",
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: self.base().to_owned(),
            looked,
            output: self.output,
        })
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    looked: String,
    output: Output,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends, and turns a problem+json answer into one line with the right class.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.send().await.map_err(|err| {
            fail(
                ExitClass::Server,
                format!(
                    "cannot reach the PySaaS API at {} ({}); is it running? (--api / PYSAAS_API)",
                    self.base,
                    root_cause(&err)
                ),
            )
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let class = match status.as_u16() {
            401 | 403 => ExitClass::Auth,
            404 => ExitClass::NotFound,
            400..=499 => ExitClass::Usage,
            _ => ExitClass::Server,
        };
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut message = match (text("title"), text("detail")) {
            (Some(title), Some(detail)) if detail != title => format!("{title}: {detail}"),
            (Some(title), _) => title,
            (None, Some(detail)) => detail,
            (None, None) => status.to_string(),
        };
        if let Some(errors) = body.get("errors").and_then(Value::as_array) {
            for e in errors {
                let path = e.get("path").and_then(Value::as_str).unwrap_or("");
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                message.push_str(&format!("; {path}: {msg}"));
            }
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            message.push_str(&format!(" (looked for a credential in {})", self.looked));
        }
        Err(fail(class, message))
    }

    fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) -> Result<()> {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Output::Human => print!("{}", human(value)),
        }
        Ok(())
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(state: &str) -> String {
    if !colour() {
        return state.to_owned();
    }
    let code = match state {
        "succeeded" => "32",
        "dead" => "31",
        "running" => "36",
        "retrying" => "33",
        "cancelled" => "90",
        _ => "0",
    };
    format!("\x1b[{code}m{state}\x1b[0m")
}

/// An aligned table; `None` cells print as `-`. Colour escapes do not count towards widths.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let visible = |s: &str| {
        let mut n = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, _) => n += 1,
                _ => {}
            }
        }
        n
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 < cells.len() {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - visible(cell) + 2));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `2026-12-01T12:00:00Z` → `3m` (how long ago), or the text unchanged if it does not parse.
fn age(v: &Value, key: &str) -> String {
    let text = field(v, key);
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(t) => {
            let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .num_seconds()
                .max(0);
            match secs {
                0..=59 => format!("{secs}s"),
                60..=3599 => format!("{}m", secs / 60),
                3600..=86_399 => format!("{}h", secs / 3600),
                _ => format!("{}d", secs / 86_400),
            }
        }
        Err(_) => text,
    }
}

fn jobs_table(value: &Value) -> String {
    let jobs = value
        .get("jobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                field(j, "id"),
                field(j, "kind"),
                field(j, "queue"),
                paint(&field(j, "state")),
                format!("{}/{}", field(j, "attempts"), field(j, "max_attempts")),
                age(j, "created_at"),
            ]
        })
        .collect();
    table(&["id", "kind", "queue", "state", "attempts", "age"], &rows)
}

/// A job's (or schedule's) fields, one per line, nested values as compact JSON.
fn details(value: &Value) -> String {
    let Some(map) = value.as_object() else {
        return format!("{value}\n");
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (key, v) in map {
        let shown = match v {
            Value::Null => "-".to_owned(),
            Value::String(s) if key == "state" => paint(s),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key:<width$}  {shown}\n"));
    }
    out
}

fn schedules_table(value: &Value) -> String {
    let list = value
        .get("schedules")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| value.as_array().cloned())
        .unwrap_or_default();
    if list.is_empty() {
        return "no schedules\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                field(s, "name"),
                field(s, "cron"),
                field(s, "timezone"),
                field(s, "kind"),
                if s.get("paused").and_then(Value::as_bool) == Some(true) {
                    "paused".into()
                } else {
                    "active".into()
                },
                s.get("next_fire_times")
                    .and_then(Value::as_array)
                    .and_then(|t| t.first())
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_owned(),
            ]
        })
        .collect();
    table(
        &["name", "cron", "timezone", "kind", "status", "next fire"],
        &rows,
    )
}

/// The per-user credentials file: `$PYSAAS_CREDENTIALS`, else
/// `$XDG_CONFIG_HOME/pysaas/credentials.toml`, else `~/.config/pysaas/credentials.toml`. One API
/// key per API URL, written by `pysaas login` (mode 0600).
pub fn credentials_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PYSAAS_CREDENTIALS") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("pysaas").join("credentials.toml"))
}

/// The credentials file and the keys it holds (none yet if it does not exist).
fn stored_keys() -> Result<(PathBuf, std::collections::BTreeMap<String, String>)> {
    let path = credentials_path().ok_or_else(|| {
        fail(
            ExitClass::Usage,
            "no home directory: set PYSAAS_CREDENTIALS",
        )
    })?;
    let keys = read_credentials(&path);
    Ok((path, keys))
}

fn read_credentials(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| toml::from_str(&text).ok())
        .unwrap_or_default()
}

fn write_credentials(
    path: &std::path::Path,
    keys: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = toml::to_string(keys).context("writing the credentials")?;
    // Replaced whole, never left readable by others.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    crate::security::write_private(&tmp, &text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `pysaas login` options.
#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    api: ApiArgs,
}

/// `pysaas login`: checks an API key against the API (`GET /v1/me`) and stores it for that API
/// URL in the credentials file. The key comes from `--api-key` / `PYSAAS_API_KEY`, or one line on
/// standard input (so that it stays out of the shell's history).
pub async fn login(args: LoginArgs) -> Result<()> {
    let key = match &args.api.api_key {
        Some(key) => key.clone(),
        None => {
            eprintln!("API key for {}:", args.api.base());
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the API key from standard input")?;
            line.trim().to_owned()
        }
    };
    if key.is_empty() {
        return Err(fail(ExitClass::Usage, "no API key given"));
    }
    let api = ApiArgs {
        api: args.api.api.clone(),
        api_key: Some(key.clone()),
        data_dir: args.api.data_dir.clone(),
        output: args.api.output,
    };
    let client = api.client()?;
    let me = client.call(client.http.get(client.url("/v1/me"))).await?;
    let (path, mut keys) = stored_keys()?;
    keys.insert(api.base().to_owned(), key);
    write_credentials(&path, &keys)?;
    eprintln!(
        "logged in to {} as tenant {} (scopes {}); the key is in {}",
        api.base(),
        field(&me, "tenant_id"),
        me.get("scopes").map_or_else(String::new, Value::to_string),
        path.display()
    );
    Ok(())
}

/// `pysaas logout`: forgets the stored key for the API URL.
pub fn logout(args: LoginArgs) -> Result<()> {
    let (path, mut keys) = stored_keys()?;
    if keys.remove(args.api.base()).is_some() {
        write_credentials(&path, &keys)?;
        eprintln!("forgot the key for {}", args.api.base());
    } else {
        eprintln!("no key stored for {}", args.api.base());
    }
    Ok(())
}

/// `pysaas enqueue` options.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job kind, e.g. system.sleep.
    #[arg(required_unless_present = "from")]
    kind: Option<String>,
    /// Bulk: one job per line of this JSON Lines file (`-`: standard input), each line a
    /// `POST /v1/jobs` body; sent 1,000 per request (`POST /v1/jobs/batch`), with progress.
    #[arg(long, conflicts_with = "kind")]
    from: Option<PathBuf>,
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
    /// Attempts allowed (default: the kind's).
    #[arg(long)]
    max_attempts: Option<i32>,
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
    /// Follow a job until it finishes, a line per change of state; exits 0 once it succeeded,
    /// 1 if it ended dead or cancelled.
    Watch {
        id: String,
        /// Give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
}

fn json_arg(text: &str, flag: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| fail(ExitClass::Usage, format!("{flag} is not valid JSON: {e}")))
}

/// `pysaas enqueue`: submits one job and prints it.
pub async fn enqueue(args: EnqueueArgs) -> Result<()> {
    if let Some(from) = &args.from {
        return enqueue_from(&args.api, from).await;
    }
    let payload = json_arg(&args.payload, "--payload")?;
    let mut body = json!({ "kind": args.kind, "payload": payload });
    for (key, value) in [
        ("queue", args.queue.map(Value::from)),
        ("priority", args.priority.map(Value::from)),
        ("run_at", args.run_at.map(Value::from)),
        ("idempotency_key", args.idempotency_key.map(Value::from)),
        ("max_attempts", args.max_attempts.map(Value::from)),
    ] {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let client = args.api.client()?;
    let job = client
        .call(client.http.post(client.url("/v1/jobs")).json(&body))
        .await?;
    client.print(&job, details)
}

/// Jobs per `POST /v1/jobs/batch` request.
const BULK_BATCH: usize = 1000;

/// `pysaas enqueue --from FILE`: every line parsed first (a bad line stops everything before a
/// request is sent, naming the line), then batches of [`BULK_BATCH`]; each batch is all or
/// nothing, and a refused one stops the run, saying which line and how many went in before it.
async fn enqueue_from(api: &ApiArgs, from: &std::path::Path) -> Result<()> {
    let text = if from.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(from).map_err(|e| {
            fail(
                ExitClass::Usage,
                format!("cannot read {}: {e}", from.display()),
            )
        })?
    };
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let job: Value = serde_json::from_str(line).map_err(|e| {
            fail(
                ExitClass::Usage,
                format!("{}:{}: not a JSON object: {e}", from.display(), n + 1),
            )
        })?;
        if !job.is_object() {
            return Err(fail(
                ExitClass::Usage,
                format!(
                    "{}:{}: a line must be a JSON object like {{\"kind\": …}}",
                    from.display(),
                    n + 1
                ),
            ));
        }
        jobs.push((n + 1, job));
    }
    let client = api.client()?;
    let progress = crate::progress::bar(jobs.len() as u64, "jobs");
    let mut accepted = 0usize;
    for chunk in jobs.chunks(BULK_BATCH) {
        let body = json!({ "jobs": chunk.iter().map(|(_, j)| j).collect::<Vec<_>>() });
        let sent = client
            .call(client.http.post(client.url("/v1/jobs/batch")).json(&body))
            .await;
        if let Err(err) = sent {
            progress.abandon();
            let first = chunk.first().map_or(0, |(n, _)| *n);
            let last = chunk.last().map_or(0, |(n, _)| *n);
            let class = err
                .downcast_ref::<ClientError>()
                .map_or(ExitClass::Server, |e| e.class);
            return Err(fail(
                class,
                format!(
                    "lines {first}-{last} refused, none of them stored ({accepted} jobs from earlier lines were): {err}"
                ),
            ));
        }
        accepted += chunk.len();
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    match client.output {
        Output::Json => println!("{}", json!({ "enqueued": accepted })),
        Output::Human => println!("enqueued {accepted} jobs from {}", from.display()),
    }
    Ok(())
}

/// `pysaas jobs …`: lists, shows, cancels or retries jobs.
pub async fn jobs(args: JobsArgs) -> Result<()> {
    let client = args.api.client()?;
    match args.command {
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
            let page = client
                .call(client.http.get(client.url("/v1/jobs")).query(&query))
                .await?;
            client.print(&page, jobs_table)
        }
        JobsCommand::Show { id } => {
            let request = client.http.get(client.url(&format!("/v1/jobs/{id}")));
            client.print(&client.call(request).await?, details)
        }
        JobsCommand::Cancel { id } => job_action(&client, &id, "cancel").await,
        JobsCommand::Retry { id } => job_action(&client, &id, "retry").await,
        JobsCommand::Watch { id, timeout } => watch(&client, &id, timeout).await,
    }
}

/// `POST /v1/jobs/{id}/{action}`, printing the job as it then stands.
async fn job_action(client: &Client, id: &str, action: &str) -> Result<()> {
    let request = client
        .http
        .post(client.url(&format!("/v1/jobs/{id}/{action}")));
    client.print(&client.call(request).await?, details)
}

/// Polls the job, printing each new state (JSON lines with `-o json`), until it is finished.
async fn watch(client: &Client, id: &str, timeout: u64) -> Result<()> {
    let started = std::time::Instant::now();
    let mut last: Option<(String, String)> = None;
    loop {
        let job = client
            .call(client.http.get(client.url(&format!("/v1/jobs/{id}"))))
            .await?;
        let state = field(&job, "state");
        let attempts = field(&job, "attempts");
        if last.as_ref() != Some(&(state.clone(), attempts.clone())) {
            match client.output {
                Output::Json => println!("{}", serde_json::to_string(&job)?),
                Output::Human => {
                    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
                    let error = match job.get("last_error").and_then(Value::as_str) {
                        Some(e) if state != "succeeded" => format!("  ({e})"),
                        _ => String::new(),
                    };
                    println!("{now}  {}  attempt {attempts}{error}", paint(&state));
                }
            }
            last = Some((state.clone(), attempts));
        }
        match state.as_str() {
            "succeeded" => return Ok(()),
            "dead" | "cancelled" => anyhow::bail!("job {id} ended {state}"),
            _ => {}
        }
        if timeout > 0 && started.elapsed() >= std::time::Duration::from_secs(timeout) {
            anyhow::bail!("job {id} still {state} after {timeout} s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `pysaas schedules …`: manages cron schedules.
pub async fn schedules(args: SchedulesArgs) -> Result<()> {
    let client = args.api.client()?;
    let one = |name: &str| client.url(&format!("/v1/schedules/{name}"));
    let value = match args.command {
        SchedulesCommand::List => {
            let list = client
                .call(client.http.get(client.url("/v1/schedules")))
                .await?;
            return client.print(&list, schedules_table);
        }
        SchedulesCommand::Show { name } => client.call(client.http.get(one(&name))).await?,
        SchedulesCommand::Create {
            name,
            cron,
            kind,
            payload,
            timezone,
            misfire,
        } => {
            let payload = json_arg(&payload, "--payload")?;
            let mut body = json!({"name": name, "cron": cron, "kind": kind, "payload": payload, "timezone": timezone});
            if let Some(misfire) = misfire {
                body["misfire"] = Value::from(misfire);
            }
            client
                .call(client.http.post(client.url("/v1/schedules")).json(&body))
                .await?
        }
        SchedulesCommand::Pause { name } => {
            client
                .call(client.http.post(format!("{}/pause", one(&name))))
                .await?
        }
        SchedulesCommand::Resume { name } => {
            client
                .call(client.http.post(format!("{}/resume", one(&name))))
                .await?
        }
        SchedulesCommand::Trigger { name } => {
            client
                .call(client.http.post(format!("{}/trigger", one(&name))))
                .await?
        }
        SchedulesCommand::Delete { name } => {
            client.call(client.http.delete(one(&name))).await?;
            json!({"deleted": name})
        }
    };
    client.print(&value, details)
}

/// `pysaas probe URL`: GET it; Ok on a 2xx answer. The container image's health check.
pub async fn probe(url: &str, timeout_ms: u64) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .build()
        .context("building the HTTP client")?;
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}
