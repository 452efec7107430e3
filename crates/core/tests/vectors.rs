//! The known-answer vectors of `../shared/vectors` (identity, envelopes, signed
//! requests), reproduced natively and under wasm-bindgen-test. The files are
//! compiled in, so the same tests run where there is no file system.

use denet_core::request::{extract, signing_text};
use denet_core::wallet::{eip191_hash, recover_signer};
use denet_core::{Bundle, Envelope, ErrorCode, Revocation, SignKey, Wallet};
use serde::Deserialize;
use serde_json::Value;

const IDENTITY: &str = include_str!("../../../spec/vectors/identity.json");
const SIWE: &str = include_str!("../../../spec/vectors/siwe.json");
const ENVELOPES: &str = include_str!("../../../spec/vectors/envelopes.json");
const REQUESTS: &str = include_str!("../../../spec/vectors/requests.json");

#[derive(Deserialize)]
struct Identity {
    users: Vec<User>,
    revocation: RevocationVector,
    forged_bundle_must_fail: Value,
}

#[derive(Deserialize)]
struct User {
    name: String,
    wallet_private_key: String,
    wallet_checksummed: String,
    sign_key_seed: String,
    dh_private_key: String,
    statement: String,
    bundle: Value,
}

#[derive(Deserialize)]
struct RevocationVector {
    statement: String,
    revoked_at: u64,
    sign_key: String,
    wallet_sig: String,
}

#[derive(Deserialize)]
struct Envelopes {
    envelopes: Vec<EnvelopeVector>,
    tampered_must_fail: Value,
}

#[derive(Deserialize)]
struct EnvelopeVector {
    label: String,
    envelope: Value,
    signing_bytes: String,
    id: String,
}

#[derive(Deserialize)]
struct RequestHeaders {
    #[serde(rename = "Denet-Wallet")]
    wallet: String,
    #[serde(rename = "Denet-Key")]
    key: String,
    #[serde(rename = "Denet-Time")]
    time: String,
    #[serde(rename = "Denet-Signature")]
    signature: String,
}

#[derive(Deserialize)]
struct RequestVector {
    method: String,
    path: String,
    headers: RequestHeaders,
    signing_bytes: String,
}

fn identity() -> Identity {
    serde_json::from_str(IDENTITY).unwrap()
}

