//! The pack format: many small objects in one vault object, streamed out with multipart upload.
//!
//! Layout: `blob* footer trailer`. Each blob is an object's bytes, raw or zstd-compressed, and
//! in an encrypted pack then sealed with AES-256-GCM (`vault::crypt`). The footer is JSON, never
//! encrypted: the capture records of the blobs, each with its pack location (and, encrypted, the
//! wrapped data key), so a footer alone rebuilds the index entries. The trailer is 24 bytes:
//! footer length (u64 LE), format version (u32 LE), flags (u32 LE: [`FLAG_ENCRYPTED`], or zero),
//! magic `TMPACK\0\x01`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{CaptureRecord, Checksum, Codec, Envelope, Location};
use crate::ports::{DataKey, KeyService, ObjectStore, PutOptions};
use crate::vault::crypt;
use crate::{Error, Result};

/// The pack trailer's magic bytes.
pub const MAGIC: &[u8; 8] = b"TMPACK\0\x01";
/// The size of the fixed trailer.
pub const TRAILER_LEN: usize = 24;
/// The format version this code writes; it reads every version from 1 up to it. Version 2
/// packs hold records with the attributes of `domain::ObjectAttributes` and version-aware kinds;
/// their layout is version 1's. Version 3 adds the trailer's [`FLAG_ENCRYPTED`] and the
/// envelope of a pack location; a version-3 pack without the flag has version 2's layout.
pub const FORMAT_VERSION: u32 = 3;

/// Trailer flag: every blob of the pack is sealed with AES-256-GCM (version 3 on).
pub const FLAG_ENCRYPTED: u32 = 1;

/// The footer of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footer {
    pub format: String,
    pub version: u32,
    pub records: Vec<CaptureRecord>,
}

/// Encodes one blob: compresses when asked and when that helps, and returns (codec, bytes).
pub fn encode_blob(data: &[u8], compress: bool) -> (Codec, Bytes) {
    if compress && data.len() >= 64 {
        if let Ok(z) = zstd::bulk::compress(data, 3) {
            if z.len() + 16 < data.len() {
                return (Codec::Zstd, Bytes::from(z));
            }
        }
    }
    (Codec::Raw, Bytes::copy_from_slice(data))
}

/// Decodes a blob read from a pack and verifies it against the record's checksum. An encrypted
/// blob (its location has an envelope) needs its pack's data key, unwrapped (see [`open_blob`]).
pub fn decode_blob(record: &CaptureRecord, stored: &[u8], data_key: Option<&[u8; 32]>) -> Result<Bytes> {
    let Some(Location::Pack { codec, raw_length, offset, envelope, .. }) = &record.location else {
        return Err(Error::corrupt("capture record", format!("{} has no pack location", record.key)));
    };
    let opened;
    let stored = match (envelope, data_key) {
        (None, _) => stored,
        (Some(env), Some(key)) => {
            opened = crypt::open(key, *offset, stored, &env.key_id)
                .map_err(|e| Error::corrupt("pack blob", format!("{}: {}", record.key, detail_of(e))))?;
            &opened[..]
        }
        (Some(env), None) => {
            return Err(Error::key(
                &env.key_id,
                "decrypt a data key",
                format!("{} is encrypted and no data key was unwrapped for it", record.key),
                false,
            ))
        }
    };
    let data = match codec {
        Codec::Raw => Bytes::copy_from_slice(stored),
        Codec::Zstd => Bytes::from(
            zstd::bulk::decompress(stored, *raw_length as usize)
                .map_err(|e| Error::corrupt("pack blob", format!("{}: zstd: {e}", record.key)))?,
        ),
    };
    if data.len() as u64 != *raw_length {
        return Err(Error::corrupt("pack blob", format!("{}: {} bytes, expected {}", record.key, data.len(), raw_length)));
    }
    if let Some(ck) = &record.checksum {
        let actual = Checksum::sha256(&data);
        if ck.algorithm == "SHA256" && actual.value != ck.value {
            return Err(Error::ChecksumMismatch { key: record.key.clone(), expected: ck.value.clone(), actual: actual.value });
        }
    }
    Ok(data)
}

fn detail_of(e: Error) -> String {
    match e {
        Error::Corrupt { detail, .. } => detail,
        other => other.to_string(),
    }
}

