//! `igbridge serve`: every route on one local server, with both workers and the sweeper running
//! in-process — the same routers and handlers the Lambdas run.

use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use shared::app::Services;
use shared::clock::SystemClock;
use shared::config::{AwsResources, Config};

/// Options of `igbridge serve`.
#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// Use DynamoDB and SQS from the AWS configuration (AWS_ENDPOINT_URL for moto or LocalStack)
    /// instead of the embedded in-memory store and queues.
    #[arg(long)]
    aws: bool,
    /// How often the in-process sweeper runs, in seconds.
    #[arg(long, default_value_t = 3600)]
    sweep_every: u64,
    /// How often the in-process health check runs, in seconds (the first run is at start).
    #[arg(long, default_value_t = 3600)]
    health_every: u64,
}

/// How often `serve` looks for replays asked for (in Lambda, the lifecycle event triggers them).
const REPLAY_POLL: Duration = Duration::from_secs(5);

/// The whole app as one router.
pub fn router(services: &Services) -> axum::Router {
    shared::routes::HttpFunction::ALL
        .into_iter()
        .fold(axum::Router::new(), |all, f| {
            all.merge(shared::web::router(services, f))
        })
}

/// Starts the health check every `every` (and once now), and the replays it or the status page
/// ask for within seconds.
pub fn spawn_health(services: &Services, every: Duration) {
    let health = services.health();
    let replays = health.clone();
    tokio::spawn(async move {
        loop {
            let deadline = std::time::Instant::now() + every;
            if let Err(e) = health.run(deadline).await {
                tracing::error!(error = %e, "health check failed");
            }
            tokio::time::sleep(every).await;
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REPLAY_POLL).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            if let Err(e) = replays.replay_all_requested(deadline).await {
                tracing::error!(error = %e, "replay failed");
            }
        }
    });
}

/// Starts what runs beside the routes: both queue workers and the sweeper every `sweep_every`.
pub fn spawn_background(services: &Services, sweep_every: Duration) {
    let inbound: Arc<dyn shared::worker::JobHandler> = Arc::new(services.inbound());
    let outbound: Arc<dyn shared::worker::JobHandler> = Arc::new(services.outbound());
    tokio::spawn(shared::worker::poll_forever(
        inbound,
        services.to_livechat.clone(),
        services.to_livechat_dlq.clone(),
        services.clock.clone(),
    ));
    tokio::spawn(shared::worker::poll_forever(
        outbound,
        services.to_instagram.clone(),
        services.to_instagram_dlq.clone(),
        services.clock.clone(),
    ));
    let lifecycle = services.lifecycle();
    let clock = services.clock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(sweep_every).await;
            if let Err(e) = lifecycle.sweep(clock.now(), false).await {
                tracing::error!(error = %e, "sweep failed");
            }
        }
    });
}

/// Runs the server until Ctrl-C.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = crate::settings::load();
    let filled = if args.aws {
        Vec::new()
    } else {
        crate::settings::fill_local_defaults(&mut settings, &args.addr)?
    };
    let config = Config::from_settings(&settings)?;
    let services = if args.aws {
        let sdk = shared::aws::sdk_config().await;
        let resources = AwsResources::from_settings(&settings)?;
        Services::aws(&sdk, config, &resources)?
    } else {
        Services::memory(config, Arc::new(SystemClock))
    };
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    let base = services.config.public_base_url.clone();
    print_banner(&base, args.aws, &filled, listener.local_addr()?);

    spawn_background(&services, Duration::from_secs(args.sweep_every.max(1)));
    spawn_health(&services, Duration::from_secs(args.health_every.max(1)));
    axum::serve(listener, router(&services))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn print_banner(base: &str, aws: bool, filled: &[String], bound: std::net::SocketAddr) {
    println!(
        "igbridge is listening on http://{bound} ({})",
        if aws {
            "DynamoDB and SQS from the AWS configuration"
        } else {
            "embedded in-memory store and queues"
        }
    );
    if !filled.is_empty() {
        println!(
            "Local development values are in effect for: {}",
            filled.join(", ")
        );
        println!(
            "(set them in the environment or a .env file to use a real Meta app and LiveChat app)"
        );
    }
    println!();
    println!(
        "Meta app dashboard (Webhooks, Instagram object, fields messages, messaging_postbacks, message_reactions, messaging_seen, messaging_referral):"
    );
    println!("  Callback URL               {base}/webhooks/instagram");
    println!("  Verify token               the value of META_VERIFY_TOKEN");
    println!("  Facebook Login redirect    {base}/oauth/facebook/callback");
    println!("  Deauthorize callback       {base}/meta/deauthorize");
    println!("  Data deletion request URL  {base}/meta/data-deletion");
    println!("LiveChat Developer Console:");
    println!(
        "  Direct installation URL    {base}/oauth/livechat/callback   (also the redirect URI)"
    );
    println!(
        "  Chat webhooks              {base}/webhooks/livechat   (incoming_event, events_marked_as_seen, chat_deactivated; secret = LIVECHAT_WEBHOOK_SECRET)"
    );
    println!(
        "  App webhooks               {base}/webhooks/livechat/app?token=<LIVECHAT_APP_WEBHOOK_TOKEN>"
    );
    println!("  App settings (Agent App widget, placement settings)   {base}/status/widget");
    println!("Start an install:            {base}/install");
    println!("Status page (LiveChat admins): {base}/status");
}
