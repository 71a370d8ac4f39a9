//! `igbridge redrive`: moves parked jobs from the dead-letter queues back to their work queues.
//! Unparsed bodies stay (there is nothing a worker could do with them); they are counted.

use std::time::Duration;

use clap::{Args as ClapArgs, ValueEnum};
use serde_json::json;
use shared::config::AwsResources;
use shared::jobs::Wire;
use shared::queue::{Queue, SqsQueue, queue_id};

/// Which queue.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Which {
    /// Instagram → LiveChat.
    ToLivechat,
    /// LiveChat → Instagram.
    ToInstagram,
}

/// Options of `igbridge redrive`.
#[derive(ClapArgs)]
pub struct Args {
    /// Only this queue (default: both).
    #[arg(long, value_enum)]
    queue: Option<Which>,
    /// Print the counts as JSON.
    #[arg(long)]
    json: bool,
}

/// Counts of one redrive.
#[derive(Default)]
struct Counts {
    moved: usize,
    kept: usize,
}

async fn redrive(queue: &dyn Queue, dlq: &dyn Queue) -> Result<Counts, Box<dyn std::error::Error>> {
    let mut counts = Counts::default();
    loop {
        let batch = dlq.receive(10, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            return Ok(counts);
        }
        for m in batch {
            // Sealed jobs move as they are: redrive never needs (or sees) a tenant's data.
            match Wire::decode(&m.body) {
                Ok(mut wire) if !wire.is_unparsed() => {
                    wire.set_parked(None);
                    let mut msg = wire.to_message();
                    // A fresh deduplication id, or SQS would drop a quick redrive as a duplicate.
                    msg.dedup_id = queue_id(&format!("{}:redrive:{}", msg.dedup_id, m.message_id));
                    queue.send(&[msg]).await?;
                    dlq.delete(&m.receipt).await?;
                    counts.moved += 1;
                }
                _ => counts.kept += 1,
            }
        }
    }
}

/// Runs the redrive and prints what moved.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let settings = crate::settings::load();
    let res = AwsResources::from_settings(&settings)?;
    let sdk = shared::aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut out = serde_json::Map::new();
    for (which, name, url, dlq) in [
        (
            Which::ToLivechat,
            "to-livechat",
            &res.to_livechat_queue_url,
            &res.to_livechat_dlq_url,
        ),
        (
            Which::ToInstagram,
            "to-instagram",
            &res.to_instagram_queue_url,
            &res.to_instagram_dlq_url,
        ),
    ] {
        if args.queue.is_some_and(|q| q != which) {
            continue;
        }
        // from_settings requires every queue.
        let (url, dlq) = (url.as_deref(), dlq.as_deref());
        let counts = redrive(
            &SqsQueue::new(sqs.clone(), url.expect("a queue URL")),
            &SqsQueue::new(sqs.clone(), dlq.expect("a DLQ URL")),
        )
        .await?;
        if !args.json {
            println!(
                "{name}: {} jobs moved back, {} unparsed bodies left for a human",
                counts.moved, counts.kept
            );
        }
        out.insert(
            name.into(),
            json!({"moved": counts.moved, "kept": counts.kept}),
        );
    }
    if args.json {
        println!("{}", serde_json::Value::Object(out));
    }
    Ok(())
}
