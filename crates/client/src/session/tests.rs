//! The session against an in-memory relay that stores what it is given and lies
//! when a test tells it to: every §8.3 rule and every attack on a session, in
//! milliseconds. Each attack test is named after what it tries.

use super::*;
// The same tests run on wasm32 (the session the browser runs), under wasm-bindgen-test.
use crate::identity::{Device, LocalWallet};
use denet_core::wire::{StoredFields, listed_key};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;
use std::collections::HashMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const T0: u64 = 1_790_000_000_000;

/// A relay in memory: boxes of stored envelopes and the listed bundles.
#[derive(Default)]
struct Relay {
    boxes: HashMap<String, Vec<Value>>,
    keys: HashMap<Wallet, Vec<Value>>,
    now: u64,
}

impl Relay {
    fn new() -> Relay {
        Relay { now: T0, ..Default::default() }
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Stores an envelope as a relay would (or as a lying one re-serves an old one).
    fn post(&mut self, env: &Value) {
        let to = env["to"].as_str().unwrap().to_owned();
        let parsed = denet_core::Envelope::parse(env, usize::MAX).unwrap();
        let list = self.boxes.entry(to.clone()).or_default();
        let seq = list.len() as u64 + 1;
        let stored = StoredFields {
            to: &to,
            ts: parsed.ts,
            from: env["from"].as_str(),
            key: env["key"].as_str().unwrap(),
            body: env["body"].as_str().unwrap(),
            sig: env["sig"].as_str().unwrap(),
            id: &parsed.id(),
            seq,
            received_at: self.now,
        }
        .to_json();
        list.push(stored);
    }

    fn answer(&self, wallet: &Wallet) -> Value {
        json!({"keys": self.keys.get(wallet).cloned().unwrap_or_default()})
    }
}

struct User {
    wallet: LocalWallet,
    s: Session,
    rng: ChaCha20Rng,
}

impl User {
    fn new(relay: &mut Relay, n: u64) -> User {
        let mut rng = ChaCha20Rng::seed_from_u64(n);
        let wallet = LocalWallet::generate(&mut rng);
        let device = Device::generate(&mut rng);
        let s = Session::new(wallet_of(&wallet), device, SessionState::new());
        let mut u = User { wallet, s, rng };
        u.register(relay);
        u
    }

    fn me(&self) -> Wallet {
        self.s.me().clone()
    }

    fn register(&mut self, relay: &mut Relay) {
        let d = self.s.device();
        let mut bundle = denet_core::Bundle {
            wallet: self.me(),
            sign_key: d.sign_key(),
            dh_key: d.dh_key(),
            issued_at: relay.now - 1,
            expires_at: relay.now + 365 * denet_core::limits::DAY_MS,
            auth: None,
            wallet_sig: String::new(),
        };
        bundle.wallet_sig = self.wallet.sign_now(&bundle.statement().unwrap());
        relay.keys.entry(self.me()).or_default().push(listed_key(&bundle.to_json(), "active", None));
    }

    fn revoke(&mut self, relay: &mut Relay) {
        let d = self.s.device();
        let mut r = denet_core::Revocation {
            wallet: self.me(),
            sign_key: d.sign_key(),
            revoked_at: relay.now,
            wallet_sig: String::new(),
        };
        r.wallet_sig = self.wallet.sign_now(&r.statement());
        let key = d.sign_key().to_b64();
        for listed in relay.keys.get_mut(&self.me()).unwrap() {
            if listed["sign_key"] == key.as_str() {
                *listed = listed_key(listed, "revoked", Some((r.revoked_at, &r.wallet_sig)));
            }
        }
    }

    /// Runs `op` as a driver does: fetches the key lists it asks for, and again.
    fn with_keys<T>(
        &mut self,
        relay: &Relay,
        mut op: impl FnMut(&mut Session, &mut ChaCha20Rng, u64) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..3 {
            match op(&mut self.s, &mut self.rng, relay.now) {
                Err(SessionError::NeedKeys(wallets)) => {
                    for w in wallets {
                        self.s.take_keys(&w, &relay.answer(&w), relay.now);
                    }
                }
                other => return other,
            }
        }
        panic!("the session kept asking for keys")
    }

    fn send(&mut self, relay: &mut Relay, to: &User, text: &str) {
        let to = to.me();
        let sending = self.with_keys(relay, |s, rng, now| s.send_text(&to, text, false, now, rng)).unwrap();
        relay.post(&sending.envelope);
        if let Some(copy) = &sending.copy {
            relay.post(copy);
        }
    }

    /// Reads an address after its cursor as a driver does, settling leaves.
    fn read(&mut self, relay: &mut Relay, address: &str) -> Vec<Received> {
        let from = self.s.cursor(address) as usize;
        let stored: Vec<Value> = relay.boxes.get(address).map(|b| b[from.min(b.len())..].to_vec()).unwrap_or_default();
        let mut out = Vec::new();
        for msg in stored {
            let got = self.with_keys(relay, |s, _, now| s.receive(address, &msg, now)).unwrap();
            if let Some(settle) = &got.settle {
                let inbox = self.me().to_string();
                self.read(relay, &inbox);
                let rekey = self.with_keys(relay, |s, rng, now| s.settle_leave(settle, now, rng)).unwrap();
                if let Some(rekey) = rekey {
                    rekey.envelopes.iter().for_each(|e| relay.post(e));
                    let room = rekey.room.clone();
                    self.s.commit_rekey(rekey);
                    self.copy_room_key(relay, &room);
                }
            }
            self.s.advance(address, got.message.seq.unwrap_or(0));
            out.push(got);
        }
        out
    }

