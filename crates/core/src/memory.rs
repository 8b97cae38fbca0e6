//! In-memory queue, control store and key service for one process: the test kit's fakes of the
//! `Queue`, `ControlStore` and `KeyService` ports, and the state of work that a process does
//! alone, such as a restore run from a vault whose control plane is gone (`vault_only_engine`).
//!
//! They keep the semantics the engine relies on (visibility timeouts, receive counts, redrive;
//! put-if-absent and compare-and-set on item versions; data keys that only the key that wrapped
//! them unwraps) and pass the ports' conformance suites.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::config::EngineConfig;
use crate::engine::{Engine, QueueUrls};
use crate::ports::{Backlog, ControlStore, DataKey, Item, KeyService, Message, ObjectStore, Queue, SystemClock};
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

/// An in-memory key service: named keys (each a random AES-256 master key) that wrap and unwrap
/// data keys the way KMS does, refusing unknown and disabled keys and blobs another key wrapped.
///
/// A wrapped blob is `MEMKEY1`, the key id's length (u16 LE) and bytes, a 12-byte nonce and the
/// AES-256-GCM ciphertext of the data key with the key id as associated data.
#[derive(Default)]
pub struct MemKeys {
    keys: Mutex<BTreeMap<String, ([u8; 32], bool)>>,
    counter: Mutex<u64>,
}

const MEM_WRAP_MAGIC: &[u8; 7] = b"MEMKEY1";

impl MemKeys {
    /// A key service holding no keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an enabled key and returns its id (an ARN-shaped name, as KMS gives).
    pub fn create_key(&self) -> String {
        let n = {
            let mut c = self.counter.lock().unwrap();
            *c += 1;
            *c
        };
        let id = format!("arn:aws:kms:us-east-1:000000000000:key/mem-{n:04}-{:08x}", rand::random::<u32>());
        self.keys.lock().unwrap().insert(id.clone(), (rand::random(), true));
        id
    }

    /// Adds an enabled key with the given id and key material: a vault written under a key of
    /// another `MemKeys` (a fixture's) can then be read.
    pub fn import_key(&self, key_id: &str, material: [u8; 32]) {
        self.keys.lock().unwrap().insert(key_id.to_string(), (material, true));
    }

    /// The material of key `key_id`, which [`MemKeys::import_key`] takes back.
    pub fn material(&self, key_id: &str) -> Option<[u8; 32]> {
        self.keys.lock().unwrap().get(key_id).map(|k| k.0)
    }

    /// Disables or re-enables a key; a disabled key neither makes nor unwraps data keys.
    pub fn set_enabled(&self, key_id: &str, enabled: bool) {
        if let Some(k) = self.keys.lock().unwrap().get_mut(key_id) {
            k.1 = enabled;
        }
    }

    fn master(&self, key_id: &str, operation: &str) -> Result<[u8; 32]> {
        match self.keys.lock().unwrap().get(key_id) {
            None => Err(crate::Error::key(key_id, operation, "NotFoundException: no such key", false)),
            Some((_, false)) => Err(crate::Error::key(key_id, operation, "DisabledException: the key is disabled", false)),
            Some((m, true)) => Ok(*m),
        }
    }
}

#[async_trait]
impl KeyService for MemKeys {
    async fn generate_data_key(&self, key_id: &str) -> Result<DataKey> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let master = self.master(key_id, "generate a data key")?;
        let plaintext: [u8; 32] = rand::random();
        let nonce: [u8; 12] = rand::random();
        let cipher = aes_gcm::Aes256Gcm::new((&master).into());
        let ct = cipher
            .encrypt((&nonce).into(), Payload { msg: &plaintext, aad: key_id.as_bytes() })
            .map_err(|_| crate::Error::key(key_id, "generate a data key", "encryption failed", false))?;
        let mut wrapped = MEM_WRAP_MAGIC.to_vec();
        wrapped.extend_from_slice(&(key_id.len() as u16).to_le_bytes());
        wrapped.extend_from_slice(key_id.as_bytes());
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ct);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<[u8; 32]> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let op = "decrypt a data key";
        let invalid = || crate::Error::key(key_id, op, "InvalidCiphertextException: not a data key this service wrapped", false);
        let rest = wrapped.strip_prefix(MEM_WRAP_MAGIC.as_slice()).ok_or_else(invalid)?;
        let (len, rest) = rest.split_at_checked(2).ok_or_else(invalid)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let (owner, rest) = rest.split_at_checked(len).ok_or_else(invalid)?;
        if owner != key_id.as_bytes() {
            return Err(crate::Error::key(
                key_id,
                op,
                format!("IncorrectKeyException: the data key was wrapped by {}", String::from_utf8_lossy(owner)),
                false,
            ));
        }
        let master = self.master(key_id, op)?;
        let (nonce, ct) = rest.split_at_checked(12).ok_or_else(invalid)?;
        let cipher = aes_gcm::Aes256Gcm::new((&master).into());
        let pt = cipher.decrypt(nonce.into(), Payload { msg: ct, aad: key_id.as_bytes() }).map_err(|_| invalid())?;
        pt.try_into().map_err(|_| invalid())
    }
}

/// An engine whose control state and queues live in this process only, over real object stores:
/// what reads and restores need when the vault is all there is. Its queues are named
/// `memory:work`, `memory:delta` and `memory:restore`.
pub fn vault_only_engine(
    source: Arc<dyn ObjectStore>,
    vault: Arc<dyn ObjectStore>,
    keys: Arc<dyn KeyService>,
    config: EngineConfig,
) -> Engine {
    Engine {
        source,
        vault,
        control: Arc::new(MemControlStore::new()),
        queue: Arc::new(MemQueue::new()),
        clock: Arc::new(SystemClock),
        keys,
        config,
        queues: QueueUrls { work: "memory:work".into(), delta: "memory:delta".into(), restore: "memory:restore".into() },
    }
}
