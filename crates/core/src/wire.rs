//! The wire vocabulary (PROTOCOL.md §1.3, §2, §4, §4.2, §7): every JSON object
//! that crosses between a relay and a client or a peer, each with one encoder and
//! one decoder, used by the relay, the client, the tests, the bench and the fuzzers
//! (as quinn-proto's `Frame` is). The envelope, bundle and revocation themselves
//! live in their own modules; here is what is built around them.

use crate::envelope::Envelope;
use crate::error::{Error, ErrorCode};
use crate::fields::Fields;
use crate::socket::valid_ref;
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::envelope::{STORED_FIELDS, StoredFields};

/// Where a stored envelope stands on the relay that returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMeta {
    /// The id the relay reported; a client computes its own with [`Envelope::id`].
    pub id: String,
    pub seq: u64,
    pub received_at: u64,
}

/// Reads a stored envelope: the envelope (shape checked, not the signature) and the
/// relay's `id`, `seq`, `received_at`.
pub fn parse_stored(value: &Value) -> Result<(Envelope, StoredMeta), Error> {
    let f = Fields::new(value, "stored envelope")?;
    let meta = StoredMeta { id: f.str("id")?.to_owned(), seq: f.u64("seq")?, received_at: f.u64("received_at")? };
    let mut fields = value.as_object().cloned().unwrap_or_default();
    fields.retain(|k, _| !STORED_FIELDS.contains(&k.as_str()));
    let envelope = Envelope::parse(&Value::Object(fields), usize::MAX)?;
    Ok((envelope, meta))
}

/// The answer to a post (`POST /v1/messages`), and the fields of an `ack` frame.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub id: String,
    pub seq: u64,
    pub received_at: u64,
    pub duplicate: bool,
}

impl Ack {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an ack serialises")
    }

    pub fn parse(value: &Value) -> Result<Ack, Error> {
        Ack::deserialize(value).map_err(|e| Error::malformed(format!("ack: {e}")))
    }
}

/// A relay → client WebSocket frame (§4.2).
#[derive(Clone, Debug, PartialEq)]
pub enum ServerFrame {
    /// A stored envelope (as [`StoredFields::to_json`] makes it).
    Message(Value),
    Ready {
        next: u64,
    },
    /// A replay page was sent and more follow: the client asks for the next page
    /// with [`ClientFrame::Next`] when it has read this one (§4.2, from 1.3).
    More {
        next: u64,
    },
    Ack {
        reference: String,
        ack: Ack,
    },
    Error {
        reference: Option<String>,
        code: ErrorCode,
        message: String,
    },
    Pong,
}

impl ServerFrame {
    /// The `error` frame of a refusal.
    pub fn error(reference: Option<&str>, e: Error) -> ServerFrame {
        ServerFrame::Error { reference: reference.map(str::to_owned), code: e.code, message: e.message }
    }

    pub fn to_json(&self) -> Value {
        match self {
            ServerFrame::Message(stored) => json!({"type": "message", "message": stored}),
            ServerFrame::Ready { next } => json!({"type": "ready", "next": next}),
            ServerFrame::More { next } => json!({"type": "more", "next": next}),
            ServerFrame::Ack { reference, ack } => {
                let mut v = ack.to_json();
                v["type"] = "ack".into();
                v["ref"] = reference.as_str().into();
                v
            }
            ServerFrame::Error { reference, code, message } => {
                json!({"type": "error", "ref": reference, "code": code.as_str(), "message": message})
            }
            ServerFrame::Pong => json!({"type": "pong"}),
        }
    }

    pub fn encode(&self) -> String {
        self.to_json().to_string()
    }

    pub fn decode(text: &str) -> Result<ServerFrame, Error> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::malformed(format!("frame is not JSON: {e}")))?;
        let f = Fields::new(&value, "frame")?;
        let frame = match f.str("type")? {
            "message" => {
                f.deny_unknown(&["type", "message"])?;
                ServerFrame::Message(f.value("message")?.clone())
            }
            "ready" => {
                f.deny_unknown(&["type", "next"])?;
                ServerFrame::Ready { next: f.u64("next")? }
            }
            "more" => {
                f.deny_unknown(&["type", "next"])?;
                ServerFrame::More { next: f.u64("next")? }
            }
            "ack" => {
                let reference = f.str("ref")?.to_owned();
                let mut rest = value.as_object().cloned().unwrap_or_default();
                rest.retain(|k, _| k != "type" && k != "ref");
                ServerFrame::Ack { reference, ack: Ack::parse(&Value::Object(rest))? }
            }
            "error" => {
                let reference = f.nullable_str("ref")?.map(str::to_owned);
                let code = ErrorCode::parse(f.str("code")?).ok_or_else(|| f.bad("code", "is not a §6 code"))?;
                let message = f.str("message")?.to_owned();
                f.deny_unknown(&["type", "ref", "code", "message"])?;
                ServerFrame::Error { reference, code, message }
            }
            "pong" => {
                f.deny_unknown(&["type"])?;
                ServerFrame::Pong
            }
            other => return Err(f.bad("type", format_args!("{other:?} is not a relay frame type"))),
        };
        Ok(frame)
    }
}

