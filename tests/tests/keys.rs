//! The key directory (PROTOCOL.md §1) against the real Worker and D1.

use denet_e2e::Relay;
use denet_e2e::actors::{User, now_ms, personal_sign};
use reqwest::Method;
use serde_json::json;

const DAY: u64 = denet_core::limits::DAY_MS;

fn relay() -> &'static Relay {
    Relay::shared()
}

#[tokio::test]
async fn a_bundle_is_stored_once_and_listed_with_its_signature() {
    let alice = User::new();
    let bundle = alice.bundle(30);
    assert_eq!(relay().put_bundle(&alice, &bundle).await.0, 201);
    assert_eq!(relay().put_bundle(&alice, &bundle).await.0, 200, "the same bundle again is idempotent");
    let (status, body) = relay().get(&format!("/v1/keys/{}", alice.wallet)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"wallet": alice.wallet.as_str(), "keys": [bundle]}));
}

#[tokio::test]
async fn wallets_in_paths_may_be_checksummed_or_uppercase_but_not_wrongly_checksummed() {
    let alice = User::new();
    relay().register(&alice).await;
    let upper = format!("0x{}", alice.wallet.as_str()[2..].to_ascii_uppercase());
    for form in [alice.wallet.checksummed(), upper] {
        let (status, body) = relay().get(&format!("/v1/keys/{form}")).await;
        assert_eq!(status, 200, "{form}");
        assert_eq!(body["wallet"], alice.wallet.as_str(), "answers in lowercase");
    }
    let checksummed = alice.wallet.checksummed();
    let flipped: String = checksummed
        .char_indices()
        .map(|(i, c)| {
            if i > 1 && c.is_ascii_alphabetic() {
                if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() }
            } else {
                c
            }
        })
        .collect();
    let (status, body) = relay().get(&format!("/v1/keys/{flipped}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed")), "{flipped}");
}

#[tokio::test]
async fn bad_bundles_get_their_codes() {
    let alice = User::new();
    let bob = User::new();
    let now = now_ms();
    let mut forged = alice.bundle(30);
    forged["wallet_sig"] = bob.bundle(30)["wallet_sig"].clone();
    let cases = [
        ("forged", forged, 401, "invalid_signature"),
        ("expired", alice.bundle_at(now - 10 * DAY, now - DAY), 400, "stale_timestamp"),
        ("issued in the future", alice.bundle_at(now + DAY, now + 2 * DAY), 400, "stale_timestamp"),
        ("over 400 days", alice.bundle_at(now, now + 401 * DAY), 400, "malformed"),
        ("another wallet's", bob.bundle(30), 400, "malformed"),
        (
            "unknown field",
            {
                let mut b = alice.bundle(30);
                b["extra"] = json!(1);
                b
            },
            400,
            "malformed",
        ),
    ];
    for (label, bundle, status, code) in cases {
        let (got, body) = relay().put_bundle(&alice, &bundle).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{label}: {body}");
    }
    assert_eq!(relay().get(&format!("/v1/keys/{}", alice.wallet)).await.0, 404, "nothing was stored");
}

#[tokio::test]
async fn a_sign_key_belongs_to_one_bundle_and_a_wallet_has_at_most_16() {
    let alice = User::new();
    relay().register(&alice).await;
    let other = alice.bundle(31);
    let (status, body) = relay().put_bundle(&alice, &other).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));

    for _ in 0..15 {
        let device = User { device: denet_e2e::actors::random_key(), ..clone_wallet(&alice) };
        relay().register(&device).await;
    }
    let seventeenth = User { device: denet_e2e::actors::random_key(), ..clone_wallet(&alice) };
    let (status, body) = relay().put_bundle(&seventeenth, &seventeenth.bundle(30)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let (_, listed) = relay().get(&format!("/v1/keys/{}", alice.wallet)).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 16);

    // Revoking one frees a place.
    let (status, _) = relay()
        .send_json(Method::POST, &format!("/v1/keys/{}/revoke", alice.wallet), &alice.revocation(alice.sign_key()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(relay().put_bundle(&seventeenth, &seventeenth.bundle(30)).await.0, 201);
}

fn clone_wallet(user: &User) -> User {
    User {
        wallet_key: user.wallet_key.clone(),
        wallet: user.wallet.clone(),
        device: user.device.clone(),
        dh_key: user.dh_key,
    }
}

#[tokio::test]
async fn revocation_keeps_the_first_and_shows_in_include_all() {
    let alice = User::new();
    relay().register(&alice).await;
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    let first = alice.revocation(alice.sign_key());
    let (status, body) = relay().send_json(Method::POST, &path, &first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, again) = relay().send_json(Method::POST, &path, &alice.revocation(alice.sign_key())).await;
    assert_eq!(status, 200);
    assert_eq!(again["revoked_at"], first["revoked_at"], "the first revocation stays");

    assert_eq!(relay().get(&format!("/v1/keys/{}", alice.wallet)).await.0, 404, "no active key left");
    let (status, all) = relay().get(&format!("/v1/keys/{}?include=all", alice.wallet)).await;
    assert_eq!(status, 200);
    let key = &all["keys"][0];
    assert_eq!(key["status"], "revoked");
    assert_eq!(key["revoked_at"], first["revoked_at"]);
    assert_eq!(key["revocation_sig"], first["wallet_sig"]);

    let (status, body) = relay().put_bundle(&alice, &alice.bundle(30)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "a revoked key never returns");
}

#[tokio::test]
async fn revoking_an_unknown_key_or_with_a_bad_signature_fails() {
    let alice = User::new();
    let path = format!("/v1/keys/{}/revoke", alice.wallet);
    let (status, _) = relay().send_json(Method::POST, &path, &alice.revocation(alice.sign_key())).await;
    assert_eq!(status, 404);
    relay().register(&alice).await;
    let mut bad = alice.revocation(alice.sign_key());
    bad["wallet_sig"] = personal_sign(&User::new().wallet_key, "something else").into();
    let (status, body) = relay().send_json(Method::POST, &path, &bad).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_signature")));
    let mut stale = alice.revocation(alice.sign_key());
    stale["revoked_at"] = json!(now_ms() - 3_600_000);
    let (status, body) = relay().send_json(Method::POST, &path, &stale).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("stale_timestamp")));
}

