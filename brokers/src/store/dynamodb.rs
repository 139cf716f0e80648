//! [`ProfileStore`] on DynamoDB: one table keyed by user (`pk`) and item (`sk`), each item's
//! fields as attributes beside a `version` number that every write checks and bumps in one
//! conditional write. The table is created at start when missing (on-demand capacity).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

use crate::store::profiles::{ProfileItem, ProfileStore, Versioned};
use crate::{Result, StoreError};

/// How to reach the table.
#[derive(Clone)]
pub struct DynamoConfig {
    /// Endpoint (`http://127.0.0.1:4566` for a local server); `None`: the region's AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Region (`eu-west-1`).
    pub region: String,
    /// Table name.
    pub table: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
    /// Each request gives up after this (retries included).
    pub timeout: Duration,
}

impl std::fmt::Debug for DynamoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoConfig")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("table", &self.table)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Profile items in a DynamoDB table.
#[derive(Clone)]
pub struct DynamoProfileStore {
    client: Client,
    table: String,
}

impl std::fmt::Debug for DynamoProfileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoProfileStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// An SDK error as a store error: no answer (timeout, connection, throttling) is "unavailable".
fn sdk_error<E, R>(what: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::ProfilesUnavailable(format!("{what}: {}", describe(&err)))
        }
        SdkError::ServiceError(service)
            if matches!(
                service.err().code(),
                Some(
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                )
            ) =>
        {
            StoreError::ProfilesUnavailable(format!("{what}: {}", describe(&err)))
        }
        _ => StoreError::Profiles(format!("{what}: {}", describe(&err))),
    }
}

/// The error with its sources, on one line.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A JSON value as an attribute value (objects as maps, arrays as lists, numbers as numbers).
fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attr).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

/// An attribute value as JSON (the inverse of [`to_attr`]).
fn from_attr(attr: &AttributeValue) -> Result<Value> {
    Ok(match attr {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => {
            let number: Number = n
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("profile item number `{n}`")))?;
            Value::Number(number)
        }
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(items) => {
            Value::Array(items.iter().map(from_attr).collect::<Result<_>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_attr(v)?)))
                .collect::<Result<Map<_, _>>>()?,
        ),
        other => {
            return Err(StoreError::Corrupt(format!(
                "profile item attribute of an unexpected type: {other:?}"
            )))
        }
    })
}

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "version";
const DATA: &str = "data";
const UPDATED_AT: &str = "updated_at";

impl DynamoProfileStore {
    /// A client of the table (nothing is sent until [`ProfileStore::prepare_profiles`]).
    pub fn new(config: &DynamoConfig) -> Result<Self> {
        if config.table.is_empty() {
            return Err(StoreError::Config(
                "profiles.dynamodb_table is empty".into(),
            ));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut builder = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
                None,
                None,
                "pysaas-config",
            ))
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.timeout.min(Duration::from_secs(3)))
                    .operation_attempt_timeout(config.timeout)
                    .operation_timeout(config.timeout * 2)
                    .build(),
            );
        if let Some(url) = &config.endpoint_url {
            url::Url::parse(url).map_err(|e| {
                StoreError::Config(format!("profiles.dynamodb_endpoint `{url}`: {e}"))
            })?;
            builder = builder.endpoint_url(url);
        }
        Ok(DynamoProfileStore {
            client: Client::from_conf(builder.build()),
            table: config.table.clone(),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table and everything in it (tests' teardown).
    pub async fn delete_table(&self) -> Result<()> {
        self.client
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("deleting the profile table", e))?;
        Ok(())
    }

    fn key(user_id: Uuid, item: ProfileItem) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(user_id.to_string())),
            (SK.to_owned(), AttributeValue::S(item.as_str().to_owned())),
        ])
    }

    async fn wait_active(&self) -> Result<()> {
        for _ in 0..60 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("describing the profile table", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if matches!(status, Some(TableStatus::Active) | None) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::ProfilesUnavailable(format!(
            "table {} did not become active in 30 s",
            self.table
        )))
    }
}

#[async_trait]
impl ProfileStore for DynamoProfileStore {
    fn profile_backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn prepare_profiles(&self) -> Result<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Profiles(e.to_string()))
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| StoreError::Profiles(e.to_string()))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created the DynamoDB profile table"),
            // Another process (or an earlier start) made it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(sdk_error("creating the profile table", e)),
        }
        self.wait_active().await
    }

    async fn get_item(&self, user_id: Uuid, item: ProfileItem) -> Result<Option<Versioned>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user_id, item)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a profile item", e))?;
        let Some(attrs) = got.item() else {
            return Ok(None);
        };
        let version = match attrs.get(VERSION) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| StoreError::Corrupt("profile item without a version".into()))?;
        let data = attrs
            .get(DATA)
            .map(from_attr)
            .transpose()?
            .unwrap_or_else(|| Value::Object(Map::new()));
        let updated_at = match attrs.get(UPDATED_AT) {
            Some(AttributeValue::S(s)) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        }
        .ok_or_else(|| StoreError::Corrupt("profile item without updated_at".into()))?;
        Ok(Some(Versioned {
            data,
            version,
            updated_at,
        }))
    }

    async fn put_item(
        &self,
        user_id: Uuid,
        item: ProfileItem,
        data: &Value,
        expected: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        let version = expected + 1;
        let mut attrs = Self::key(user_id, item);
        attrs.insert(VERSION.into(), AttributeValue::N(version.to_string()));
        attrs.insert(DATA.into(), to_attr(data));
        attrs.insert(
            UPDATED_AT.into(),
            AttributeValue::S(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            put.condition_expression("#v = :expected")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(Some(version)),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    // The SDK retries a put whose answer it lost: if the item now holds exactly
                    // this write, the first attempt landed and this one merely found it.
                    let landed = failed.item().is_some_and(|old| {
                        old.get(VERSION) == Some(&AttributeValue::N(version.to_string()))
                            && old.get(DATA) == Some(&to_attr(data))
                    });
                    Ok(landed.then_some(version))
                }
                _ => Err(sdk_error("writing a profile item", e)),
            },
        }
    }

    async fn erase_items(&self, user_id: Uuid) -> Result<u64> {
        let mut erased = 0;
        for item in ProfileItem::ALL {
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(user_id, item)))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| sdk_error("deleting a profile item", e))?;
            if deleted.attributes().is_some_and(|a| !a.is_empty()) {
                erased += 1;
            }
        }
        Ok(erased)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_attribute_values() {
        let doc = serde_json::json!({
            "display_name": "Ada", "n": 3, "f": 1.5, "flags": [true, null, "x"],
            "nested": {"opt_outs": [{"channel": "email", "category": "product"}]}
        });
        assert_eq!(from_attr(&to_attr(&doc)).ok(), Some(doc));
    }

    #[test]
    fn the_secret_is_not_printed() {
        let config = DynamoConfig {
            endpoint_url: None,
            region: "eu-west-1".into(),
            table: "t".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "hunter2".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
