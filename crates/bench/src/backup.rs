//! `denet-bench --backup` (#22): what the key backup costs a user with `rooms` rooms and
//! `dms` direct messages. The blob's size, and the time a new device takes to restore it
//! (register, fetch, unlock, open, read the whole inbox and every room through the
//! session: open every message, apply every key), against the floor of pulling the same
//! pages without opening anything, on the same relay in the same run.

use denet_client::driver::{Driver, With};
use denet_client::identity::{Device, LocalWallet, WalletSigner};
use denet_client::net::{RelayClient, now_ms};
use denet_client::session::{Session, SessionState};
use denet_e2e::Relay;
use rand_core::OsRng;
use serde_json::{Value, json};
use std::time::Instant;

fn driver(relay: &Relay, wallet: &LocalWallet) -> Driver {
    let session = Session::new(wallet.wallet(), Device::generate(&mut OsRng), SessionState::new());
    Driver::new(RelayClient::new(&relay.base), session, Box::new(|_| Ok(())))
}

async fn register(d: &mut Driver, wallet: &LocalWallet) {
    let now = now_ms();
    let bundle =
        d.signed_bundle(d.session.device(), wallet, now, now + 365 * denet_core::limits::DAY_MS).await.unwrap();
    d.relay.put_bundle(&bundle).await.unwrap();
    d.session.forget_keys(&wallet.wallet());
}

/// Pulls every page of `address` without opening anything; returns how many messages.
async fn pull_raw(d: &Driver, address: &str) -> usize {
    let me = d.session.me().clone();
    let (mut after, mut n) = (0, 0);
    loop {
        let page = if address == me.as_str() {
            d.relay.pull_inbox(d.session.device(), &me, after, 500, 0).await
        } else {
            d.relay.pull_room(address, after, 500, 0).await
        }
        .unwrap();
        n += page.messages.len();
        after = page.next;
        if !page.more {
            return n;
        }
    }
}

pub async fn backup_restore(relay: &Relay, rooms: usize, room_messages: usize, dms: usize) -> Value {
    let (alice_w, bob_w) = (LocalWallet::generate(&mut OsRng), LocalWallet::generate(&mut OsRng));
    let (mut alice, mut bob) = (driver(relay, &alice_w), driver(relay, &bob_w));
    register(&mut alice, &alice_w).await;
    register(&mut bob, &bob_w).await;
    alice.backup_setup(&alice_w).await.unwrap();
    let mut room_ids = Vec::new();
    for i in 0..rooms {
        let id = Session::fresh_room_id(&mut OsRng);
        alice.session.create_room(&id, &format!("room {i}"), None, &mut OsRng).unwrap();
        alice.copy_room_key(&id).await.unwrap();
        for j in 0..room_messages {
            let env =
                alice.with_keys(|s, now| s.room_text(&id, &format!("message {j}"), now, &mut OsRng)).await.unwrap();
            alice.post(&env).await.unwrap();
        }
        room_ids.push(id);
    }
    // Half each way; alice's inbox also holds the copy of each she sent.
    let (a, b) = (alice_w.wallet(), bob_w.wallet());
    for i in 0..dms / 2 {
        for (from, to) in [(&mut bob, &a), (&mut alice, &b)] {
            let text = format!("direct message {i}");
            let sending = from.with_keys(|s, now| s.send_text(to, &text, false, now, &mut OsRng)).await.unwrap();
            from.post(&sending.envelope).await.unwrap();
            if let Some(copy) = &sending.copy {
                from.post(copy).await.unwrap();
            }
        }
    }
    alice.backup_sync(Some(&alice_w), false).await.unwrap();
    let blob = alice.relay.get_backup(alice.session.device(), &a).await.unwrap().expect("a backup");

    let mut fresh = driver(relay, &alice_w);
    register(&mut fresh, &alice_w).await;
    let started = Instant::now();
    let restored = fresh.backup_restore(With::Wallet(&alice_w)).await.unwrap();
    let restore_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let mut pulled = pull_raw(&fresh, a.as_str()).await;
    for room in &room_ids {
        pulled += pull_raw(&fresh, room).await;
    }
    let floor_ms = started.elapsed().as_secs_f64() * 1000.0;
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "scenario": "backup_restore", "rooms": rooms, "room_messages": rooms * room_messages, "dms": dms,
        "blob_bytes": blob.len(), "messages_read": restored.read, "messages_pulled": pulled,
        "unreadable": restored.unreadable, "restore_ms": round1(restore_ms), "pull_floor_ms": round1(floor_ms),
        "ratio_to_floor": round1(restore_ms / floor_ms.max(1e-9)),
        "restore_ms_per_message": (restore_ms / restored.read.max(1) as f64 * 1000.0).round() / 1000.0,
    })
}
