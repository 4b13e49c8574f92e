//! The Lambda binary: hands the library's handler to the Lambda runtime.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    mbstack_core::lambda::run_json(|payload, aws| async move {
        mbstack_control::handle(payload, &aws).await
    })
    .await
}
