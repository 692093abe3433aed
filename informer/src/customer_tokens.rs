//! Customers' bearer tokens: JWTs from their partner's identity provider, verified with that
//! partner's own keys (its record's `customer_tokens`, managed in campaignex and live in etcd).
//!
//! The token names its partner in the `partner` claim; that partner's keys, and only them, must
//! verify it, so a token is accepted only for the partner whose key signed it and one partner's
//! provider cannot speak for another partner's customers. Keys come from the record (public
//! keys in PEM, or an HMAC secret at least as long as the algorithm's output) or from the
//! provider's JWK Set URL, fetched and cached: again after `JWKS_TTL`, and at once (at most every
//! `JWKS_REFETCH_AFTER`) when a token names a key id the cached set does not have, which is how
//! a provider's key rotation arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use cezbek_rules::{CustomerTokens, RuleSnapshot};
use cezbek_schemas::{Msisdn, PartnerCode};

/// A fetched JWK Set is used this long before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// A token with an unknown key id fetches the set again, but not more often than this (a
/// stream of made-up key ids must not become a stream of requests to the provider).
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(5);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not good (a 401 that says why).
    Invalid(String),
    /// The partner's keys cannot be had now (its JWK Set does not answer): a 503.
    KeysUnavailable(String),
}

/// The claims a customer token carries besides the registered ones.
#[derive(Deserialize)]
struct CustomerClaims {
    partner: String,
    msisdn: String,
}

/// A partner's usable keys: each with its key id, when it has one.
struct KeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched: Instant,
}

/// Verifies customer tokens; keeps the partners' keys, parsed, and the JWK Sets fetched.
pub struct CustomerTokenVerifier {
    http: reqwest::Client,
    /// By partner: the configuration the keys were made from, and the keys.
    keys: Mutex<HashMap<PartnerCode, (CustomerTokens, Arc<KeySet>)>>,
}

impl std::fmt::Debug for CustomerTokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CustomerTokenVerifier(…)")
    }
}

impl Default for CustomerTokenVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl CustomerTokenVerifier {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, keys: Mutex::new(HashMap::new()) }
    }

    /// The customer a token speaks for, verified with the keys of the partner it names.
    pub async fn verify(
        &self,
        rules: &RuleSnapshot,
        token: &str,
    ) -> Result<(PartnerCode, Msisdn), Refusal> {
        let invalid = |reason: String| Refusal::Invalid(reason);
        // Read unverified only to learn whose keys must verify it; nothing is trusted yet.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<CustomerClaims>(token)
            .map_err(|error| invalid(format!("the bearer token is not valid: {error}")))?;
        let partner = PartnerCode::parse(&unverified.claims.partner)
            .map_err(|error| invalid(format!("the token's partner claim {}", error.reason)))?;
        let config = rules
            .partner_rules(&partner)
            .and_then(|rules| rules.partner())
            .and_then(|record| record.customer_tokens.clone())
            .ok_or_else(|| {
                invalid(format!(
                    "the bearer token is not valid: {partner} accepts no customer tokens"
                ))
            })?;
        let algorithm: Algorithm = config.algorithm.parse().map_err(|_| {
            invalid(format!("{partner}'s customer tokens name no usable algorithm"))
        })?;
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|error| invalid(format!("the bearer token is not valid: {error}")))?
            .kid;
        let validation = validation(algorithm, &config);

        let mut keys = self.keys_of(&partner, &config, false).await?;
        let knows_kid = |keys: &KeySet| {
            kid.as_ref().is_none_or(|kid| keys.keys.iter().any(|(id, _)| id.as_ref() == Some(kid)))
        };
        if config.jwks_url.is_some()
            && !knows_kid(&keys)
            && keys.fetched.elapsed() >= JWKS_REFETCH_AFTER
        {
            keys = self.keys_of(&partner, &config, true).await?;
        }
        let mut last_error = format!("no key of {partner} has the token's key id {kid:?}");
        for (id, key) in &keys.keys {
            if let (Some(wanted), Some(id)) = (&kid, id)
                && wanted != id
            {
                continue;
            }
            match jsonwebtoken::decode::<CustomerClaims>(token, key, &validation) {
                Ok(data) => {
                    let msisdn = Msisdn::parse(&data.claims.msisdn).map_err(|error| {
                        invalid(format!("the token's msisdn claim {}", error.reason))
                    })?;
                    return Ok((partner, msisdn));
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(invalid(format!("the bearer token is not valid: {last_error}")))
    }

    /// The partner's keys, made again when its configuration changed, and fetched again when
    /// they come from a JWK Set that is older than its time to live (or `refetch`).
    async fn keys_of(
        &self,
        partner: &PartnerCode,
        config: &CustomerTokens,
        refetch: bool,
    ) -> Result<Arc<KeySet>, Refusal> {
        let cached = self.cached(partner, config);
        if let Some(keys) = &cached {
            let fresh = config.jwks_url.is_none() || keys.fetched.elapsed() < JWKS_TTL;
            if fresh && !refetch {
                return Ok(Arc::clone(keys));
            }
        }
        let made = match &config.jwks_url {
            None => static_keys(config).map_err(Refusal::Invalid)?,
            Some(url) => match self.fetch(url, config).await {
                Ok(keys) => keys,
                // The provider is away: the keys fetched before still verify (rotation waits).
                Err(reason) => {
                    tracing::warn!(%partner, url, reason, "cannot fetch a partner's JWK Set");
                    return match cached {
                        Some(keys) => Ok(keys),
                        None => Err(Refusal::KeysUnavailable(format!(
                            "{partner}'s token keys cannot be fetched now"
                        ))),
                    };
                }
            },
        };
        let made = Arc::new(made);
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partner.clone(), (config.clone(), Arc::clone(&made)));
        Ok(made)
    }

    fn cached(&self, partner: &PartnerCode, config: &CustomerTokens) -> Option<Arc<KeySet>> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(partner)
            .filter(|(made_from, _)| made_from == config)
            .map(|(_, keys)| Arc::clone(keys))
    }

    async fn fetch(&self, url: &str, config: &CustomerTokens) -> Result<KeySet, String> {
        let response = self.http.get(url).send().await.map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|error| error.to_string())?;
        let keys: Vec<(Option<String>, DecodingKey)> = set
            .keys
            .iter()
            // A key published for another algorithm is not one of these tokens' keys.
            .filter(|jwk| {
                jwk.common.key_algorithm.is_none_or(|alg| format!("{alg:?}") == config.algorithm)
            })
            .filter_map(|jwk| {
                DecodingKey::from_jwk(jwk).ok().map(|key| (jwk.common.key_id.clone(), key))
            })
            .collect();
        if keys.is_empty() {
            return Err(format!("the JWK Set has no usable {} key", config.algorithm));
        }
        Ok(KeySet { keys, fetched: Instant::now() })
    }
}

