//! `igbridge sweep`: one sweep, as the schedule runs it, against the configured table.

use clap::Args as ClapArgs;
use shared::app::Services;
use shared::config::{AwsResources, Config};

/// Options of `igbridge sweep`.
#[derive(ClapArgs)]
pub struct Args {
    /// Sweep as if it were this time (RFC 3339), e.g. to check what a later run will delete.
    #[arg(long)]
    now: Option<String>,
    /// Report what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the sweep and prints the report.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let settings = crate::settings::load();
    let config = Config::from_settings(&settings)?;
    let resources = AwsResources::from_settings(&settings)?;
    let sdk = shared::aws::sdk_config().await;
    let services = Services::aws(&sdk, config, &resources)?;
    let now = match args.now {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| format!("--now: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let report = services.lifecycle().sweep(now, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}{} purge entries due: {} organizations and {} Facebook users purged, {} items deleted, {} deletion requests completed; revocations: {} done, {} still pending",
            if report.dry_run { "(dry run) " } else { "" },
            report.due,
            report.organizations,
            report.users,
            report.items_deleted,
            report.requests_completed,
            report.revocations_done,
            report.revocations_pending
        );
    }
    Ok(())
}
