//! The encryption envelope of packed blobs: AES-256-GCM under a per-pack data key that the key service (KMS) wraps.
//!
//! A pack written with a key id gets one fresh data key (`KeyService::generate_data_key`). Each
//! blob is compressed first (`pack::encode_blob`) and then sealed on its own, so a ranged read of
//! one blob, or a coalesced read of several, opens each without reading anything else of the
//! pack. The stored blob is `ciphertext || tag` (16 bytes longer than its plaintext). The 96-bit
//! nonce is the blob's offset in the pack (u64 LE) followed by four zero bytes: offsets strictly
//! increase within a pack (every sealed blob is at least 16 bytes long) and a data key seals one
//! pack only, so no (key, nonce) pair repeats. The associated data is [`BLOB_AAD`], which binds
//! the ciphertext to this format. The data key, wrapped, and the key id are kept in every
//! record's pack location (`domain::Envelope`), in the pack's footer and in the index segments,
//! so one record is enough to open its blob: the vault plus access to the key restores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use async_trait::async_trait;
// The prelude brings the base64 encoding trait into scope without naming it.
use base64::prelude::*;

use crate::domain::Envelope;
use crate::ports::{DataKey, KeyService};
use crate::{Error, Result};

/// The associated data of every sealed blob: the format it belongs to.
pub const BLOB_AAD: &[u8] = b"tidemark-pack-blob-v3";

/// The bytes the tag adds to a sealed blob.
pub const TAG_LEN: usize = 16;

/// The nonce of the blob at `offset` in its pack.
fn nonce(offset: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&offset.to_le_bytes());
    n
}

/// Seals one (already compressed) blob that will start at `offset` in its pack.
pub fn seal(key: &[u8; 32], offset: u64, plain: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into())
        .encrypt((&nonce(offset)).into(), Payload { msg: plain, aad: BLOB_AAD })
        .expect("AES-GCM encryption of an in-memory blob cannot fail")
}

/// Opens one sealed blob read from `offset`; `key_id` names the key in the error when the blob
/// does not authenticate (damaged, moved, or not sealed with this pack's data key).
pub fn open(key: &[u8; 32], offset: u64, sealed: &[u8], key_id: &str) -> Result<Vec<u8>> {
    Aes256Gcm::new(key.into()).decrypt((&nonce(offset)).into(), Payload { msg: sealed, aad: BLOB_AAD }).map_err(|_| {
        Error::corrupt(
            "pack blob",
            format!("the blob at offset {offset} does not authenticate under its data key (wrapped by KMS key {key_id}): damaged or not this pack's"),
        )
    })
}

/// The envelope a record keeps for a data key made under `key_id`.
pub fn envelope(key_id: &str, key: &DataKey) -> Envelope {
    Envelope { key_id: key_id.into(), wrapped_key: BASE64_STANDARD.encode(&key.wrapped) }
}

/// Unwraps the data key of an envelope through the key service.
pub async fn unwrap(keys: &dyn KeyService, env: &Envelope) -> Result<[u8; 32]> {
    let wrapped = BASE64_STANDARD
        .decode(&env.wrapped_key)
        .map_err(|e| Error::corrupt("pack envelope", format!("wrapped data key of KMS key {} is not base64: {e}", env.key_id)))?;
    keys.decrypt_data_key(&env.key_id, &wrapped).await
}

/// The most unwrapped data keys [`CachedKeys`] holds before it starts over.
pub const CACHE_ENTRIES: usize = 4096;

/// Unwrapped data keys by (key id, wrapped key).
type Unwrapped = HashMap<(String, Vec<u8>), [u8; 32]>;

/// A key service that remembers the data keys it unwrapped, so that a restore or a verify asks
/// KMS once per pack rather than once per blob. Bounded: at [`CACHE_ENTRIES`] it forgets them all
/// (a restore reads packs roughly in order, so recency buys little over a clear).
pub struct CachedKeys {
    inner: Arc<dyn KeyService>,
    unwrapped: Mutex<Unwrapped>,
}

impl CachedKeys {
    /// Caches the unwrapping of `inner`.
    pub fn new(inner: Arc<dyn KeyService>) -> Self {
        CachedKeys { inner, unwrapped: Mutex::new(HashMap::new()) }
    }
}

#[async_trait]
impl KeyService for CachedKeys {
    async fn generate_data_key(&self, key_id: &str) -> Result<DataKey> {
        self.inner.generate_data_key(key_id).await
    }