/// The keys given in the partner's record.
fn static_keys(config: &CustomerTokens) -> Result<KeySet, String> {
    let mut keys = Vec::with_capacity(config.keys.len());
    for key in &config.keys {
        let made = match (&key.pem, &key.secret) {
            (_, Some(secret)) => base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(secret.trim().trim_end_matches('='))
                .map(|bytes| DecodingKey::from_secret(&bytes))
                .map_err(|error| error.to_string()),
            (Some(pem), None) => match config.algorithm.as_str() {
                "ES256" | "ES384" => DecodingKey::from_ec_pem(pem.as_bytes()),
                "EdDSA" => DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
            }
            .map_err(|error| error.to_string()),
            (None, None) => Err("a key with neither pem nor secret".to_owned()),
        };
        let made =
            made.map_err(|reason| format!("a token key of the partner is unusable: {reason}"))?;
        keys.push((key.kid.clone(), made));
    }
    Ok(KeySet { keys, fetched: Instant::now() })
}

/// One algorithm only (a token may not choose how it is checked), `exp` required, and the
/// partner's `iss` and `aud` when it set them.
fn validation(algorithm: Algorithm, config: &CustomerTokens) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 30;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
    }
    match &config.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation
}

#[cfg(test)]
mod tests {
    // In a test a failed unwrap is a failed test, with its location: the clearest report.
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{EncodingKey, Header};

    use cezbek_rules::{Partner, PartnerStatus, TokenKey};
    use cezbek_schemas::Currency;

    use super::*;

