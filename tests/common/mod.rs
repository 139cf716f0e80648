//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a part; test code.

/// An HTTP client that sends `key` (API key or access token) as a bearer credential.
pub(crate) fn bearer_client(key: &str) -> reqwest::Client {
    pysaas::testing::bearer_client(key).unwrap()
}

/// The one way the in-process tests assemble PySaaS: `app` started with `roles` by the public
/// test harness (API on port 0, fast maintenance, a temporary data dir), stopped on drop.
pub(crate) async fn spawn(app: pysaas::App, roles: pysaas::Roles) -> pysaas::testing::TestApp {
    pysaas::testing::spawn_app(app, roles).await.unwrap()
}

/// Only the API.
pub(crate) fn api_only() -> pysaas::Roles {
    pysaas::Roles {
        api: true,
        ..pysaas::Roles::default()
    }
}
