//! The parts of the rule models' OpenAPI schemas that a derive cannot state: value ranges of
//! minor units, the IANA zone names, the tagged reward and exclusion target, and the shapes of
//! customer-token settings. Each states exactly what the model's deserialisation and
//! `validate` accept, so a client (or schemathesis) can tell a valid rule from the document.
//! Rules that span fields (`ends_at` after `starts_at`, `min_amount` not above `max_amount`,
//! tier names unique) are stated in the descriptions.

use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::model::{BP_WHOLE, ExclusionTarget};
use cezbek_schemas::{Mcc, Msisdn};

/// Text with something besides white space, and no NUL character (PostgreSQL stores none).
const NOT_BLANK: &str = r"^[^\x00]*[^\s\x00][^\x00]*$";
/// Text without a NUL character.
const TEXT: &str = r"^[^\x00]*$";

fn integer(minimum: i64, maximum: i64) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(minimum)).maximum(Some(maximum))
}

/// A property that must not be there (`{"not": {}}`, which no value matches). utoipa has no
/// `not` keyword: it goes in through the schema's map of extra keywords.
fn absent() -> Schema {
    let mut schema = ObjectBuilder::new().schema_type(SchemaType::AnyValue).build();
    schema
        .extensions
        .get_or_insert_with(Default::default)
        .insert("not".into(), serde_json::json!({}));
    Schema::Object(schema)
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

/// An amount in minor units, > 0, or none.
pub fn optional_positive_amount() -> RefOr<Schema> {
    integer(1, i64::MAX).schema_type(SchemaType::from_iter([Type::Integer, Type::Null])).into()
}

/// An amount in minor units, > 0.
pub fn positive_amount() -> RefOr<Schema> {
    integer(1, i64::MAX).into()
}

/// An amount in minor units, ≥ 0.
pub fn non_negative_amount() -> RefOr<Schema> {
    integer(0, i64::MAX).default(Some(0.into())).into()
}

/// One of the IANA zone names the rules engine knows.
pub fn time_zone() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name())))
        .into()
}

/// A wallet payouts go to, or none (`null`).
pub fn optional_wallet() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            crate::payout_policy::WALLETS
                .iter()
                .map(|wallet| serde_json::Value::from(*wallet))
                .chain([serde_json::Value::Null]),
        ))
        .into()
}

/// A provider's channels: an object whose properties are wallet codes, each with its terms;
/// at least one, no other names.
pub fn provider_channels() -> RefOr<Schema> {
    let mut channels = ObjectBuilder::new().min_properties(Some(1)).additional_properties(Some(
        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
    ));
    for wallet in crate::payout_policy::WALLETS {
        channels = channels.property(*wallet, Ref::from_schema_name("ChannelTerms"));
    }
    channels.into()
}

/// A provider's credentials: role → the name of the environment variable holding it. Which
/// roles depends on the adapter (stated in the description); only names, never secrets.
pub fn provider_credentials() -> RefOr<Schema> {
    let name = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Z_][A-Z0-9_]{0,127}$"))
            .description(Some("an environment variable's name"))
    };
    let mut roles: Vec<&str> = crate::payment_provider::AdapterKind::ALL
        .iter()
        .flat_map(|adapter| adapter.credentials().iter().copied())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let mut credentials = ObjectBuilder::new()
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Exactly the adapter's roles: xendit secret_key, callback_token; iris creator_key, \
             approver_key, merchant_key; snap client_key, client_secret, private_key",
        ));
    for role in roles {
        credentials = credentials.property(role, name());
    }
    credentials.into()
}

/// A partner's signing keys, shown without their secrets and never accepted in a request.
pub fn signing_keys() -> RefOr<Schema> {
    let mut keys = ArrayBuilder::new()
        .items(Ref::from_schema_name("PartnerKey"))
        .description(Some("The signing keys, without their secrets; managed with `POST …/keys`"))
        .build();
    // utoipa's array type has no `readOnly` field: the keyword goes in through its map of
    // extra keywords (serialised beside the others).
    keys.extensions
        .get_or_insert_with(Default::default)
        .insert("readOnly".into(), serde_json::Value::Bool(true));
    Schema::Array(keys).into()
}

/// Merchant names, none of them blank.
pub fn merchants() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).pattern(Some(NOT_BLANK)))
        .into()
}

