//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a part; test code.

/// An HTTP client that sends `key` (API key or access token) as a bearer credential.
pub(crate) fn bearer_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
