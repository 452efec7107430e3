//! Every kind of wallet, phishing-resistant (PROTOCOL.md §1.1, 1.6): the SIWE form of a
//! device authorization and contract wallets (ERC-1271, ERC-6492) against a real relay
//! and real local chains. One relay for the file, which takes sign-ins for
//! `chat.denet.test` and 127.0.0.1 only (`SIWE_DOMAINS`), relayed keys (`PEER_TOKEN`),
//! and checks contract wallets on three anvil chains, each behind a proxy a test can
//! switch off: A (31337, which also answers for chain 1 here, so the EOA users' forged
//! signatures reach a chain), B (31338) and C (31339, only the test that takes it down).

use denet_core::Wallet;
use denet_core::siwe::Auth;
use denet_e2e::Relay;
use denet_e2e::actors::{User, now_ms, personal_sign, test_auth};
use denet_e2e::chain::{self, Chain, Proxy};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const TOKEN: &str = "wallets-peer-token";
const DAY: u64 = denet_core::limits::DAY_MS;

struct World {
    relay: Relay,
    a: Chain,
    b: Chain,
    c: Chain,
    proxy_c: Proxy,
    /// The factory: the first contract on every chain, so at one address on all.
    factory: Wallet,
    _proxies: Vec<Proxy>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    let w = WORLD.get_or_init(|| {
        let (a, b, c) = (Chain::start(31337), Chain::start(31338), Chain::start(31339));
        let factory = a.factory();
        assert_eq!(
            (b.factory(), c.factory()),
            (factory.clone(), factory.clone()),
            "one factory address on every chain"
        );
        let (proxy_a, proxy_b, proxy_c) = (Proxy::start(&a), Proxy::start(&b), Proxy::start(&c));
        let urls = format!("1={},31337={},31338={},31339={}", proxy_a.url, proxy_a.url, proxy_b.url, proxy_c.url);
        let mut vars: Vec<(&str, &str)> = Relay::UNTHROTTLED.to_vec();
        vars.extend([
            ("PEER_TOKEN", TOKEN),
            ("SIWE_DOMAINS", "chat.denet.test,127.0.0.1"),
            ("CONTRACT_WALLET_CHAINS", "1,31337,31338,31339"),
            ("ETH_RPC_URLS", urls.as_str()),
        ]);
        let relay = Relay::start_exactly(&vars);
        World { relay, a, b, c, proxy_c, factory, _proxies: vec![proxy_a, proxy_b] }
    });
    w.relay.stop_at_exit();
    w
}

fn relay() -> &'static Relay {
    &world().relay
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
        ("chain_id", alter("chain_id", json!(31338))),
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

// ---- contract wallets ----

/// A user whose wallet is an `OwnerWallet` contract: `owner` is the EOA key that signs for it.
struct Smart {
    user: User,
    owner: k256::ecdsa::SigningKey,
    salt: [u8; 32],
}

fn smart_wallet(chain: &Chain, deploy: bool) -> Smart {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let salt = chain::salt(NEXT.fetch_add(1, Ordering::Relaxed) + 1000 * std::process::id() as u64);
    let owner_user = User::new();
    let (factory, owner) = (&world().factory, &owner_user.wallet);
    let address =
        if deploy { chain.deploy_wallet(factory, owner, salt) } else { chain.wallet_address(factory, owner, salt) };
    assert_eq!(chain.has_code(&address), deploy);
    let user = User { wallet: address, ..User::new() };
    Smart { user, owner: owner_user.wallet_key, salt }
}

impl Smart {
    /// Another device of the same wallet, signing as the same owner.
    fn another_device(&self) -> Smart {
        let user = User { wallet: self.user.wallet.clone(), ..User::new() };
        Smart { user, owner: self.owner.clone(), salt: self.salt }
    }

    fn owner_wallet(&self) -> Wallet {
        Wallet::from_verifying_key(self.owner.verifying_key())
    }

