//! The rules in PostgreSQL, with a version per rule and a revision row for every change,
//! written in the same transaction as the change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use cezbek_rules::{Rule, RuleKey};
use cezbek_schemas::PartnerCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("version {expected} is stale; the current version is {current}")]
    Stale { expected: i64, current: i64 },
    #[error("stored rule {entity}/{id} is unreadable: {reason}")]
    Corrupt { entity: String, id: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A rule as stored, with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub rule: Rule,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// One change in the audit trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Revision {
    /// Increases with every change.
    pub revision: i64,
    /// partner, campaign, exclusion or tiers.
    pub entity: String,
    /// `TOKO` or `TOKO/weekday-1.5`.
    pub id: String,
    /// create, update or delete.
    pub action: String,
    /// The name of the admin token that made the change.
    pub actor: String,
    pub at: DateTime<Utc>,
    /// The rule before the change (secrets removed); none for a creation.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The rule after the change (secrets removed); none for a deletion.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// The kinds of rule, as the `kind` column and the audit `entity` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Partner,
    Campaign,
    Exclusion,
    Tiers,
    /// A payment provider of the payouts (not a partner's).
    Provider,
}

impl Kind {
    pub const ALL: [Self; 5] =
        [Self::Partner, Self::Campaign, Self::Exclusion, Self::Tiers, Self::Provider];

    /// The kind an audit filter names.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name).ok_or_else(|| {
            format!("{name:?} is not one of partner, campaign, exclusion, tiers, provider")
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partner => "partner",
            Self::Campaign => "campaign",
            Self::Exclusion => "exclusion",
            Self::Tiers => "tiers",
            Self::Provider => "provider",
        }
    }
}

/// Whether PostgreSQL's text can hold this at all: a path or filter naming an id with a NUL
/// names no stored rule (and would make the query fail rather than find nothing).
fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// `(kind, partner, id)` of a key; `id` is empty for partners and tier programs, `partner`
/// for payment providers (which belong to no partner).
fn columns(key: &RuleKey) -> (Kind, &str, &str) {
    match key {
        RuleKey::Partner(partner) => (Kind::Partner, partner.as_str(), ""),
        RuleKey::Campaign(partner, id) => (Kind::Campaign, partner.as_str(), id),
        RuleKey::Exclusion(partner, id) => (Kind::Exclusion, partner.as_str(), id),
        RuleKey::Tiers(partner) => (Kind::Tiers, partner.as_str(), ""),
        RuleKey::Provider(name) => (Kind::Provider, "", name),
    }
}

fn key_of(kind: &str, partner: &str, id: &str) -> Option<RuleKey> {
    if kind == "provider" {
        return partner.is_empty().then(|| RuleKey::Provider(id.to_owned()));
    }
    let partner = PartnerCode::parse(partner).ok()?;
    Some(match kind {
        "partner" => RuleKey::Partner(partner),
        "campaign" => RuleKey::Campaign(partner, id.to_owned()),
        "exclusion" => RuleKey::Exclusion(partner, id.to_owned()),
        "tiers" => RuleKey::Tiers(partner),
        _ => return None,
    })
}

/// How the audit trail names a rule: `TOKO`, `TOKO/weekday-1.5`, or a provider's name.
pub fn entity_id(key: &RuleKey) -> String {
    match columns(key) {
        (_, partner, "") => partner.to_owned(),
        (_, "", id) => id.to_owned(),
        (_, partner, id) => format!("{partner}/{id}"),
    }
}

/// The JSON the audit trail and API show: a partner's key secrets (signing keys, and the HMAC
/// secrets of its customer tokens) never leave the store.
pub fn redacted(rule: &Rule) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(&rule.to_json()).unwrap_or_default();
    // Signing keys, and customer-token keys (whose public keys stay, HMAC secrets go).
    for pointer in ["/keys", "/customer_tokens/keys"] {
        let keys = value.pointer_mut(pointer).and_then(serde_json::Value::as_array_mut);
        for key in keys.into_iter().flatten().filter_map(serde_json::Value::as_object_mut) {
            key.remove("secret");
        }
    }
    value
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

