//! Passwords (argon2id) and opaque secrets (API keys, refresh tokens: random, stored as SHA-256).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// argon2id with OWASP's minimum recommendation: 19 MiB of memory, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC-format argon2id hash of `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `password` against a stored hash (constant-time comparison inside argon2).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The OS random source does not fail on supported platforms; if it did, an all-zero secret
    // would still be rejected by the length/entropy of nothing, so fail loudly instead.
    if SystemRandom::new().fill(&mut out).is_err() {
        panic!("the operating system's random source failed");
    }
    out
}

/// SHA-256 of a secret, as stored.
pub fn digest(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time equality of two digests.
pub fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A new API key: `(prefix, full key)`. The key reads `pk_<prefix>_<secret>`: the prefix is
/// shown in listings and finds the row; the secret (256 bits) is shown once.
pub fn new_api_key() -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let prefix: String = random_bytes::<10>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let key = format!("pk_{prefix}_{secret}");
    (prefix, key)
}

/// Splits `pk_<prefix>_<secret>`; `None` if it does not have that shape.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("pk_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 10 && secret.len() >= 32).then_some((prefix, secret))
}

/// A new refresh token (`rt_` + 256 random bits).
pub fn new_refresh_token() -> String {
    format!("rt_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapler", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn api_keys_round_trip() {
        let (prefix, key) = new_api_key();
        let (p, secret) = parse_api_key(&key).unwrap();
        assert_eq!(p, prefix);
        assert!(secret.len() >= 43);
        assert!(parse_api_key("pk_short_x").is_none());
        assert!(same_digest(&digest(&key), &digest(&key)));
        assert!(!same_digest(&digest(&key), &digest("other")));
    }
}
