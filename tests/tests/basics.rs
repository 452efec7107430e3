//! The relay answers on the real runtime: health, unknown routes, wrong methods.

use denet_e2e::Relay;
use serde_json::Value;

async fn get(path: &str) -> (u16, Value) {
    let resp = reqwest::get(Relay::shared().url(path)).await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn health_reports_status_version_and_relay() {
    let (status, body) = get("/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["relay"], "denet-local");
}

#[tokio::test]
async fn api_answers_may_not_run_be_framed_or_be_sniffed() {
    for path in ["/v1/health", "/v1/nothing"] {
        let resp = reqwest::get(Relay::shared().url(path)).await.expect("request");
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(header("content-security-policy"), "default-src 'none'; frame-ancestors 'none'", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_are_not_found_in_the_error_shape() {
    for path in ["/nothing-here", "/v1", "/v1/healthz", "/v2/health", "/v1/health/extra"] {
        let (status, body) = get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn wrong_methods_are_method_not_allowed() {
    let client = reqwest::Client::new();
    for method in [reqwest::Method::POST, reqwest::Method::DELETE, reqwest::Method::PUT] {
        let resp = client.request(method.clone(), Relay::shared().url("/v1/health")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn a_panic_answers_internal_json_and_the_relay_recovers() {
    let relay = tokio::task::spawn_blocking(|| Relay::start_with(&[("DENET_TEST_ROUTES", "1")])).await.unwrap();
    let resp = reqwest::get(relay.url("/v1/__panic")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let body: Value = resp.json().await.expect("the §6 JSON, not the runtime's text");
    assert_eq!(body, serde_json::json!({"error": {"code": "internal", "message": "internal error"}}));
    let (status, health) = relay.get("/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "the instance was rebuilt");
    tokio::task::spawn_blocking(move || drop(relay)).await.unwrap();
}

#[tokio::test]
async fn test_routes_are_off_by_default() {
    for path in ["/v1/__panic", "/v1/__metrics"] {
        let (status, body) = get(path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    // The fault switch of the mesh tests: no peer can make a production relay answer `internal`.
    let resp = Relay::client()
        .post(Relay::shared().url("/v1/__faults"))
        .json(&serde_json::json!({"relay_internal": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn the_chat_page_and_the_sdk_are_served_at_the_root() {
    let resp = reqwest::get(Relay::shared().url("/")).await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("Connect wallet"));
    let sdk = reqwest::get(Relay::shared().url("/sdk/index.js")).await.expect("request");
    assert_eq!(sdk.status().as_u16(), 200);
    assert!(sdk.text().await.unwrap().contains("export class Client"));
}
