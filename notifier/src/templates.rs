//! The digest's templates: a subject line, an HTML part and a plain-text part, in Jinja syntax
//! (minijinja). A partner brands its digests with files of its own:
//!
//! ```text
//! $CEZBEK_NOTIFIER_TEMPLATES/TOKO/digest.html     TOKO's own (any of the three)
//! $CEZBEK_NOTIFIER_TEMPLATES/default/digest.html  every other partner's
//! (built in)                                      notifier/templates/default/*
//! ```
//!
//! Files are read at the start of each partner-day run, so an edited template applies from the
//! next run without a restart. A template that does not parse, or that prints a value the
//! digest does not have, fails the load with the file's path and line, before anything is sent.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

use cezbek_schemas::PartnerCode;

use crate::digest::{Digest, Line, NextTierView, PartnerView, TierView};

pub const SUBJECT: &str = "subject.txt";
pub const HTML: &str = "digest.html";
pub const TEXT: &str = "digest.txt";

const BUILT_IN: [(&str, &str); 3] = [
    (SUBJECT, include_str!("../templates/default/subject.txt")),
    (HTML, include_str!("../templates/default/digest.html")),
    (TEXT, include_str!("../templates/default/digest.txt")),
];

#[derive(Debug, thiserror::Error)]
#[error("template {origin}: {reason}")]
pub struct TemplateError {
    /// The file (or `built-in NAME`) the problem is in.
    pub origin: String,
    pub reason: String,
}

/// Where templates are looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSource {
    /// `CEZBEK_NOTIFIER_TEMPLATES`; None: the built-in templates only.
    pub dir: Option<PathBuf>,
}

/// A partner's three templates, parsed and checked.
#[derive(Debug)]
pub struct Templates {
    environment: Environment<'static>,
    /// Where each template came from, for error messages.
    origins: Vec<(&'static str, String)>,
}

/// A digest rendered: what goes into the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl TemplateSource {
    /// Loads `partner`'s templates and renders them once with a sample digest, so a broken
    /// template is found before the first customer.
    pub fn load(&self, partner: &PartnerCode) -> Result<Templates, TemplateError> {
        let mut environment = Environment::new();
        // Printing a value the digest does not have is an error, not an empty string: a
        // misspelt variable in a partner's template shows at load, not in customers' inboxes.
        environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        environment.set_keep_trailing_newline(true);
        let mut origins = Vec::with_capacity(BUILT_IN.len());
        for (name, built_in) in BUILT_IN {
            let (origin, source) = self.read(partner, name, built_in)?;
            environment.add_template_owned(name, source).map_err(|error| TemplateError {
                origin: origin.clone(),
                reason: describe(&error),
            })?;
            origins.push((name, origin));
        }
        let templates = Templates { environment, origins };
        templates.render(&sample(partner))?;
        Ok(templates)
    }

    /// The first of the partner's file, the default file, the built-in text.
    fn read(
        &self,
        partner: &PartnerCode,
        name: &str,
        built_in: &'static str,
    ) -> Result<(String, Cow<'static, str>), TemplateError> {
        let Some(dir) = &self.dir else {
            return Ok((format!("built-in {name}"), Cow::Borrowed(built_in)));
        };
        for candidate in [dir.join(partner.as_str()).join(name), dir.join("default").join(name)] {
            match std::fs::read_to_string(&candidate) {
                Ok(source) => return Ok((candidate.display().to_string(), Cow::Owned(source))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(unreadable(&candidate, &error)),
            }
        }
        Ok((format!("built-in {name}"), Cow::Borrowed(built_in)))
    }
}

fn unreadable(path: &Path, error: &std::io::Error) -> TemplateError {
    TemplateError { origin: path.display().to_string(), reason: format!("cannot read: {error}") }
}

/// minijinja's message with the line it points at.
fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("line {line}: {error}"),
        None => error.to_string(),
    }
}

impl Templates {
    pub fn render(&self, digest: &Digest) -> Result<Rendered, TemplateError> {
        let render = |name: &str| {
            let origin = || {
                self.origins
                    .iter()
                    .find(|(candidate, _)| *candidate == name)
                    .map_or_else(|| name.to_owned(), |(_, origin)| origin.clone())
            };
            self.environment
                .get_template(name)
                .and_then(|template| template.render(digest))
                .map_err(|error| TemplateError { origin: origin(), reason: describe(&error) })
        };
        // One line, whatever the template's whitespace: a subject cannot span lines.
        let subject = render(SUBJECT)?.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(Rendered { subject, html: render(HTML)?, text: render(TEXT)? })
    }
}