    /// A bundle on `chain_id` signed the ERC-1271 way (the owner's signature of the SIWE
    /// text) or, for a wallet not deployed yet, wrapped for ERC-6492 with its factory call.
    fn bundle(&self, chain_id: u64, erc6492: bool) -> (Value, String) {
        let now = now_ms();
        let auth = Auth { chain_id, ..test_auth() };
        let mut bundle = denet_core::Bundle::parse(&self.user.bundle_with(now, now + 30 * DAY, Some(auth))).unwrap();
        let text = bundle.statement().unwrap();
        let owner_sig = personal_sign(&self.owner, &text);
        bundle.wallet_sig = if erc6492 {
            let sig = hex::decode(&owner_sig[2..]).unwrap();
            let call = chain::deploy_call(&self.owner_wallet(), self.salt);
            denet_core::eth::hex0x(&chain::wrap_6492(&world().factory, &call, &sig))
        } else {
            owner_sig
        };
        (bundle.to_json(), text)
    }
}

/// Registers `bundle` and checks the relay's verdict against viem's on the same chain.
async fn put_and_compare(chain: &Chain, user: &User, bundle: &Value, text: &str) -> (u16, Value) {
    let answer = relay().put_bundle(user, bundle).await;
    let sig = bundle["wallet_sig"].as_str().unwrap();
    let viem = chain::viem_verdict(&chain.rpc, &user.wallet, text, sig);
    let relay_valid = answer.0 == 201 || answer.0 == 200;
    assert_eq!(relay_valid, viem, "the relay's verdict ({}) equals viem's ({viem}): {}", answer.0, answer.1);
    answer
}

#[tokio::test]
async fn a_deployed_erc1271_wallet_signs_in_and_its_keys_are_listed() {
    let w = world();
    let alice = smart_wallet(&w.a, true);
    let (bundle, text) = alice.bundle(31337, false);
    let answer = put_and_compare(&w.a, &alice.user, &bundle, &text).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    let (status, listed) = relay().get(&format!("/v1/keys/{}", alice.user.wallet)).await;
    assert_eq!((status, &listed["keys"][0]), (200, &bundle));
    // Its device posts to its own inbox and reads it back: the key is active.
    let envelope = alice.user.envelope(alice.user.wallet.as_str(), b"from a contract wallet");
    assert_eq!(relay().post(&envelope).await.0, 201);
}

#[tokio::test]
async fn an_undeployed_erc6492_wallet_signs_in_and_stays_valid_once_deployed() {
    let w = world();
    let bob = smart_wallet(&w.a, false);
    let (bundle, text) = bob.bundle(31337, true);
    let answer = put_and_compare(&w.a, &bob.user, &bundle, &text).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert!(!w.a.has_code(&bob.user.wallet), "the check deployed nothing (an eth_call)");
    // Deployed now: its next device signs the plain ERC-1271 way, and the first stays.
    w.a.deploy_wallet(&w.factory, &bob.owner_wallet(), bob.salt);
    let next = bob.another_device();
    let (bundle2, text2) = next.bundle(31337, false);
    assert_eq!(put_and_compare(&w.a, &next.user, &bundle2, &text2).await.0, 201);
    let (_, listed) = relay().get(&format!("/v1/keys/{}", bob.user.wallet)).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
}

/// A contract wallet's signature on a chain where the wallet does not live is nobody's.
#[tokio::test]
async fn attack_a_contract_wallet_signature_on_the_wrong_chain_is_refused() {
    let w = world();
    let carol = smart_wallet(&w.a, true);
    let (bundle, text) = carol.bundle(31338, false);
    let answer = put_and_compare(&w.b, &carol.user, &bundle, &text).await;
    assert_eq!(code(&answer), (401, Some("invalid_signature")), "{}", answer.1);
}

#[tokio::test]
async fn a_chain_the_relay_does_not_check_is_unknown_chain() {
    let w = world();
    let dan = smart_wallet(&w.a, true);
    let (bundle, _) = dan.bundle(10, false);
    let answer = relay().put_bundle(&dan.user, &bundle).await;
    assert_eq!(code(&answer), (400, Some("unknown_chain")), "{}", answer.1);
}