    fn inbox(&mut self, relay: &mut Relay) -> Vec<Received> {
        let me = self.me().to_string();
        self.read(relay, &me)
    }

    fn create(&mut self, relay: &mut Relay, name: &str) -> String {
        self.create_with(relay, name, None)
    }

    fn create_with(&mut self, relay: &mut Relay, name: &str, stretched: Option<&[u8; 32]>) -> String {
        let room = Session::fresh_room_id(&mut self.rng);
        self.s.create_room(&room, name, stretched, &mut self.rng).unwrap();
        self.copy_room_key(relay, &room);
        room
    }

    /// Another device of the same wallet, registered.
    fn second_device(&self, relay: &mut Relay, seed: u64) -> User {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let device = Device::generate(&mut rng);
        let wallet = LocalWallet::from_hex(&self.wallet.to_hex()).unwrap();
        let mut u = User { s: Session::new(self.me(), device, SessionState::new()), wallet, rng };
        u.register(relay);
        u
    }

    fn copy_room_key(&mut self, relay: &mut Relay, room: &str) {
        let env = self.with_keys(relay, |s, rng, now| s.room_key_copy(room, now, rng)).unwrap();
        relay.post(&env);
    }

    fn invite(&mut self, relay: &mut Relay, room: &str, who: &User) -> Result<()> {
        let to = who.me();
        let inviting = self.with_keys(relay, |s, rng, now| s.invite(room, &to, now, rng))?;
        relay.post(&inviting.envelope);
        self.s.commit_invite(inviting);
        Ok(())
    }

    fn join(
        &mut self,
        relay: &mut Relay,
        room: &str,
        inviter: Option<&User>,
        stretched: Option<&[u8; 32]>,
    ) -> Result<()> {
        self.inbox(relay);
        let inviter = inviter.map(User::me);
        let joining = self.with_keys(relay, |s, rng, now| s.join(room, inviter.as_ref(), stretched, now, rng))?;
        relay.post(&joining.envelope);
        self.s.commit_join(joining);
        self.copy_room_key(relay, room);
        Ok(())
    }

    fn say(&mut self, relay: &mut Relay, room: &str, text: &str) {
        let env = self.with_keys(relay, |s, rng, now| s.room_text(room, text, now, rng)).unwrap();
        relay.post(&env);
    }

    fn leave(&mut self, relay: &mut Relay, room: &str) {
        let env = self.with_keys(relay, |s, rng, now| s.leave(room, now, rng)).unwrap();
        relay.post(&env);
        self.s.commit_leave(room);
    }

    /// Sends `content` to `to` as a direct message, named or not (an attacker's tool).
    fn dm(&mut self, relay: &mut Relay, to: &User, content: &Content, anonymous: bool) {
        let to = to.me();
        let env = self.with_keys(relay, |s, rng, now| s.seal_dm(&to, content, anonymous, now, rng)).unwrap();
        relay.post(&env);
    }

    fn texts(&mut self, relay: &mut Relay, address: &str) -> Vec<String> {
        self.read(relay, address)
            .into_iter()
            .filter_map(|r| match r.message.content {
                Some(Content::Text { text, .. }) => Some(text),
                _ => None,
            })
            .collect()
    }

    fn epoch(&self, room: &str) -> u32 {
        self.s.room(room).unwrap().epoch
    }

    fn members(&self, room: &str) -> Vec<String> {
        let mut m = self.s.room(room).unwrap().members.clone();
        m.sort();
        m
    }
}

/// Users on `relay`, one per seed.
fn users<const N: usize>(relay: &mut Relay, seeds: [u64; N]) -> [User; N] {
    seeds.map(|seed| User::new(relay, seed))
}

fn wallet_of(w: &LocalWallet) -> Wallet {
    use crate::identity::WalletSigner;
    w.wallet()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Alice's room with Bob in it, both having read everything.
fn two_member_room(relay: &mut Relay, alice: &mut User, bob: &mut User) -> String {
    let room = alice.create(relay, "friends");
    alice.invite(relay, &room, bob).unwrap();
    bob.join(relay, &room, None, None).unwrap();
    alice.read(relay, &room);
    room
}

#[test]
fn a_direct_message_reaches_the_recipient_once() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    alice.send(&mut relay, &bob, "hi bob");
    let got = bob.inbox(&mut relay);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.from.as_deref(), Some(alice.me().as_str()));
    assert!(matches!(&got[0].message.content, Some(Content::Text { text, .. }) if text == "hi bob"));
    assert_eq!(bob.inbox(&mut relay).len(), 0, "the cursor moved");
}

#[test]
fn a_room_message_is_read_by_members() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    bob.say(&mut relay, &room, "hello friends");
    assert_eq!(alice.texts(&mut relay, &room), ["hello friends"]);
    assert_eq!(alice.members(&room), sorted(vec![alice.me().to_string(), bob.me().to_string()]));
}

fn rekey_content(room: &str, epoch: u32, members: Vec<String>) -> Content {
    Content::Rekey { sent_at: T0, room: room.into(), epoch, key: b64(&[9; 32]), check: None, members: Some(members) }
}
use denet_core::encoding::b64;

#[test]
fn attack_an_anonymous_rekey_does_not_take_over_a_room() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut mallory] = users(&mut relay, [1, 2, 6]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    let members = vec![alice.me().to_string(), mallory.me().to_string()];
    mallory.dm(&mut relay, &alice, &rekey_content(&room, 1, members), true);
    let got = alice.inbox(&mut relay);
    let ignored = |r: &Received| r.events.iter().any(|e| matches!(e, Event::Ignored { what, .. } if what == "rekey"));
    assert!(got.iter().any(ignored));
    assert_eq!(alice.epoch(&room), 0);
}

