//! `cezbek <service>` runs one service; `cezbek dev` runs all seven in one process.
//!
//! The binary only reads configuration, installs logging and the signal handler, and hands
//! over to the service libraries' `run(config, shutdown)`.

mod events;

use std::process::ExitCode;

use cezbek_notifier::transport::TransportKind;
use cezbek_platform::config::LogConfig;
use cezbek_platform::{CancellationToken, ConfigError, Env, shutdown_on_signals, telemetry};
use clap::{Parser, Subcommand};
use tokio::task::JoinSet;

// mimalloc, keeping the memory it frees (see `cezbek_allocator`).
#[global_allocator]
static ALLOCATOR: cezbek_allocator::MiMalloc = cezbek_allocator::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "cezbek", version, about = "Streaming cashback and loyalty engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The signed publish API and S3 CSV ingestion.
    Ingestor,
    /// The consumer group that turns transactions into rewards.
    Rewarder,
    /// The read API: reward history, summaries, reports.
    Informer,
    /// The admin API for partners, campaigns, exclusions and tiers.
    Campaignex,
    /// Nightly digest emails: the service, or `notifier run` for a backfill.
    Notifier(NotifierArgs),
    /// Pays customers' cashback into their e-wallets through the cheapest provider.
    Payouts,
    /// The web console for the people who run Cezbek.
    Console,
    /// All seven services in one process, for the demo and local development.
    Dev,
    /// Signs a request to a partner API: prints the four X-Cezbek-* headers, one per line,
    /// ready for `curl -H @headers.txt`. The secret is read from an environment variable so it
    /// stays out of shell history and process lists.
    Sign(SignArgs),
    /// The event log as JSON lines: `tail` a topic, or `decode` raw messages on stdin.
    Events(EventsArgs),
    /// Prints a service's OpenAPI document (the one it serves at /openapi.json), e.g. to
    /// generate a client.
    Openapi {
        #[arg(value_enum)]
        service: ApiService,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ApiService {
    Ingestor,
    Informer,
    Campaignex,
    Payouts,
    Console,
}

#[derive(Debug, clap::Args)]
struct EventsArgs {
    #[command(subcommand)]
    action: EventsAction,
}

#[derive(Debug, Subcommand)]
enum EventsAction {
    /// Prints a topic's messages, decoded, as they arrive (reads partitions directly: no
    /// consumer group, nothing committed). Brokers and topics from CEZBEK_KAFKA_… variables.
    Tail {
        /// A topic name, or `transactions`, `rewards`, `dlq` for the configured ones.
        #[arg(long)]
        topic: String,
        /// Start at the beginning of each partition (default: only new messages).
        #[arg(long, conflicts_with = "since")]
        from_beginning: bool,
        /// Start at this time: RFC 3339 (`2026-12-01T00:00:00Z`) or a duration ago (`15m`).
        #[arg(long)]
        since: Option<String>,
        /// Only messages with this key (`PARTNER:+62…`).
        #[arg(long)]
        key: Option<String>,
        /// Stop once caught up with the end of each partition as it was at the start.
        #[arg(long)]
        until_end: bool,
    },
    /// Reads raw messages, one per line (as `kcat -e -f '%s\n'` prints them), and prints each
    /// decoded. Exit code 1 if any was not a Cezbek event.
    Decode,
}

#[derive(Debug, clap::Args)]
struct NotifierArgs {
    #[command(subcommand)]
    action: Option<NotifierAction>,
}

#[derive(Debug, Subcommand)]
enum NotifierAction {
    /// Sends one day's digests that were not sent yet, then exits (a backfill). Waits while
    /// another run of the same partner-day holds its lock. Exit code 1 if any was refused.
    Run {
        /// The partner-local day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Only this partner; every partner in etcd when left out.
        #[arg(long)]
        partner: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// The partner code.
    #[arg(long)]
    partner: String,
    /// The id of the partner key that signs.
    #[arg(long)]
    key_id: String,
    /// The environment variable holding the key's secret (base64).
    #[arg(long, default_value = "CEZBEK_SIGNING_SECRET")]
    secret_env: String,
    #[arg(long, default_value = "POST")]
    method: String,
    /// The request target: the path, with `?query` when there is one.
    #[arg(long, default_value = "/v1/transactions")]
    path: String,
    /// A file with the exact body to send; `-` reads standard input. No body when left out.
    #[arg(long)]
    body: Option<std::path::PathBuf>,
    /// Unix seconds to sign with; now when left out.
    #[arg(long)]
    timestamp: Option<i64>,
}

/// `cezbek sign`: what a partner's client computes for each request.
fn sign(args: &SignArgs) -> Result<String, String> {
    use cezbek_platform::partner_auth;
    use std::io::Read;
    let secret = std::env::var(&args.secret_env)
        .map_err(|_| format!("set {} to the key's secret (base64)", args.secret_env))?;
    let secret = partner_auth::decode_secret(&secret)
        .ok_or_else(|| format!("{} is not base64", args.secret_env))?;
    let body = match &args.body {
        None => Vec::new(),
        Some(path) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).map_err(|e| format!("stdin: {e}"))?;
            body
        }
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    let timestamp = match args.timestamp {
        Some(timestamp) => timestamp,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_secs()
            .try_into()
            .map_err(|_| "the clock is past the year 292 billion".to_owned())?,
    };
    let method = args.method.to_ascii_uppercase();
    let signature = partner_auth::sign(&secret, &method, &args.path, timestamp, &body);
    Ok(format!(
        "X-Cezbek-Partner: {}\nX-Cezbek-Key-Id: {}\nX-Cezbek-Timestamp: {timestamp}\nX-Cezbek-Signature: {signature}\n",
        args.partner, args.key_id
    ))
}

/// `cezbek events`: the exit code, or why it could not run.
fn run_events(action: &EventsAction) -> Result<ExitCode, String> {
    let stdout = &mut std::io::stdout().lock();
    match action {
        EventsAction::Decode => {
            let failed = events::decode_stream(&mut std::io::stdin().lock(), stdout)?;
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        EventsAction::Tail { topic, from_beginning, since, key, until_end } => {
            let mut env = Env::from_process();
            let kafka = cezbek_platform::config::KafkaConfig::from_env(&mut env, "cezbek-events");
            let kafka = env.finish(kafka).map_err(|error| error.to_string())?;
            let start = match (since, from_beginning) {
                (Some(since), _) => events::Start::Since(parse_since(since)?),
                (None, true) => events::Start::Beginning,
                (None, false) => events::Start::End,
            };
            let tail = events::Tail {
                topic: topic.clone(),
                start,
                key: key.clone(),
                until_end: *until_end,
            };
            events::tail(&kafka, &tail, stdout)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(time.to_utc());
    }
    let ago = cezbek_platform::config::parse_duration(raw).map_err(|reason| {
        format!("--since {raw:?} is neither an RFC 3339 time nor a duration ({reason})")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|error| format!("--since: {error}"))?;
    Ok(chrono::Utc::now() - ago)
}

/// The configuration of what `command` runs; `dev` reads all seven, so every problem is
/// reported at once.
enum Service {
    // Boxed: the largest configuration, and it is read once.
    Ingestor(Box<cezbek_ingestor::Config>),
    Rewarder(cezbek_rewarder::Config),
    Informer(cezbek_informer::Config),
    Campaignex(cezbek_campaignex::Config),
    Notifier(cezbek_notifier::Config),
    NotifierBackfill(cezbek_notifier::Config, cezbek_notifier::Backfill),
    Payouts(cezbek_payouts::Config),
    Console(cezbek_console::Config),
    Dev(Box<DevConfigs>),
}

struct DevConfigs {
    ingestor: cezbek_ingestor::Config,
    rewarder: cezbek_rewarder::Config,
    informer: cezbek_informer::Config,
    campaignex: cezbek_campaignex::Config,
    notifier: cezbek_notifier::Config,
    payouts: cezbek_payouts::Config,
    console: cezbek_console::Config,
}

fn read_config(command: &Command) -> Result<(LogConfig, Service), ConfigError> {
    let mut env = Env::from_process();
    let log = LogConfig::from_env(&mut env);
    let service = match command {
        Command::Ingestor => {
            Service::Ingestor(Box::new(cezbek_ingestor::Config::from_env(&mut env)))
        }
        Command::Rewarder => Service::Rewarder(cezbek_rewarder::Config::from_env(&mut env)),
        Command::Informer => Service::Informer(cezbek_informer::Config::from_env(&mut env)),
        Command::Campaignex => Service::Campaignex(cezbek_campaignex::Config::from_env(&mut env)),
        Command::Notifier(args) => {
            let config = cezbek_notifier::Config::from_env(&mut env, TransportKind::Smtp);
            match &args.action {
                None => Service::Notifier(config),
                Some(NotifierAction::Run { date, partner }) => {
                    match cezbek_notifier::Backfill::parse(date, partner.as_deref()) {
                        Ok(backfill) => Service::NotifierBackfill(config, backfill),
                        Err(reason) => {
                            env.problem("cezbek notifier run", reason);
                            Service::Notifier(config)
                        }
                    }
                }
            }
        }
        Command::Payouts => Service::Payouts(cezbek_payouts::Config::from_env(&mut env)),
        Command::Console => Service::Console(cezbek_console::Config::from_env(&mut env)),
        Command::Sign(_) | Command::Events(_) | Command::Openapi { .. } => {
            unreachable!("sign, events and openapi read no service configuration")
        }
        Command::Dev => Service::Dev(Box::new(DevConfigs {
            ingestor: cezbek_ingestor::Config::from_env(&mut env),
            rewarder: cezbek_rewarder::Config::from_env(&mut env),
            informer: cezbek_informer::Config::from_env(&mut env),
            campaignex: cezbek_campaignex::Config::from_env(&mut env),
            // Under `cezbek dev` digests are .eml files to open, unless SMTP is asked for.
            notifier: cezbek_notifier::Config::from_env(&mut env, TransportKind::Files),
            payouts: cezbek_payouts::Config::from_env(&mut env),
            console: cezbek_console::Config::from_env(&mut env),
        })),
    };
    env.finish((log, service))
}

fn main() -> ExitCode {
    cezbek_allocator::keep_freed_memory();
    let cli = Cli::parse();
    if let Command::Openapi { service } = cli.command {
        let document = match service {
            ApiService::Ingestor => cezbek_ingestor::openapi_document().to_pretty_json(),
            ApiService::Informer => cezbek_informer::openapi_document().to_pretty_json(),
            ApiService::Campaignex => cezbek_campaignex::openapi_document().to_pretty_json(),
            ApiService::Payouts => cezbek_payouts::api::document().to_pretty_json(),
            ApiService::Console => cezbek_console::openapi::document().to_pretty_json(),
        };
        return match document {
            Ok(json) => {
                use std::io::Write;
                match writeln!(std::io::stdout().lock(), "{json}") {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(error) => {
                eprintln!("cezbek openapi: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Events(args) = &cli.command {
        return match run_events(&args.action) {
            Ok(code) => code,
            Err(reason) => {
                eprintln!("cezbek events: {reason}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Sign(args) = &cli.command {
        return match sign(args) {
            Ok(headers) => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(headers.as_bytes()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(reason) => {
                eprintln!("cezbek sign: {reason}");
                ExitCode::from(2)
            }
        };
    }
    let (log, service) = match read_config(&cli.command) {
        Ok(read) => read,
        Err(error) => {
            eprintln!("cezbek: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init_tracing(&log) {
        eprintln!("cezbek: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cezbek: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(service)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cezbek stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// The service's name and its error's message (which already carries its causes).
fn named(service: &str, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{service}: {error}")
}

async fn run(service: Service) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signals();
    match service {
        Service::Ingestor(config) => {
            cezbek_ingestor::run(*config, shutdown).await.map_err(|e| named("ingestor", e))
        }
        Service::Rewarder(config) => {
            cezbek_rewarder::run(config, shutdown).await.map_err(|e| named("rewarder", e))
        }
        Service::Informer(config) => {
            cezbek_informer::run(config, shutdown).await.map_err(|e| named("informer", e))
        }
        Service::Campaignex(config) => {
            cezbek_campaignex::run(config, shutdown).await.map_err(|e| named("campaignex", e))
        }
        Service::Notifier(config) => {
            cezbek_notifier::run(config, shutdown).await.map_err(|e| named("notifier", e))
        }
        Service::NotifierBackfill(config, backfill) => {
            let reports = cezbek_notifier::backfill(config, backfill.clone(), shutdown)
                .await
                .map_err(|e| named("notifier run", e))?;
            print_backfill(&backfill, &reports)
        }
        Service::Payouts(config) => {
            cezbek_payouts::run(config, shutdown).await.map_err(|e| named("payouts", e))
        }
        Service::Console(config) => {
            cezbek_console::run(config, shutdown).await.map_err(|e| named("console", e))
        }
        Service::Dev(configs) => run_all(*configs, shutdown).await,
    }
}

/// One line per partner on standard output; an error if any digest was refused, so a
/// scripted backfill notices.
fn print_backfill(
    backfill: &cezbek_notifier::Backfill,
    reports: &[(impl std::fmt::Display, cezbek_notifier::sender::RunReport)],
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for (partner, report) in reports {
        writeln!(stdout, "{partner} {}: {report}", backfill.day)?;
    }
    let failed: u64 = reports.iter().map(|(_, report)| report.failed).sum();
    if failed > 0 {
        anyhow::bail!(
            "{failed} digests were refused by the relay; they stay pending for a later run"
        );
    }
    let unbuildable: usize = reports.iter().map(|(_, report)| report.unbuildable.len()).sum();
    if unbuildable > 0 {
        anyhow::bail!(
            "{unbuildable} digests could not be built (the reasons are above); the others were sent"
        );
    }
    Ok(())
}

/// Runs the seven services side by side. When one stops with an error the others are asked
/// to stop too, so `cezbek dev` never limps on half-alive.
async fn run_all(configs: DevConfigs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut services = JoinSet::new();
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_ingestor::run(configs.ingestor, token).await.map_err(|e| named("ingestor", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_rewarder::run(configs.rewarder, token).await.map_err(|e| named("rewarder", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_informer::run(configs.informer, token).await.map_err(|e| named("informer", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_campaignex::run(configs.campaignex, token).await.map_err(|e| named("campaignex", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_notifier::run(configs.notifier, token).await.map_err(|e| named("notifier", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_payouts::run(configs.payouts, token).await.map_err(|e| named("payouts", e))
    });
    let token = shutdown.clone();
    services.spawn(async move {
        cezbek_console::run(configs.console, token).await.map_err(|e| named("console", e))
    });
    tracing::info!("cezbek dev: all seven services started");
    let mut first_error = None;
    while let Some(joined) = services.join_next().await {
        let outcome = joined
            .map_err(|panic| anyhow::anyhow!("a service task panicked: {panic}"))
            .and_then(|result| result);
        if let Err(error) = outcome {
            tracing::error!(%error, "service stopped; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}
