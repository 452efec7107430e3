//! `denet-sign`: a tiny helper to try the relay by hand with curl. It keeps one
//! test identity (wallet key, device keys) in a JSON file and prints signed JSON.
//!
//! ```text
//! denet-sign new FILE                       create an identity, print its wallet
//! denet-sign bundle FILE                    a device bundle valid 30 days
//! denet-sign revoke FILE                    a revocation of the device key
//! denet-sign envelope FILE TO TEXT          a named envelope (TEXT as the body bytes)
//! denet-sign anonymous TO TEXT              an anonymous envelope with a fresh key
//! denet-sign headers FILE METHOD PATH       curl -H arguments of a signed request
//! ```
//! The body is not encrypted: end-to-end encryption is the client's (`denet`) job.

use denet_e2e::actors::{User, anonymous_envelope, now_ms};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["new", file] => {
            let user = User::new();
            let saved = json!({
                "wallet_key": hex::encode(user.wallet_key.to_bytes()),
                "device_seed": hex::encode(user.device.to_bytes()),
                "dh_key": hex::encode(user.dh_key),
            });
            std::fs::write(file, saved.to_string()).expect("write identity file");
            println!("{}", user.wallet);
        }
        ["bundle", file] => println!("{}", load(file).bundle(30)),
        ["revoke", file] => {
            let user = load(file);
            println!("{}", user.revocation(user.sign_key()));
        }
        ["envelope", file, to, text] => println!("{}", load(file).envelope(to, text.as_bytes())),
        ["anonymous", to, text] => println!("{}", anonymous_envelope(to, text.as_bytes())),
        ["headers", file, method, path] => {
            for (name, value) in load(file).signed_headers(method, path, now_ms()) {
                print!("-H {name}:{value} ");
            }
            println!();
        }
        _ => {
            eprintln!("usage: denet-sign new|bundle|revoke|envelope|anonymous|headers … (see the source header)");
            std::process::exit(2);
        }
    }
}

fn load(file: &str) -> User {
    let text = std::fs::read_to_string(file).expect("read identity file");
    let saved: serde_json::Value = serde_json::from_str(&text).expect("identity JSON");
    let bytes = |field: &str| -> [u8; 32] {
        hex::decode(saved[field].as_str().expect("field")).expect("hex").try_into().expect("32 bytes")
    };
    let wallet_key = k256::ecdsa::SigningKey::from_slice(&bytes("wallet_key")).expect("wallet key");
    let wallet = denet_core::Wallet::from_verifying_key(wallet_key.verifying_key());
    let device = ed25519_dalek::SigningKey::from_bytes(&bytes("device_seed"));
    User { wallet_key, wallet, device, dh_key: bytes("dh_key") }
}
