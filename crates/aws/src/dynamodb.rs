//! The DynamoDB adapter of the [`ControlStore`] port: items are (pk, sk, ver, body, ttl).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use tidemark_core::ports::{ControlStore, Item};
use tidemark_core::{Error, Result};

use crate::errors::{code, map};

/// A DynamoDB table with a string partition key `pk` and sort key `sk`.
#[derive(Clone, Debug)]
pub struct DynamoControlStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoControlStore {
    /// Wraps a client and a table name.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoControlStore { client, table: table.into() }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<Item> {
    let get_s = |k: &str| {
        item.get(k).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| Error::corrupt("control item", format!("attribute {k} missing")))
    };
    let version = item
        .get("ver")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::corrupt("control item", "attribute ver missing"))?;
    Ok(Item { pk: get_s("pk")?, sk: get_s("sk")?, version, body: get_s("body")? })
}

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

#[async_trait]
impl ControlStore for DynamoControlStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map("GetItem", e))?;
        out.item().map(parse).transpose()
    }

    async fn put_new(&self, pk: &str, sk: &str, body: &str, expires_at: Option<i64>) -> Result<bool> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("ver", AttributeValue::N("1".into()))
            .item("body", s(body))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(t) = expires_at {
            req = req.item("ttl", AttributeValue::N(t.to_string()));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e).as_deref() == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(map("PutItem", e)),
        }
    }

    async fn replace(&self, pk: &str, sk: &str, expected_version: u64, body: &str) -> Result<bool> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("ver", AttributeValue::N((expected_version + 1).to_string()))
            .item("body", s(body))
            .condition_expression("attribute_exists(pk) AND ver = :v")
            .expression_attribute_values(":v", AttributeValue::N(expected_version.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if code(&e).as_deref() == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(map("PutItem (conditional)", e)),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self.client.query().table_name(&self.table).consistent_read(true).expression_attribute_values(":pk", s(pk));
            req = if sk_prefix.is_empty() {
                req.key_condition_expression("pk = :pk")
            } else {
                req.key_condition_expression("pk = :pk AND begins_with(sk, :p)").expression_attribute_values(":p", s(sk_prefix))
            };
            let page = req.set_exclusive_start_key(start).send().await.map_err(|e| map("Query", e))?;
            for item in page.items() {
                out.push(parse(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}
