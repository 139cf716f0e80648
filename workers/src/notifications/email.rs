//! `notification.email`: a template rendered with minijinja into a text and an HTML part, sent
//! with lettre over SMTP from the tenant's sender.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::{Environment, UndefinedBehavior};
use pysaas_jobs::kinds::notification::{Email, EmailTemplate};
use pysaas_jobs::preferences::Channel;
use pysaas_jobs::HandlerError;
use serde_json::{json, Value};

use crate::{JobContext, JobHandler};

/// The sending job's W3C `traceparent`, as a message header (`Traceparent:`), so that a
/// message can be followed back to the request that caused it.
#[derive(Debug, Clone)]
struct Traceparent(String);

impl lettre::message::header::Header for Traceparent {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Traceparent")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Traceparent(s.to_owned()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Where email goes unless configured: a local SMTP server (a development sink).
pub const DEFAULT_SMTP_URL: &str = "smtp://127.0.0.1:2525";
/// The sender of tenants that set none.
pub const DEFAULT_EMAIL_FROM: &str = "PySaaS <no-reply@pysaas.localhost>";

/// The templates, by name: subject, text part, HTML part.
const TEMPLATES: [(EmailTemplate, &str, &str, &str); 5] = [
    (
        EmailTemplate::Welcome,
        include_str!("../../templates/email/welcome.subject"),
        include_str!("../../templates/email/welcome.txt"),
        include_str!("../../templates/email/welcome.html"),
    ),
    (
        EmailTemplate::Receipt,
        include_str!("../../templates/email/receipt.subject"),
        include_str!("../../templates/email/receipt.txt"),
        include_str!("../../templates/email/receipt.html"),
    ),
    (
        EmailTemplate::PaymentFailed,
        include_str!("../../templates/email/payment_failed.subject"),
        include_str!("../../templates/email/payment_failed.txt"),
        include_str!("../../templates/email/payment_failed.html"),
    ),
    (
        EmailTemplate::SubscriptionCancelled,
        include_str!("../../templates/email/subscription_cancelled.subject"),
        include_str!("../../templates/email/subscription_cancelled.txt"),
        include_str!("../../templates/email/subscription_cancelled.html"),
    ),
    (
        EmailTemplate::Notice,
        include_str!("../../templates/email/notice.subject"),
        include_str!("../../templates/email/notice.txt"),
        include_str!("../../templates/email/notice.html"),
    ),
];

/// Email settings.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `smtp://host:port` (plain; `?tls=required` for STARTTLS), `smtps://…` (TLS), with
    /// `user:password@` if the server needs it.
    pub smtp_url: String,
    /// The sender of tenants that set none (`Name <address>`).
    pub default_from: String,
    /// Connecting and each SMTP command give up after this.
    pub timeout: Duration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_url: DEFAULT_SMTP_URL.into(),
            default_from: DEFAULT_EMAIL_FROM.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Runs `notification.email`.
#[derive(Clone)]
pub struct EmailHandler {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    default_from: Mailbox,
    templates: Arc<Environment<'static>>,
}

impl std::fmt::Debug for EmailHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP URL may hold a password: only the host is shown.
        f.debug_struct("EmailHandler")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn template_names(t: EmailTemplate) -> [String; 3] {
    let name = t.as_str();
    [
        format!("{name}.subject"),
        format!("{name}.txt"),
        format!("{name}.html"),
    ]
}

impl EmailHandler {
    /// A handler sending through `config.smtp_url`; the error names what is wrong.
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        let url = url::Url::parse(&config.smtp_url)
            .map_err(|e| format!("SMTP URL: {e} (expected smtp://host:port)"))?;
        let server = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port()
                .map_or_else(|| "default port".to_owned(), |p| p.to_string())
        );
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| format!("SMTP URL: {e}"))?
            .timeout(Some(config.timeout))
            .build();
        let default_from: Mailbox = config
            .default_from
            .parse()
            .map_err(|e| format!("default sender `{}`: {e}", config.default_from))?;
        let mut env = Environment::new();
        // A variable the template needs and the job lacks is an error, not an empty string;
        // `{% if x %}` on a missing one is simply false.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (template, subject, text, html) in TEMPLATES {
            let [s, t, h] = template_names(template);
            for (name, source) in [(s, subject), (t, text), (h, html)] {
                env.add_template_owned(name.clone(), source.to_owned())
                    .map_err(|e| format!("template {name}: {e}"))?;
            }
        }
        Ok(EmailHandler {
            transport,
            server,
            default_from,
            templates: Arc::new(env),
        })
    }

    /// Subject, text and HTML of `template` with `data`; a missing variable is a permanent
    /// failure naming it.
    pub fn render(
        &self,
        template: EmailTemplate,
        data: &serde_json::Map<String, Value>,
    ) -> Result<(String, String, String), HandlerError> {
        let render = |name: &str| {
            self.templates
                .get_template(name)
                .and_then(|t| t.render(data))
                .map_err(|e| HandlerError::fail(format!("template `{}`: {e}", template.as_str())))
        };
        let [s, t, h] = template_names(template);
        let subject = render(&s)?.trim().replace(['\r', '\n'], " ");
        Ok((subject, render(&t)?, render(&h)?))
    }

    fn sender(
        &self,
        sender: Option<pysaas_brokers::EmailSender>,
    ) -> Result<(Mailbox, Option<Mailbox>), HandlerError> {
        let Some(sender) = sender else {
            return Ok((self.default_from.clone(), None));
        };
        let address = sender.from_address.parse().map_err(|e| {
            HandlerError::fail(format!(
                "the tenant's sender `{}`: {e}",
                sender.from_address
            ))
        })?;
        let from = Mailbox::new(sender.from_name, address);
        let reply_to = sender
            .reply_to
            .map(|r| {
                r.parse::<Mailbox>()
                    .map_err(|e| HandlerError::fail(format!("the tenant's reply-to `{r}`: {e}")))
            })
            .transpose()?;
        Ok((from, reply_to))
    }
}

