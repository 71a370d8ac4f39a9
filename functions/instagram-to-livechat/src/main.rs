//! instagram-to-livechat: consumes the to-livechat FIFO queue. Wiring only; the worker is
//! `shared::relay::inbound::Inbound`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services =
        shared::app::lambda::services(shared::function::Function::InstagramToLivechat).await?;
    let worker = services.inbound();
    let (queue, dlq) = (
        services.to_livechat.clone(),
        services.to_livechat_dlq.clone(),
    );
    shared::app::lambda::run_worker(&services, &worker, queue, dlq).await
}
