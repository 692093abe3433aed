//! The live providers: built from the specs campaignex publishes to etcd (`providers/{name}` in
//! the rules snapshot), each with the credentials its spec names read from the environment. A
//! provider whose credentials are missing, or whose timeout does not fit the claim lease, is
//! left out with an error in the log and counted; the others pay. A provider whose spec did not
//! change keeps its state (a SNAP access token) across rule changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use cezbek_rules::{PaymentProvider, RuleSnapshot};

use crate::providers::Provider;

/// Reads a credential by the name of the variable holding it.
pub type SecretReader = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Built {
    revision: i64,
    providers: Arc<Vec<Provider>>,
    /// By name: the spec each was built from.
    specs: HashMap<String, (PaymentProvider, Provider)>,
}

/// The providers of the current rules, rebuilt when the rules' revision changes.
#[derive(Clone)]
pub struct Registry {
    rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
    secret: SecretReader,
    lease: Duration,
    refused: prometheus::IntGauge,
    built: Arc<Mutex<Built>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("lease", &self.lease).finish_non_exhaustive()
    }
}

impl Registry {
    /// `lease` is the payer's claim lease: a provider call must fit in half of it.
    pub fn new(
        rules: watch::Receiver<Option<Arc<RuleSnapshot>>>,
        secret: SecretReader,
        lease: Duration,
        refused: prometheus::IntGauge,
    ) -> Self {
        let built = Built { revision: -1, providers: Arc::default(), specs: HashMap::new() };
        Self { rules, secret, lease, refused, built: Arc::new(Mutex::new(built)) }
    }

    /// The providers payouts may use now, in name order.
    pub fn current(&self) -> Arc<Vec<Provider>> {
        let snapshot = self.rules.borrow().clone();
        let Some(snapshot) = snapshot else { return Arc::default() };
        let mut built = self.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if built.revision == snapshot.revision() {
            return built.providers.clone();
        }
        let mut specs = HashMap::new();
        let mut providers = Vec::new();
        let mut refused = 0;
        for spec in snapshot.providers() {
            let kept = built.specs.get(&spec.name).filter(|(old, _)| old == spec);
            let provider = match kept {
                Some((_, provider)) => Ok(provider.clone()),
                None => self.build(spec),
            };
            match provider {
                Ok(provider) => {
                    specs.insert(spec.name.clone(), (spec.clone(), provider.clone()));
                    providers.push(provider);
                }
                Err(reason) => {
                    refused += 1;
                    tracing::error!(provider = %spec.name, %reason,
                        "a configured payment provider cannot be used");
                }
            }
        }
        if providers.is_empty() {
            tracing::warn!("no usable payment provider in the rules: nothing is paid");
        }
        self.refused.set(refused);
        *built = Built { revision: snapshot.revision(), providers: Arc::new(providers), specs };
        built.providers.clone()
    }

    /// One provider by name, if usable now.
    pub fn get(&self, name: &str) -> Option<Provider> {
        self.current().iter().find(|provider| provider.spec.name == name).cloned()
    }

    fn build(&self, spec: &PaymentProvider) -> Result<Provider, String> {
        let call = Duration::from_millis(spec.timeout_ms);
        if call * 2 >= self.lease {
            return Err(format!(
                "timeout_ms {} must be under half of CEZBEK_PAYOUTS_LEASE ({:?})",
                spec.timeout_ms, self.lease
            ));
        }
        let mut credentials = BTreeMap::new();
        for role in spec.adapter.credentials() {
            let variable = spec.credentials.get(*role).map(String::as_str).unwrap_or_default();
            let value = (self.secret)(variable)
                .ok_or_else(|| format!("credentials.{role}: set {variable}"))?;
            credentials.insert((*role).to_owned(), value);
        }
        Provider::new(spec.clone(), credentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cezbek_rules::{Rule, RuleSet};

    fn provider(name: &str, timeout_ms: u64) -> String {
        let upper = name.to_uppercase();
        format!(
            r#"{{"name": "{name}", "adapter": "xendit", "base_url": "http://127.0.0.1:1",
                "credentials": {{"secret_key": "S_{upper}", "callback_token": "T_{upper}"}},
                "channels": {{"OVO": {{"fee": {{"fixed": 100}}, "min_amount": 1, "max_amount": 9}}}},
                "timeout_ms": {timeout_ms}}}"#
        )
    }

    #[test]
    fn providers_follow_the_rules_and_those_that_cannot_work_are_left_out() {
        let mut rules = RuleSet::new("/p/");
        let (sender, receiver) = watch::channel(None);
        let secret: SecretReader =
            Arc::new(|name: &str| (!name.contains("MISSING")).then(|| format!("{name}-value")));
        let gauge = prometheus::IntGauge::new("refused", "refused").unwrap();
        let registry = Registry::new(receiver, secret, Duration::from_secs(30), gauge.clone());
        assert!(registry.current().is_empty(), "no rules yet");

        rules.put("/p/providers/b", provider("b", 1_000).as_bytes()).unwrap();
        rules.put("/p/providers/a", provider("a", 1_000).as_bytes()).unwrap();
        rules.put("/p/providers/slow", provider("slow", 20_000).as_bytes()).unwrap();
        rules.put("/p/providers/missing", provider("missing", 1_000).as_bytes()).unwrap();
        sender.send_replace(Some(Arc::new(rules.snapshot(1))));
        let names: Vec<String> =
            registry.current().iter().map(|provider| provider.spec.name.clone()).collect();
        assert_eq!(
            names,
            ["a", "b"],
            "in name order; the slow one and the one without secrets out"
        );
        assert_eq!(gauge.get(), 2);
        assert_eq!(registry.get("a").unwrap().credential("secret_key"), "S_A-value");

        let Some(Rule::Provider(mut changed)) =
            rules.get(&cezbek_rules::RuleKey::Provider("a".into())).cloned()
        else {
            panic!("a is a provider")
        };
        changed.enabled = false;
        rules.put("/p/providers/a", Rule::Provider(changed).to_json().as_bytes()).unwrap();
        rules.delete("/p/providers/b");
        sender.send_replace(Some(Arc::new(rules.snapshot(2))));
        let current = registry.current();
        assert_eq!(current.len(), 1);
        assert!(!current[0].spec.enabled, "the change is live");
    }
}
