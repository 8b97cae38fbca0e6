//! The DynamoDB adapter of the [`ControlStore`] port: items are (pk, sk, ver, body, ttl).

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
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

    async fn get_many(&self, pk: &str, sks: &[String]) -> Result<Vec<Item>> {
        // BatchGetItem refuses duplicate keys and takes at most 100 of them.
        let unique: BTreeSet<&String> = sks.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        let mut out = Vec::new();
        for chunk in unique.chunks(100) {
            let keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|sk| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| build_error("BatchGetItem", e))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let page =
                    self.client.batch_get_item().request_items(&self.table, request).send().await.map_err(|e| map("BatchGetItem", e))?;
                for item in page.responses().and_then(|r| r.get(&self.table)).map(Vec::as_slice).unwrap_or_default() {
                    out.push(parse(item)?);
                }
                // Keys DynamoDB did not get to (throughput) come back; retry them with a backoff.
                pending = page.unprocessed_keys().and_then(|u| u.get(&self.table)).filter(|k| !k.keys().is_empty()).cloned();
                if pending.is_some() {
                    attempt += 1;
                    backoff("BatchGetItem", attempt).await?;
                }
            }
        }
        Ok(out)
    }

    async fn put_markers(&self, pk: &str, sks: &[String], body: &str, expires_at: Option<i64>) -> Result<()> {
        // BatchWriteItem refuses two writes of one key in a request and takes at most 25.
        let unique: BTreeSet<&String> = sks.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(25) {
            let mut writes = Vec::new();
            for sk in chunk {
                let mut item = HashMap::from([
                    ("pk".to_string(), s(pk)),
                    ("sk".to_string(), s(sk)),
                    ("ver".to_string(), AttributeValue::N("1".into())),
                    ("body".to_string(), s(body)),
                ]);
                if let Some(t) = expires_at {
                    item.insert("ttl".to_string(), AttributeValue::N(t.to_string()));
                }
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| build_error("BatchWriteItem", e))?;
                writes.push(WriteRequest::builder().put_request(put).build());
            }
            let mut attempt = 0;
            while !writes.is_empty() {
                let out =
                    self.client.batch_write_item().request_items(&self.table, writes).send().await.map_err(|e| map("BatchWriteItem", e))?;
                writes = out.unprocessed_items().and_then(|u| u.get(&self.table)).cloned().unwrap_or_default();
                if !writes.is_empty() {
                    attempt += 1;
                    backoff("BatchWriteItem", attempt).await?;
                }
            }
        }
        Ok(())
    }
}

fn build_error(operation: &str, e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::port(operation, e.to_string(), false)
}

/// Waits before retrying the unprocessed part of a batch; gives up (transiently) after a few tries.
async fn backoff(operation: &str, attempt: u32) -> Result<()> {
    if attempt > 8 {
        return Err(Error::port(operation, "unprocessed items remained after 8 retries", true));
    }
    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
    Ok(())
}
