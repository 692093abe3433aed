//! Who is asking. Three kinds of callers, checked in this order:
//! - a partner, by the ingestor's HMAC signature scheme (`X-Cezbek-*` headers): sees its own
//!   customers, transactions and reports;
//! - an admin, by a bearer token from `CEZBEK_ADMIN_TOKENS`: sees everything;
//! - a customer, by a bearer JWT from the partner's identity provider, verified with the
//!   configured issuer key, carrying `partner` and `msisdn` claims: sees their own rewards,
//!   summary and transactions.

use std::path::PathBuf;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use cezbek_platform::Env;
use cezbek_schemas::{Msisdn, PartnerCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { name: String },
    Partner(PartnerCode),
    Customer { partner: PartnerCode, msisdn: Msisdn },
}

impl Caller {
    /// Partner-wide data: reports, any transaction, any customer.
    pub fn may_read_partner(&self, partner: &PartnerCode) -> bool {
        match self {
            Self::Admin { .. } => true,
            Self::Partner(own) => own == partner,
            Self::Customer { .. } => false,
        }
    }

    /// One customer's rewards and summary.
    pub fn may_read_customer(&self, partner: &PartnerCode, msisdn: &Msisdn) -> bool {
        match self {
            Self::Customer { partner: own_partner, msisdn: own } => {
                own_partner == partner && own == msisdn
            }
            _ => self.may_read_partner(partner),
        }
    }

    /// The label metrics and logs use.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Admin { .. } => "admin",
            Self::Partner(_) => "partner",
            Self::Customer { .. } => "customer",
        }
    }
}

/// How customer JWTs are checked: `CEZBEK_INFORMER_JWT_ALGORITHM` (HS256, RS256, ES256, …),
/// the key in `CEZBEK_INFORMER_JWT_KEY` (the shared secret for HS*, the issuer's public key
/// PEM otherwise) or `CEZBEK_INFORMER_JWT_KEY_FILE`, and optionally the `iss` and `aud` to
/// require (`CEZBEK_INFORMER_JWT_ISSUER`, `CEZBEK_INFORMER_JWT_AUDIENCE`). Without a key,
/// customer tokens are not accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub algorithm: Algorithm,
    pub key: Vec<u8>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Without the key (an HS* key is a shared secret).
impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("key", &format_args!("<{} bytes, redacted>", self.key.len()))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtConfig {
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let key = match (
            env.optional("CEZBEK_INFORMER_JWT_KEY"),
            env.optional("CEZBEK_INFORMER_JWT_KEY_FILE"),
        ) {
            (None, None) => return None,
            (Some(_), Some(_)) => {
                env.problem("CEZBEK_INFORMER_JWT_KEY", "set either it or …_KEY_FILE, not both");
                return None;
            }
            // A PEM in one environment line may carry its line breaks as `\n`.
            (Some(key), None) => key.replace("\\n", "\n").into_bytes(),
            (None, Some(path)) => match std::fs::read(PathBuf::from(&path)) {
                Ok(bytes) => bytes,
                Err(error) => {
                    env.problem("CEZBEK_INFORMER_JWT_KEY_FILE", format!("{path:?}: {error}"));
                    return None;
                }
            },
        };
        let name = env.string("CEZBEK_INFORMER_JWT_ALGORITHM", "RS256");
        let Ok(algorithm) = name.parse::<Algorithm>() else {
            env.problem(
                "CEZBEK_INFORMER_JWT_ALGORITHM",
                format!("{name:?} is not a JWS algorithm"),
            );
            return None;
        };
        let config = Self {
            algorithm,
            key,
            issuer: env.optional("CEZBEK_INFORMER_JWT_ISSUER"),
            audience: env.optional("CEZBEK_INFORMER_JWT_AUDIENCE"),
        };
        if let Err(reason) = JwtVerifier::new(&config) {
            env.problem("CEZBEK_INFORMER_JWT_KEY", reason);
            return None;
        }
        Some(config)
    }
}

#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("JwtVerifier(…)")
    }
}