/// Opens a blob read from a pack: unwraps its pack's data key through `keys` when the blob is
/// encrypted, then decodes and verifies it as [`decode_blob`] does.
pub async fn open_blob(keys: &dyn KeyService, record: &CaptureRecord, stored: &[u8]) -> Result<Bytes> {
    let key = match &record.location {
        Some(Location::Pack { envelope: Some(env), .. }) => Some(crypt::unwrap(keys, env).await?),
        _ => None,
    };
    decode_blob(record, stored, key.as_ref())
}

/// Builds the footer and trailer for the records of a pack; `flags` is [`FLAG_ENCRYPTED`] for a
/// pack whose blobs are sealed, zero otherwise.
pub fn encode_footer(records: &[CaptureRecord], flags: u32) -> Bytes {
    let footer = Footer { format: "tidemark-pack".into(), version: FORMAT_VERSION, records: records.to_vec() };
    let json = serde_json::to_vec(&footer).expect("footer serialises");
    let mut out = BytesMut::with_capacity(json.len() + TRAILER_LEN);
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(MAGIC);
    out.freeze()
}

/// Reads the footer length from a trailer, refusing versions and flags this build does not know.
pub fn parse_trailer(trailer: &[u8]) -> Result<u64> {
    if trailer.len() != TRAILER_LEN || &trailer[16..24] != MAGIC {
        return Err(Error::corrupt("pack", "trailer magic missing: not a tidemark pack or truncated"));
    }
    let version = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(Error::corrupt("pack", format!("format version {version} is not supported (this build reads 1 to {FORMAT_VERSION})")));
    }
    let flags = u32::from_le_bytes(trailer[12..16].try_into().expect("4 bytes"));
    let known = if version >= 3 { FLAG_ENCRYPTED } else { 0 };
    if flags & !known != 0 {
        return Err(Error::corrupt(
            "pack",
            format!("unknown trailer flags {:#x} in a version-{version} pack (this build knows {known:#x})", flags & !known),
        ));
    }
    Ok(u64::from_le_bytes(trailer[0..8].try_into().expect("8 bytes")))
}

/// Parses a footer.
pub fn parse_footer(bytes: &[u8]) -> Result<Footer> {
    let footer: Footer = serde_json::from_slice(bytes).map_err(|e| Error::corrupt("pack footer", e.to_string()))?;
    if footer.format != "tidemark-pack" {
        return Err(Error::corrupt("pack footer", format!("format '{}' is not tidemark-pack", footer.format)));
    }
    if !(1..=FORMAT_VERSION).contains(&footer.version) {
        return Err(Error::corrupt(
            "pack footer",
            format!("format version {} is not supported (this build reads 1 to {FORMAT_VERSION})", footer.version),
        ));
    }
    Ok(footer)
}

/// Parses a whole pack held in memory: returns its records. Used by tests and verification.
pub fn parse_pack(pack: &[u8]) -> Result<Footer> {
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt("pack", "shorter than its trailer"));
    }
    let flen = parse_trailer(&pack[pack.len() - TRAILER_LEN..])? as usize;
    let end = pack.len() - TRAILER_LEN;
    if flen > end {
        return Err(Error::corrupt("pack", "footer length exceeds pack size"));
    }
    parse_footer(&pack[end - flen..end])
}

/// Reads a pack's footer with two ranged GETs (the trailer, then the footer), not the whole pack.
pub async fn read_footer(store: &dyn ObjectStore, bucket: &str, key: &str, size: u64) -> Result<Footer> {
    let trailer_len = TRAILER_LEN as u64;
    if size < trailer_len {
        return Err(Error::corrupt(format!("pack {key}"), "shorter than its trailer"));
    }
    let trailer = store.get_range(bucket, key, None, size - trailer_len, trailer_len).await?;
    let flen = parse_trailer(&trailer)?;
    if flen > size - trailer_len {
        return Err(Error::corrupt(format!("pack {key}"), "footer length exceeds pack size"));
    }
    let footer = store.get_range(bucket, key, None, size - trailer_len - flen, flen).await?;
    parse_footer(&footer)
}