#[test]
fn attack_a_rekey_from_a_non_member_does_not_take_over_a_room() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut mallory] = users(&mut relay, [1, 2, 6]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    mallory.dm(&mut relay, &alice, &rekey_content(&room, 1, vec![mallory.me().to_string()]), false);
    alice.inbox(&mut relay);
    assert_eq!(alice.epoch(&room), 0);
    assert!(!alice.members(&room).contains(&mallory.me().to_string()));
}

#[test]
fn attack_an_invite_for_a_held_room_does_not_replace_its_key() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut mallory] = users(&mut relay, [1, 2, 6]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    let before = alice.s.room(&room).unwrap().clone();
    let invite = Content::Invite {
        sent_at: T0,
        room: room.clone(),
        name: "mine now".into(),
        key: b64(&[9; 32]),
        epoch: 5,
        password: false,
        members: vec![mallory.me().to_string()],
        check: None,
    };
    mallory.dm(&mut relay, &alice, &invite, false);
    alice.inbox(&mut relay);
    assert_eq!(alice.s.room(&room).unwrap(), &before);
    assert!(alice.s.invites_to(&room).is_empty());
}

#[test]
fn attack_a_removed_member_cannot_rejoin_under_an_old_epoch() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol] = users(&mut relay, [1, 2, 3]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    alice.invite(&mut relay, &room, &carol).unwrap();
    carol.join(&mut relay, &room, None, None).unwrap();
    carol.leave(&mut relay, &room);
    alice.read(&mut relay, &room); // alice rotates to epoch 1 for alice and bob
    assert_eq!(alice.epoch(&room), 1);
    // Carol still holds epoch 0: her join under it re-adds nobody.
    let join = carol.s.room_envelope(&room, &Content::Join { sent_at: relay.now }, relay.now, &mut carol.rng).unwrap();
    relay.post(&join);
    alice.read(&mut relay, &room);
    assert!(!alice.members(&room).contains(&carol.me().to_string()));
    bob.inbox(&mut relay);
    bob.read(&mut relay, &room);
    assert_eq!(bob.epoch(&room), 1);
    assert!(!bob.members(&room).contains(&carol.me().to_string()));
}

#[test]
fn a_wrong_room_password_is_refused_and_the_invite_kept() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    // The stretch of a password is what the driver computes (Argon2id); any 32 bytes do here.
    let room = alice.create_with(&mut relay, "secret", Some(&[1; 32]));
    alice.invite(&mut relay, &room, &bob).unwrap();
    assert_eq!(bob.join(&mut relay, &room, None, Some(&[2; 32])).unwrap_err().code(), "wrong_password");
    assert_eq!(bob.join(&mut relay, &room, None, None).unwrap_err().code(), "wrong_password");
    assert!(!relay.boxes.contains_key(&room), "nothing was posted");
    bob.join(&mut relay, &room, None, Some(&[1; 32])).unwrap();
    bob.say(&mut relay, &room, "in");
    assert_eq!(alice.texts(&mut relay, &room), ["in"]);
}

#[test]
fn one_leave_makes_one_rekey() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol] = users(&mut relay, [1, 2, 3]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    alice.invite(&mut relay, &room, &carol).unwrap();
    carol.join(&mut relay, &room, None, None).unwrap();
    bob.inbox(&mut relay);
    carol.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    bob.read(&mut relay, &room);
    // Bob got one rekey (alice's); alice got none back from bob.
    assert_eq!(alice.epoch(&room), 1);
    assert_eq!(bob.epoch(&room), 1);
    let rekeys_from_bob = relay.boxes[alice.me().as_str()].iter().filter(|m| m["from"] == bob.me().as_str()).count();
    assert_eq!(rekeys_from_bob, 0, "bob did not rotate a second time");
    let text = Content::Text { sent_at: relay.now, text: "still here?".into(), name: None, reply_to: None };
    let env = carol.s.room_envelope(&room, &text, relay.now, &mut carol.rng).unwrap();
    relay.post(&env);
    bob.say(&mut relay, &room, "carol cannot read this");
    assert_eq!(carol.texts(&mut relay, &room), ["still here?"]);
}

#[test]
fn attack_an_old_leave_read_again_does_not_remove_a_member_who_came_back() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol] = users(&mut relay, [1, 2, 3]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    bob.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    assert_eq!(alice.epoch(&room), 1);
    // Bob comes back with a new invite (a member who left is not locked out).
    alice.invite(&mut relay, &room, &bob).unwrap();
    bob.join(&mut relay, &room, None, None).unwrap();
    alice.read(&mut relay, &room);
    assert!(alice.members(&room).contains(&bob.me().to_string()));
    // Alice reads the whole history again: the old leave removes nobody, rotates nothing.
    alice.s.state.cursors.insert(room.clone(), 0);
    alice.read(&mut relay, &room);
    assert!(alice.members(&room).contains(&bob.me().to_string()));
    assert_eq!(alice.epoch(&room), 1);
    // A relay serving the old leave again with a new seq does no better, also to a
    // late joiner who never saw it.
    // Bob's messages in the room: join (0), leave (0), join (1).
    let old_leave = relay.boxes[&room].iter().filter(|m| m["from"] == bob.me().as_str()).nth(1).unwrap().clone();
    let mut replay = old_leave.clone();
    for f in ["id", "seq", "received_at"] {
        replay.as_object_mut().unwrap().remove(f);
    }
    alice.invite(&mut relay, &room, &carol).unwrap();
    carol.join(&mut relay, &room, None, None).unwrap();
    relay.post(&replay);
    alice.read(&mut relay, &room);
    carol.read(&mut relay, &room);
    for u in [&alice, &carol] {
        assert!(u.members(&room).contains(&bob.me().to_string()));
    }
    bob.say(&mut relay, &room, "still in");
    assert_eq!(alice.texts(&mut relay, &room), ["still in"]);
}