    fn openssl(args: &[&str]) -> Vec<u8> {
        let output = std::process::Command::new("openssl").args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// An identity provider's ES256 key pair made by openssl: (private PEM, public PEM).
    fn es256_pair(name: &str) -> (Vec<u8>, String) {
        let dir = std::env::temp_dir().join(format!("cezbek-jwt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("issuer.pem");
        let path = private.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path,
        ]);
        let public = String::from_utf8(openssl(&["pkey", "-in", path, "-pubout"])).unwrap();
        let private = std::fs::read(&private).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (private, public)
    }

    fn partner(code: &str, customer_tokens: Option<CustomerTokens>) -> Partner {
        Partner {
            code: PartnerCode::parse(code).unwrap(),
            name: String::new(),
            status: PartnerStatus::Active,
            currency: Currency::parse("IDR").unwrap(),
            time_zone: "Asia/Jakarta".into(),
            max_cashback_per_transaction: None,
            keys: Vec::new(),
            customer_tokens,
            payout_policy: None,
        }
    }

    const HS_SECRET: &[u8] = b"warung's identity provider secret";

    fn rules(toko_public: &str) -> RuleSnapshot {
        let toko = CustomerTokens {
            algorithm: "ES256".into(),
            jwks_url: None,
            keys: vec![TokenKey { kid: None, pem: Some(toko_public.into()), secret: None }],
            issuer: Some("https://id.toko.example".into()),
            audience: Some("cezbek".into()),
        };
        let warung = CustomerTokens {
            algorithm: "HS256".into(),
            jwks_url: None,
            keys: vec![TokenKey {
                kid: None,
                pem: None,
                secret: Some(base64::engine::general_purpose::STANDARD.encode(HS_SECRET)),
            }],
            issuer: None,
            audience: None,
        };
        RuleSnapshot::builder()
            .partner(partner("TOKO", Some(toko)))
            .partner(partner("WARUNG", Some(warung)))
            .partner(partner("SEPI", None))
            .build(7)
    }

    fn token(partner: &str, iss: &str, aud: &str, header: Header, key: &EncodingKey) -> String {
        let claims = serde_json::json!({
            "partner": partner, "msisdn": "081234567890", "iss": iss, "aud": aud,
            "exp": chrono::Utc::now().timestamp() + 600,
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn refused(answer: Result<(PartnerCode, Msisdn), Refusal>) -> String {
        match answer {
            Err(Refusal::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Each partner's keys verify its own customers' tokens and nobody else's.
    #[tokio::test]
    async fn a_token_is_accepted_only_for_the_partner_whose_key_verified_it() {
        let (toko_private, toko_public) = es256_pair("toko");
        let rules = rules(&toko_public);
        let verifier = CustomerTokenVerifier::new();
        let toko_key = EncodingKey::from_ec_pem(&toko_private).unwrap();
        let es256 = Header::new(Algorithm::ES256);
        let warung_key = EncodingKey::from_secret(HS_SECRET);

        let good = token("TOKO", "https://id.toko.example", "cezbek", es256.clone(), &toko_key);
        let (partner, msisdn) = verifier.verify(&rules, &good).await.unwrap();
        assert_eq!((partner.as_str(), msisdn.as_str()), ("TOKO", "+6281234567890"));
        let warung = token("WARUNG", "any", "any", Header::default(), &warung_key);
        assert_eq!(verifier.verify(&rules, &warung).await.unwrap().0.as_str(), "WARUNG");

        // WARUNG's provider minting a token for a TOKO customer: TOKO's keys refuse it.
        let minted =
            token("TOKO", "https://id.toko.example", "cezbek", Header::default(), &warung_key);
        assert!(refused(verifier.verify(&rules, &minted).await).contains("InvalidAlgorithm"));
        // And TOKO's provider for a WARUNG customer.
        let minted = token("WARUNG", "x", "y", es256.clone(), &toko_key);
        assert!(refused(verifier.verify(&rules, &minted).await).contains("InvalidAlgorithm"));
        // Algorithm confusion: HS256 "signed" with TOKO's public key as the secret.
        let confused = token(
            "TOKO",
            "https://id.toko.example",
            "cezbek",
            Header::default(),
            &EncodingKey::from_secret(toko_public.as_bytes()),
        );
        assert!(refused(verifier.verify(&rules, &confused).await).contains("InvalidAlgorithm"));
        let wrong_issuer =
            token("TOKO", "https://evil.example", "cezbek", es256.clone(), &toko_key);
        assert!(refused(verifier.verify(&rules, &wrong_issuer).await).contains("InvalidIssuer"));
        let wrong_audience = token("TOKO", "https://id.toko.example", "other", es256, &toko_key);
        assert!(
            refused(verifier.verify(&rules, &wrong_audience).await).contains("InvalidAudience")
        );
        let forged =
            token("WARUNG", "x", "y", Header::default(), &EncodingKey::from_secret(b"guess"));
        assert!(refused(verifier.verify(&rules, &forged).await).contains("InvalidSignature"));
        let none = token("SEPI", "x", "y", Header::default(), &warung_key);
        assert!(
            refused(verifier.verify(&rules, &none).await).contains("accepts no customer tokens")
        );
        assert!(refused(verifier.verify(&rules, "nonsense").await).contains("not valid"));
    }
}