/// Streams blobs into one pack object in the vault.
///
/// Memory stays bounded by one part: once the buffer reaches the part size it is uploaded as a
/// part of a multipart upload. A pack that never fills a part is written with one PUT.
pub struct PackSink {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    part_bytes: usize,
    compress: bool,
    buf: BytesMut,
    offset: u64,
    upload_id: Option<String>,
    parts: Vec<(i32, String)>,
    records: Vec<CaptureRecord>,
    hasher: Sha256,
    /// The key service and key id to encrypt with, when the vault is encrypted.
    encrypt: Option<(Arc<dyn KeyService>, String)>,
    /// The pack's data key and its envelope, made when the first blob is added.
    data_key: Option<(DataKey, Envelope)>,
    /// The server-side encryption the pack's writes name (the vault's KMS key).
    sse: Option<crate::domain::Sse>,
    /// Requests sent to the vault, for reporting.
    pub requests: u64,
}

impl PackSink {
    /// A new, empty pack at `key`.
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, key: &str, part_bytes: u64, compress: bool) -> Self {
        PackSink {
            store,
            bucket: bucket.into(),
            key: key.into(),
            part_bytes: part_bytes as usize,
            compress,
            buf: BytesMut::new(),
            offset: 0,
            upload_id: None,
            parts: Vec::new(),
            records: Vec::new(),
            hasher: Sha256::new(),
            encrypt: None,
            data_key: None,
            sse: None,
            requests: 0,
        }
    }

    /// Names this server-side encryption on the pack's PUT or multipart upload.
    pub fn with_sse(mut self, sse: Option<crate::domain::Sse>) -> Self {
        self.sse = sse;
        self
    }

    /// Encrypts the pack's blobs under a data key made by `keys` under `key_id` (one per pack).
    pub fn encrypted(mut self, keys: Arc<dyn KeyService>, key_id: &str) -> Self {
        self.encrypt = Some((keys, key_id.into()));
        self
    }

    /// The pack's key in the vault.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// True if no blob was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends an object's bytes; fills in the record's checksum and location.
    pub async fn add(&mut self, mut record: CaptureRecord, data: &[u8]) -> Result<()> {
        let checksum = Checksum::sha256(data);
        let (codec, mut stored) = encode_blob(data, self.compress);
        if let Some((keys, key_id)) = &self.encrypt {
            if self.data_key.is_none() {
                let dk = keys.generate_data_key(key_id).await?;
                let env = crypt::envelope(key_id, &dk);
                self.data_key = Some((dk, env));
            }
        }
        let envelope = match &self.data_key {
            Some((dk, env)) => {
                // Compression first: sealed bytes do not compress.
                stored = Bytes::from(crypt::seal(&dk.plaintext, self.offset, &stored));
                Some(env.clone())
            }
            None => None,
        };
        record.checksum = Some(checksum);
        record.size = data.len() as u64;
        record.location = Some(Location::Pack {
            pack: self.key.clone(),
            offset: self.offset,
            length: stored.len() as u64,
            raw_length: data.len() as u64,
            codec,
            envelope,
        });
        self.offset += stored.len() as u64;
        self.hasher.update(&stored);
        self.buf.extend_from_slice(&stored);
        self.records.push(record);
        if self.buf.len() >= self.part_bytes {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<()> {
        if self.upload_id.is_none() {
            let id = self.store.create_multipart(&self.bucket, &self.key, &self.put_options()).await?;
            self.requests += 1;
            self.upload_id = Some(id);
        }
        let upload_id = self.upload_id.clone().expect("set above");
        let part = self.buf.split().freeze();
        let n = self.parts.len() as i32 + 1;
        let etag = self.store.upload_part(&self.bucket, &self.key, &upload_id, n, part).await?;
        self.requests += 1;
        self.parts.push((n, etag));
        Ok(())
    }

    /// Writes the footer and trailer and closes the pack; returns the records with their locations.
    pub async fn finish(mut self) -> Result<(Vec<CaptureRecord>, u64)> {
        if self.records.is_empty() {
            if let Some(id) = &self.upload_id {
                self.store.abort_multipart(&self.bucket, &self.key, id).await?;
            }
            return Ok((Vec::new(), self.requests));
        }
        let flags = if self.data_key.is_some() { FLAG_ENCRYPTED } else { 0 };
        let footer = encode_footer(&self.records, flags);
        self.buf.extend_from_slice(&footer);
        match self.upload_id.clone() {
            None => {
                let body = self.buf.split().freeze();
                let mut opts = self.put_options();
                opts.sha256_hex = Some(hex::encode(Sha256::digest(&body)));
                self.store.put(&self.bucket, &self.key, body, &opts).await?;
                self.requests += 1;
            }
            Some(id) => {
                self.flush_part().await?;
                self.store.complete_multipart(&self.bucket, &self.key, &id, &self.parts).await?;
                self.requests += 1;
            }
        }
        Ok((self.records, self.requests))
    }
}

impl PackSink {
    fn put_options(&self) -> PutOptions {
        let mut opts = PutOptions { content_type: Some("application/vnd.tidemark.pack".into()), if_none_match: true, ..Default::default() };
        opts.attributes.sse = self.sse.clone();
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn rec(key: &str) -> CaptureRecord {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut r = CaptureRecord::delete("b", key, t, None, t);
        r.kind = crate::domain::CaptureKind::Put;
        r
    }

    /// Encodes blobs the way PackSink does, in memory, for round-trip checks.
    fn build(blobs: &[(String, Vec<u8>)], compress: bool) -> (Vec<u8>, Vec<CaptureRecord>) {
        let mut out = Vec::new();
        let mut recs = Vec::new();
        for (k, data) in blobs {
            let (codec, stored) = encode_blob(data, compress);
            let mut r = rec(k);
            r.checksum = Some(Checksum::sha256(data));
            r.location = Some(Location::Pack {
                pack: "p".into(),
                offset: out.len() as u64,
                length: stored.len() as u64,
                raw_length: data.len() as u64,
                codec,
                envelope: None,
            });
            out.extend_from_slice(&stored);
            recs.push(r);
        }
        out.extend_from_slice(&encode_footer(&recs, 0));
        (out, recs)
    }

    proptest! {
        #[test]
        fn pack_round_trips(blobs in prop::collection::vec(("[a-z/ %+é]{1,12}", prop::collection::vec(any::<u8>(), 0..3000)), 0..20), compress in any::<bool>()) {
            let (pack, recs) = build(&blobs, compress);
            let footer = parse_pack(&pack).unwrap();
            prop_assert_eq!(&footer.records, &recs);
            for (r, (_, data)) in footer.records.iter().zip(&blobs) {
                let Some(Location::Pack { offset, length, .. }) = &r.location else { unreachable!() };
                let stored = &pack[*offset as usize..(*offset + *length) as usize];
                let decoded = decode_blob(r, stored, None).unwrap();
                prop_assert_eq!(decoded.as_ref(), data.as_slice());
            }
        }

        #[test]
        fn compressible_blobs_shrink(n in 200usize..5000) {
            let data = vec![b'a'; n];
            let (codec, stored) = encode_blob(&data, true);
            prop_assert_eq!(codec, Codec::Zstd);
            prop_assert!(stored.len() < n);
        }
    }

    #[test]
    fn corruption_is_detected() {
        let (mut pack, _) = build(&[("k".into(), b"hello world, hello world, hello world".to_vec())], false);
        pack[0] ^= 0xff;
        let footer = parse_pack(&pack).unwrap();
        let r = &footer.records[0];
        let Some(Location::Pack { length, .. }) = &r.location else { unreachable!() };
        let err = decode_blob(r, &pack[..*length as usize], None).unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        let n = pack.len();
        pack[n - 1] = b'x';
        assert!(parse_pack(&pack).unwrap_err().to_string().contains("trailer magic"));
        assert!(parse_pack(b"short").is_err());
    }

    #[test]
    fn unknown_flags_and_versions_are_refused_by_name() {
        let (pack, _) = build(&[("k".into(), b"x".to_vec())], false);
        let trailer = |version: u32, flags: u32| {
            let mut t = pack[pack.len() - TRAILER_LEN..].to_vec();
            t[8..12].copy_from_slice(&version.to_le_bytes());
            t[12..16].copy_from_slice(&flags.to_le_bytes());
            t
        };
        assert!(parse_trailer(&trailer(3, FLAG_ENCRYPTED)).is_ok());
        assert!(parse_trailer(&trailer(2, 0)).is_ok());
        let e = parse_trailer(&trailer(2, FLAG_ENCRYPTED)).unwrap_err().to_string();
        assert!(e.contains("unknown trailer flags 0x1") && e.contains("version-2"), "{e}");
        let e = parse_trailer(&trailer(3, 4)).unwrap_err().to_string();
        assert!(e.contains("unknown trailer flags 0x4"), "{e}");
        let e = parse_trailer(&trailer(4, 0)).unwrap_err().to_string();
        assert!(e.contains("format version 4 is not supported"), "{e}");
    }
}
