//! Signing keys for access tokens: Ed25519 (EdDSA), each with a `kid`. The first key of the ring
//! signs; every key verifies, so a rotated-out key keeps verifying the tokens it signed until they
//! expire (keep it in the ring for one access-token lifetime, then drop it).

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Why a key or token was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A configured key is not an Ed25519 PKCS#8 PEM.
    #[error("signing key {index}: {message}")]
    BadKey {
        /// Position in the configured list.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// No key configured.
    #[error("no signing key configured")]
    Empty,
    /// A token was refused (the message is safe to show).
    #[error("{0}")]
    Token(String),
}

// PKCS#8 framing of an Ed25519 key. Every form (v1 as OpenSSL writes it, v2 with the public key
// as ring writes it) starts `30 len 02 01 version`, then this algorithm identifier and the
// 32-byte seed in an OCTET STRING.
const ALGORITHM_AND_SEED_HEADER: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// ring's v2 form: header, seed, `[1]` public key.
const V2_HEAD: [u8; 5] = [0x30, 0x51, 0x02, 0x01, 0x01];
const V2_PUBLIC: [u8; 3] = [0x81, 0x21, 0x00];

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: Vec<u8>,
}

/// The signing keys.
pub struct Keyring {
    active: String,
    keys: BTreeMap<String, Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("not PEM/base64: {e}"))
}

/// ring's v2 PKCS#8 document for the key `der` (v1 or v2).
fn normalise(der: &[u8]) -> Result<Vec<u8>, String> {
    let framed = der.len() >= 48
        && der[0] == 0x30
        && der[2..4] == [0x02, 0x01]
        && der[5..16] == ALGORITHM_AND_SEED_HEADER;
    if !framed {
        return Err(
            "not an Ed25519 PKCS#8 private key (`openssl genpkey -algorithm ed25519`)".into(),
        );
    }
    let seed = &der[16..48];
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| e.to_string())?;
    let mut v2 = Vec::with_capacity(83);
    v2.extend_from_slice(&V2_HEAD);
    v2.extend_from_slice(&ALGORITHM_AND_SEED_HEADER);
    v2.extend_from_slice(seed);
    v2.extend_from_slice(&V2_PUBLIC);
    v2.extend_from_slice(pair.public_key().as_ref());
    Ok(v2)
}

fn kid_of(public: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

/// A new Ed25519 private key as a PKCS#8 PEM.
pub fn generate_pem() -> String {
    // Generation fails only if the OS has no randomness, which nothing here could recover from.
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_default();
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

impl Keyring {
    /// A ring from PKCS#8 PEMs; the first one signs.
    pub fn from_pems<S: AsRef<str>>(pems: &[S]) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        let mut active = None;
        for (index, pem) in pems.iter().enumerate() {
            let bad = |message: String| KeyError::BadKey { index, message };
            let der = normalise(&pem_to_der(pem.as_ref()).map_err(bad)?).map_err(bad)?;
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
            let public = pair.public_key().as_ref().to_vec();
            let kid = kid_of(&public);
            active.get_or_insert_with(|| kid.clone());
            keys.insert(
                kid.clone(),
                Key {
                    kid,
                    encoding: EncodingKey::from_ed_der(&der),
                    decoding: DecodingKey::from_ed_der(&public),
                    public,
                },
            );
        }
        let active = active.ok_or(KeyError::Empty)?;
        Ok(Keyring { active, keys })
    }

    /// The `kid` of the signing key.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Signs `claims` with the active key (header `alg: EdDSA`, `kid`).
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let key = self.keys.get(&self.active).ok_or(KeyError::Empty)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Token(format!("cannot sign: {e}")))
    }

    /// Verifies a token: EdDSA only (no `none`, no HMAC with a public key), a known `kid`, a
    /// valid signature, and whatever `validation` checks (expiry, issuer, audience).
    pub fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<C, KeyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| KeyError::Token("malformed token".into()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(KeyError::Token(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| KeyError::Token("token has no key id".into()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| KeyError::Token("unknown signing key".into()))?;
        jsonwebtoken::decode::<C>(token, &key.decoding, validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                KeyError::Token(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::InvalidAudience => "wrong audience",
                        ErrorKind::InvalidIssuer => "wrong issuer",
                        ErrorKind::InvalidSignature => "bad signature",
                        ErrorKind::ImmatureSignature => "token not valid yet",
                        ErrorKind::InvalidAlgorithm => "algorithm not accepted",
                        ErrorKind::MissingRequiredClaim(_) => "missing claim",
                        _ => "invalid token",
                    }
                    .to_owned(),
                )
            })
    }

    /// The public keys as a JWK Set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .values()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(&k.public),
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_sign() {
        let pem = generate_pem();
        let der = pem_to_der(&pem).unwrap();
        assert_eq!((der.len(), &der[..5]), (83, &V2_HEAD[..]), "{pem}");
        let ring = Keyring::from_pems(&[pem]).unwrap();
        let token = ring.sign(&serde_json::json!({"sub": "x"})).unwrap();
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn openssl_v1_keys_load() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, RFC 8410 test vector key).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let ring = Keyring::from_pems(&[pem]).unwrap();
        let jwks = ring.jwks();
        // RFC 8410's public key for that seed.
        assert_eq!(
            jwks["keys"][0]["x"],
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"
        );
        assert!(Keyring::from_pems(&[
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        ])
        .is_err());
    }
}
