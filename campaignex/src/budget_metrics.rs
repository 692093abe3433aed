//! The budget gauge: what is left of each budgeted campaign's budget, in all and today
//! (partner-local), refreshed from the ledger every few seconds.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::{IntGaugeVec, Opts, Registry};

use cezbek_ledger::AnyLedger;
use cezbek_platform::CancellationToken;
use cezbek_rules::Rule;

use crate::store::{Kind, Store};

const REFRESH: Duration = Duration::from_secs(15);

pub fn gauge(registry: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    let gauge = IntGaugeVec::new(
        Opts::new(
            "cezbek_campaign_budget_remaining",
            "What is left of a campaign's money budget, minor units (scope: total or today)",
        ),
        &["partner", "campaign", "scope"],
    )?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// Refreshes the gauge until shutdown.
pub async fn refresh(
    store: Store,
    ledger: Arc<AnyLedger>,
    gauge: IntGaugeVec,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(error) = refresh_once(&store, &ledger, &gauge).await {
            tracing::warn!(%error, "could not refresh the budget gauge");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

async fn refresh_once(
    store: &Store,
    ledger: &AnyLedger,
    gauge: &IntGaugeVec,
) -> Result<(), String> {
    let campaigns = store.list(Kind::Campaign, None).await.map_err(|e| e.to_string())?;
    let partners = store.list(Kind::Partner, None).await.map_err(|e| e.to_string())?;
    gauge.reset();
    for stored in partners {
        let Rule::Partner(partner) = stored.rule else { continue };
        let budgeted: Vec<_> = campaigns
            .iter()
            .filter_map(|stored| match &stored.rule {
                Rule::Campaign(campaign) if campaign.partner == partner.code => Some(campaign),
                _ => None,
            })
            .filter(|campaign| campaign.budget.is_some() || campaign.budget_per_day.is_some())
            .collect();
        if budgeted.is_empty() {
            continue;
        }
        let zone: chrono_tz::Tz = partner.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let now = Utc::now();
        let today = now.with_timezone(&zone).date_naive();
        let statuses = cezbek_ledger::budget::statuses(ledger, &partner.code, budgeted, today, now)
            .await
            .map_err(|e| e.to_string())?;
        for status in statuses {
            let labels = |scope| [partner.code.as_str(), status.campaign_id.as_str(), scope];
            if let Some(remaining) = status.remaining {
                gauge.with_label_values(&labels("total")).set(remaining);
            }
            if let Some(remaining) = status.remaining_today {
                gauge.with_label_values(&labels("today")).set(remaining);
            }
        }
    }
    Ok(())
}
