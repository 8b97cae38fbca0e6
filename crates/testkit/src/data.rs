//! Data generators: source buckets with awkward keys and mixed sizes, deterministic for a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One generated object.
#[derive(Debug, Clone)]
pub struct GenObject {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub metadata: Vec<(String, String)>,
    /// Object tags (some objects have them, so restores can be checked for them).
    pub tags: Vec<(String, String)>,
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
}

/// Names that exercise key encoding: spaces, unicode, `+`, `%`, `=`.
const AWKWARD: &[&str] = &["plain", "with space", "ünïcødé", "a+b", "100%", "k=v", "mixed +%= é", "日本語"];

/// A deterministic body of `len` bytes; half the objects are compressible text, half random.
pub fn body(rng: &mut StdRng, len: usize) -> Vec<u8> {
    if rng.gen_bool(0.5) {
        let line = b"tidemark protects buckets; ";
        line.iter().cycle().take(len).copied().collect()
    } else {
        (0..len).map(|_| rng.gen()).collect()
    }
}

/// `n` objects over `prefixes` top-level prefixes with mixed sizes:
/// empty, a few bytes, kilobytes, and `large` objects of `large_size` bytes.
pub fn objects(seed: u64, n: usize, prefixes: usize, large: usize, large_size: usize) -> Vec<GenObject> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = i % prefixes.max(1);
        let name = AWKWARD[i % AWKWARD.len()];
        let key = format!("tenant-{p:02}/dir {}/{name}-{i:05}.dat", i % 3);
        let len = if i < large {
            large_size + i * 1024
        } else {
            match i % 10 {
                0 => 0,
                1 | 2 => rng.gen_range(1..16),
                _ => rng.gen_range(100..40_000),
            }
        };
        let body = body(&mut rng, len);
        let content_type = if i % 4 == 0 { "application/octet-stream" } else { "text/plain; charset=utf-8" }.to_string();
        let metadata = if i % 3 == 0 { vec![("origin".into(), format!("gen-{i}"))] } else { vec![] };
        let tags = if i % 5 == 1 { vec![("team".into(), format!("t{}", i % 4)), ("kind".into(), "gen data".into())] } else { vec![] };
        let cache_control = (i % 7 == 2).then(|| "public, max-age=3600".to_string());
        let content_encoding = (i % 11 == 3).then(|| "identity".to_string());
        out.push(GenObject { key, body, content_type, metadata, tags, cache_control, content_encoding });
    }
    out
}
