use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Job;

/// Version of the [`Envelope`] format.
pub const ENVELOPE_VERSION: u8 = 1;

/// What a message broker carries for a job: enough to route, prioritise and claim it. The job
/// store holds the rest (payload, attempts, state), so a message can never run stale data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub v: u8,
    /// Job id, claimed with a conditional update.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Priority, 0 ..= 9.
    pub priority: i16,
}

/// A message body that is not a valid envelope.
#[derive(Debug, thiserror::Error)]
#[error("not a PySaaS job envelope: {0}")]
pub struct EnvelopeError(String);

impl Envelope {
    /// The envelope announcing `job`.
    pub fn of(job: &Job) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            id: job.id,
            tenant_id: job.tenant_id.clone(),
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            priority: job.priority,
        }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a message body.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError(e.to_string()))?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(EnvelopeError(format!("unsupported version {}", envelope.v)));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let e = Envelope {
            v: 1,
            id: Uuid::now_v7(),
            tenant_id: "t".into(),
            kind: "k".into(),
            queue: "q".into(),
            priority: 3,
        };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        assert!(Envelope::decode(b"hello").is_err());
        assert!(Envelope::decode(br#"{"v":2,"id":"00000000-0000-0000-0000-000000000000","tenant_id":"t","kind":"k","queue":"q","priority":0}"#).is_err());
    }
}
