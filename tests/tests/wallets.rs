//! Every kind of wallet, phishing-resistant (PROTOCOL.md §1.1, 1.6): the SIWE form of a
//! device authorization against a real relay. One relay for the file, which takes
//! sign-ins for `chat.denet.test` and 127.0.0.1 only (`SIWE_DOMAINS`) and relayed keys
//! (`PEER_TOKEN`).

use denet_core::siwe::Auth;
use denet_e2e::Relay;
use denet_e2e::actors::{User, now_ms, test_auth};
use serde_json::{Value, json};

const TOKEN: &str = "wallets-peer-token";
const DAY: u64 = denet_core::limits::DAY_MS;

fn relay() -> &'static Relay {
    static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();
    let relay = RELAY.get_or_init(|| {
        let mut vars: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
        vars.extend([("PEER_TOKEN", TOKEN), ("SIWE_DOMAINS", "chat.denet.test,127.0.0.1")]);
        Relay::start_exactly(&vars)
    });
    relay.stop_at_exit();
    relay
}

fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
}

#[tokio::test]
async fn an_eoa_signs_in_with_siwe_and_the_relay_keeps_the_auth_readers_need() {
    let alice = User::new();
    let bundle = alice.bundle(30);
    assert_eq!(bundle["auth"], test_auth().to_json());
    assert_eq!(relay().put_bundle(&alice, &bundle).await.0, 201);
    let (status, listed) = relay().get(&format!("/v1/keys/{}", alice.wallet)).await;
    assert_eq!((status, &listed["keys"][0]), (200, &bundle), "listed with its auth, so any reader rebuilds the text");
    let key = bundle["sign_key"].as_str().unwrap();
    let (_, one) = relay().get(&format!("/v1/keys/{}?key={key}", alice.wallet)).await;
    assert_eq!(one["keys"][0]["auth"], bundle["auth"]);
}

/// A phishing page that gets a wallet to sign the old v1 text gains nothing: a relay
/// under `REQUIRE_SIWE` refuses a new bundle in that form.
#[tokio::test]
async fn attack_a_phishing_page_asks_for_the_v1_text_and_the_relay_refuses_it() {
    let victim = User::new();
    let answer = relay().put_bundle(&victim, &victim.bundle_v1(30)).await;
    assert_eq!(code(&answer), (400, Some("malformed")), "{}", answer.1);
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("SIWE"), "{}", answer.1);
    assert_eq!(relay().get(&format!("/v1/keys/{}", victim.wallet)).await.0, 404, "nothing stored");
}

/// v1 bundles relayed by a peer stay valid (stored, listed, and the same bundle PUT
/// again is `200`): only new registrations here must sign in.
#[tokio::test]
async fn a_v1_bundle_from_a_peer_is_taken_and_registers_again_as_it_was() {
    let carol = User::new();
    let v1 = carol.bundle_v1(30);
    let resp = Relay::client()
        .post(relay().url("/v1/relay/keys"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"relay": "peer", "hops": 1, "bundles": [v1], "revocations": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["stored"], 1);
    let (status, listed) = relay().get(&format!("/v1/keys/{}", carol.wallet)).await;
    assert_eq!((status, &listed["keys"][0]), (200, &v1));
    assert_eq!(relay().put_bundle(&carol, &v1).await.0, 200, "a stored v1 bundle registers again");
    // The wallet's next device signs in.
    let next = User { device: denet_e2e::actors::random_key(), ..carol };
    assert_eq!(relay().put_bundle(&next, &next.bundle(30)).await.0, 201);
}

/// The relay rebuilds the SIWE text from the bundle's fields: a signature of a text
/// whose fields differ (another expiry, device key, domain or chain) verifies for none.
#[tokio::test]
async fn attack_a_siwe_text_whose_fields_differ_from_the_bundle_is_refused() {
    let mallory = User::new();
    let now = now_ms();
    let signed = mallory.bundle_at(now, now + 30 * DAY);
    let alter = |field: &str, value: Value| {
        let mut b = signed.clone();
        match field {
            "domain" | "uri" | "chain_id" => b["auth"][field] = value,
            _ => b[field] = value,
        }
        b
    };
    for (what, bundle) in [
        ("expires_at", alter("expires_at", json!(now + 300 * DAY))),
        ("issued_at", alter("issued_at", json!(now - 1))),
        ("dh_key", alter("dh_key", json!(denet_core::encoding::b64(&[5u8; 32])))),
        ("domain", alter("domain", json!("127.0.0.1"))),
        ("uri", alter("uri", json!("https://chat.denet.test/other"))),
        ("chain_id", alter("chain_id", json!(10))),
    ] {
        let answer = relay().put_bundle(&mallory, &bundle).await;
        assert_eq!(code(&answer), (401, Some("invalid_signature")), "{what}: {}", answer.1);
    }
    assert_eq!(relay().put_bundle(&mallory, &signed).await.0, 201, "the text as signed registers");
}

#[tokio::test]
async fn a_sign_in_for_a_domain_outside_siwe_domains_is_forbidden() {
    let dave = User::new();
    let now = now_ms();
    let phished =
        Auth { domain: "chat.denet.test.evil.example".into(), uri: "https://evil.example".into(), chain_id: 1 };
    let answer = relay().put_bundle(&dave, &dave.bundle_with(now, now + DAY, Some(phished))).await;
    assert_eq!(code(&answer), (403, Some("forbidden")), "{}", answer.1);
    // 127.0.0.1 is listed without a port: any port of it is taken.
    let local = Auth { domain: "127.0.0.1:5173".into(), uri: "http://127.0.0.1:5173".into(), chain_id: 1 };
    assert_eq!(relay().put_bundle(&dave, &dave.bundle_with(now, now + DAY, Some(local))).await.0, 201);
}

#[tokio::test]
async fn an_expired_sign_in_is_a_stale_timestamp() {
    let erin = User::new();
    let now = now_ms();
    let answer = relay().put_bundle(&erin, &erin.bundle_at(now - 10 * DAY, now - DAY)).await;
    assert_eq!(code(&answer), (400, Some("stale_timestamp")), "{}", answer.1);
}