fn b64_32(s: &str) -> [u8; 32] {
    denet_core::encoding::b64_decode_exact::<32>(s).unwrap()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn identity_bundles_verify_and_keys_derive_from_their_secrets() {
    for user in identity().users {
        let bundle = Bundle::parse(&user.bundle).unwrap();
        assert_eq!(bundle.statement().unwrap(), user.statement, "{}", user.name);
        bundle.verify().unwrap();
        assert_eq!(bundle.wallet.checksummed(), user.wallet_checksummed);
        assert_eq!(Wallet::parse_lenient(&user.wallet_checksummed).unwrap(), bundle.wallet);

        let wallet_key = hex_32(&user.wallet_private_key);
        let signer = k256::ecdsa::SigningKey::from_slice(&wallet_key).unwrap();
        assert_eq!(Wallet::from_verifying_key(signer.verifying_key()), bundle.wallet);
        // RFC 6979 signing is deterministic, so the wallet_sig is reproduced exactly.
        let (sig, recid) = signer.sign_prehash_recoverable(&eip191_hash(&user.statement)).unwrap();
        let ours = format!("0x{}{:02x}", hex::encode(sig.to_bytes()), recid.to_byte() + 27);
        assert_eq!(ours, user.bundle["wallet_sig"], "{}", user.name);

        let sign = ed25519_dalek::SigningKey::from_bytes(&b64_32(&user.sign_key_seed));
        assert_eq!(SignKey(sign.verifying_key().to_bytes()), bundle.sign_key);
        let dh = x25519_dalek::StaticSecret::from(b64_32(&user.dh_private_key));
        assert_eq!(x25519_dalek::PublicKey::from(&dh).to_bytes(), bundle.dh_key);
    }
}

fn hex_32(s: &str) -> [u8; 32] {
    hex::decode(s.trim_start_matches("0x")).unwrap().try_into().unwrap()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn identity_revocation_verifies() {
    let v = identity().revocation;
    let alice = Wallet::parse_strict("0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce").unwrap();
    let body = serde_json::json!({"sign_key": v.sign_key, "revoked_at": v.revoked_at, "wallet_sig": v.wallet_sig});
    let r = Revocation::parse_request(&body, alice.clone()).unwrap();
    assert_eq!(r.statement(), v.statement);
    r.verify().unwrap();
    assert_eq!(recover_signer(&v.statement, &v.wallet_sig).unwrap(), alice);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn identity_forged_bundle_fails() {
    let forged = Bundle::parse(&identity().forged_bundle_must_fail).unwrap();
    assert_eq!(forged.verify().unwrap_err().code, ErrorCode::InvalidSignature);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn envelopes_have_the_vectors_signing_bytes_ids_and_signatures() {
    let v: Envelopes = serde_json::from_str(ENVELOPES).unwrap();
    assert_eq!(v.envelopes.len(), 3);
    for case in v.envelopes {
        let env = Envelope::parse(&case.envelope, 65536).unwrap();
        assert_eq!(env.signing_bytes(), case.signing_bytes, "{}", case.label);
        assert_eq!(env.id(), case.id, "{}", case.label);
        env.verify().unwrap();
        assert_eq!(env.to_json(), case.envelope, "{}", case.label);
    }
    let tampered = Envelope::parse(&v.tampered_must_fail, 65536).unwrap();
    assert_eq!(tampered.verify().unwrap_err().code, ErrorCode::InvalidSignature);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn signed_request_vector_verifies_by_headers_and_by_query() {
    let v: RequestVector = serde_json::from_str(REQUESTS).unwrap();
    let (path, query) = v.path.split_once('?').unwrap();
    let h = &v.headers;
    let header = |name: &str| {
        Some(match name {
            "Denet-Wallet" => h.wallet.clone(),
            "Denet-Key" => h.key.clone(),
            "Denet-Time" => h.time.clone(),
            "Denet-Signature" => h.signature.clone(),
            _ => return None,
        })
    };
    let req = extract(path, Some(query), header).credentials.unwrap();
    assert_eq!(signing_text(&v.method, &req.signed_path, req.time, None), v.signing_bytes);
    let wallet = Wallet::parse_lenient(&h.wallet).unwrap();
    let now = req.time + 1000;
    req.verify(&v.method, &wallet, now, 300_000).unwrap();
    assert_eq!(req.verify("POST", &wallet, now, 300_000).unwrap_err().code, ErrorCode::InvalidSignature);
    assert_eq!(req.verify(&v.method, &wallet, now + 400_000, 300_000).unwrap_err().code, ErrorCode::StaleTimestamp);
    let bob = Wallet::parse_strict("0x8ac1a429053768256510066a633e5499c6affaf9").unwrap();
    assert_eq!(req.verify(&v.method, &bob, now, 300_000).unwrap_err().code, ErrorCode::Forbidden);

    // The same four values as query parameters, anywhere in the query, sign the same path.
    let q = format!(
        "after=0&denet_wallet={}&denet_key={}&limit=100&denet_time={}&denet_sig={}",
        h.wallet, h.key, h.time, h.signature
    );
    let by_query = extract(path, Some(&q), |_| None).credentials.unwrap();
    assert_eq!(by_query.signed_path, req.signed_path);
    by_query.verify(&v.method, &wallet, now, 300_000).unwrap();
}

const WEAK_KEYS: &str = include_str!("../../../spec/vectors/weak_keys.json");

#[derive(Deserialize)]
struct WeakKeys {
    sign_keys: Vec<WeakKey>,
    dh_keys: Vec<WeakKey>,
    forged_signature: ForgedSignature,
}

#[derive(Deserialize)]
struct WeakKey {
    what: String,
    key: String,
}

#[derive(Deserialize)]
struct ForgedSignature {
    sign_key: String,
    message: String,
    sig: String,
}

fn weak_keys() -> WeakKeys {
    serde_json::from_str(WEAK_KEYS).expect("weak_keys.json parses")
}

/// A valid bundle of the identity vectors with one field replaced.
fn bundle_with(field: &str, value: &str) -> Value {
    let mut bundle = identity().users[0].bundle.clone();
    bundle[field] = value.into();
    bundle
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn weak_sign_keys_make_a_bundle_malformed() {
    let vectors = weak_keys();
    assert_eq!(vectors.sign_keys.len(), 8);
    for weak in &vectors.sign_keys {
        let key = SignKey::parse(&weak.key).unwrap_or_else(|| panic!("{} parses as 32 bytes", weak.what));
        assert!(key.is_weak(), "{} is weak", weak.what);
        let err = Bundle::parse(&bundle_with("sign_key", &weak.key)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Malformed, "{}", weak.what);
    }
    // The vector bundles themselves are not weak.
    for user in identity().users {
        assert!(Bundle::parse(&user.bundle).is_ok(), "{}", user.name);
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn weak_dh_keys_make_a_bundle_malformed() {
    let vectors = weak_keys();
    assert_eq!(vectors.dh_keys.len(), 7);
    for weak in &vectors.dh_keys {
        let key = denet_core::encoding::b64_decode_exact::<32>(&weak.key).expect("32 bytes");
        assert!(denet_core::bundle::is_weak_dh_key(&key), "{} is weak", weak.what);
        let err = Bundle::parse(&bundle_with("dh_key", &weak.key)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Malformed, "{}", weak.what);
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn forged_signature_verifies_for_no_key() {
    let forged = weak_keys().forged_signature;
    let sig: [u8; 64] = denet_core::encoding::b64_decode_exact(&forged.sig).expect("64 bytes");
    // Under the cofactorless equation it verifies for its own (weak) key, any message...
    let key = SignKey::parse(&forged.sign_key).expect("32 bytes");
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&key.0).expect("a point");
    use ed25519_dalek::Verifier;
    assert!(lax.verify(forged.message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_ok());
    // ...and a strict verifier refuses it.
    let err = key.verify(forged.message.as_bytes(), &sig).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignature);
    for weak in weak_keys().sign_keys {
        let key = SignKey::parse(&weak.key).expect("32 bytes");
        assert!(key.verify(forged.message.as_bytes(), &sig).is_err(), "{}", weak.what);
    }
    // And as a signed request it is refused before any key lookup.
    let request =
        denet_core::request::extract("/v1/inbox/0x0000000000000000000000000000000000000000/messages", None, |name| {
            match name {
                "Denet-Wallet" => Some("0x0000000000000000000000000000000000000000".into()),
                "Denet-Key" => Some(forged.sign_key.clone()),
                "Denet-Time" => Some("1796000000000".into()),
                "Denet-Signature" => Some(forged.sig.clone()),
                _ => None,
            }
        })
        .credentials
        .expect("well-formed credentials");
    let wallet = request.wallet.clone();
    let err = request.verify("GET", &wallet, 1_796_000_000_000, 300_000).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSignature);
}

/// `spec/vectors` holds the vectors made by independent implementations: while the
/// `../shared/vectors` they were handed over in exists beside the repository, every
/// file there must be byte-identical here (a clone alone skips this check).
#[test]
fn spec_vectors_are_the_independent_ones_byte_for_byte() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let handed = root.join("../shared/vectors");
    let Ok(entries) = std::fs::read_dir(&handed) else {
        eprintln!("no {}: nothing to compare", handed.display());
        return;
    };
    let mut compared = 0;
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().expect("a file name").to_owned();
        let ours = std::fs::read(root.join("spec/vectors").join(&name))
            .unwrap_or_else(|_| panic!("spec/vectors lacks {name:?}, which ../shared/vectors has"));
        assert!(
            ours == std::fs::read(&path).expect("readable"),
            "spec/vectors/{name:?} differs from {}",
            path.display()
        );
        compared += 1;
    }
    assert!(compared > 0, "{} is empty", handed.display());
}

/// §1.1 (1.6): every SIWE text of `vectors/siwe.json` (written by viem, read back by
/// two independent ERC-4361 parsers) is rebuilt byte for byte from its bundle, its
/// signature is reproduced (RFC 6979) and recovers to the wallet.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn siwe_texts_are_rebuilt_byte_for_byte_and_verify() {
    let v: serde_json::Value = serde_json::from_str(SIWE).unwrap();
    assert_eq!(v["statement"], denet_core::siwe::STATEMENT);
    let users = identity().users;
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), users.len());
    for (case, user) in cases.iter().zip(users) {
        let bundle = Bundle::parse(&case["bundle"]).unwrap();
        assert_eq!(bundle.statement().unwrap(), case["text"].as_str().unwrap(), "{}", user.name);
        assert_eq!(denet_core::siwe::nonce(&bundle.sign_key.0, &bundle.dh_key), case["nonce"].as_str().unwrap());
        assert_eq!(bundle.check().unwrap(), denet_core::eth::Proof::Eoa, "{}", user.name);
        let signer = k256::ecdsa::SigningKey::from_slice(&hex_32(&user.wallet_private_key)).unwrap();
        let (sig, recid) = signer.sign_prehash_recoverable(&eip191_hash(case["text"].as_str().unwrap())).unwrap();
        let ours = format!("0x{}{:02x}", hex::encode(sig.to_bytes()), recid.to_byte() + 27);
        assert_eq!(ours, case["bundle"]["wallet_sig"], "{}", user.name);
        // The bundle's JSON round-trips with its auth.
        assert_eq!(bundle.to_json(), case["bundle"]);
        // Any other field under the same signature fails: the text is rebuilt, never taken.
        let mut other = bundle.clone();
        other.auth.as_mut().unwrap().domain = "evil.example".into();
        assert!(other.check().is_ok_and(|p| p != denet_core::eth::Proof::Eoa));
    }
}
