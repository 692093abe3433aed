//! The etcd key layout of the live rules (DESIGN.md, "Rules"). `prefix` is `/cezbek/v1/` in
//! production and a per-test prefix in tests; it starts and ends with `/`.

use cezbek_schemas::PartnerCode;

pub fn partners(prefix: &str) -> String {
    format!("{prefix}partners/")
}

pub fn partner(prefix: &str, partner: &PartnerCode) -> String {
    format!("{prefix}partners/{partner}")
}

pub fn campaigns(prefix: &str, partner: &PartnerCode) -> String {
    format!("{prefix}campaigns/{partner}/")
}

pub fn campaign(prefix: &str, partner: &PartnerCode, id: &str) -> String {
    format!("{prefix}campaigns/{partner}/{id}")
}

pub fn exclusions(prefix: &str, partner: &PartnerCode) -> String {
    format!("{prefix}exclusions/{partner}/")
}

pub fn exclusion(prefix: &str, partner: &PartnerCode, id: &str) -> String {
    format!("{prefix}exclusions/{partner}/{id}")
}

pub fn tiers(prefix: &str, partner: &PartnerCode) -> String {
    format!("{prefix}tiers/{partner}")
}

pub fn providers(prefix: &str) -> String {
    format!("{prefix}providers/")
}

pub fn provider(prefix: &str, name: &str) -> String {
    format!("{prefix}providers/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let code = PartnerCode::parse("TOKO").unwrap();
        let prefix = "/cezbek/v1/";
        assert_eq!(partner(prefix, &code), "/cezbek/v1/partners/TOKO");
        assert_eq!(campaign(prefix, &code, "c1"), "/cezbek/v1/campaigns/TOKO/c1");
        assert_eq!(exclusion(prefix, &code, "x1"), "/cezbek/v1/exclusions/TOKO/x1");
        assert_eq!(tiers(prefix, &code), "/cezbek/v1/tiers/TOKO");
        assert_eq!(provider(prefix, "xendit"), "/cezbek/v1/providers/xendit");
        assert!(provider(prefix, "xendit").starts_with(&providers(prefix)));
        assert!(campaign(prefix, &code, "c1").starts_with(&campaigns(prefix, &code)));
        assert!(partner(prefix, &code).starts_with(&partners(prefix)));
    }
}
