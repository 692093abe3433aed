//! Unsubscribe tokens: the notifier puts one in every digest's link, the informer verifies it
//! and records the opt-out. A token names one customer of one partner and is signed with
//! HMAC-SHA256 under `CEZBEK_UNSUBSCRIBE_SECRET`, which both services share. It does not
//! expire: an unsubscribe link in an old email must keep working.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use cezbek_schemas::{Msisdn, PartnerCode};

use crate::config::Env;

type HmacSha256 = Hmac<Sha256>;

/// Bumped if the token's layout ever changes, so old links can still be read.
const VERSION: &str = "u1";
/// Fewer bytes than this is guessable.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a Cezbek unsubscribe token")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// The shared signing key.
#[derive(Clone)]
pub struct UnsubscribeKey(Vec<u8>);

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UnsubscribeKey(…)")
    }
}

impl UnsubscribeKey {
    /// `CEZBEK_UNSUBSCRIBE_SECRET`: at least 32 characters.
    pub fn from_env(env: &mut Env) -> Self {
        let secret = env.required("CEZBEK_UNSUBSCRIBE_SECRET");
        if !secret.is_empty() && secret.len() < MIN_SECRET_BYTES {
            env.problem(
                "CEZBEK_UNSUBSCRIBE_SECRET",
                format!("is {} characters; use at least {MIN_SECRET_BYTES}", secret.len()),
            );
        }
        Self(secret.into_bytes())
    }

    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// The token for one customer of one partner.
    pub fn token(&self, partner: &PartnerCode, msisdn: &Msisdn) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!("{VERSION}:{partner}:{msisdn}"));
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The customer a token names, if this key signed it.
    pub fn verify(&self, token: &str) -> Result<(PartnerCode, Msisdn), TokenError> {
        let (payload, signature) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        // verify_slice compares in constant time.
        self.mac(payload).verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let decoded = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.splitn(3, ':');
        let (Some(VERSION), Some(partner), Some(msisdn)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let partner = PartnerCode::parse(partner).map_err(|_| TokenError::Malformed)?;
        let msisdn = Msisdn::parse(msisdn).map_err(|_| TokenError::Malformed)?;
        Ok((partner, msisdn))
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(payload.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> UnsubscribeKey {
        UnsubscribeKey::new(secret.as_bytes())
    }

    #[test]
    fn a_token_names_its_customer_and_only_its_key_accepts_it() {
        let partner = PartnerCode::parse("TOKO").unwrap_or_else(|_| unreachable!());
        let msisdn = Msisdn::parse("081234567890").unwrap_or_else(|_| unreachable!());
        let token = key("k1").token(&partner, &msisdn);
        assert_eq!(key("k1").verify(&token), Ok((partner.clone(), msisdn.clone())));
        assert_eq!(key("k2").verify(&token), Err(TokenError::BadSignature));

        // Another customer's payload under this token's signature.
        let other = Msisdn::parse("081299999999").unwrap_or_else(|_| unreachable!());
        let (_, signature) = token.split_once('.').unwrap_or_default();
        let (forged_payload, _) = key("k1")
            .token(&partner, &other)
            .split_once('.')
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .unwrap_or_default();
        let forged = format!("{forged_payload}.{signature}");
        assert_eq!(key("k1").verify(&forged), Err(TokenError::BadSignature));
        assert_eq!(key("k1").verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(key("k1").verify("a.b!"), Err(TokenError::Malformed));
    }

    #[test]
    fn a_short_secret_is_a_configuration_problem() {
        let mut env = Env::from_pairs([("CEZBEK_UNSUBSCRIBE_SECRET", "short")]);
        UnsubscribeKey::from_env(&mut env);
        let error = env.finish(()).unwrap_err().to_string();
        assert!(error.contains("CEZBEK_UNSUBSCRIBE_SECRET: is 5 characters"), "{error}");
    }
}
