//! A barrage of hostile requests and frames, each with its exact status and §6
//! code; afterwards the relay still serves, and what it acknowledged before is intact.

use denet_e2e::Relay;
use denet_e2e::actors::{User, anonymous_envelope, envelope_id, now_ms, random_key, random_room, sign_envelope};
use denet_e2e::ws::Socket;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn relay() -> &'static Relay {
    Relay::shared()
}

struct Case {
    label: String,
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn case(label: &str, method: &str, path: &str, body: Option<Vec<u8>>, status: u16, code: &'static str) -> Case {
    let headers = if body.is_some() { vec![("content-type".into(), "application/json".into())] } else { vec![] };
    Case { label: label.into(), method: method.parse().unwrap(), path: path.into(), headers, body, status, code }
}

fn post(label: &str, body: Value, status: u16, code: &'static str) -> Case {
    case(label, "POST", "/v1/messages", Some(body.to_string().into_bytes()), status, code)
}

fn raw(label: &str, bytes: &[u8], status: u16, code: &'static str) -> Case {
    case(label, "POST", "/v1/messages", Some(bytes.to_vec()), status, code)
}

fn without(v: &Value, field: &str) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove(field);
    v
}

fn with(v: &Value, field: &str, value: Value) -> Value {
    let mut v = v.clone();
    v[field] = value;
    v
}

async fn send(c: &Case) -> (u16, Value) {
    let mut req = Relay::client().request(c.method.clone(), relay().url(&c.path));
    for (k, v) in &c.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(body) = &c.body {
        req = req.body(body.clone());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{}: {e}", c.label));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text:?}", c.label));
    (status, body)
}

