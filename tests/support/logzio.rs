//! The local Logz.io listener for integration tests: a thin layer over
//! [`webhook_relay::devtools::local_logzio`], which holds the logic.

pub use webhook_relay::devtools::local_logzio::*;

/// The token the test listener accepts.
pub const TEST_TOKEN: &str = "test-logzio-token";

/// Starts a local listener that accepts [`TEST_TOKEN`].
pub async fn start() -> LocalLogzio {
    LocalLogzio::start(TEST_TOKEN)
        .await
        .expect("starting the local Logz.io listener")
}