#[test]
fn attack_a_strangers_invite_does_not_replace_a_friends() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut mallory] = users(&mut relay, [1, 2, 6]);
    let room = alice.create(&mut relay, "friends");
    alice.invite(&mut relay, &room, &bob).unwrap();
    let fake = Content::Invite {
        sent_at: T0,
        room: room.clone(),
        name: "friends".into(),
        key: b64(&[9; 32]),
        epoch: 0,
        password: false,
        members: vec![mallory.me().to_string(), bob.me().to_string()],
        check: None,
    };
    mallory.dm(&mut relay, &bob, &fake, false);
    bob.inbox(&mut relay);
    assert_eq!(bob.s.invites_to(&room).len(), 2, "one invite per inviter");
    assert_eq!(bob.join(&mut relay, &room, None, None).unwrap_err().code(), "conflict");
    bob.join(&mut relay, &room, Some(&alice), None).unwrap();
    bob.say(&mut relay, &room, "with alice's key");
    assert_eq!(alice.texts(&mut relay, &room), ["with alice's key"]);
}

#[test]
fn attack_an_invite_naming_a_wallet_is_refused() {
    let mut relay = Relay::new();
    let [mut bob, mut mallory] = users(&mut relay, [2, 6]);
    let fake = Content::Invite {
        sent_at: T0,
        room: mallory.me().to_string(),
        name: "a wallet".into(),
        key: b64(&[9; 32]),
        epoch: 0,
        password: false,
        members: vec![mallory.me().to_string()],
        check: None,
    };
    mallory.dm(&mut relay, &bob, &fake, false);
    let got = bob.inbox(&mut relay);
    assert!(got[0].events.iter().any(|e| matches!(e, Event::Ignored { what, .. } if what == "invite")));
    assert!(bob.s.state().invites.is_empty());
}

#[test]
fn attack_a_revoked_device_gets_nothing_and_a_new_one_gets_everything_within_seconds() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    alice.send(&mut relay, &bob, "one");
    // Bob revokes this device and registers a second one.
    bob.revoke(&mut relay);
    let mut bob2 = User { wallet: LocalWallet::from_hex(&bob.wallet.to_hex()).unwrap(), ..User::new(&mut relay, 20) };
    bob2.s = Session::new(bob.me(), Device::generate(&mut bob2.rng), SessionState::new());
    bob2.register(&mut relay);
    // Within FRESH_MS alice seals to the list she holds; after it, to the relay's new one.
    relay.tick(FRESH_MS + 1);
    alice.send(&mut relay, &bob, "two");
    assert_eq!(bob2.texts(&mut relay, bob.me().as_str()), ["two"]);
    let old = bob.inbox(&mut relay);
    assert!(old[1].message.error.is_some(), "the revoked device cannot open it");
    bob.s.take_keys(&bob.me(), &relay.answer(&bob.me()), relay.now);
    assert_eq!(bob.s.registration(relay.now), Ok(Registration::NewKeys));
    bob2.s.take_keys(&bob.me(), &relay.answer(&bob.me()), relay.now);
    assert_eq!(bob2.s.registration(relay.now), Ok(Registration::Active));
}

#[test]
fn attack_a_message_signed_after_its_key_was_revoked_is_not_believed_once_the_list_is_older_than_fresh_ms() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    alice.send(&mut relay, &bob, "before");
    bob.inbox(&mut relay);
    relay.tick(1);
    alice.revoke(&mut relay);
    relay.tick(FRESH_MS + 1);
    // The stolen device still signs; bob's list of alice is older than the message.
    alice.send(&mut relay, &bob, "after");
    let got = bob.inbox(&mut relay);
    assert!(got[0].message.error.as_deref().unwrap().contains("not a key of"));
}

#[test]
fn attack_a_failed_invite_counts_nobody_and_a_rekey_reaches_pending_invitees() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol, mut dave] = users(&mut relay, [1, 2, 3, 4]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    // Dave has no active device: the invite fails and changes nothing.
    dave.revoke(&mut relay);
    relay.tick(FRESH_MS + 1);
    assert_eq!(alice.invite(&mut relay, &room, &dave).unwrap_err().code(), "not_found");
    assert!(!alice.members(&room).contains(&dave.me().to_string()));
    // Carol is invited but joins only after Bob left and Alice rotated.
    alice.invite(&mut relay, &room, &carol).unwrap();
    bob.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    assert_eq!(alice.epoch(&room), 1);
    carol.join(&mut relay, &room, None, None).unwrap();
    assert_eq!(carol.epoch(&room), 1);
    alice.say(&mut relay, &room, "welcome carol");
    assert!(carol.texts(&mut relay, &room).contains(&"welcome carol".to_string()));
}

#[test]
fn attack_rekeys_for_rooms_never_joined_are_not_kept() {
    let mut relay = Relay::new();
    let [mut bob, mut mallory] = users(&mut relay, [2, 6]);
    for i in 0..20u8 {
        let room = hex::encode([i; 32]);
        mallory.dm(&mut relay, &bob, &rekey_content(&room, 1, vec![mallory.me().to_string()]), false);
    }
    bob.inbox(&mut relay);
    assert!(bob.s.state().held_rekeys.is_empty());
}