    async fn decrypt_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<[u8; 32]> {
        let k = (key_id.to_string(), wrapped.to_vec());
        if let Some(key) = self.unwrapped.lock().unwrap().get(&k) {
            return Ok(*key);
        }
        let key = self.inner.decrypt_data_key(key_id, wrapped).await?;
        let mut cache = self.unwrapped.lock().unwrap();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(k, key);
        Ok(key)
    }
}

/// A key service for engines that hold no key: every request fails, naming the key it was asked
/// for, so that an encrypted pack read without a key service says which key it needs.
pub struct NoKeys;

#[async_trait]
impl KeyService for NoKeys {
    async fn generate_data_key(&self, key_id: &str) -> Result<DataKey> {
        Err(Error::key(key_id, "generate a data key", "this process has no key service configured", false))
    }

    async fn decrypt_data_key(&self, key_id: &str, _wrapped: &[u8]) -> Result<[u8; 32]> {
        Err(Error::key(key_id, "decrypt a data key", "this process has no key service configured", false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemKeys;

    #[tokio::test]
    async fn a_blob_round_trips_and_tampering_or_moving_it_fails() {
        let keys = MemKeys::new();
        let id = keys.create_key();
        let dk = keys.generate_data_key(&id).await.unwrap();
        let plain = b"the quick brown fox, 0123456789".to_vec();
        let sealed = seal(&dk.plaintext, 4096, &plain);
        assert_eq!(sealed.len(), plain.len() + TAG_LEN);
        assert!(!sealed.windows(9).any(|w| w == b"quick bro"), "the plaintext shows through");
        let env = envelope(&id, &dk);
        let key = unwrap(&keys, &env).await.unwrap();
        assert_eq!(open(&key, 4096, &sealed, &id).unwrap(), plain);
        // One flipped bit anywhere (ciphertext or tag) fails authentication.
        for i in [0, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let e = open(&key, 4096, &bad, &id).unwrap_err().to_string();
            assert!(e.contains("does not authenticate") && e.contains(&id), "{e}");
        }
        // The same bytes read at another offset (a blob moved within its pack) fail too.
        assert!(open(&key, 4097, &sealed, &id).is_err());
        // So does another pack's data key.
        let other = keys.generate_data_key(&id).await.unwrap();
        assert!(open(&other.plaintext, 4096, &sealed, &id).is_err());
        // An empty object seals to a tag alone and opens to nothing.
        assert_eq!(open(&key, 0, &seal(&key, 0, b""), &id).unwrap(), b"");
    }

    #[tokio::test]
    async fn a_wrong_unknown_or_disabled_key_is_named() {
        let keys = MemKeys::new();
        let (a, b) = (keys.create_key(), keys.create_key());
        let dk = keys.generate_data_key(&a).await.unwrap();
        let mut env = envelope(&a, &dk);
        env.key_id = b.clone();
        let e = unwrap(&keys, &env).await.unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains(&b) && e.to_string().contains("wrapped by"), "{e}");
        let e = keys.generate_data_key("arn:aws:kms:us-east-1:000000000000:key/none").await.unwrap_err().to_string();
        assert!(e.contains("key/none") && e.contains("NotFound"), "{e}");
        keys.set_enabled(&a, false);
        let e = unwrap(&keys, &envelope(&a, &dk)).await.unwrap_err().to_string();
        assert!(e.contains(&a) && e.contains("disabled"), "{e}");
        let e = unwrap(&NoKeys, &envelope(&a, &dk)).await.unwrap_err().to_string();
        assert!(e.contains(&a) && e.contains("no key service"), "{e}");
    }

    #[tokio::test]
    async fn the_cache_asks_once_per_data_key() {
        struct Counting(MemKeys, Mutex<u32>);
        #[async_trait]
        impl KeyService for Counting {
            async fn generate_data_key(&self, key_id: &str) -> Result<DataKey> {
                self.0.generate_data_key(key_id).await
            }
            async fn decrypt_data_key(&self, key_id: &str, wrapped: &[u8]) -> Result<[u8; 32]> {
                *self.1.lock().unwrap() += 1;
                self.0.decrypt_data_key(key_id, wrapped).await
            }
        }
        let inner = Arc::new(Counting(MemKeys::new(), Mutex::new(0)));
        let id = inner.0.create_key();
        let cached = CachedKeys::new(inner.clone());
        let dk = cached.generate_data_key(&id).await.unwrap();
        for _ in 0..3 {
            assert_eq!(cached.decrypt_data_key(&id, &dk.wrapped).await.unwrap(), dk.plaintext);
        }
        assert_eq!(*inner.1.lock().unwrap(), 1);
    }
}