/// `{"percent_bp": 1…10000}` or `{"fixed": > 0}`.
pub fn reward() -> RefOr<Schema> {
    let one = |name: &str, value: ObjectBuilder| {
        ObjectBuilder::new().property(name, value).required(name).max_properties(Some(1))
    };
    OneOfBuilder::new()
        .description(Some(
            "A share of the amount in basis points (150 = 1.50 %), or a fixed amount in minor units",
        ))
        .item(one("percent_bp", integer(1, i64::from(BP_WHOLE))))
        .item(one("fixed", integer(1, i64::MAX)))
        .into()
}

/// Exactly one of `mcc`, `merchant` (not blank) or `msisdn`, beside the exclusion's other
/// fields; the other two are left out (not even `null`).
impl PartialSchema for ExclusionTarget {
    fn schema() -> RefOr<Schema> {
        let names = ["mcc", "merchant", "msisdn"];
        let only = |name: &str, value: RefOr<Schema>| {
            let mut object = ObjectBuilder::new().property(name, value).required(name);
            for other in names.iter().filter(|other| **other != name) {
                object = object.property(*other, absent());
            }
            object
        };
        OneOfBuilder::new()
            .item(only("mcc", Mcc::schema()))
            .item(only(
                "merchant",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some(NOT_BLANK)).into(),
            ))
            .item(only("msisdn", Msisdn::schema()))
            .into()
    }
}
impl ToSchema for ExclusionTarget {}

/// Base64 of at least as many bytes as an HMAC algorithm's output (trailing `=` optional, the
/// last character canonical), as `CustomerTokens::validate` decodes it.
fn hmac_secret(algorithm: &str) -> Option<&'static str> {
    match algorithm {
        // 32 bytes: 11 groups and more, or 10 groups and a 2-byte tail.
        "HS256" => Some(
            r"^((?:[A-Za-z0-9+/]{4}){11,}(?:[A-Za-z0-9+/][AQgw]|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])?|(?:[A-Za-z0-9+/]{4}){10}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])=*$",
        ),
        // 48 bytes: 16 groups and more.
        "HS384" => Some(
            r"^(?:[A-Za-z0-9+/]{4}){16,}(?:[A-Za-z0-9+/][AQgw]|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])?=*$",
        ),
        // 64 bytes: 22 groups and more, or 21 groups and a tail.
        "HS512" => Some(
            r"^((?:[A-Za-z0-9+/]{4}){22,}(?:[A-Za-z0-9+/][AQgw]|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]))=*$",
        ),
        _ => None,
    }
}

/// A JWK Set URL: https, or plain http to a loopback address.
const JWKS_URL: &str = r"^([Hh][Tt][Tt][Pp][Ss]://([^/?#\x00]*@)?([^/?#@:\[\x00]|\[[^\]/?#@\x00])[^/?#@\x00]*|[Hh][Tt][Tt][Pp]://([^/?#\x00]*@)?(localhost|127(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|\[::1\])(:[^/?#@\x00]*)?)([/?#][^\x00]*)?$";