#[test]
fn the_state_keeps_no_room_password_and_round_trips_with_its_version() {
    let mut relay = Relay::new();
    let mut alice = User::new(&mut relay, 1);
    let room = Session::fresh_room_id(&mut alice.rng);
    let stretched = crate::room::stretch("hunter2", &room).unwrap();
    alice.s.create_room(&room, "p", Some(&stretched), &mut alice.rng).unwrap();
    let text = serde_json::to_string(alice.s.state()).unwrap();
    assert!(!text.contains("hunter2"));
    let back = SessionState::load(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(&back, alice.s.state());
    assert_eq!(back.version, STATE_VERSION);
    assert!(back.rooms[&room].stretched.is_some());
}

#[test]
fn an_unversioned_state_migrates_with_its_password_stretched_and_forgotten() {
    let room = "ab".repeat(32);
    let key = b64(&[3; 32]);
    let message_key = b64(crate::room::message_key(&[3; 32], &room, Some("pw")).unwrap().as_ref());
    let alice = "0x".to_string() + &"11".repeat(20);
    // The CLI's state.json and the SDK's IndexedDB record (which adds `device`) of the previous version.
    let v0 = json!({
        "device": {"sign_seed": "x", "dh_secret": "y"},
        "cursors": {alice.clone(): 7},
        "rooms": {room.clone(): {"name": "n", "password": "pw", "epoch": 2,
            "keys": {"2": {"key": key, "message_key": message_key}}, "openers": {}, "members": [alice.clone()], "left": false}},
        "invites": {"cd".repeat(32): {"from": alice.clone(), "name": "m", "key": key, "epoch": 0, "password": false,
            "members": [alice.clone()], "check": null}},
        "held_rekeys": {},
    });
    let s = SessionState::load(&v0).unwrap();
    assert_eq!(s.version, STATE_VERSION);
    assert_eq!(s.cursors[&alice], 7);
    let r = &s.rooms[&room];
    assert!(!serde_json::to_string(&s).unwrap().contains("\"pw\""));
    let stretched = b64_decode_exact::<32>(r.stretched.as_deref().unwrap()).unwrap();
    let again = crate::room::message_key_stretched(&[3; 32], &room, Some(&stretched));
    assert_eq!(b64(again.as_ref()), message_key, "the stretch derives the same keys");
    assert_eq!(r.since_of(&alice), 2);
    assert_eq!(s.invites[&"cd".repeat(32)][&alice].name, "m");
    assert!(SessionState::load(&json!({"version": 99})).is_err());
}
use denet_core::encoding::b64_decode_exact;

#[test]
fn attack_a_relay_edited_from_or_id_changes_nothing() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mallory] = users(&mut relay, [1, 2, 6]);
    alice.send(&mut relay, &bob, "from alice");
    let stored = relay.boxes.get_mut(bob.me().as_str()).unwrap();
    let mut edited = stored[0].clone();
    edited["from"] = mallory.me().as_str().into();
    edited["seq"] = 2.into();
    let mut renamed = stored[0].clone();
    renamed["id"] = "00".repeat(32).into();
    renamed["seq"] = 3.into();
    stored.push(edited);
    stored.push(renamed);
    let got = bob.inbox(&mut relay);
    assert!(got[1].message.error.is_some(), "a changed from breaks the signature");
    assert_eq!(got[2].message.id, got[0].message.id, "the id is computed, not the relay's");
}

