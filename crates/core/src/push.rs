//! Web Push subscriptions (PROTOCOL.md §10): what a relay accepts as a device's push
//! endpoint. The relay POSTs to it, so every rule here keeps it from being aimed at
//! anything but a browser's push service (no SSRF): `https://` on the default port, no
//! userinfo, no IP literal, a host that is (a subdomain of) an allowed one; and, for
//! tests only, `http://127.0.0.1:PORT/…`.

use crate::encoding::b64_decode;
use crate::error::Error;
use serde_json::Value;

/// The browsers' push services (`PUSH_ENDPOINT_HOSTS` unset).
pub const DEFAULT_HOSTS: &str = "fcm.googleapis.com,updates.push.services.mozilla.com,push.services.mozilla.com,web.push.apple.com,notify.windows.com";
/// The most subscriptions one wallet keeps (one per device key; 16 keys are active at most).
pub const MAX_PER_WALLET: usize = 16;
/// The longest endpoint URL taken.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// Where pushes may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRules {
    pub hosts: Vec<String>,
    pub allow_loopback_http: bool,
}

impl PushRules {
    /// From `PUSH_ENDPOINT_HOSTS` (comma-separated host names) and `PUSH_ALLOW_LOOPBACK_HTTP`.
    pub fn parse(hosts: &str, loopback: &str) -> Result<PushRules, String> {
        let hosts: Vec<String> =
            hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        if hosts.iter().any(|h| !is_host_name(h)) {
            return Err("PUSH_ENDPOINT_HOSTS must be host names, comma-separated".into());
        }
        let allow_loopback_http = match loopback {
            "" | "0" => false,
            "1" => true,
            other => return Err(format!("PUSH_ALLOW_LOOPBACK_HTTP must be \"0\" or \"1\", not {other:?}")),
        };
        Ok(PushRules { hosts, allow_loopback_http })
    }
}

/// A DNS name of letters, digits and hyphens whose last label is not numeric (so
/// never an IPv4 literal in any of its spellings).
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let ok_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.iter().all(ok_label) && labels.last().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks an endpoint against `rules`; `400 malformed` says why it is refused.
pub fn check_endpoint(url: &str, rules: &PushRules) -> Result<(), Error> {
    let refuse = |why: &str| Err(Error::malformed(format!("push endpoint refused: {why}")));
    if url.len() > MAX_ENDPOINT_LEN || url.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return refuse("too long, or not a plain URL");
    }
    if rules.allow_loopback_http
        && let Some(rest) = url.strip_prefix("http://127.0.0.1:")
    {
        let (port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && path.starts_with('/') {
            return Ok(());
        }
        return refuse("a loopback endpoint is http://127.0.0.1:PORT/…");
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return refuse("it must be an https:// URL");
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return refuse("no user information in it");
    }
    if authority.contains(':') {
        return refuse("no port (the default port only) and no IP literal");
    }
    let host = authority.to_ascii_lowercase();
    if !is_host_name(&host) {
        return refuse("its host is not a host name (an IP literal?)");
    }
    if !path.starts_with('/') {
        return refuse("it has no path");
    }
    let allowed = rules.hosts.iter().any(|h| host == *h || host.ends_with(&format!(".{h}")));
    if !allowed {
        return refuse(&format!("{host} is not a push service this relay sends to (PUSH_ENDPOINT_HOSTS)"));
    }
    Ok(())
}

/// A browser's `PushSubscription.toJSON()`: where to push and the keys a payload would
/// be encrypted to (RFC 8291; the relay sends none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    /// base64url of the 65-byte uncompressed P-256 point.
    pub p256dh: String,
    /// base64url of 16 bytes.
    pub auth: String,
}