/// A client → relay WebSocket frame (§4.2).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientFrame {
    /// A post on the socket; the envelope's shape is checked by the relay's post rules.
    Send {
        reference: String,
        envelope: Value,
    },
    Ping,
    /// The next page of this socket's replay, after a [`ServerFrame::More`].
    Next,
}

/// The `ping` frame, byte for byte (the runtime answers it without waking the object).
pub const PING: &str = r#"{"type":"ping"}"#;
/// The `next` frame, byte for byte.
pub const NEXT: &str = r#"{"type":"next"}"#;
/// The `pong` answer to [`PING`].
pub const PONG: &str = r#"{"type":"pong"}"#;

impl ClientFrame {
    pub fn encode(&self) -> String {
        match self {
            ClientFrame::Send { reference, envelope } => {
                json!({"type": "send", "ref": reference, "envelope": envelope}).to_string()
            }
            ClientFrame::Ping => PING.to_owned(),
            ClientFrame::Next => NEXT.to_owned(),
        }
    }

    /// Reads a client frame's shape in §4.2 order: `type`, then `ref` (1 to 64
    /// bytes), `envelope`, no other field.
    pub fn decode(value: &Value) -> Result<ClientFrame, Error> {
        let f = Fields::new(value, "frame")?;
        match f.str("type")? {
            "ping" => {
                f.deny_unknown(&["type"])?;
                Ok(ClientFrame::Ping)
            }
            "next" => {
                f.deny_unknown(&["type"])?;
                Ok(ClientFrame::Next)
            }
            "send" => {
                let reference = f.str("ref")?;
                if !valid_ref(reference) {
                    return Err(f.bad("ref", "must be 1 to 64 bytes"));
                }
                let envelope = f.value("envelope")?.clone();
                f.deny_unknown(&["type", "ref", "envelope"])?;
                Ok(ClientFrame::Send { reference: reference.to_owned(), envelope })
            }
            other => Err(f.bad("type", format_args!("{other:?} is not a client frame type"))),
        }
    }

    /// The `ref` of a frame that may not decode, for its `error` frame (§4.2: null
    /// when missing or invalid).
    pub fn reference_of(value: &Value) -> Option<String> {
        value.get("ref").and_then(Value::as_str).filter(|r| valid_ref(r)).map(str::to_owned)
    }
}

/// The body of `POST /v1/relay/messages` (§7).
#[derive(Clone, Debug, PartialEq)]
pub struct RelayMessages {
    pub relay: String,
    pub hops: u64,
    pub envelopes: Vec<Value>,
    pub bundles: Vec<Value>,
    pub revocations: Vec<Value>,
}

impl RelayMessages {
    pub fn to_json(&self) -> Value {
        json!({"relay": self.relay, "hops": self.hops, "envelopes": self.envelopes,
               "bundles": self.bundles, "revocations": self.revocations})
    }

    /// Reads the body; `bundles` and `revocations` may be absent (relays of v1).
    /// `hops` is checked by [`crate::mesh::hops_allowed`].
    pub fn parse(value: &Value) -> Result<RelayMessages, Error> {
        let f = Fields::new(value, "relay request")?;
        let (relay, hops) = relay_header(&f)?;
        let envelopes = f.array("envelopes")?.clone();
        let bundles = f.optional_array("bundles")?.to_vec();
        let revocations = f.optional_array("revocations")?.to_vec();
        f.deny_unknown(&["relay", "hops", "envelopes", "bundles", "revocations"])?;
        Ok(RelayMessages { relay, hops, envelopes, bundles, revocations })
    }
}

/// The body of `POST /v1/relay/keys` (§7).
#[derive(Clone, Debug, PartialEq)]
pub struct RelayKeys {
    pub relay: String,
    pub hops: u64,
    pub bundles: Vec<Value>,
    pub revocations: Vec<Value>,
}

impl RelayKeys {
    pub fn to_json(&self) -> Value {
        json!({"relay": self.relay, "hops": self.hops, "bundles": self.bundles, "revocations": self.revocations})
    }

    pub fn parse(value: &Value) -> Result<RelayKeys, Error> {
        let f = Fields::new(value, "relay request")?;
        let (relay, hops) = relay_header(&f)?;
        let bundles = f.array("bundles")?.clone();
        let revocations = f.array("revocations")?.clone();
        f.deny_unknown(&["relay", "hops", "bundles", "revocations"])?;
        Ok(RelayKeys { relay, hops, bundles, revocations })
    }
}

fn relay_header(f: &Fields) -> Result<(String, u64), Error> {
    let relay = f.str("relay")?.to_owned();
    let hops = f.u64("hops")?;
    if !crate::mesh::hops_allowed(hops) {
        return Err(f.bad("hops", format_args!("must be 1 to {}", crate::mesh::MAX_HOPS)));
    }
    Ok((relay, hops))
}