const SELECT: &str = "SELECT kind, partner, id, body::text AS body, version, updated_at FROM rules";

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Campaignex (10001…) and the ledger (20001…) may share one database: each applies its
        // own versions and ignores the other's.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    fn read(row: &sqlx::postgres::PgRow) -> Result<Stored, StoreError> {
        let kind: String = row.try_get("kind")?;
        let partner: String = row.try_get("partner")?;
        let id: String = row.try_get("id")?;
        let body: String = row.try_get("body")?;
        let corrupt = |reason: String| StoreError::Corrupt {
            entity: kind.clone(),
            id: format!("{partner}/{id}"),
            reason,
        };
        let key = key_of(&kind, &partner, &id)
            .ok_or_else(|| corrupt("unknown kind or partner".into()))?;
        let rule = Rule::from_json(&key, body.as_bytes()).map_err(corrupt)?;
        Ok(Stored {
            rule,
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Every rule, for the reconciler.
    pub async fn all(&self) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY kind, partner, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::read).collect()
    }

    /// The rules of one kind, of one partner or of all.
    pub async fn list(
        &self,
        kind: Kind,
        partner: Option<&PartnerCode>,
    ) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE kind = $1 AND ($2::text IS NULL OR partner = $2) ORDER BY partner, id"
        ))
        .bind(kind.as_str())
        .bind(partner.map(PartnerCode::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::read).collect()
    }

    pub async fn get(&self, key: &RuleKey) -> Result<Option<Stored>, StoreError> {
        let (kind, partner, id) = columns(key);
        if !storable(id) {
            return Ok(None);
        }
        let row = sqlx::query(&format!("{SELECT} WHERE kind = $1 AND partner = $2 AND id = $3"))
            .bind(kind.as_str())
            .bind(partner)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::read).transpose()
    }

    /// Whether a partner has campaigns, exclusions or a tier program.
    pub async fn partner_has_rules(&self, partner: &PartnerCode) -> Result<bool, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rules WHERE partner = $1 AND kind <> 'partner'",
        )
        .bind(partner.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    pub async fn create(&self, rule: &Rule, actor: &str) -> Result<Stored, StoreError> {
        let key = rule.key();
        let (kind, partner, id) = columns(&key);
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO rules (kind, partner, id, body, version) VALUES ($1, $2, $3, $4::jsonb, 1)
             ON CONFLICT DO NOTHING RETURNING updated_at",
        )
        .bind(kind.as_str())
        .bind(partner)
        .bind(id)
        .bind(rule.to_json())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = inserted else { return Err(StoreError::Exists) };
        record(&mut transaction, &key, "create", actor, None, Some(rule)).await?;
        transaction.commit().await?;
        Ok(Stored { rule: rule.clone(), version: 1, updated_at: row.try_get("updated_at")? })
    }

    /// Replaces a rule if it is still at `expected`.
    pub async fn update(
        &self,
        rule: &Rule,
        expected: i64,
        actor: &str,
    ) -> Result<Stored, StoreError> {
        let key = rule.key();
        let (kind, partner, id) = columns(&key);
        let mut transaction = self.pool.begin().await?;
        let before = lock(&mut transaction, &key, expected).await?;
        let row = sqlx::query(
            "UPDATE rules SET body = $4::jsonb, version = version + 1, updated_at = now()
             WHERE kind = $1 AND partner = $2 AND id = $3 RETURNING version, updated_at",
        )
        .bind(kind.as_str())
        .bind(partner)
        .bind(id)
        .bind(rule.to_json())
        .fetch_one(&mut *transaction)
        .await?;
        record(&mut transaction, &key, "update", actor, Some(&before.rule), Some(rule)).await?;
        transaction.commit().await?;
        Ok(Stored {
            rule: rule.clone(),
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Deletes a rule if it is still at `expected`; returns what it was.
    pub async fn delete(
        &self,
        key: &RuleKey,
        expected: i64,
        actor: &str,
    ) -> Result<Stored, StoreError> {
        let (kind, partner, id) = columns(key);
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let mut transaction = self.pool.begin().await?;
        let before = lock(&mut transaction, key, expected).await?;
        sqlx::query("DELETE FROM rules WHERE kind = $1 AND partner = $2 AND id = $3")
            .bind(kind.as_str())
            .bind(partner)
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        record(&mut transaction, key, "delete", actor, Some(&before.rule), None).await?;
        transaction.commit().await?;
        Ok(before)
    }

    /// The audit trail, newest first, optionally of one entity kind and id.
    pub async fn audit(
        &self,
        entity: Option<&str>,
        id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Revision>, StoreError> {
        if !id.is_none_or(storable) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT revision, entity, entity_id, action, actor, at, before::text AS before, after::text AS after
             FROM revisions WHERE ($1::text IS NULL OR entity = $1) AND ($2::text IS NULL OR entity_id = $2)
             ORDER BY revision DESC LIMIT $3",
        )
        .bind(entity)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        rows.iter()
            .map(|row| {
                Ok(Revision {
                    revision: row.try_get("revision")?,
                    entity: row.try_get("entity")?,
                    id: row.try_get("entity_id")?,
                    action: row.try_get("action")?,
                    actor: row.try_get("actor")?,
                    at: row.try_get("at")?,
                    before: json(row.try_get("before")?),
                    after: json(row.try_get("after")?),
                })
            })
            .collect()
    }
}

/// Locks the row and checks its version.
async fn lock(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &RuleKey,
    expected: i64,
) -> Result<Stored, StoreError> {
    let (kind, partner, id) = columns(key);
    let row =
        sqlx::query(&format!("{SELECT} WHERE kind = $1 AND partner = $2 AND id = $3 FOR UPDATE"))
            .bind(kind.as_str())
            .bind(partner)
            .bind(id)
            .fetch_optional(&mut **transaction)
            .await?;
    let current = row.as_ref().map(Store::read).transpose()?.ok_or(StoreError::NotFound)?;
    if current.version != expected {
        return Err(StoreError::Stale { expected, current: current.version });
    }
    Ok(current)
}

async fn record(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &RuleKey,
    action: &str,
    actor: &str,
    before: Option<&Rule>,
    after: Option<&Rule>,
) -> Result<(), StoreError> {
    let (kind, _, _) = columns(key);
    let text = |rule: Option<&Rule>| rule.map(|r| redacted(r).to_string());
    sqlx::query(
        "INSERT INTO revisions (entity, entity_id, action, actor, before, after) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
    )
    .bind(kind.as_str())
    .bind(entity_id(key))
    .bind(action)
    .bind(actor)
    .bind(text(before))
    .bind(text(after))
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