#[tokio::test]
async fn unknown_query_parameters_are_malformed() {
    let alice = User::new();
    for q in ["include=some", "include=all&include=all", "x=1"] {
        let (status, _) = relay().get(&format!("/v1/keys/{}?{q}", alice.wallet)).await;
        assert_eq!(status, 400, "{q}");
    }
}

/// PROTOCOL 1.3 §1.3: a bundle issued slightly ahead of the relay clock (a device
/// whose clock runs ahead) is one senders must seal to, so both lists show it; its
/// signatures are still refused until `issued_at`.
#[tokio::test]
async fn a_bundle_issued_slightly_ahead_is_listed_but_signs_nothing_before_it_is_issued() {
    let alice = User::new();
    let now = now_ms();
    let bundle = alice.bundle_at(now + 60_000, now + 30 * DAY);
    assert_eq!(relay().put_bundle(&alice, &bundle).await.0, 201);
    let (status, body) = relay().get(&format!("/v1/keys/{}", alice.wallet)).await;
    assert_eq!((status, &body["keys"]), (200, &json!([bundle])), "listed for senders: {body}");
    let (status, body) = relay().get(&format!("/v1/keys/{}?include=all", alice.wallet)).await;
    assert_eq!((status, body["keys"][0]["status"].as_str()), (200, Some("active")));
    let room = denet_e2e::actors::random_room();
    let (status, body) = relay().post(&alice.envelope(&room, b"too early")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
}

/// Attack (#21): `?include=all` listed every bundle a wallet ever kept (600 revoked
/// ones made every reader fetch them all). Now it answers 100 per page with `next`,
/// and a reader that needs one key's bundle asks for that one (`?key=`).
#[tokio::test]
async fn a_wallet_with_many_revoked_keys_is_listed_in_pages_and_one_key_is_found_alone() {
    let mut alice = User::new();
    let mut keys = Vec::new();
    for _ in 0..105 {
        alice.device = denet_e2e::actors::random_key();
        assert_eq!(relay().put_bundle(&alice, &alice.bundle(30)).await.0, 201);
        let revoke = format!("/v1/keys/{}/revoke", alice.wallet);
        let (status, body) = relay().send_json(Method::POST, &revoke, &alice.revocation(alice.sign_key())).await;
        assert_eq!(status, 200, "{body}");
        keys.push(alice.sign_key().to_b64());
    }
    keys.sort();
    let (status, first) = relay().get(&format!("/v1/keys/{}?include=all", alice.wallet)).await;
    assert_eq!(status, 200);
    let page: Vec<&str> = first["keys"].as_array().unwrap().iter().map(|k| k["sign_key"].as_str().unwrap()).collect();
    assert_eq!(page, keys[..100], "100 by sign_key");
    let next = first["next"].as_str().expect("more follow");
    let (status, second) = relay().get(&format!("/v1/keys/{}?include=all&after={next}", alice.wallet)).await;
    assert_eq!(status, 200);
    assert_eq!(second["keys"].as_array().unwrap().len(), 5);
    assert!(second.get("next").is_none(), "the last page: {second}");

    let (status, one) = relay().get(&format!("/v1/keys/{}?key={}", alice.wallet, keys[7])).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        (one["keys"][0]["sign_key"].as_str(), one["keys"][0]["status"].as_str()),
        (Some(keys[7].as_str()), Some("revoked"))
    );
    let bob = User::new();
    relay().register(&bob).await;
    let (status, _) = relay().get(&format!("/v1/keys/{}?key={}", alice.wallet, bob.sign_key().to_b64())).await;
    assert_eq!(status, 404, "another wallet's key is not alice's");
    let (status, body) = relay().get(&format!("/v1/keys/{}?key=short", alice.wallet)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed")));
}