/// One entry of a `GET /v1/keys/{wallet}?include=all` answer (§1.3): the bundle's
/// six fields, its `status` and, when revoked, `revoked_at` and `revocation_sig`.
/// (Read back by [`crate::bundle::parse_listed`].)
pub fn listed_key(bundle: &Value, status: &str, revoked: Option<(u64, &str)>) -> Value {
    let mut v = bundle.clone();
    v["status"] = status.into();
    if let Some((at, sig)) = revoked {
        v["revoked_at"] = at.into();
        v["revocation_sig"] = sig.into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        StoredFields {
            to: "0c0b093c90599c11a252d25660475474b5e0ad24b1521d2a282f06a56b48d806",
            ts: 1764100005000,
            from: None,
            key: "Q8oiD0PXtvvssF4D01KcCE87YEknK0pQLBoBFWpIcBo",
            body: "Y2lwaGVydGV4dCBvZiBhbm9ueW1vdXMgdG8gcm9vbQ",
            sig: "GGto6qL4rIW-xCw3h2XVBOQz3IZLLGIJRKOhobBVfGJM1fVHj9EGCVhDlj7R-gSLXTgcGcv5vs9LNymog-iFCw",
            id: "00",
            seq: 7,
            received_at: 9,
        }
        .to_json()
    }

    #[test]
    fn a_stored_envelope_round_trips() {
        let (env, meta) = parse_stored(&stored()).unwrap();
        env.verify().unwrap();
        assert_eq!(meta, StoredMeta { id: "00".into(), seq: 7, received_at: 9 });
        assert_eq!(env.to_stored_json("00", 7, 9), stored());
        let mut extra = stored();
        extra["x"] = 1.into();
        assert_eq!(parse_stored(&extra).unwrap_err().code, ErrorCode::Malformed);
    }

    #[test]
    fn every_server_frame_round_trips() {
        let ack = Ack { id: "i".into(), seq: 3, received_at: 4, duplicate: true };
        for frame in [
            ServerFrame::Message(stored()),
            ServerFrame::Ready { next: 12 },
            ServerFrame::More { next: 7 },
            ServerFrame::Ack { reference: "r1".into(), ack: ack.clone() },
            ServerFrame::error(None, Error::rate_limited(3)),
            ServerFrame::error(Some("r2"), Error::malformed("bad")),
            ServerFrame::Pong,
        ] {
            assert_eq!(ServerFrame::decode(&frame.encode()).unwrap(), frame);
        }
        assert_eq!(ServerFrame::Pong.encode(), PONG);
        assert_eq!(Ack::parse(&ack.to_json()).unwrap(), ack);
        assert!(ServerFrame::decode(r#"{"type":"nope"}"#).is_err());
        assert!(ServerFrame::decode(r#"{"type":"pong","x":1}"#).is_err());
    }

    #[test]
    fn client_frames_round_trip_and_bad_ones_are_malformed() {
        for frame in [
            ClientFrame::Ping,
            ClientFrame::Next,
            ClientFrame::Send { reference: "r".into(), envelope: json!({"v": 1}) },
        ] {
            let value: Value = serde_json::from_str(&frame.encode()).unwrap();
            assert_eq!(ClientFrame::decode(&value).unwrap(), frame);
        }
        for bad in [
            json!({"type": "send", "ref": "", "envelope": {}}),
            json!({"type": "send", "ref": "x".repeat(65), "envelope": {}}),
            json!({"type": "send", "ref": "r"}),
            json!({"type": "send", "ref": "r", "envelope": {}, "extra": 1}),
            json!({"type": "ping", "x": 1}),
            json!({"type": "next", "x": 1}),
            json!({"type": "pong"}),
            json!([]),
        ] {
            assert_eq!(ClientFrame::decode(&bad).unwrap_err().code, ErrorCode::Malformed, "{bad}");
        }
        assert_eq!(ClientFrame::reference_of(&json!({"ref": "ok"})), Some("ok".into()));
        assert_eq!(ClientFrame::reference_of(&json!({"ref": ""})), None);
    }

    #[test]
    fn relay_bodies_round_trip_and_hops_are_bounded() {
        let m = RelayMessages {
            relay: "a".into(),
            hops: 2,
            envelopes: vec![json!({})],
            bundles: vec![],
            revocations: vec![],
        };
        assert_eq!(RelayMessages::parse(&m.to_json()).unwrap(), m);
        let v1 = json!({"relay": "a", "hops": 1, "envelopes": []});
        assert!(RelayMessages::parse(&v1).unwrap().bundles.is_empty(), "bundles may be absent");
        let k = RelayKeys { relay: "a".into(), hops: 8, bundles: vec![], revocations: vec![json!({})] };
        assert_eq!(RelayKeys::parse(&k.to_json()).unwrap(), k);
        let mut far = k.to_json();
        far["hops"] = 9.into();
        assert_eq!(RelayKeys::parse(&far).unwrap_err().code, ErrorCode::Malformed);
    }
}
