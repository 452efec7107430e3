//! The client vectors of `../shared/vectors` (padding, direct messages, rooms),
//! natively and under wasm-bindgen-test.

use denet_client::content::Content;
use denet_client::identity::key32;
use denet_client::pad::{pad, padded_len, unpad};
use denet_client::{dm, room};
use denet_core::encoding::{b64, b64_decode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Deserialize;

const PADDING: &str = include_str!("../../../spec/vectors/padding.json");
const DM: &str = include_str!("../../../spec/vectors/dm.json");
const ROOMS: &str = include_str!("../../../spec/vectors/rooms.json");
const IDENTITY: &str = include_str!("../../../spec/vectors/identity.json");
const BACKUP: &str = include_str!("../../../spec/vectors/backup.json");

#[derive(Deserialize)]
struct Padding {
    cases: Vec<PadCase>,
}
#[derive(Deserialize)]
struct PadCase {
    content_len: usize,
    padded_len: usize,
}

#[derive(Deserialize)]
struct Dms {
    named: DmCase,
    anonymous: DmCase,
}
#[derive(Deserialize)]
struct DmCase {
    from: Option<String>,
    to: String,
    sender_dh_key: Option<String>,
    recipients: Vec<String>,
    content: String,
    body: String,
}

#[derive(Deserialize)]
struct Rooms {
    room: String,
    room_key: String,
    cases: Vec<RoomCase>,
}
#[derive(Deserialize)]
struct RoomCase {
    password: Option<String>,
    epoch: u32,
    message_key: String,
    check: String,
    content: String,
    body: String,
}

/// The users' X25519 secrets, from identity.json.
fn dh_secret(name: &str) -> [u8; 32] {
    let v: serde_json::Value = serde_json::from_str(IDENTITY).unwrap();
    let user = v["users"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap();
    key32(user["dh_private_key"].as_str().unwrap()).unwrap()
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn padding_sizes_match_the_vector() {
    let v: Padding = serde_json::from_str(PADDING).unwrap();
    for case in v.cases {
        assert_eq!(padded_len(case.content_len), case.padded_len, "len {}", case.content_len);
        let content = vec![b'a'; case.content_len];
        let padded = pad(&content);
        assert_eq!(padded.len(), case.padded_len);
        assert_eq!(unpad(&padded).unwrap(), &content[..]);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn named_dm_opens_for_recipient_and_sender_devices_in_auth_mode() {
    let v: Dms = serde_json::from_str(DM).unwrap();
    let c = v.named;
    let body = b64_decode(&c.body).unwrap();
    let from = c.from.as_deref().unwrap();
    let sender_dh = key32(c.sender_dh_key.as_deref().unwrap()).unwrap();
    assert_eq!(c.recipients.len(), 2);
    for name in ["bob", "alice"] {
        let opened = dm::open(&body, &c.to, Some((from, &sender_dh)), &dh_secret(name)).unwrap();
        assert_eq!(opened, c.content.as_bytes(), "{name}");
        Content::parse(&opened).unwrap();
    }
    // Opening as anonymous (base mode) or with another aad fails: auth mode is bound in.
    assert!(dm::open(&body, &c.to, None, &dh_secret("bob")).is_err());
    assert!(dm::open(&body, from, Some((from, &sender_dh)), &dh_secret("bob")).is_err());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn anonymous_dm_opens_in_base_mode_for_the_recipient_only() {
    let v: Dms = serde_json::from_str(DM).unwrap();
    let c = v.anonymous;
    assert!(c.from.is_none());
    assert_eq!(c.recipients.len(), 1);
    let body = b64_decode(&c.body).unwrap();
    assert_eq!(dm::open(&body, &c.to, None, &dh_secret("bob")).unwrap(), c.content.as_bytes());
    assert!(dm::open(&body, &c.to, None, &dh_secret("alice")).is_err(), "alice is not a recipient");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn dm_sealing_is_deterministic_given_the_randomness_and_opens() {
    let v: Dms = serde_json::from_str(DM).unwrap();
    let c = v.named;
    let recipients: Vec<[u8; 32]> = c.recipients.iter().map(|r| key32(r).unwrap()).collect();
    let from = c.from.as_deref().unwrap();
    let alice = dh_secret("alice");
    let sender = dm::Sender { wallet: from, dh_secret: &alice };
    let seal = || {
        dm::seal(c.content.as_bytes(), &c.to, Some(&sender), &recipients, &mut ChaCha20Rng::seed_from_u64(7)).unwrap()
    };
    let body = seal();
    assert_eq!(body, seal(), "same randomness, same bytes");
    assert_eq!(body.len(), b64_decode(&c.body).unwrap().len(), "the vector's layout and size");
    let sender_dh = key32(c.sender_dh_key.as_deref().unwrap()).unwrap();
    assert_eq!(dm::open(&body, &c.to, Some((from, &sender_dh)), &dh_secret("bob")).unwrap(), c.content.as_bytes());
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn room_bodies_are_reproduced_byte_for_byte_and_open() {
    let v: Rooms = serde_json::from_str(ROOMS).unwrap();
    let room_key = key32(&v.room_key).unwrap();
    for case in v.cases {
        let key = room::message_key(&room_key, &v.room, case.password.as_deref()).unwrap();
        assert_eq!(b64(key.as_ref()), case.message_key, "password {:?}", case.password);
        assert_eq!(b64(&room::check(&key, &v.room, case.epoch)), case.check, "check, password {:?}", case.password);
        assert_ne!(b64(&room::check(&key, &v.room, case.epoch + 1)), case.check, "the check names its epoch");
        let body = b64_decode(&case.body).unwrap();
        assert_eq!(room::epoch_of(&body).unwrap(), case.epoch);
        assert_eq!(room::open(&key, &v.room, &body).unwrap(), case.content.as_bytes());
        let nonce: [u8; 12] = body[8..20].try_into().unwrap();
        let ours = room::seal_with_nonce(&key, &v.room, case.epoch, &nonce, case.content.as_bytes());
        assert_eq!(b64(&ours), case.body, "byte-identical body");
        assert!(room::open(&room_key.map(|b| b ^ 1), &v.room, &body).is_err());
    }
}

/// Bytes handed out in order: the vector's fixed "random" inputs.
struct Given(Vec<u8>);

impl rand_core::RngCore for Given {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("only fill_bytes draws")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("only fill_bytes draws")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len();
        dest.copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Given {}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_backup_vector_unlocks_both_ways_opens_and_is_sealed_byte_for_byte() {
    use denet_client::backup::{self, BY_CODE, BY_WALLET, Blob, Contents, RecoveryCode, Unlock, Wrap};
    let v: serde_json::Value = serde_json::from_str(BACKUP).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let h = |x: &serde_json::Value| hex::decode(x.as_str().unwrap()).unwrap();
    let wallet = denet_core::Wallet::parse_strict(&s("wallet")).unwrap();
    let salt = |i: usize| -> [u8; 16] { h(&v["wraps"][i]["salt"]).try_into().unwrap() };
    assert_eq!(backup::unlock_text(&wallet, &salt(0)), s("unlock_text"));
    assert_eq!(denet_core::wallet::recover_signer(&s("unlock_text"), &s("low_s_signature")).unwrap(), wallet);
    // Both signature forms are one key; the code reads as typed and as the bytes.
    let kek = h(&v["wraps"][0]["kek"]);
    assert_eq!(backup::wallet_kek(&s("signature"), &wallet, &salt(0)).unwrap().to_vec(), kek);
    assert_eq!(backup::wallet_kek(&s("low_s_signature"), &wallet, &salt(0)).unwrap().to_vec(), kek);
    let code = RecoveryCode::parse(&s("recovery_code")).unwrap();
    let secret: [u8; 16] = h(&v["code_secret"]).try_into().unwrap();
    assert_eq!(*RecoveryCode::from_secret(secret).to_text(), s("recovery_code"));
    let code_kek = backup::code_kek(&code, &salt(1)).unwrap();
    assert_eq!(code_kek.to_vec(), h(&v["wraps"][1]["kek"]));

    let blob_bytes = h(&v["blob"]);
    let blob = Blob::parse(&blob_bytes).unwrap();
    assert_eq!(blob.version, v["version"].as_u64().unwrap());
    let key = blob.unlock(&wallet, Unlock::Wallet(&s("signature"))).unwrap();
    assert_eq!(key.to_vec(), h(&v["backup_key"]));
    assert_eq!(*blob.unlock(&wallet, Unlock::Code(&code)).unwrap(), *key);
    let contents: Contents = blob.open(&wallet, &key).unwrap();
    assert_eq!(serde_json::to_string(&contents).unwrap(), s("contents"), "the contents as the vector has them");

    // Sealed again from the same inputs: the same bytes.
    let mut rng = Given([h(&v["wraps"][0]["nonce"]), h(&v["wraps"][1]["nonce"]), h(&v["nonce"])].concat());
    let kek: [u8; 32] = kek.try_into().unwrap();
    let wraps = [
        Wrap::new(BY_WALLET, &kek, salt(0), &key, &wallet, &mut rng),
        Wrap::new(BY_CODE, &code_kek, salt(1), &key, &wallet, &mut rng),
    ];
    let again = backup::seal_bytes(s("contents").as_bytes(), &key, &wraps, blob.version, &wallet, &mut rng).unwrap();
    assert_eq!(hex::encode(again), s("blob"));
}