#[test]
fn a_second_device_shows_both_sides_of_a_conversation() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let mut alice2 = alice.second_device(&mut relay, 11);
    alice.send(&mut relay, &bob, "hi bob");
    bob.send(&mut relay, &alice, "hi alice");
    let got = alice2.inbox(&mut relay);
    let seen: Vec<(String, String)> = got
        .iter()
        .filter_map(|r| match &r.message.content {
            Some(Content::Text { text, .. }) => Some((r.message.from.clone().unwrap(), text.clone())),
            Some(Content::Sent { to, content, .. }) => match content.as_ref() {
                Content::Text { text, .. } => Some((format!("me to {to}"), text.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let expected =
        vec![(format!("me to {}", bob.me()), "hi bob".to_string()), (bob.me().to_string(), "hi alice".into())];
    assert_eq!(seen, expected);
}

#[test]
fn a_room_made_or_joined_on_one_device_is_held_by_the_others() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let (mut alice2, mut bob2) = (alice.second_device(&mut relay, 11), bob.second_device(&mut relay, 12));
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    alice2.inbox(&mut relay);
    bob2.inbox(&mut relay);
    bob.say(&mut relay, &room, "from bob's first device");
    alice2.say(&mut relay, &room, "from alice's second device");
    assert_eq!(bob2.texts(&mut relay, &room), ["from bob's first device", "from alice's second device"]);
    // A rekey made on one device reaches the other through the copy.
    let mut carol = User::new(&mut relay, 3);
    alice.invite(&mut relay, &room, &carol).unwrap();
    carol.join(&mut relay, &room, None, None).unwrap();
    carol.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    assert_eq!(alice.epoch(&room), 1);
    alice2.inbox(&mut relay);
    assert_eq!(alice2.epoch(&room), 1);
    // Leaving on one device leaves on all of them; an old copy read again does not rejoin.
    alice2.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    assert!(alice.s.room(&room).unwrap().left);
    alice.s.state.cursors.clear();
    alice.inbox(&mut relay);
    assert!(alice.s.room(&room).unwrap().left);
}

#[test]
fn attack_a_copy_from_another_wallet_is_not_believed() {
    let mut relay = Relay::new();
    let [mut bob, mut mallory] = users(&mut relay, [2, 6]);
    let room = Session::fresh_room_id(&mut mallory.rng);
    let members = vec![bob.me().to_string(), mallory.me().to_string()];
    let key = Content::RoomKey {
        sent_at: T0,
        room: room.clone(),
        name: "yours".into(),
        epoch: 0,
        key: b64(&[9; 32]),
        stretched: None,
        members,
    };
    let text = Content::Text { sent_at: T0, text: "I never said this".into(), name: None, reply_to: None };
    let sent =
        Content::Sent { sent_at: T0, to: mallory.me().to_string(), original: "00".repeat(32), content: Box::new(text) };
    mallory.dm(&mut relay, &bob, &key, false);
    mallory.dm(&mut relay, &bob, &sent, false);
    let got = bob.inbox(&mut relay);
    assert!(bob.s.state().rooms.is_empty());
    assert!(got.iter().all(|r| r.message.content.is_none() && r.message.error.is_some()));
}

#[test]
fn attack_a_flood_of_invites_from_one_stranger_stays_bounded_and_a_friends_invite_still_counts() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut mallory] = users(&mut relay, [1, 2, 6]);
    for _ in 0..(MAX_INVITES_PER_INVITER + 10) {
        let room = Session::fresh_room_id(&mut mallory.rng);
        mallory.dm(&mut relay, &bob, &invite_content(&room, vec![mallory.me().to_string()]), false);
    }
    bob.inbox(&mut relay);
    let from_mallory = bob.s.invite_views().iter().filter(|i| i.from == mallory.me().as_str()).count();
    assert_eq!(from_mallory, MAX_INVITES_PER_INVITER);
    let room = alice.create(&mut relay, "friends");
    alice.invite(&mut relay, &room, &bob).unwrap();
    bob.join(&mut relay, &room, Some(&alice), None).unwrap();
}

fn invite_content(room: &str, members: Vec<String>) -> Content {
    Content::Invite {
        sent_at: T0,
        room: room.into(),
        name: "x".into(),
        key: b64(&[9; 32]),
        epoch: 0,
        password: false,
        members,
        check: None,
    }
}

#[test]
fn attack_a_member_who_comes_back_is_not_left_writing_under_the_key_the_next_leaver_holds() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol] = users(&mut relay, [1, 2, 3]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    alice.invite(&mut relay, &room, &carol).unwrap();
    carol.join(&mut relay, &room, None, None).unwrap();
    bob.inbox(&mut relay);
    bob.leave(&mut relay, &room);
    alice.read(&mut relay, &room); // epoch 1: alice, carol
    alice.invite(&mut relay, &room, &bob).unwrap(); // bob pending at epoch 1
    carol.inbox(&mut relay);
    carol.read(&mut relay, &room);
    carol.leave(&mut relay, &room);
    alice.read(&mut relay, &room); // epoch 2: alice and bob (pending)
    assert_eq!(alice.epoch(&room), 2);
    bob.join(&mut relay, &room, None, None).unwrap();
    assert_eq!(bob.epoch(&room), 2, "the rekey for the pending invitee counts at the join");
    bob.say(&mut relay, &room, "back, and carol cannot read it");
    assert!(!carol.texts(&mut relay, &room).contains(&"back, and carol cannot read it".to_string()));
}

#[test]
fn attack_a_left_room_takes_no_new_key() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    bob.leave(&mut relay, &room);
    // Alice, still on bob's stale member list, rekeys far ahead.
    let members = vec![alice.me().to_string(), bob.me().to_string()];
    alice.dm(&mut relay, &bob, &rekey_content(&room, 1000, members), false);
    bob.inbox(&mut relay);
    assert_eq!(bob.epoch(&room), 0);
}

#[test]
fn attack_one_member_cannot_crowd_out_the_rekey_an_invitee_needs() {
    let mut relay = Relay::new();
    let [mut alice, mut bob, mut carol] = users(&mut relay, [1, 2, 3]);
    let room = two_member_room(&mut relay, &mut alice, &mut carol);
    alice.invite(&mut relay, &room, &bob).unwrap();
    let members = vec![alice.me().to_string(), carol.me().to_string(), bob.me().to_string()];
    for epoch in 2..(MAX_HELD_REKEYS as u32 + 7) {
        carol.dm(&mut relay, &bob, &rekey_content(&room, epoch, members.clone()), false);
    }
    carol.leave(&mut relay, &room);
    alice.read(&mut relay, &room); // alice's rekey to epoch 1, for herself and bob
    bob.inbox(&mut relay);
    let held = &bob.s.state().held_rekeys[&room];
    assert!(held.iter().filter(|h| h.from == carol.me().as_str()).count() <= MAX_HELD_REKEYS_PER_SENDER);
    assert!(held.iter().any(|h| h.from == alice.me().as_str()), "alice's rekey is held despite carol's flood");
}

#[test]
fn attack_losing_rekeys_for_one_epoch_stay_bounded() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    for i in 0..40u8 {
        let members = vec![alice.me().to_string(), bob.me().to_string()];
        let c = Content::Rekey {
            sent_at: T0,
            room: room.clone(),
            epoch: 0,
            key: b64(&[i + 1; 32]),
            check: None,
            members: Some(members),
        };
        bob.dm(&mut relay, &alice, &c, false);
    }
    alice.inbox(&mut relay);
    let r = alice.s.room(&room).unwrap();
    assert!(r.openers.get(&0).map_or(0, Vec::len) <= MAX_OPENERS_PER_EPOCH);
}

#[test]
fn an_old_own_leave_does_not_leave_a_device_that_learned_of_the_rejoin_by_copy() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let mut bob2 = bob.second_device(&mut relay, 12);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    bob.leave(&mut relay, &room);
    alice.read(&mut relay, &room);
    alice.invite(&mut relay, &room, &bob).unwrap();
    bob.join(&mut relay, &room, None, None).unwrap();
    bob2.inbox(&mut relay); // room_key copies of epochs 0 and 1
    bob2.read(&mut relay, &room); // bob's old leave under epoch 0 among them
    assert!(!bob2.s.room(&room).unwrap().left);
    assert_eq!(bob2.epoch(&room), 1);
}

