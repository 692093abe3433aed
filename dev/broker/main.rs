//! The stack's broker: nisshi's own command line (`nisshi broker …`), built from the published
//! crates with the stack's patch to its in-memory storage (see `dynostore-fetch-by-key.patch`).

use std::process::{ExitCode, Termination as _};

use nisshi_broker::{TracingFormat, otel};
use nisshi_cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let _tracing = match otel::init(TracingFormat::Text) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error:?}");
            return ExitCode::FAILURE;
        }
    };
    match Cli::run().await {
        Ok(outcome) => outcome.error_code.report(),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