/// A refused send: 5xx is final, 4xx and no answer are retried.
fn smtp_error(server: &str, e: &SmtpError) -> HandlerError {
    if e.is_permanent() {
        HandlerError::fail(format!(
            "SMTP server {server} refused the message for good: {e}"
        ))
    } else if e.is_transient() {
        HandlerError::retry(format!(
            "SMTP server {server} refused the message for now: {e}"
        ))
    } else {
        HandlerError::retry(format!(
            "SMTP server {server} unreachable or failing (set notifications.smtp_url): {e}"
        ))
    }
}

#[async_trait]
impl JobHandler<Email> for EmailHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: Email,
    ) -> Result<Option<Value>, HandlerError> {
        let (subject, text, html) = self.render(payload.template, &payload.data)?;
        // A recipient who is a user and opted out of this category by email is not sent it
        // (receipts and other transactional mail always are).
        let category = payload.template.category();
        if !category.transactional() {
            let user = ctx
                .store()?
                .user_by_email(&payload.to.to_lowercase())
                .await
                .map_err(|e| HandlerError::retry(format!("looking up the recipient: {e}")))?;
            if let Some(user) = user {
                if !super::allowed(ctx, user.id, Channel::Email, category).await? {
                    return Ok(Some(json!({
                        "to": payload.to,
                        "template": payload.template.as_str(),
                        "skipped": format!("the recipient opted out of {category} email"),
                    })));
                }
            }
        }
        let sender = ctx
            .store()?
            .email_sender(&ctx.tenant_id)
            .await
            .map_err(|e| HandlerError::retry(format!("reading the tenant's sender: {e}")))?;
        let (from, reply_to) = self.sender(sender)?;
        let to: Mailbox = payload
            .to
            .parse()
            .map_err(|e| HandlerError::fail(format!("recipient `{}`: {e}", payload.to)))?;
        // The job's id, so that a message sent again after a crash can be recognised.
        let message_id = format!("<{}@pysaas>", ctx.id);
        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()));
        if let Some(reply_to) = reply_to {
            builder = builder.reply_to(reply_to);
        }
        if let Some(traceparent) = &ctx.trace_context {
            builder = builder.header(Traceparent(traceparent.clone()));
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| HandlerError::fail(format!("building the message: {e}")))?;
        let response = self
            .transport
            .send(message)
            .await
            .map_err(|e| smtp_error(&self.server, &e))?;
        Ok(Some(json!({
            "to": payload.to,
            "template": payload.template.as_str(),
            "message_id": message_id,
            "smtp_code": response.code().to_string(),
        })))
    }
}
