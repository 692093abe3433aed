//! The pipeline's health for the overview: each service's readiness (its ops listener's
//! `/readyz`) and the figures an operator looks at first, read from the services' own
//! Prometheus metrics: the rewarder's consumer lag and dead letters, the files being ingested.

use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use url::Url;

/// A service's ops listener (`/readyz`, `/metrics`).
#[derive(Debug, Clone)]
pub struct OpsEndpoint {
    pub service: String,
    pub url: Url,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    pub service: String,
    pub ready: bool,
    /// What `/readyz` said, or why it could not be asked.
    pub detail: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineHealth {
    pub services: Vec<ServiceHealth>,
    /// Messages of the transactions topic not yet decided, over all partitions (the
    /// rewarders' `cezbek_rewarder_consumer_lag_messages`); absent when no rewarder answered.
    pub consumer_lag: Option<f64>,
    /// Messages sent to the dead-letter topic since the rewarders started.
    pub dead_lettered: Option<f64>,
    /// CSV files being ingested now.
    pub files_active: Option<f64>,
}

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn pipeline(client: &reqwest::Client, endpoints: &[OpsEndpoint]) -> PipelineHealth {
    let services = join_all(endpoints.iter().map(|endpoint| readiness(client, endpoint))).await;
    let metrics_of = |service: &'static str| {
        join_all(
            endpoints
                .iter()
                .filter(move |endpoint| endpoint.service == service)
                .map(|endpoint| metrics(client, endpoint)),
        )
    };
    let (rewarder, ingestor) = tokio::join!(metrics_of("rewarder"), metrics_of("ingestor"));
    let total = |texts: &[Option<String>], name: &str| {
        let answered: Vec<&String> = texts.iter().flatten().collect();
        (!answered.is_empty()).then(|| answered.iter().map(|text| metric_sum(text, name)).sum())
    };
    PipelineHealth {
        services,
        consumer_lag: total(&rewarder, "cezbek_rewarder_consumer_lag_messages"),
        dead_lettered: total(&rewarder, "cezbek_rewarder_dead_lettered_total"),
        files_active: total(&ingestor, "cezbek_ingestor_files_active"),
    }
}

async fn readiness(client: &reqwest::Client, endpoint: &OpsEndpoint) -> ServiceHealth {
    let url = endpoint.url.join("readyz");
    let answer = match url {
        Ok(url) => client.get(url).timeout(ASK_TIMEOUT).send().await,
        Err(error) => {
            return ServiceHealth {
                service: endpoint.service.clone(),
                ready: false,
                detail: format!("bad ops URL: {error}"),
            };
        }
    };
    let (ready, detail) = match answer {
        Ok(answer) => {
            let ready = answer.status().is_success();
            (ready, answer.text().await.unwrap_or_default().trim().to_owned())
        }
        Err(error) => (false, format!("no answer: {error}")),
    };
    ServiceHealth { service: endpoint.service.clone(), ready, detail }
}

async fn metrics(client: &reqwest::Client, endpoint: &OpsEndpoint) -> Option<String> {
    let url = endpoint.url.join("metrics").ok()?;
    let answer = client.get(url).timeout(ASK_TIMEOUT).send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.text().await.ok()
}

/// The sum of a metric's samples over all its label sets, in Prometheus' text format.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                &labelled[labels_end(labelled)? + 1..]
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None; // another metric whose name starts with this one
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        // From +0.0: an empty f64 sum is -0.0, which would show as "-0".
        .fold(0.0, |total, value| total + value)
}

/// Where a label set's closing `}` is: the first one outside a quoted label value.
fn labels_end(labelled: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, character) in labelled.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_summed_over_its_label_sets_only() {
        let text = "# HELP cezbek_rewarder_consumer_lag_messages lag\n\
            # TYPE cezbek_rewarder_consumer_lag_messages gauge\n\
            cezbek_rewarder_consumer_lag_messages{partition=\"0\"} 12\n\
            cezbek_rewarder_consumer_lag_messages{partition=\"1\",topic=\"a}b\"} 30 1700000000\n\
            cezbek_rewarder_consumer_lag_messages_max 99\n\
            cezbek_rewarder_dead_lettered_total 2\n";
        assert_eq!(metric_sum(text, "cezbek_rewarder_consumer_lag_messages"), 42.0);
        assert_eq!(metric_sum(text, "cezbek_rewarder_dead_lettered_total"), 2.0);
        assert_eq!(metric_sum(text, "cezbek_absent"), 0.0);
    }
}
