//! The Lambda binary: hands the library's handler to the Lambda runtime.

use mbstack_core::Tier;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    mbstack_core::lambda::run_tier(Tier::Data, |event, aws| async move {
        mbstack_data::handle(event, &aws).await
    })
    .await
}
