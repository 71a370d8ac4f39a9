//! `igbridge provision` against moto: creates what the app needs, twice without harm.

use testkit::moto;

use std::process::Command;

#[tokio::test]
async fn provision_creates_table_and_fifo_queues_idempotently() {
    let endpoint = moto::moto_endpoint();
    let table = moto::unique("cli-table");
    let prefix = moto::unique("cli");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_igbridge"))
            .args([
                "provision",
                "--json",
                "--table",
                &table,
                "--prefix",
                &prefix,
            ])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("igbridge runs")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(out["TABLE_NAME"], table.as_str());
    let q = out["TO_LIVECHAT_QUEUE_URL"].as_str().unwrap();
    assert!(q.ends_with(&format!("{prefix}-to-livechat.fifo")), "{q}");

    let sdk = moto::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(q)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(attrs[&A::FifoQueue], "true");
    assert_eq!(attrs[&A::VisibilityTimeout], "180");
    assert!(attrs[&A::RedrivePolicy].contains("to-livechat-dlq.fifo"));
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let t = dynamo
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert!(t.table.is_some());
}

#[test]
fn provision_without_an_endpoint_refuses() {
    let out = Command::new(env!("CARGO_BIN_EXE_igbridge"))
        .arg("provision")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--endpoint-url"));
}