/// Registers `device` as a device of `user`'s wallet in `relay` (a recovery device).
fn register_device(relay: &mut Relay, user: &User, device: &Device, expires_at: u64) {
    let mut bundle = denet_core::Bundle {
        wallet: user.me(),
        sign_key: device.sign_key(),
        dh_key: device.dh_key(),
        issued_at: relay.now - 1,
        expires_at,
        auth: None,
        wallet_sig: String::new(),
    };
    bundle.wallet_sig = user.wallet.sign_now(&bundle.statement().unwrap());
    relay.keys.entry(user.me()).or_default().push(listed_key(&bundle.to_json(), "active", None));
}

#[test]
fn a_merged_backup_loses_no_key_of_either_side() {
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [1, 2]);
    let room = two_member_room(&mut relay, &mut alice, &mut bob);
    let mut older = alice.s.state().clone();
    // Alice rotates; another device of hers still holds only epoch 0 and a room of its own.
    let rekey = alice.with_keys(&relay, |s, rng, now| s.rekey(&room, now, rng)).unwrap();
    alice.s.commit_rekey(rekey);
    let other = Session::fresh_room_id(&mut alice.rng);
    older.rooms.insert(other.clone(), RoomState { name: "theirs".into(), epoch: 3, ..Default::default() });
    older.add_dh_secret("c2VjcmV0");
    let mut merged = alice.s.state().clone();
    merged.merge(&older);
    let r = &merged.rooms[&room];
    assert_eq!((r.epoch, r.keys.len()), (1, 2), "both epochs' keys, the newer epoch");
    assert_eq!(r.keys[&0], older.rooms[&room].keys[&0]);
    assert!(merged.rooms.contains_key(&other) && merged.dh_secrets == ["c2VjcmV0"]);
    // The other way round gives the same keys.
    let mut back = older.clone();
    back.merge(alice.s.state());
    assert_eq!(back.rooms[&room].keys, merged.rooms[&room].keys);
    assert_eq!(back.rooms[&room].epoch, 1);
}

#[test]
fn a_renewed_recovery_device_keeps_the_old_ones_secret_for_what_was_sealed_to_it() {
    use crate::backup::{Blob, RecoveryCode, RecoveryKeys, Setup, Unlock};
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [3, 4]);
    let setup = Setup::new(&mut alice.rng);
    let expires = relay.now + 40 * denet_core::limits::DAY_MS;
    register_device(&mut relay, &alice, &setup.recovery, expires);
    let plan = alice.s.backup_plan(RecoveryKeys::of(&setup.recovery, expires), None, relay.now).unwrap();
    let me = alice.me();
    let done = setup.finish(&me, None, &plan.contents, plan.version, &mut alice.rng).unwrap();
    assert!(!done.by_wallet, "no signatures: the code only");
    alice.s.hold_backup(&plan.contents, &done.key, plan.version);
    // Alice's phone is lost: what bob sends now is sealed to the recovery device only.
    alice.revoke(&mut relay);
    relay.tick(FRESH_MS + 1);
    bob.send(&mut relay, &alice, "for the recovery device");
    // Ten days later the recovery device is renewed (less than 30 days left).
    relay.tick(10 * denet_core::limits::DAY_MS);
    let write = alice.s.backup_update(&done.blob, None, &mut alice.rng).unwrap();
    assert!(write.needs_renewal(relay.now));
    let next = Device::generate(&mut alice.rng);
    let renewed = RecoveryKeys::of(&next, relay.now + 365 * denet_core::limits::DAY_MS);
    let write = alice.s.backup_update(&done.blob, Some(renewed.clone()), &mut alice.rng).unwrap();
    assert!(!write.needs_renewal(relay.now));
    assert_eq!(write.contents.recovery, renewed);
    // A new device restores the renewed backup and reads what was sealed to the old one.
    let mut fresh = alice.second_device(&mut relay, 5);
    let code = RecoveryCode::parse(&done.code).unwrap();
    assert_eq!(fresh.s.backup_restore(&write.blob, Unlock::Code(&code)).unwrap(), 2);
    assert_eq!(fresh.texts(&mut relay, &me.to_string()), ["for the recovery device"]);
    // Without the backup, the same device reads nothing of it.
    let mut bare = alice.second_device(&mut relay, 6);
    assert!(bare.texts(&mut relay, &me.to_string()).is_empty());
    assert_eq!(Blob::parse(&write.blob).unwrap().version, 2);
}

/// Alice's backup, set up by her device with a registered recovery device: (the setup's
/// blob, its recovery code, the recovery device).
fn backed_up(relay: &mut Relay, alice: &mut User) -> (Vec<u8>, String, Device) {
    use crate::backup::{RecoveryKeys, Setup};
    let setup = Setup::new(&mut alice.rng);
    let expires = relay.now + 365 * denet_core::limits::DAY_MS;
    register_device(relay, alice, &setup.recovery, expires);
    let keys = RecoveryKeys::of(&setup.recovery, expires);
    let recovery = Device::from_secrets(*setup.recovery.sign_seed(), *setup.recovery.dh_secret());
    let plan = alice.with_keys(relay, |s, _, now| s.backup_plan(keys.clone(), None, now)).unwrap();
    let me = alice.me();
    let done = setup.finish(&me, None, &plan.contents, plan.version, &mut alice.rng).unwrap();
    alice.s.hold_backup(&plan.contents, &done.key, plan.version);
    (done.blob, done.code.to_string(), recovery)
}