/// A digest with every optional part present, to check templates against.
fn sample(partner: &PartnerCode) -> Digest {
    let line = Line {
        transaction_id: "sample-1".into(),
        time: "12:00 WIB".into(),
        merchant: "Sample Store".into(),
        kind: "purchase",
        amount: "Rp 100.000,00".into(),
        cashback: "Rp 1.000,00".into(),
        cashback_minor: 100_000,
        campaigns: "Sample campaign".into(),
    };
    Digest {
        partner: PartnerView { code: partner.to_string(), name: partner.to_string() },
        msisdn: "+6281200000000".into(),
        email: "customer@example.com".into(),
        day: "2026-01-01".into(),
        time_zone: "Asia/Jakarta".into(),
        transactions: vec![line],
        total: "Rp 1.000,00".into(),
        total_minor: 100_000,
        currency: "IDR".into(),
        tier: Some(TierView {
            name: Some("SILVER".into()),
            window_days: 30,
            window_purchases: 3,
            window_spend: "Rp 300.000,00".into(),
            next: Some(NextTierView {
                name: "GOLD".into(),
                purchases_needed: 2,
                spend_needed: "Rp 700.000,00".into(),
                spend_needed_minor: 70_000_000,
            }),
        }),
        unsubscribe_url: "https://example.com/v1/unsubscribe?token=sample".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toko() -> PartnerCode {
        PartnerCode::parse("TOKO").unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cezbek-templates-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_built_in_templates_count_in_the_singular_and_leave_out_spend_already_met() {
        let templates = TemplateSource::default().load(&toko()).unwrap();
        let mut digest = sample(&toko());
        let tier = digest.tier.as_mut().unwrap();
        tier.window_purchases = 1;
        let next = tier.next.as_mut().unwrap();
        next.purchases_needed = 1;
        next.spend_needed = "Rp 0,00".into();
        next.spend_needed_minor = 0;
        let rendered = templates.render(&digest).unwrap();
        for part in [&rendered.text, &rendered.html] {
            assert!(part.contains("(1 purchase and Rp 300.000,00 spent"), "{part}");
            assert!(part.contains("To reach GOLD: 1 more purchase."), "{part}");
            assert!(!part.contains("more spend"), "{part}");
        }
        // Only spend left: no purchase count.
        let next = digest.tier.as_mut().unwrap().next.as_mut().unwrap();
        next.purchases_needed = 0;
        next.spend_needed = "Rp 5.000,00".into();
        next.spend_needed_minor = 500_000;
        let rendered = templates.render(&digest).unwrap();
        assert!(
            rendered.text.contains("To reach GOLD: Rp 5.000,00 more spend."),
            "{}",
            rendered.text
        );
        assert!(rendered.html.contains("Time (Asia&#x2f;Jakarta)"), "{}", rendered.html);
    }

    #[test]
    fn the_built_in_templates_render_every_part_and_escape_html() {
        let templates = TemplateSource::default().load(&toko()).unwrap();
        let mut digest = sample(&toko());
        digest.transactions[0].merchant = "<script>Bad & Co</script>".into();
        let rendered = templates.render(&digest).unwrap();
        assert_eq!(rendered.subject, "TOKO: you earned Rp 1.000,00 cashback on 2026-01-01");
        assert!(
            rendered.html.contains("&lt;script&gt;Bad &amp; Co&lt;&#x2f;script&gt;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<script>"));
        // Plain text is not HTML-escaped.
        assert!(rendered.text.contains("<script>Bad & Co</script>"), "{}", rendered.text);
        // minijinja escapes `/` in HTML too (`&#x2f;`), which a browser reads back as `/`.
        let html = rendered.html.replace("&#x2f;", "/");
        for part in [&html, &rendered.text] {
            assert!(part.contains("Rp 1.000,00"));
            assert!(part.contains("Sample campaign"));
            assert!(part.contains("SILVER"));
            assert!(part.contains("GOLD"));
            assert!(part.contains("https://example.com/v1/unsubscribe?token=sample"));
        }
    }

    #[test]
    fn a_partners_own_file_wins_over_the_default_file_and_the_built_in() {
        let dir = scratch("branding");
        std::fs::create_dir_all(dir.join("TOKO")).unwrap();
        std::fs::create_dir_all(dir.join("default")).unwrap();
        std::fs::write(dir.join("TOKO").join(SUBJECT), "Toko loves you: {{ total }}").unwrap();
        std::fs::write(dir.join("default").join(SUBJECT), "Default: {{ total }}").unwrap();
        let source = TemplateSource { dir: Some(dir.clone()) };
        let toko = source.load(&toko()).unwrap();
        let sample = sample(&self::toko());
        assert_eq!(
            toko.render(&sample).map(|r| r.subject).ok(),
            Some("Toko loves you: Rp 1.000,00".into())
        );
        let other = PartnerCode::parse("WARUNG").unwrap();
        let warung = source.load(&other).unwrap();
        assert_eq!(
            warung.render(&sample).map(|r| r.subject).ok(),
            Some("Default: Rp 1.000,00".into())
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_broken_template_is_refused_at_load_naming_the_file_and_line() {
        let dir = scratch("broken");
        std::fs::create_dir_all(dir.join("TOKO")).unwrap();
        let path = dir.join("TOKO").join(TEXT);
        std::fs::write(&path, "Hello\n{{ totl }}\n").unwrap();
        let error = TemplateSource { dir: Some(dir.clone()) }.load(&toko()).err();
        let error = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("line 2"), "{error}");

        std::fs::write(&path, "{% for x in %}").unwrap();
        let error = TemplateSource { dir: Some(dir.clone()) }.load(&toko()).err();
        assert!(error.is_some_and(|error| error.origin == path.display().to_string()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
