//! `igbridge provision`: the table and queues of template.yaml, on an emulator.

use clap::Args as ClapArgs;
use serde_json::json;

/// Options of `igbridge provision`.
#[derive(ClapArgs)]
pub struct Args {
    /// The emulator's endpoint; provisioning real AWS is `sam deploy`'s job.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: String,
    /// Table name.
    #[arg(long, default_value = "igbridge")]
    table: String,
    /// Queue name prefix: `<prefix>-to-livechat.fifo`, `<prefix>-to-instagram.fifo` and DLQs.
    #[arg(long, default_value = "igbridge")]
    prefix: String,
    /// Print JSON instead of environment lines.
    #[arg(long)]
    json: bool,
}

/// Creates everything (idempotent) and prints the settings to export.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = shared::aws::sdk_config_with_endpoint(&args.endpoint_url).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    shared::provision::create_table(&dynamo, &args.table).await?;
    let to_livechat =
        shared::provision::create_fifo_queue(&sqs, &format!("{}-to-livechat", args.prefix)).await?;
    let to_instagram =
        shared::provision::create_fifo_queue(&sqs, &format!("{}-to-instagram", args.prefix))
            .await?;
    let settings = [
        ("AWS_ENDPOINT_URL", args.endpoint_url.as_str()),
        ("TABLE_NAME", args.table.as_str()),
        ("TO_LIVECHAT_QUEUE_URL", to_livechat.url.as_str()),
        ("TO_LIVECHAT_DLQ_URL", to_livechat.dlq_url.as_str()),
        ("TO_INSTAGRAM_QUEUE_URL", to_instagram.url.as_str()),
        ("TO_INSTAGRAM_DLQ_URL", to_instagram.dlq_url.as_str()),
    ];
    if args.json {
        let map: serde_json::Map<_, _> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        eprintln!(
            "Provisioned table {} and queues on {}:",
            args.table, args.endpoint_url
        );
        for (k, v) in settings {
            println!("export {k}={v}");
        }
    }
    Ok(())
}