/// `blob` sealed again as version `u64::MAX - 1` (so that [`rewritten`] makes the last).
fn last_but_one(s: &Session, blob: &[u8]) -> Vec<u8> {
    let parsed = crate::backup::Blob::parse(blob).unwrap();
    let key = denet_core::encoding::b64_decode_exact::<32>(&s.state().backup.as_ref().unwrap().key).unwrap();
    let contents = parsed.open(s.me(), &key).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(98);
    crate::backup::seal(&contents, &key, &parsed.wraps, u64::MAX - 1, s.me(), &mut rng).unwrap()
}

/// `blob` opened with the device's key, changed by `f`, sealed again as the next version:
/// what a device holding the backup key (a stolen one) can write.
fn rewritten(s: &Session, blob: &[u8], f: impl FnOnce(&mut crate::backup::Contents)) -> Vec<u8> {
    let parsed = crate::backup::Blob::parse(blob).unwrap();
    let key = denet_core::encoding::b64_decode_exact::<32>(&s.state().backup.as_ref().unwrap().key).unwrap();
    let mut contents = parsed.open(s.me(), &key).unwrap();
    f(&mut contents);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    crate::backup::seal(&contents, &key, &parsed.wraps, parsed.version + 1, s.me(), &mut rng).unwrap()
}

#[test]
fn attack_a_backup_naming_another_device_as_recovery_revokes_nothing() {
    use crate::backup::RecoveryKeys;
    let mut relay = Relay::new();
    let [mut alice] = users(&mut relay, [7]);
    let victim = alice.second_device(&mut relay, 8);
    let (blob, _, recovery) = backed_up(&mut relay, &mut alice);
    let next = || RecoveryKeys::of(&Device::generate(&mut ChaCha20Rng::seed_from_u64(3)), relay.now + 1);
    // Set up again over the honest backup: its recovery device is the one to revoke.
    let plan = alice.with_keys(&relay, |s, _, now| s.backup_plan(next(), Some(&blob), now)).unwrap();
    assert_eq!(plan.replaces, Some(recovery.sign_key().to_b64()));
    // A writer names another device of the wallet (or this one) as the recovery device.
    for named in [victim.s.device().sign_key().to_b64(), alice.s.device().sign_key().to_b64()] {
        let forged = rewritten(&alice.s, &blob, |c| c.recovery.sign_key = named);
        let plan = alice.with_keys(&relay, |s, _, now| s.backup_plan(next(), Some(&forged), now)).unwrap();
        assert_eq!(plan.replaces, None, "nothing is revoked on a forged recovery key");
    }
    // Or the victim's key with a DH secret of its own choosing: the directory's dh_key differs.
    let forged = rewritten(&alice.s, &blob, |c| {
        c.recovery.sign_key = victim.s.device().sign_key().to_b64();
        c.recovery.dh_secret = denet_core::encoding::b64(&[5u8; 32]);
    });
    let plan = alice.with_keys(&relay, |s, _, now| s.backup_plan(next(), Some(&forged), now)).unwrap();
    assert_eq!(plan.replaces, None);
}

#[test]
fn attack_max_cursors_in_a_backup_do_not_silence_the_inbox() {
    use crate::backup::{RecoveryCode, Unlock};
    let mut relay = Relay::new();
    let [mut alice, mut bob] = users(&mut relay, [9, 10]);
    let (blob, code, _) = backed_up(&mut relay, &mut alice);
    let me = alice.me().to_string();
    let forged = rewritten(&alice.s, &blob, |c| {
        c.state.cursors.insert(me.clone(), u64::MAX);
    });
    bob.send(&mut relay, &alice, "still seen");
    let mut fresh = alice.second_device(&mut relay, 11);
    fresh.s.backup_restore(&forged, Unlock::Code(&RecoveryCode::parse(&code).unwrap())).unwrap();
    assert_eq!(fresh.s.cursor(&me), 0);
    assert_eq!(fresh.texts(&mut relay, &me), ["still seen"]);
}

#[test]
fn attack_a_blob_at_the_last_version_or_an_older_one_is_refused_not_a_panic() {
    let mut relay = Relay::new();
    let [mut alice] = users(&mut relay, [12]);
    let (blob, _, _) = backed_up(&mut relay, &mut alice);
    let mut last = blob.clone();
    last[4..12].copy_from_slice(&u64::MAX.to_be_bytes());
    // The version is bound into the AEAD: a relay's changed header does not open.
    assert!(alice.s.backup_update(&last, None, &mut alice.rng).is_err());
    let refused = alice
        .with_keys(&relay, |s, _, now| s.backup_plan(crate::backup::RecoveryKeys::of(s.device(), 1), Some(&last), now));
    assert!(matches!(refused, Err(SessionError::Refused { .. })));
    // Sealed at the last version by a holder of the key: no next version, refused.
    let sealed_last = rewritten(&alice.s, &last_but_one(&alice.s, &blob), |_| {});
    let err = alice.s.backup_update(&sealed_last, None, &mut alice.rng).err().expect("refused").to_string();
    assert!(err.contains("corrupt_backup"), "{err}");
    // Version 2 written; the relay serves version 1 again: not written over.
    let write = alice.s.backup_update(&blob, None, &mut alice.rng).unwrap();
    alice.s.backup_written(&write);
    let err = alice.s.backup_update(&blob, None, &mut alice.rng).err().expect("refused").to_string();
    assert!(err.contains("stale_backup"), "{err}");
    assert!(alice.s.backup_update(&write.blob, None, &mut alice.rng).is_ok());
}
