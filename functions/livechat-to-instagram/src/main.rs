//! livechat-to-instagram: consumes the to-instagram FIFO queue. Wiring only; the worker is
//! `shared::relay::outbound::Outbound`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let services =
        shared::app::lambda::services(shared::function::Function::LivechatToInstagram).await?;
    let worker = services.outbound();
    let (queue, dlq) = (
        services.to_instagram.clone(),
        services.to_instagram_dlq.clone(),
    );
    shared::app::lambda::run_worker(&services, &worker, queue, dlq).await
}