/// Whoever controls the same address on another chain is not the same wallet: the
/// chain of the first bundle pins it.
#[tokio::test]
async fn attack_the_same_address_on_a_second_chain_cannot_sign_for_a_pinned_wallet() {
    let w = world();
    let erin = smart_wallet(&w.a, true);
    let (first, _) = erin.bundle(31337, false);
    assert_eq!(relay().put_bundle(&erin.user, &first).await.0, 201);
    // The same factory, owner and salt on chain B give the same address there.
    assert_eq!(w.b.deploy_wallet(&w.factory, &erin.owner_wallet(), erin.salt), erin.user.wallet);
    let other = erin.another_device();
    let (second, text) = other.bundle(31338, false);
    assert!(
        chain::viem_verdict(&w.b.rpc, &other.user.wallet, &text, second["wallet_sig"].as_str().unwrap()),
        "valid on B"
    );
    let answer = relay().put_bundle(&other.user, &second).await;
    assert_eq!(code(&answer), (409, Some("conflict")), "{}", answer.1);
}

/// An owner change is found by the daily re-check: the bundle is `invalid` from then
/// on (not `revoked`: only the wallet signs that), no longer active, and what it
/// signed before stays readable.
#[tokio::test]
async fn a_wallet_whose_owner_changed_has_its_bundle_marked_invalid_by_the_recheck() {
    let w = world();
    let fred = smart_wallet(&w.a, true);
    let (bundle, text) = fred.bundle(31337, false);
    assert_eq!(relay().put_bundle(&fred.user, &bundle).await.0, 201);
    let before = fred.user.envelope(fred.user.wallet.as_str(), b"before the owner changed");
    assert_eq!(relay().post(&before).await.0, 201);
    // A stolen device listening on its inbox socket.
    let path = format!("/v1/inbox/{}/ws", fred.user.wallet);
    let signed = fred.user.signed_query(&path, Some("after=0"), now_ms());
    let mut socket = denet_e2e::ws::Socket::connect(&relay().ws_url(&signed)).await;
    socket.until_ready().await;
    w.a.set_owner(&fred.user.wallet, &fred.owner_wallet(), &User::new().wallet);
    assert!(!chain::viem_verdict(&w.a.rpc, &fred.user.wallet, &text, bundle["wallet_sig"].as_str().unwrap()));
    let scheduled = reqwest::get(relay().url("/__scheduled?cron=17+3+*+*+*")).await.unwrap();
    assert!(scheduled.status().is_success());
    // The re-check closes the sockets the key opened, as a revocation does.
    let frame = socket.recv_within(std::time::Duration::from_secs(10)).await.expect("an error frame");
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("forbidden")), "{frame}");
    assert_eq!(socket.close_code(std::time::Duration::from_secs(10)).await, Some(1008));
    let key = bundle["sign_key"].as_str().unwrap();
    let (_, one) = relay().get(&format!("/v1/keys/{}?key={key}", fred.user.wallet)).await;
    assert_eq!(one["keys"][0]["status"], "invalid", "{one}");
    assert!(one["keys"][0]["invalid_at"].as_u64().is_some() && one["keys"][0].get("revoked_at").is_none());
    assert_eq!(relay().get(&format!("/v1/keys/{}", fred.user.wallet)).await.0, 404, "no longer listed active");
    // The key can no longer post (the isolate cache holds a key at most 10 s).
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let after = fred.user.envelope(fred.user.wallet.as_str(), b"after");
    assert_eq!(code(&relay().post(&after).await), (403, Some("forbidden")));
    let messages = relay().get_signed(&fred.user, &format!("/v1/inbox/{}/messages", fred.user.wallet)).await;
    assert_eq!(messages.0, 403, "its own inbox is closed to it too: {}", messages.1);
    // Registering the same bundle again is a conflict, as for a revoked key.
    assert_eq!(code(&relay().put_bundle(&fred.user, &bundle).await), (409, Some("conflict")));
}