impl Subscription {
    /// Reads `{endpoint, keys: {p256dh, auth}, expirationTime?}` (closed fields).
    pub fn parse(value: &Value, rules: &PushRules) -> Result<Subscription, Error> {
        let obj = value.as_object().ok_or_else(|| Error::malformed("a push subscription is a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| !["endpoint", "keys", "expirationTime"].contains(&k.as_str())) {
            return Err(Error::malformed(format!("unknown field {k:?} in the push subscription")));
        }
        if !obj.get("expirationTime").is_none_or(|v| v.is_null() || v.is_u64()) {
            return Err(Error::malformed("expirationTime is null or a time"));
        }
        let endpoint = obj.get("endpoint").and_then(Value::as_str).ok_or_else(|| Error::malformed("no endpoint"))?;
        check_endpoint(endpoint, rules)?;
        let keys = obj.get("keys").and_then(Value::as_object).ok_or_else(|| Error::malformed("no keys"))?;
        if let Some(k) = keys.keys().find(|k| !["p256dh", "auth"].contains(&k.as_str())) {
            return Err(Error::malformed(format!("unknown field {k:?} in the subscription's keys")));
        }
        let key = |name: &str, len: usize| -> Result<String, Error> {
            let s =
                keys.get(name).and_then(Value::as_str).ok_or_else(|| Error::malformed(format!("no keys.{name}")))?;
            let trimmed = s.trim_end_matches('=');
            match b64_decode(trimmed) {
                Some(b) if b.len() == len && (name != "p256dh" || b[0] == 4) => Ok(trimmed.to_owned()),
                _ => Err(Error::malformed(format!("keys.{name} is not {len} bytes of base64url"))),
            }
        };
        Ok(Subscription { endpoint: endpoint.to_owned(), p256dh: key("p256dh", 65)?, auth: key("auth", 16)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn rules(loopback: bool) -> PushRules {
        PushRules::parse(DEFAULT_HOSTS, if loopback { "1" } else { "0" }).unwrap()
    }

    #[test]
    fn attack_endpoints_that_are_not_a_push_service_are_refused() {
        let ok = "https://fcm.googleapis.com/fcm/send/abc:def";
        assert!(check_endpoint(ok, &rules(false)).is_ok());
        assert!(check_endpoint("https://a.b.notify.windows.com/w/?token=1", &rules(false)).is_ok());
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/x",
            "https://[::1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "http://127.0.0.1:9999/push",
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://fcm.googleapis.com:8443/x",
            "https://user:pw@fcm.googleapis.com/x",
            "https://fcm.googleapis.com.evil.example/x",
            "https://evilfcm.googleapis.com.example/x",
            "https://notfcm.googleapis.co/x",
            "https://fcm.googleapis.com",
            "https://fcm.googleapis.com/a b",
            "ftp://fcm.googleapis.com/x",
            "",
        ] {
            let e = check_endpoint(bad, &rules(false)).expect_err(bad);
            assert_eq!(e.code, ErrorCode::Malformed, "{bad}");
        }
        // Loopback only when the test setting allows it, and only 127.0.0.1 with a port.
        assert!(check_endpoint("http://127.0.0.1:9999/push/1", &rules(true)).is_ok());
        for bad in
            ["http://127.0.0.1/push", "http://127.0.0.1:99999x/p", "http://localhost:9999/p", "http://10.0.0.1:80/p"]
        {
            assert!(check_endpoint(bad, &rules(true)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_subscription_is_read_as_browsers_write_it_and_nothing_else() {
        let p256dh = crate::encoding::b64(&[[4u8].as_slice(), &[7u8; 64]].concat());
        let auth = crate::encoding::b64(&[9u8; 16]);
        let good = serde_json::json!({"endpoint": "https://fcm.googleapis.com/fcm/send/x", "expirationTime": null,
                                      "keys": {"p256dh": p256dh, "auth": auth}});
        let s = Subscription::parse(&good, &rules(false)).unwrap();
        assert_eq!((s.p256dh.len(), s.auth.len()), (87, 22));
        let mut extra = good.clone();
        extra["keys"]["x"] = 1.into();
        let mut short = good.clone();
        short["keys"]["auth"] = crate::encoding::b64(&[1u8; 15]).into();
        let mut not_a_point = good.clone();
        not_a_point["keys"]["p256dh"] = crate::encoding::b64(&[2u8; 65]).into();
        let mut unknown = good.clone();
        unknown["topic"] = "x".into();
        for bad in [extra, short, not_a_point, unknown, serde_json::json!([])] {
            assert!(Subscription::parse(&bad, &rules(false)).is_err(), "{bad}");
        }
        assert!(PushRules::parse("a.example,1.2.3.4", "0").is_err());
        assert!(PushRules::parse(DEFAULT_HOSTS, "yes").is_err());
    }
}

/// A burst of messages to one inbox makes one push: the first schedules it this long after.
pub const DEBOUNCE_MS: u64 = 2_000;
/// How long a push service keeps an undelivered push (the `TTL` header), seconds.
pub const TTL_SECS: u64 = 86_400;
/// The `Topic` header: a push service keeps only the latest pending push of a topic.
pub const TOPIC: &str = "denet-inbox";
/// How long a subscription rests after a push service failed without `Retry-After`.
pub const BACKOFF_MS: u64 = 60_000;
/// How long a subscription rests after a delivered push: a stranger flooding an inbox wakes
/// each device at most once per this long (what came meanwhile is pushed when it ends).
pub const MIN_GAP_MS: u64 = 10_000;
/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 h), seconds.
pub const JWT_SECS: u64 = 12 * 3600;

/// The origin of an endpoint (`scheme://host[:port]`): a VAPID JWT's `aud`.
pub fn audience(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let host = rest[..rest.find('/').unwrap_or(rest.len())].to_ascii_lowercase();
    (!host.is_empty()).then(|| format!("{}://{host}", scheme.to_ascii_lowercase()))
}

/// The ES256 JWT's signing input, `b64url(header) "." b64url(claims)` (RFC 8292 §2):
/// `aud` the endpoint's origin, `exp` [`JWT_SECS`] from `now_ms`, `sub` the contact.
pub fn jwt_signing_input(aud: &str, now_ms: u64, subject: &str) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256"});
    let claims = serde_json::json!({"aud": aud, "exp": now_ms / 1000 + JWT_SECS, "sub": subject});
    format!(
        "{}.{}",
        crate::encoding::b64(header.to_string().as_bytes()),
        crate::encoding::b64(claims.to_string().as_bytes())
    )
}

/// What a push service's answer means for the subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// `404`/`410`: the subscription is gone; `401`/`403`: it was made for another
    /// VAPID key (the relay's changed) and can never take this relay's pushes. Delete it.
    Gone,
    /// No push to it before this time (`429` with `Retry-After`, or a back-off).
    NotBefore(u64),
}

/// The outcome of a push answered `status` (with its `Retry-After`, in seconds) at `now`.
pub fn outcome(status: u16, retry_after: Option<&str>, now: u64) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        401 | 403 | 404 | 410 => Outcome::Gone,
        _ => {
            let secs = retry_after.and_then(|r| r.trim().parse::<u64>().ok());
            Outcome::NotBefore(now + secs.map_or(BACKOFF_MS, |s| s.min(86_400) * 1000))
        }
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;

    #[test]
    fn a_push_services_answer_decides_what_becomes_of_the_subscription() {
        assert_eq!(outcome(201, None, 0), Outcome::Delivered);
        assert_eq!(outcome(410, None, 0), Outcome::Gone);
        assert_eq!(outcome(404, None, 0), Outcome::Gone);
        assert_eq!(outcome(429, Some("5"), 1_000), Outcome::NotBefore(6_000));
        assert_eq!(outcome(503, None, 1_000), Outcome::NotBefore(1_000 + BACKOFF_MS));
        assert_eq!(audience("https://fcm.googleapis.com/fcm/send/x").as_deref(), Some("https://fcm.googleapis.com"));
        assert_eq!(audience("http://127.0.0.1:9/p").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(audience("https://FCM.googleapis.com/x").as_deref(), Some("https://fcm.googleapis.com"));
        assert_eq!(outcome(403, None, 0), Outcome::Gone);
        let input = jwt_signing_input("https://a.example", 10_000, "mailto:x@y.example");
        let claims = crate::encoding::b64_decode(input.split('.').nth(1).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["exp"], 10 + JWT_SECS);
    }
}