fn http_cases(alice: &User, bob: &User) -> Vec<Case> {
    let room = random_room();
    let good = anonymous_envelope(&room, b"hello");
    let wallet = alice.wallet.to_string();
    let mut wrong_checksum = alice.wallet.checksummed();
    let flip = wrong_checksum.char_indices().skip(2).find(|(_, c)| c.is_ascii_alphabetic()).unwrap().0;
    let flipped = if wrong_checksum.as_bytes()[flip].is_ascii_uppercase() {
        wrong_checksum[flip..=flip].to_ascii_lowercase()
    } else {
        wrong_checksum[flip..=flip].to_ascii_uppercase()
    };
    wrong_checksum.replace_range(flip..=flip, &flipped);
    let b64_of = |n: usize| denet_core::encoding::b64(&vec![7u8; n]);
    let pages = format!("/v1/rooms/{room}/messages");
    let inbox = format!("/v1/inbox/{wallet}/messages");

    let mut cases = vec![
        raw("truncated JSON", b"{", 400, "malformed"),
        raw("empty body", b"", 400, "malformed"),
        raw("JSON null", b"null", 400, "malformed"),
        raw("JSON array", b"[]", 400, "malformed"),
        raw("JSON string", b"\"envelope\"", 400, "malformed"),
        raw("deeply nested arrays", "[".repeat(20_000).as_bytes(), 400, "malformed"),
        raw("deeply nested objects", "{\"a\":".repeat(5_000).as_bytes(), 400, "malformed"),
        raw("invalid UTF-8", b"{\"v\":1,\"to\":\"\xff\xfe\"}", 400, "malformed"),
        raw("raw NUL byte", b"{\"v\":1\x00}", 400, "malformed"),
        post("NUL in a string", with(&good, "to", json!("\u{0}")), 400, "malformed"),
        post("unknown field", with(&good, "extra", json!(1)), 400, "malformed"),
        post("v = 2", with(&good, "v", json!(2)), 400, "malformed"),
        post("v as a string", with(&good, "v", json!("1")), 400, "malformed"),
        post("ts as a string", with(&good, "ts", json!("1764100005000")), 400, "malformed"),
        post("negative ts", with(&good, "ts", json!(-5)), 400, "malformed"),
        post("fractional ts", with(&good, "ts", json!(1.5)), 400, "malformed"),
        post("from as a number", with(&good, "from", json!(5)), 400, "malformed"),
        post("key as a number", with(&good, "key", json!(5)), 400, "malformed"),
        post("key of 31 bytes", with(&good, "key", json!(b64_of(31))), 400, "malformed"),
        post("key of 33 bytes", with(&good, "key", json!(b64_of(33))), 400, "malformed"),
        post("sig of 63 bytes", with(&good, "sig", json!(b64_of(63))), 400, "malformed"),
        post("sig not base64", with(&good, "sig", json!("!!!!")), 400, "malformed"),
        post("body with padding", with(&good, "body", json!("aGk=")), 400, "malformed"),
        post("body in standard base64", with(&good, "body", json!("a+/a")), 400, "malformed"),
        post("to with a wrong checksum", with(&good, "to", json!(wrong_checksum.clone())), 400, "malformed"),
        post("to as an uppercase room", with(&good, "to", json!(room.to_ascii_uppercase())), 400, "malformed"),
        post("to as a short room", with(&good, "to", json!(&room[1..])), 400, "malformed"),
        post("to empty", with(&good, "to", json!("")), 400, "malformed"),
        post(
            "from in uppercase",
            with(&good, "from", json!(wallet.to_ascii_uppercase().replacen("0X", "0x", 1))),
            400,
            "malformed",
        ),
        post("ts far in the past", sign_envelope(&random_key(), &room, None, 1, b"old"), 400, "stale_timestamp"),
        post(
            "ts a day ahead",
            sign_envelope(&random_key(), &room, None, now_ms() + denet_core::limits::DAY_MS, b"x"),
            400,
            "stale_timestamp",
        ),
        post("tampered body", with(&good, "body", json!("aGVsbG8h")), 401, "invalid_signature"),
        post(
            "another key's signature",
            with(&good, "key", anonymous_envelope(&room, b"x")["key"].clone()),
            401,
            "invalid_signature",
        ),
        post("body over MAX_BODY_BYTES", anonymous_envelope(&room, &vec![1u8; 65_537]), 413, "payload_too_large"),
        post(
            "named by a stranger's key",
            sign_envelope(&random_key(), &room, Some(&alice.wallet), now_ms(), b"x"),
            403,
            "forbidden",
        ),
        post(
            "named by another wallet's key",
            sign_envelope(&bob.device, &room, Some(&alice.wallet), now_ms(), b"x"),
            403,
            "forbidden",
        ),
        raw("body over MAX_REQUEST_BYTES", &vec![b' '; 140_000], 413, "payload_too_large"),
        case(
            "a query on the post route",
            "POST",
            "/v1/messages?x=1",
            Some(good.to_string().into_bytes()),
            400,
            "malformed",
        ),
        case("a query on health", "GET", "/v1/health?verbose=1", None, 400, "malformed"),
        case(
            "a query on a bundle PUT",
            "PUT",
            &format!("/v1/keys/{wallet}?x=1"),
            Some(alice.bundle(30).to_string().into_bytes()),
            400,
            "malformed",
        ),
        case(
            "oversized body before a bad path wallet",
            "PUT",
            "/v1/keys/0xZZ",
            Some(vec![b' '; 140_000]),
            413,
            "payload_too_large",
        ),
        case("GET on the post route", "GET", "/v1/messages", None, 405, "method_not_allowed"),
        case("PUT on the post route", "PUT", "/v1/messages", None, 405, "method_not_allowed"),
        case("DELETE on health", "DELETE", "/v1/health", None, 405, "method_not_allowed"),
        case("POST on a page", "POST", &pages, None, 405, "method_not_allowed"),
        case("unknown route", "GET", "/v1/unknown", None, 404, "not_found"),
        case("another version", "GET", "/v2/health", None, 404, "not_found"),
        case("trailing slash", "GET", "/v1/health/", None, 404, "not_found"),
        case("rooms without id", "GET", "/v1/rooms", None, 404, "not_found"),
        case("no such asset or route", "GET", "/nothing-here", None, 404, "not_found"),
        case("plain request to a socket", "GET", &format!("/v1/rooms/{room}/ws"), None, 426, "upgrade_required"),
        case(
            "uppercase room in a path",
            "GET",
            &format!("/v1/rooms/{}/messages", room.to_ascii_uppercase()),
            None,
            400,
            "malformed",
        ),
        case("short room in a path", "GET", "/v1/rooms/abc/messages", None, 400, "malformed"),
        case("non-hex wallet", "GET", "/v1/keys/0xZZ", None, 400, "malformed"),
        case("wrong-checksum wallet", "GET", &format!("/v1/keys/{wrong_checksum}"), None, 400, "malformed"),
        case("include=everything", "GET", &format!("/v1/keys/{wallet}?include=everything"), None, 400, "malformed"),
        case("unknown key listing", "GET", &format!("/v1/keys/{}", User::new().wallet), None, 404, "not_found"),
        case("empty bundle", "PUT", &format!("/v1/keys/{wallet}"), Some(b"{}".to_vec()), 400, "malformed"),
        case(
            "another wallet's bundle",
            "PUT",
            &format!("/v1/keys/{wallet}"),
            Some(bob.bundle(30).to_string().into_bytes()),
            400,
            "malformed",
        ),
        case(
            "short wallet_sig",
            "PUT",
            &format!("/v1/keys/{wallet}"),
            Some(with(&alice.bundle(30), "wallet_sig", json!("0x12")).to_string().into_bytes()),
            400,
            "malformed",
        ),
        case(
            "a bundle in the v1 text form (REQUIRE_SIWE)",
            "PUT",
            &format!("/v1/keys/{wallet}"),
            Some(alice.bundle_v1(30).to_string().into_bytes()),
            400,
            "malformed",
        ),
        case(
            "a wallet_sig over 4 KiB",
            "PUT",
            &format!("/v1/keys/{wallet}"),
            Some(
                with(&alice.bundle(30), "wallet_sig", json!(format!("0x{}", "ab".repeat(4097))))
                    .to_string()
                    .into_bytes(),
            ),
            400,
            "malformed",
        ),
        case(
            "revoking an unknown key",
            "POST",
            &format!("/v1/keys/{}/revoke", bob.wallet),
            Some(bob.revocation(random_key_sign()).to_string().into_bytes()),
            404,
            "not_found",
        ),
        case("inbox without a signature", "GET", &inbox, None, 401, "invalid_signature"),
    ];
    for field in ["v", "to", "ts", "from", "key", "body", "sig"] {
        cases.push(post(&format!("missing {field}"), without(&good, field), 400, "malformed"));
    }
    // Malformed SIWE `auth` objects (§1.1): each refused before any signature check.
    let keys = format!("/v1/keys/{wallet}");
    for (label, auth) in [
        ("auth not an object", json!("chat.denet.test")),
        ("auth null", Value::Null),
        (
            "auth with a statement of its own",
            json!({"domain": "a.test", "uri": "https://a.test", "chain_id": 1, "statement": "x"}),
        ),
        ("auth without chain_id", json!({"domain": "a.test", "uri": "https://a.test"})),
        ("auth chain_id 0", json!({"domain": "a.test", "uri": "https://a.test", "chain_id": 0})),
        ("auth chain_id as text", json!({"domain": "a.test", "uri": "https://a.test", "chain_id": "1"})),
        (
            "auth chain_id past 2^53",
            json!({"domain": "a.test", "uri": "https://a.test", "chain_id": 9007199254740992u64}),
        ),
        ("auth domain in capitals", json!({"domain": "A.test", "uri": "https://a.test", "chain_id": 1})),
        (
            "auth domain with a line break",
            json!({"domain": "a.test\nURI: https://evil.test", "uri": "https://a.test", "chain_id": 1}),
        ),
        ("auth uri with a space", json!({"domain": "a.test", "uri": "https://a.test/ x", "chain_id": 1})),
        ("auth uri without a scheme", json!({"domain": "a.test", "uri": "a.test", "chain_id": 1})),
        ("auth uri with a line break", json!({"domain": "a.test", "uri": "https://a.test\nVersion: 2", "chain_id": 1})),
    ] {
        let body = with(&alice.bundle(30), "auth", auth).to_string().into_bytes();
        cases.push(case(label, "PUT", &keys, Some(body), 400, "malformed"));
    }
    for (label, query) in [
        ("negative after", "after=-1"),
        ("fractional after", "after=1.5"),
        ("non-numeric after", "after=abc"),
        ("huge after", "after=99999999999999999999999"),
        ("limit 0", "limit=0"),
        ("limit 501", "limit=501"),
        ("negative limit", "limit=-1"),
        ("wait 31", "wait=31"),
        ("after with since", "after=1&since=1"),
        ("repeated after", "after=1&after=2"),
        ("unknown parameter", "foo=bar"),
        ("parameter without value", "after"),
        ("empty pair", "after=1&&limit=2"),
    ] {
        cases.push(case(label, "GET", &format!("{pages}?{query}"), None, 400, "malformed"));
    }
    for c in [
        case(
            "text/plain body",
            "POST",
            "/v1/messages",
            Some(good.to_string().into_bytes()),
            415,
            "unsupported_media_type",
        ),
        case(
            "no content type",
            "POST",
            "/v1/messages",
            Some(good.to_string().into_bytes()),
            415,
            "unsupported_media_type",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (i, mut c) = c;
        c.headers = if i == 0 { vec![("content-type".into(), "text/plain".into())] } else { vec![] };
        cases.push(c);
    }
    // Signed inbox reads with one bad part each.
    let now = now_ms();
    let good_headers = alice.signed_headers("GET", &inbox, now);
    let bad_header = |name: &str, value: &str| -> Vec<(String, String)> {
        good_headers
            .iter()
            .map(|(k, v)| (k.to_string(), if *k == name { value.to_owned() } else { v.clone() }))
            .collect()
    };
    for (label, headers, status, code) in [
        ("Denet-Key of 31 bytes", bad_header("Denet-Key", &b64_of(31)), 400, "malformed"),
        ("Denet-Time not a number", bad_header("Denet-Time", "soon"), 400, "malformed"),
        ("Denet-Signature of 63 bytes", bad_header("Denet-Signature", &b64_of(63)), 400, "malformed"),
        ("Denet-Wallet not a wallet", bad_header("Denet-Wallet", "0x1"), 400, "malformed"),
        ("stale Denet-Time", alice_headers_at(alice, &inbox, now - 3_600_000), 400, "stale_timestamp"),
        ("a signature over another path", alice_headers_at_path(alice, "/v1/health", now), 401, "invalid_signature"),
        (
            "another wallet's key",
            bob.signed_headers("GET", &inbox, now).into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            403,
            "forbidden",
        ),
    ] {
        let mut c = case(label, "GET", &inbox, None, status, code);
        c.headers = headers;
        cases.push(c);
    }
    let mut both =
        case("headers and query credentials", "GET", &format!("{inbox}?denet_time=1"), None, 400, "malformed");
    both.headers = good_headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    cases.push(both);
    cases
}

fn random_key_sign() -> denet_core::SignKey {
    denet_core::SignKey(random_key().verifying_key().to_bytes())
}

fn alice_headers_at(alice: &User, path: &str, time: u64) -> Vec<(String, String)> {
    alice.signed_headers("GET", path, time).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn alice_headers_at_path(alice: &User, signed: &str, time: u64) -> Vec<(String, String)> {
    let mut h = alice_headers_at(alice, signed, time);
    h.retain(|(k, _)| k != "Denet-Wallet");
    h.push(("Denet-Wallet".into(), alice.wallet.to_string()));
    h
}

#[tokio::test]
async fn hostile_input_gets_exact_answers_and_loses_nothing() {
    let (alice, bob) = (User::new(), User::new());
    relay().register(&alice).await;
    relay().register(&bob).await;
    let room = random_room();
    let mut acked = Vec::new();
    for i in 0..5 {
        let env = anonymous_envelope(&room, format!("before {i}").as_bytes());
        assert_eq!(relay().post(&env).await.0, 201);
        acked.push(envelope_id(&env));
    }

    let cases = http_cases(&alice, &bob);
    let mut failures = Vec::new();
    for c in &cases {
        let (status, body) = send(c).await;
        assert!(status < 500, "{}: {status} {body}", c.label);
        if (status, body["error"]["code"].as_str()) != (c.status, Some(c.code)) {
            failures.push(format!("{}: got {status} {body}, want {} {}", c.label, c.status, c.code));
        }
    }
    // A chunked body (no Content-Length) over the limit is cut off while reading.
    let chunks = futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 4096])));
    let resp = Relay::client()
        .post(relay().url("/v1/messages"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "chunked body over MAX_REQUEST_BYTES");

    let frames = frame_cases(&room).await;
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(cases.len() + 1 + frames >= 60, "at least 60 hostile inputs");

    // Still serving, and nothing acknowledged was lost.
    let after = anonymous_envelope(&room, b"after the barrage");
    assert_eq!(relay().post(&after).await.0, 201);
    acked.push(envelope_id(&after));
    let stored: Vec<String> = relay()
        .pull_all(&format!("/v1/rooms/{room}/messages"), 100)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, acked);
}

