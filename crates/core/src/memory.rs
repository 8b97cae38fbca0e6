//! In-memory queue and control store for one process: the test kit's fakes of the `Queue` and
//! `ControlStore` ports, and the state of work that a process does alone, such as a restore run
//! from a vault whose control plane is gone (`vault_only_engine`).
//!
//! Both keep the semantics the engine relies on (visibility timeouts, receive counts, redrive;
//! put-if-absent and compare-and-set on item versions) and pass the ports' conformance suites.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::config::EngineConfig;
use crate::engine::{Engine, QueueUrls};
use crate::ports::{Backlog, ControlStore, Item, Message, ObjectStore, Queue, SystemClock};
use crate::Result;

struct QMsg {
    id: String,
    body: String,
    sent_at: DateTime<Utc>,
    visible_at: DateTime<Utc>,
    receives: u32,
    receipt: Option<String>,
}

#[derive(Default)]
struct QState {
    queues: HashMap<String, VecDeque<QMsg>>,
    redrive: HashMap<String, (String, u32)>,
    counter: u64,
}

/// An in-memory SQS: visibility timeouts, receive counts, redrive to a dead-letter queue.
#[derive(Default)]
pub struct MemQueue {
    state: Mutex<QState>,
}

impl MemQueue {
    /// An empty set of queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves a message to `dlq` once it has been received `max_receives` times.
    pub fn set_redrive(&self, queue: &str, dlq: &str, max_receives: u32) {
        self.state.lock().unwrap().redrive.insert(queue.into(), (dlq.into(), max_receives));
    }

    /// Messages currently held by a queue.
    pub fn len(&self, queue: &str) -> usize {
        self.state.lock().unwrap().queues.get(queue).map_or(0, |q| q.len())
    }

    /// The bodies of a queue's messages (for assertions on dead-letter queues).
    pub fn bodies(&self, queue: &str) -> Vec<String> {
        self.state.lock().unwrap().queues.get(queue).map_or(vec![], |q| q.iter().map(|m| m.body.clone()).collect())
    }
}

#[async_trait]
impl Queue for MemQueue {
    async fn send(&self, queue: &str, body: &str, delay_seconds: i32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        let id = format!("m{}", s.counter);
        s.queues.entry(queue.into()).or_default().push_back(QMsg {
            id,
            body: body.into(),
            sent_at: Utc::now(),
            visible_at: Utc::now() + Duration::seconds(delay_seconds.into()),
            receives: 0,
            receipt: None,
        });
        Ok(())
    }

    async fn receive(&self, queue: &str, max: i32, _wait_seconds: i32, visibility_seconds: i32) -> Result<Vec<Message>> {
        let mut s = self.state.lock().unwrap();
        let now = Utc::now();
        let redrive = s.redrive.get(queue).cloned();
        let mut moved = Vec::new();
        let mut out = Vec::new();
        s.counter += 1;
        let stamp = s.counter;
        let q = s.queues.entry(queue.into()).or_default();
        let mut i = 0;
        while i < q.len() && out.len() < max.max(1) as usize {
            if q[i].visible_at > now {
                i += 1;
                continue;
            }
            if let Some((_, maxr)) = &redrive {
                if q[i].receives >= *maxr {
                    moved.push(q.remove(i).expect("index checked"));
                    continue;
                }
            }
            let m = &mut q[i];
            m.receives += 1;
            m.visible_at = now + Duration::seconds(visibility_seconds.into());
            let receipt = format!("{}#{}", m.id, stamp);
            m.receipt = Some(receipt.clone());
            out.push(Message { id: m.id.clone(), receipt, body: m.body.clone(), receive_count: m.receives, sent_at: Some(m.sent_at) });
            i += 1;
        }
        if let Some((dlq, _)) = redrive {
            s.queues.entry(dlq).or_default().extend(moved);
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(q) = s.queues.get_mut(queue) {
            q.retain(|m| m.receipt.as_deref() != Some(receipt));
        }
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, visibility_seconds: i32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(m) = s.queues.get_mut(queue).and_then(|q| q.iter_mut().find(|m| m.receipt.as_deref() == Some(receipt))) {
            m.visible_at = Utc::now() + Duration::seconds(visibility_seconds.into());
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64> {
        Ok(self.len(queue) as u64)
    }

    /// Exact: the fake knows when every message it holds was sent.
    async fn oldest_unhandled(&self, queue: &str) -> Result<Backlog> {
        let s = self.state.lock().unwrap();
        let at = Utc::now();
        Ok(match s.queues.get(queue).and_then(|q| q.iter().map(|m| m.sent_at).min()) {
            Some(oldest_sent) => Backlog::Oldest { at, oldest_sent },
            None => Backlog::Empty { at },
        })
    }
}

/// An in-memory control store with DynamoDB's conditional-write semantics.
#[derive(Default)]
pub struct MemControlStore {
    items: Mutex<BTreeMap<(String, String), Item>>,
}

impl MemControlStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ControlStore for MemControlStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        Ok(self.items.lock().unwrap().get(&(pk.into(), sk.into())).cloned())
    }

    async fn put_new(&self, pk: &str, sk: &str, body: &str, _expires_at: Option<i64>) -> Result<bool> {
        let mut items = self.items.lock().unwrap();
        let k = (pk.to_string(), sk.to_string());
        if items.contains_key(&k) {
            return Ok(false);
        }
        items.insert(k, Item { pk: pk.into(), sk: sk.into(), version: 1, body: body.into() });
        Ok(true)
    }

    async fn replace(&self, pk: &str, sk: &str, expected_version: u64, body: &str) -> Result<bool> {
        let mut items = self.items.lock().unwrap();
        match items.get_mut(&(pk.to_string(), sk.to_string())) {
            Some(item) if item.version == expected_version => {
                item.version += 1;
                item.body = body.into();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let items = self.items.lock().unwrap();
        Ok(items.values().filter(|i| i.pk == pk && i.sk.starts_with(sk_prefix)).cloned().collect())
    }

    async fn get_many(&self, pk: &str, sks: &[String]) -> Result<Vec<Item>> {
        let items = self.items.lock().unwrap();
        let unique: std::collections::BTreeSet<&String> = sks.iter().collect();
        Ok(unique.into_iter().filter_map(|sk| items.get(&(pk.to_string(), sk.clone())).cloned()).collect())
    }

    async fn put_markers(&self, pk: &str, sks: &[String], body: &str, _expires_at: Option<i64>) -> Result<()> {
        let mut items = self.items.lock().unwrap();
        for sk in sks {
            items.insert((pk.into(), sk.clone()), Item { pk: pk.into(), sk: sk.clone(), version: 1, body: body.into() });
        }
        Ok(())
    }
}

/// An engine whose control state and queues live in this process only, over real object stores:
/// what reads and restores need when the vault is all there is. Its queues are named
/// `memory:work`, `memory:delta` and `memory:restore`.
pub fn vault_only_engine(source: Arc<dyn ObjectStore>, vault: Arc<dyn ObjectStore>, config: EngineConfig) -> Engine {
    Engine {
        source,
        vault,
        control: Arc::new(MemControlStore::new()),
        queue: Arc::new(MemQueue::new()),
        clock: Arc::new(SystemClock),
        config,
        queues: QueueUrls { work: "memory:work".into(), delta: "memory:delta".into(), restore: "memory:restore".into() },
    }
}