#[derive(Deserialize)]
struct CustomerClaims {
    partner: String,
    msisdn: String,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        use jsonwebtoken::Algorithm::*;
        let key = match config.algorithm {
            HS256 | HS384 | HS512 => Ok(DecodingKey::from_secret(&config.key)),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(&config.key),
            ES256 | ES384 => DecodingKey::from_ec_pem(&config.key),
            EdDSA => DecodingKey::from_ed_pem(&config.key),
        }
        .map_err(|error| format!("is not a usable {:?} key: {error}", config.algorithm))?;
        // One algorithm only: a token may not choose how it is checked.
        let mut validation = Validation::new(config.algorithm);
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
        Ok(Self { key, validation })
    }

    /// The customer a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<(PartnerCode, Msisdn), String> {
        let data = jsonwebtoken::decode::<CustomerClaims>(token, &self.key, &self.validation)
            .map_err(|error| format!("the bearer token is not valid: {error}"))?;
        let partner = PartnerCode::parse(&data.claims.partner)
            .map_err(|error| format!("the token's partner claim {}", error.reason))?;
        let msisdn = Msisdn::parse(&data.claims.msisdn)
            .map_err(|error| format!("the token's msisdn claim {}", error.reason))?;
        Ok((partner, msisdn))
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    // In a test a failed unwrap is a failed test, with its location: the clearest report.
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    #[test]
    fn a_jwt_configuration_prints_without_its_key() {
        let config = JwtConfig {
            algorithm: Algorithm::HS256,
            key: b"hs-secret-value-of-32-bytes-long!".to_vec(),
            issuer: Some("idp".into()),
            audience: None,
        };
        let printed = format!("{config:?}");
        assert!(printed.contains("idp") && !printed.contains("hs-secret"), "{printed}");
    }

    fn openssl(args: &[&str]) -> Vec<u8> {
        let output = std::process::Command::new("openssl").args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// An issuer's ES256 key pair made by openssl, as a partner's identity provider would.
    #[test]
    fn an_es256_token_verifies_with_the_issuers_public_key_only() {
        let dir = std::env::temp_dir().join(format!("cezbek-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("issuer.pem");
        let private_path = private.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private_path,
        ]);
        let public = openssl(&["pkey", "-in", private_path, "-pubout"]);
        let private = std::fs::read(&private).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let config = JwtConfig {
            algorithm: Algorithm::ES256,
            key: public.clone(),
            issuer: Some("https://id.example".into()),
            audience: Some("cezbek".into()),
        };
        let verifier = JwtVerifier::new(&config).unwrap();
        let exp = chrono::Utc::now().timestamp() + 600;
        let claims = |iss: &str, aud: &str| serde_json::json!({"partner": "TOKO", "msisdn": "081234567890", "iss": iss, "aud": aud, "exp": exp});
        let es256 = |claims| {
            let key = EncodingKey::from_ec_pem(&private).unwrap();
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
        };
        let (partner, msisdn) =
            verifier.verify(&es256(claims("https://id.example", "cezbek"))).unwrap();
        assert_eq!((partner.as_str(), msisdn.as_str()), ("TOKO", "+6281234567890"));

        let wrong_issuer = verifier.verify(&es256(claims("https://evil.example", "cezbek")));
        assert!(wrong_issuer.unwrap_err().contains("InvalidIssuer"));
        let wrong_audience = verifier.verify(&es256(claims("https://id.example", "other")));
        assert!(wrong_audience.unwrap_err().contains("InvalidAudience"));
        // Algorithm confusion: HS256 "signed" with the public key as the secret is refused.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("https://id.example", "cezbek"),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert!(verifier.verify(&confused).is_err());
    }

    #[test]
    fn a_key_that_does_not_fit_the_algorithm_is_a_configuration_problem() {
        let mut env = Env::from_pairs([
            ("CEZBEK_INFORMER_JWT_ALGORITHM", "RS256"),
            ("CEZBEK_INFORMER_JWT_KEY", "not a pem"),
        ]);
        assert_eq!(JwtConfig::from_env(&mut env), None);
        let error = env.finish(()).unwrap_err().to_string();
        assert!(error.contains("CEZBEK_INFORMER_JWT_KEY: is not a usable RS256 key"), "{error}");
        let mut env = Env::from_pairs([("CEZBEK_INFORMER_JWT_ALGORITHM", "HS256")]);
        assert_eq!(JwtConfig::from_env(&mut env), None, "no key: customer tokens are off");
        assert!(env.finish(()).is_ok());
    }
}