/// Hostile WebSocket frames on one socket; returns how many were sent.
async fn frame_cases(room: &str) -> usize {
    let mut s = Socket::connect(&relay().ws_url(&format!("/v1/rooms/{room}/ws"))).await;
    s.until_ready().await;
    let elsewhere = anonymous_envelope(&random_room(), b"elsewhere");
    let tampered = with(&anonymous_envelope(room, b"x"), "body", json!("eHl6"));
    let cases: Vec<(&str, Message, Option<&str>, &str)> = vec![
        ("binary frame", Message::binary(vec![0, 159, 146, 150]), None, "malformed"),
        ("not JSON", Message::text("hello?"), None, "malformed"),
        ("JSON null", Message::text("null"), None, "malformed"),
        ("JSON array", Message::text("[]"), None, "malformed"),
        ("unknown type", Message::text(json!({"type": "subscribe"}).to_string()), None, "malformed"),
        ("no type", Message::text(json!({"ref": "a"}).to_string()), Some("a"), "malformed"),
        ("ping with an extra field", Message::text(json!({"type": "ping", "x": 1}).to_string()), None, "malformed"),
        (
            "send without ref",
            Message::text(json!({"type": "send", "envelope": elsewhere}).to_string()),
            None,
            "malformed",
        ),
        (
            "send with a 65-byte ref",
            Message::text(json!({"type": "send", "ref": "r".repeat(65), "envelope": elsewhere}).to_string()),
            None,
            "malformed",
        ),
        (
            "send for another address",
            Message::text(json!({"type": "send", "ref": "r1", "envelope": elsewhere}).to_string()),
            Some("r1"),
            "malformed",
        ),
        (
            "send with a bad signature",
            Message::text(json!({"type": "send", "ref": "r2", "envelope": tampered}).to_string()),
            Some("r2"),
            "invalid_signature",
        ),
        (
            "send with an extra field",
            Message::text(json!({"type": "send", "ref": "r3", "envelope": elsewhere, "x": 1}).to_string()),
            Some("r3"),
            "malformed",
        ),
        ("oversized frame", Message::text("x".repeat(140_000)), None, "payload_too_large"),
    ];
    let n = cases.len();
    for (label, frame, reference, code) in cases {
        s.send_raw(frame).await;
        let reply = s.recv().await;
        assert_eq!(reply["type"], "error", "{label}: {reply}");
        assert_eq!((reply["ref"].as_str(), reply["code"].as_str()), (reference, Some(code)), "{label}: {reply}");
    }
    s.send(&json!({"type": "ping"})).await;
    assert_eq!(s.recv().await, json!({"type": "pong"}), "the socket survived");
    n
}