const PUBLIC_KEY_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Customer-token settings, or none: an HMAC algorithm with shared secrets, or a public-key
/// algorithm with PEM keys or a JWK Set URL (one of the two).
pub fn customer_tokens() -> RefOr<Schema> {
    let settings = |algorithms: &[&str]| {
        let text = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .pattern(Some(TEXT))
        };
        ObjectBuilder::new()
            .property(
                "algorithm",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(algorithms.iter().copied())),
            )
            .required("algorithm")
            .property("issuer", text().description(Some("the `iss` a token must carry")))
            .property("audience", text().description(Some("the `aud` a token must carry")))
    };
    let key = |value: &str, schema: ObjectBuilder, other: &str| {
        ObjectBuilder::new()
            .property(
                "kid",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .pattern(Some(TEXT))
                    .description(Some("the `kid` of tokens signed with this key")),
            )
            .property(value, schema)
            .required(value)
            .property(other, null())
    };
    let keys = |key: ObjectBuilder| ArrayBuilder::new().items(key).min_items(Some(1));
    let mut variants = OneOfBuilder::new().item(null());
    for algorithm in ["HS256", "HS384", "HS512"] {
        let secret = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(hmac_secret(algorithm))
            .write_only(Some(true))
            .description(Some("base64, at least the algorithm's output length; never shown"));
        variants = variants.item(
            settings(&[algorithm])
                .property("keys", keys(key("secret", secret, "pem")))
                .required("keys")
                .property("jwks_url", null()),
        );
    }
    let pem = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^-----BEGIN[^\x00]*$"))
        .description(Some("a public key in PEM that the algorithm can use"));
    variants = variants
        .item(
            settings(&PUBLIC_KEY_ALGORITHMS)
                .property("keys", keys(key("pem", pem, "secret")))
                .required("keys")
                .property("jwks_url", null()),
        )
        .item(
            settings(&PUBLIC_KEY_ALGORITHMS)
                .property(
                    "jwks_url",
                    ObjectBuilder::new().schema_type(Type::String).pattern(Some(JWKS_URL)),
                )
                .required("jwks_url")
                .property("keys", ArrayBuilder::new().max_items(Some(0))),
        );
    variants.into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{CustomerTokens, TokenKey};

    fn tokens(algorithm: &str, secret: Option<&str>, jwks_url: Option<&str>) -> CustomerTokens {
        CustomerTokens {
            algorithm: algorithm.into(),
            jwks_url: jwks_url.map(str::to_owned),
            keys: secret
                .map(|secret| TokenKey { kid: None, pem: None, secret: Some(secret.into()) })
                .into_iter()
                .collect(),
            issuer: None,
            audience: None,
        }
    }

    fn accepted(tokens: &CustomerTokens) -> bool {
        let mut problems = Vec::new();
        tokens.validate(&mut problems);
        problems.is_empty()
    }

    #[test]
    fn the_zone_names_are_the_ones_the_partner_validation_accepts() {
        let json = serde_json::to_value(time_zone()).unwrap_or_default();
        let names = json["enum"].as_array().cloned().unwrap_or_default();
        assert!(names.len() > 300, "{} zones", names.len());
        for name in names {
            let name = name.as_str().unwrap_or_default();
            assert!(name.parse::<chrono_tz::Tz>().is_ok(), "{name}");
        }
    }

    #[test]
    fn an_hmac_secret_matches_exactly_when_it_is_long_enough() {
        use base64::Engine;
        for (algorithm, shortest) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
            let pattern = regex::Regex::new(hmac_secret(algorithm).unwrap_or_default());
            let pattern = pattern.unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            for length in 0..100 {
                let bytes: Vec<u8> = (0..length).map(|i| (i * 37 % 251) as u8).collect();
                for engine in [
                    &base64::engine::general_purpose::STANDARD,
                    &base64::engine::general_purpose::STANDARD_NO_PAD,
                ] {
                    let secret = engine.encode(&bytes);
                    assert_eq!(
                        pattern.is_match(&secret),
                        length >= shortest,
                        "{algorithm} {secret}"
                    );
                    assert!(
                        accepted(&tokens(algorithm, Some(&secret), None)) == (length >= shortest)
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn the_secret_pattern_agrees_with_the_validation(secret in "[A-Za-z0-9+/=]{40,92}") {
            for algorithm in ["HS256", "HS384", "HS512"] {
                let pattern = regex::Regex::new(hmac_secret(algorithm).unwrap_or_default());
                let matched = pattern.map(|pattern| pattern.is_match(&secret)).unwrap_or(false);
                prop_assert_eq!(matched, accepted(&tokens(algorithm, Some(&secret), None)), "{} {}", algorithm, secret);
            }
        }

        #[test]
        fn the_jwks_url_pattern_agrees_with_the_validation(
            url in "(https|HTTPS|http|ftp)://[a-z0-9@:.\\[\\]/?#]{0,24}",
        ) {
            let pattern = regex::Regex::new(JWKS_URL);
            let matched = pattern.map(|pattern| pattern.is_match(&url)).unwrap_or(false);
            prop_assert_eq!(matched, accepted(&tokens("RS256", None, Some(&url))), "{}", url);
        }

        #[test]
        fn a_loopback_http_url_matches(port in 1u16.., host in "(localhost|127\\.0\\.0\\.1|\\[::1\\])") {
            let url = format!("http://{host}:{port}/jwks.json");
            let pattern = regex::Regex::new(JWKS_URL);
            prop_assert!(pattern.map(|pattern| pattern.is_match(&url)).unwrap_or(false), "{}", url);
            prop_assert!(accepted(&tokens("RS256", None, Some(&url))), "{}", url);
        }
    }
}
