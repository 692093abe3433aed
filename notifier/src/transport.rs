//! Where digests go: an SMTP relay (lettre; plain, STARTTLS or TLS, with or without
//! credentials), or `.eml` files in a folder (the default under `cezbek dev`, so a developer
//! needs no mail server to read what customers would get).

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use cezbek_platform::Env;
use cezbek_schemas::{Msisdn, PartnerCode};

/// `CEZBEK_SMTP_TLS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a capture server in development.
    None,
    /// Upgrade with STARTTLS, and refuse to go on without it (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A PEM file with the CA that signed the relay's certificate, when it is a private one.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Smtp,
    Files,
}

/// `CEZBEK_NOTIFIER_TRANSPORT` (`smtp` | `file`) and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    Smtp(SmtpConfig),
    /// `CEZBEK_NOTIFIER_OUTBOX`: `{outbox}/{partner}/{day}/{msisdn}.eml`.
    Files {
        outbox: PathBuf,
    },
}

impl TransportConfig {
    pub fn from_env(env: &mut Env, default: TransportKind) -> Self {
        let default_name = match default {
            TransportKind::Smtp => "smtp",
            TransportKind::Files => "file",
        };
        let kind = env.string("CEZBEK_NOTIFIER_TRANSPORT", default_name);
        match kind.as_str() {
            "smtp" => Self::Smtp(smtp_from_env(env)),
            "file" => Self::Files {
                outbox: PathBuf::from(env.string("CEZBEK_NOTIFIER_OUTBOX", "var/outbox")),
            },
            other => {
                env.problem(
                    "CEZBEK_NOTIFIER_TRANSPORT",
                    format!("{other:?} is neither smtp nor file"),
                );
                Self::Files { outbox: PathBuf::from("var/outbox") }
            }
        }
    }
}

fn smtp_from_env(env: &mut Env) -> SmtpConfig {
    let address = env.string("CEZBEK_SMTP_ADDR", "127.0.0.1:25");
    let (host, port) =
        match address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
            Some((host, Ok(port))) if !host.is_empty() => (host.to_owned(), port),
            _ => {
                env.problem("CEZBEK_SMTP_ADDR", format!("{address:?} is not host:port"));
                (String::new(), 0)
            }
        };
    let tls = match env.string("CEZBEK_SMTP_TLS", "starttls").as_str() {
        "none" => SmtpTls::None,
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        other => {
            env.problem("CEZBEK_SMTP_TLS", format!("{other:?} is not none, starttls or tls"));
            SmtpTls::StartTls
        }
    };
    let username = env.optional("CEZBEK_SMTP_USERNAME").filter(|value| !value.is_empty());
    let password = env.optional("CEZBEK_SMTP_PASSWORD").filter(|value| !value.is_empty());
    env.check(
        username.is_some() == password.is_some(),
        "CEZBEK_SMTP_PASSWORD",
        "set CEZBEK_SMTP_USERNAME and CEZBEK_SMTP_PASSWORD together, or neither",
    );
    env.check(
        username.is_none() || tls != SmtpTls::None,
        "CEZBEK_SMTP_TLS",
        "is none, which would send the SMTP credentials in clear text",
    );
    SmtpConfig {
        host,
        port,
        tls,
        username,
        password,
        ca_file: env.optional("CEZBEK_SMTP_CA_FILE").map(PathBuf::from),
        timeout: env.duration("CEZBEK_SMTP_TIMEOUT", Duration::from_secs(30)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("SMTP relay settings: {0}")]
    Setup(String),
    /// Worth retrying later: the relay is away, busy or timed out.
    #[error("could not send (will retry): {0}")]
    Transient(String),
    /// This message will not go however often it is tried (e.g. the mailbox is refused).
    #[error("the relay refused the message: {0}")]
    Permanent(String),
}

impl TransportError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

#[derive(Debug, Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

impl Transport {
    pub fn new(config: &TransportConfig) -> Result<Self, TransportError> {
        let smtp = match config {
            TransportConfig::Files { outbox } => return Ok(Self::Files(outbox.clone())),
            TransportConfig::Smtp(smtp) => smtp,
        };
        let setup = |error: &dyn std::fmt::Display| TransportError::Setup(error.to_string());
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Tls => {
                let mut parameters = TlsParameters::builder(smtp.host.clone());
                if let Some(ca_file) = &smtp.ca_file {
                    let pem = std::fs::read(ca_file).map_err(|error| {
                        TransportError::Setup(format!(
                            "CEZBEK_SMTP_CA_FILE {}: {error}",
                            ca_file.display()
                        ))
                    })?;
                    parameters = parameters
                        .add_root_certificate(Certificate::from_pem(&pem).map_err(|e| setup(&e))?);
                }
                let parameters = parameters.build().map_err(|e| setup(&e))?;
                if smtp.tls == SmtpTls::StartTls {
                    Tls::Required(parameters)
                } else {
                    Tls::Wrapper(parameters)
                }
            }
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
                .port(smtp.port)
                .tls(tls)
                .timeout(Some(smtp.timeout));
        if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        Ok(Self::Smtp(builder.build()))
    }

    /// Hands one digest over. Returns once the relay accepted it (or the file is in place).
    pub async fn send(
        &self,
        message: &Message,
        partner: &PartnerCode,
        day: NaiveDate,
        msisdn: &Msisdn,
    ) -> Result<(), TransportError> {
        match self {
            Self::Smtp(transport) => match transport.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_permanent() => {
                    Err(TransportError::Permanent(error.to_string()))
                }
                Err(error) => Err(TransportError::Transient(error.to_string())),
            },
            Self::Files(outbox) => {
                let folder = outbox.join(partner.as_str()).join(day.to_string());
                // `+62…` is a fine file name; the plus is kept so the name is the msisdn.
                let path = folder.join(format!("{msisdn}.eml"));
                let temporary = folder.join(format!(".{msisdn}.eml.partial"));
                let formatted = message.formatted();
                let write = async {
                    tokio::fs::create_dir_all(&folder).await?;
                    tokio::fs::write(&temporary, &formatted).await?;
                    // Renamed last, so a reader never sees half a message.
                    tokio::fs::rename(&temporary, &path).await
                };
                write.await.map_err(|error| {
                    TransportError::Transient(format!("cannot write {}: {error}", path.display()))
                })
            }
        }
    }

    /// Where the file transport writes; None for SMTP.
    pub fn outbox(&self) -> Option<&std::path::Path> {
        match self {
            Self::Files(outbox) => Some(outbox),
            Self::Smtp(_) => None,
        }
    }
}