/// A chain that cannot be asked is `503 unavailable` (with `Retry-After`), never
/// `invalid_signature`, and stores nothing; the same request succeeds once it is back.
#[tokio::test]
async fn an_rpc_that_is_down_is_503_and_the_retry_succeeds_when_it_is_back() {
    let w = world();
    let gina = smart_wallet(&w.c, true);
    let (bundle, _) = gina.bundle(31339, false);
    w.proxy_c.set_up(false);
    let resp =
        Relay::client().put(relay().url(&format!("/v1/keys/{}", gina.user.wallet))).json(&bundle).send().await.unwrap();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let answer = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    w.proxy_c.set_up(true);
    assert_eq!(code(&answer), (503, Some("unavailable")), "{}", answer.1);
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(relay().get(&format!("/v1/keys/{}", gina.user.wallet)).await.0, 404, "nothing stored");
    assert_eq!(relay().put_bundle(&gina.user, &bundle).await.0, 201, "the retry succeeds");
}

/// A peer's contract-wallet bundle on a chain this relay does not check: its envelope
/// is `refused` with `unknown_chain`, never dropped in silence (§7).
#[tokio::test]
async fn a_relayed_envelope_of_a_contract_wallet_on_an_unknown_chain_is_refused_with_its_code() {
    let w = world();
    let hank = smart_wallet(&w.a, true);
    let (bundle, _) = hank.bundle(10, false);
    let envelope = hank.user.envelope(hank.user.wallet.as_str(), b"relayed");
    let body = json!({"relay": "peer", "hops": 1, "envelopes": [envelope], "bundles": [bundle], "revocations": []});
    let resp = Relay::client()
        .post(relay().url("/v1/relay/messages"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let results: Value = resp.json().await.unwrap();
    assert_eq!(results["results"][0]["status"], "refused", "{results}");
    assert_eq!(results["results"][0]["code"], "unknown_chain", "{results}");
}

// ---- clients: the CLI checks contract wallets itself ----

/// `denet --json ARGS` against this file's relay, with `DENET_RPC_URLS` = `rpc` (none when empty).
fn denet(home: &std::path::Path, rpc: &str, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = std::process::Command::new(denet_e2e::cli::denet_binary())
        .arg("--home")
        .arg(home)
        .args(["--relay", &relay().base, "--json"])
        .args(args)
        .env("DENET_RPC_URLS", rpc)
        .output()
        .expect("denet runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    if out.status.success() { Ok(lines) } else { Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))) }
}

fn texts(lines: &[Value]) -> Vec<String> {
    lines.iter().filter_map(|l| l["text"].as_str().map(str::to_owned)).collect()
}

/// Two CLI users, registered: a contract wallet on chain A (the CLI signs as its owner,
/// ERC-1271) whose CLI checks chains with `smart_rpc`, and an EOA whose CLI uses `eoa_rpc`.
struct CliPair {
    smart_home: tempfile::TempDir,
    eoa_home: tempfile::TempDir,
    smart: String,
    eoa: String,
}

fn cli_pair(smart_rpc: &str, eoa_rpc: &str) -> CliPair {
    let smart = smart_wallet(&world().a, true);
    let (smart_home, eoa_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner_key = hex::encode(smart.owner.to_bytes());
    let address = smart.user.wallet.to_string();
    let init = ["init", "--wallet-key", &owner_key, "--contract-wallet", &address, "--chain-id", "31337"];
    assert_eq!(denet(smart_home.path(), smart_rpc, &init).unwrap()[0]["wallet"], address);
    denet(smart_home.path(), smart_rpc, &["register"]).unwrap();
    let eoa = denet(eoa_home.path(), eoa_rpc, &["init"]).unwrap()[0]["wallet"].as_str().unwrap().to_owned();
    denet(eoa_home.path(), eoa_rpc, &["register"]).unwrap();
    CliPair { smart_home, eoa_home, smart: address, eoa }
}

/// A contract-wallet user (the CLI signs as its owner, ERC-1271) and an EOA user chat
/// both ways; each CLI checks the other's devices on the chain itself.
#[tokio::test]
async fn the_cli_chats_both_ways_between_a_contract_wallet_and_an_eoa() {
    let rpc = format!("31337={}", world().a.rpc);
    let pair = cli_pair(&rpc, &rpc);
    let (s_home, e_home, address, eoa) = (&pair.smart_home, &pair.eoa_home, &pair.smart, &pair.eoa);

    denet(e_home.path(), &rpc, &["send", address, "hello contract wallet"]).unwrap();
    assert_eq!(texts(&denet(s_home.path(), &rpc, &["inbox"]).unwrap()), ["hello contract wallet"]);
    denet(s_home.path(), &rpc, &["send", eoa, "hello from a Safe-like wallet"]).unwrap();
    let read = denet(e_home.path(), &rpc, &["inbox"]).unwrap();
    assert_eq!(texts(&read), ["hello from a Safe-like wallet"]);
    let got = read.iter().find(|m| m["type"] == "text").unwrap();
    assert_eq!(got["from"], address.as_str(), "authenticated as the contract wallet: {read:?}");
    // The contract wallet revokes its device: the relay checks the owner's signature on chain.
    denet(s_home.path(), &rpc, &["revoke"]).unwrap();
    assert_eq!(relay().get(&format!("/v1/keys/{address}")).await.0, 404, "no active key left");
}

/// Only the contract wallet revokes its devices: a revocation signed by another key
/// (not its owner) is refused after the check on its chain.
#[tokio::test]
async fn attack_a_stranger_cannot_revoke_a_contract_wallets_device() {
    let w = world();
    let ivy = smart_wallet(&w.a, true);
    let (bundle, _) = ivy.bundle(31337, false);
    assert_eq!(relay().put_bundle(&ivy.user, &bundle).await.0, 201);
    let stranger = User::new();
    let mut r = denet_core::Revocation {
        wallet: ivy.user.wallet.clone(),
        sign_key: ivy.user.sign_key(),
        revoked_at: now_ms(),
        wallet_sig: String::new(),
    };
    r.wallet_sig = personal_sign(&stranger.wallet_key, &r.statement());
    let path = format!("/v1/keys/{}/revoke", ivy.user.wallet);
    let answer = relay().send_json(reqwest::Method::POST, &path, &r.request_json()).await;
    assert_eq!(code(&answer), (401, Some("invalid_signature")), "{}", answer.1);
    r.wallet_sig = personal_sign(&ivy.owner, &r.statement());
    assert_eq!(relay().send_json(reqwest::Method::POST, &path, &r.request_json()).await.0, 200, "its owner can");
}

/// The relay is not trusted: a client that cannot check a contract wallet's chain seals
/// nothing to its devices and says why, and does not believe its messages.
#[tokio::test]
async fn attack_a_client_without_an_rpc_for_the_chain_seals_nothing_to_an_unchecked_contract_wallet() {
    let rpc = format!("31337={}", world().a.rpc);
    let pair = cli_pair(&rpc, "");
    let (s_home, e_home, address, eoa) = (&pair.smart_home, &pair.eoa_home, &pair.smart, &pair.eoa);
    let refused = denet(e_home.path(), "", &["send", address, "to whom?"]).unwrap_err();
    assert!(refused.contains("unverified") && refused.contains("31337"), "{refused}");
    // Its message arrives but is not believed without the check.
    denet(s_home.path(), &rpc, &["send", eoa, "believe me"]).unwrap();
    let read = denet(e_home.path(), "", &["inbox"]).unwrap();
    assert!(texts(&read).is_empty(), "{read:?}");
    assert!(read.iter().any(|m| m["error"].as_str().is_some_and(|e| e.starts_with("unverified"))), "{read:?}");
    // With the RPC it is read.
    assert_eq!(texts(&denet(e_home.path(), &rpc, &["inbox", "--all"]).unwrap()), ["believe me"]);
}
