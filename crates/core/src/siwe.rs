//! The Sign-In with Ethereum (ERC-4361) form of a device authorization
//! (PROTOCOL.md §1.1, 1.6): the text is rebuilt from the bundle's fields and its
//! small `auth` object, never taken from anyone, so a wallet shows the domain that
//! asks and a phisher cannot choose a word of it.

use crate::encoding::b64;
use crate::error::Error;
use crate::fields::Fields;
use crate::wallet::Wallet;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The fixed statement: what the signature allows, in plain words (§1.1).
pub const STATEMENT: &str = "Allow this device to read and send denet messages as this wallet until the expiration time. Sign only on a site you trust.";

/// The longest `domain` and `uri` a relay takes.
pub const MAX_DOMAIN: usize = 253;
pub const MAX_URI: usize = 512;
/// The largest chain id: one a JavaScript number holds exactly.
pub const MAX_CHAIN_ID: u64 = (1 << 53) - 1;
/// The last millisecond RFC 3339 writes with four year digits (9999-12-31T23:59:59.999Z).
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Where a sign-in was asked for: the SIWE `domain`, `URI` and `Chain ID`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Auth {
    pub domain: String,
    pub uri: String,
    pub chain_id: u64,
}

impl Auth {
    /// Parses the `auth` object of a bundle: a lowercase `host[:port]`, an absolute
    /// URI without spaces, a chain id from 1 to 2^53 − 1.
    pub fn parse(value: &Value) -> Result<Auth, Error> {
        let f = Fields::new(value, "auth")?;
        let domain = f.str("domain")?;
        let uri = f.str("uri")?;
        let chain_id = f.u64("chain_id")?;
        f.deny_unknown(&["domain", "uri", "chain_id"])?;
        check_domain(domain).map_err(|why| f.bad("domain", why))?;
        check_uri(uri).map_err(|why| f.bad("uri", why))?;
        if chain_id == 0 || chain_id > MAX_CHAIN_ID {
            return Err(f.bad("chain_id", "must be from 1 to 2^53 - 1"));
        }
        Ok(Auth { domain: domain.to_owned(), uri: uri.to_owned(), chain_id })
    }

    pub fn to_json(&self) -> Value {
        json!({"domain": self.domain, "uri": self.uri, "chain_id": self.chain_id})
    }

    /// The sign-in of a client that talks to the relay at `base_url` (the CLI, the SDK
    /// outside a browser): the relay's `host[:port]` as domain, its URL as URI.
    pub fn for_url(base_url: &str, chain_id: u64) -> Result<Auth, Error> {
        let rest = base_url.split_once("://").map(|(_, r)| r).unwrap_or(base_url);
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default().to_ascii_lowercase();
        let auth = Auth { domain: host, uri: base_url.trim_end_matches('/').to_owned(), chain_id };
        Auth::parse(&auth.to_json())
    }
}

/// What a relay asks of a bundle a client registers (`REQUIRE_SIWE`, `SIWE_DOMAINS`,
/// §1.1). Bundles relayed by peers and those already stored are not held to it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Policy {
    /// Refuse a new bundle in the v1 text form (a phishing page gains nothing by
    /// asking a wallet for it).
    pub require: bool,
    /// The domains a sign-in may name; empty: any.
    pub domains: Vec<String>,
}

impl Policy {
    /// Parses `REQUIRE_SIWE` (`"1"`, the default, or `"0"`) and `SIWE_DOMAINS`
    /// (comma-separated `host[:port]`s; empty: any).
    pub fn parse(require: Option<&str>, domains: &str) -> Result<Policy, String> {
        let require = match require.map(str::trim) {
            None | Some("1") => true,
            Some("0") => false,
            Some(other) => return Err(format!("REQUIRE_SIWE must be \"1\" or \"0\", got {other:?}")),
        };
        let domains: Vec<String> =
            domains.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
        if let Some(bad) = domains.iter().find(|d| check_domain(d).is_err()) {
            return Err(format!("SIWE_DOMAINS: {bad:?} is not a lowercase host[:port]"));
        }
        Ok(Policy { require, domains })
    }

    /// Whether `SIWE_DOMAINS` takes `domain`: listed as it is, or its host listed
    /// without a port (any port of that host).
    pub fn accepts(&self, domain: &str) -> bool {
        let host = domain.rsplit_once(':').map_or(domain, |(h, _)| h);
        self.domains.is_empty() || self.domains.iter().any(|d| d == domain || d == host)
    }

    /// Whether a client may register a new bundle signed in at `auth` (`None`: the v1 text).
    pub fn admit(&self, auth: Option<&Auth>) -> Result<(), Error> {
        match auth {
            None if self.require => Err(Error::malformed(
                "this relay registers devices only in the SIWE form (PROTOCOL.md §1.1): the bundle needs its `auth` and a signature of the SIWE text",
            )),
            Some(a) if !self.accepts(&a.domain) => Err(Error::forbidden(format!(
                "this relay does not accept sign-ins for {:?}; it accepts {}",
                a.domain,
                self.domains.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

/// `host[:port]`: letters (lowercase), digits, `.` and `-`, then an optional port.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && domain.len() <= MAX_DOMAIN
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok { Ok(()) } else { Err("must be a lowercase host name with an optional :port") }
}

/// An absolute URI (RFC 3986 characters only, no spaces), with a scheme.
fn check_uri(uri: &str) -> Result<(), &'static str> {
    const BAD: &str = "must be an absolute URI (scheme:…, RFC 3986 characters, at most 512)";
    let (scheme, rest) = uri.split_once(':').ok_or(BAD)?;
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && scheme.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let uri_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
    if uri.len() <= MAX_URI && scheme_ok && !rest.is_empty() && rest.bytes().all(uri_char) { Ok(()) } else { Err(BAD) }
}

/// A time as RFC 3339 in UTC with exactly three fraction digits and `Z`
/// (`2026-12-05T06:28:00.000Z`): the one form SIWE times take here.
pub fn rfc3339_ms(ms: u64) -> Option<String> {
    if ms > MAX_TIME_MS {
        return None;
    }
    let t = chrono::DateTime::from_timestamp_millis(ms as i64)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The SIWE nonce of a device: the first 16 hex digits of sha256(sign_key ‖ dh_key),
/// so the relay rebuilds it and no two devices share one.
pub fn nonce(sign_key: &[u8; 32], dh_key: &[u8; 32]) -> String {
    let digest = Sha256::new().chain_update(sign_key).chain_update(dh_key).finalize();
    hex::encode(&digest[..8])
}

/// The text a wallet signs to authorize a device in the SIWE form (§1.1).
pub fn message(
    auth: &Auth,
    wallet: &Wallet,
    sign_key: &[u8; 32],
    dh_key: &[u8; 32],
    issued_at: u64,
    expires_at: u64,
) -> Result<String, Error> {
    let time = |ms| rfc3339_ms(ms).ok_or_else(|| Error::malformed("a SIWE time must be before the year 10000"));
    Ok(format!(
        "{domain} wants you to sign in with your Ethereum account:\n{address}\n\n{STATEMENT}\n\n\
         URI: {uri}\nVersion: 1\nChain ID: {chain}\nNonce: {nonce}\nIssued At: {issued}\nExpiration Time: {expires}\n\
         Resources:\n- urn:denet:sign_key:{sk}\n- urn:denet:dh_key:{dh}",
        domain = auth.domain,
        address = wallet.checksummed(),
        uri = auth.uri,
        chain = auth.chain_id,
        nonce = nonce(sign_key, dh_key),
        issued = time(issued_at)?,
        expires = time(expires_at)?,
        sk = b64(sign_key),
        dh = b64(dh_key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn auth(domain: &str, uri: &str, chain_id: u64) -> Result<Auth, Error> {
        Auth::parse(&json!({"domain": domain, "uri": uri, "chain_id": chain_id}))
    }

    #[test]
    fn times_have_one_form() {
        assert_eq!(rfc3339_ms(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_764_100_000_007).unwrap(), "2025-11-25T19:46:40.007Z");
        assert_eq!(rfc3339_ms(MAX_TIME_MS).unwrap(), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(MAX_TIME_MS + 1), None);
    }

    #[test]
    fn auth_objects_are_checked() {
        assert!(auth("chat.example.org", "https://chat.example.org/", 1).is_ok());
        assert!(auth("127.0.0.1:8787", "http://127.0.0.1:8787", 31337).is_ok());
        for (domain, uri, chain) in [
            ("Chat.example.org", "https://chat.example.org", 1),
            ("chat.example.org\nURI: x", "https://x", 1),
            ("chat.example.org:", "https://x", 1),
            ("chat.example.org:123456", "https://x", 1),
            ("", "https://x", 1),
            (".example.org", "https://x", 1),
            ("chat.example.org", "chat.example.org", 1),
            ("chat.example.org", "https://x y", 1),
            ("chat.example.org", "https://x\nVersion: 2", 1),
            ("chat.example.org", "HTTPS://x", 1),
            ("chat.example.org", "https:", 1),
            ("chat.example.org", "https://x", 0),
            ("chat.example.org", "https://x", MAX_CHAIN_ID + 1),
        ] {
            assert_eq!(auth(domain, uri, chain).unwrap_err().code, ErrorCode::Malformed, "{domain:?} {uri:?} {chain}");
        }
        let long = format!("https://x/{}", "a".repeat(MAX_URI));
        assert!(auth("x", &long, 1).is_err());
        let extra = json!({"domain": "x", "uri": "https://x", "chain_id": 1, "statement": "other words"});
        assert_eq!(Auth::parse(&extra).unwrap_err().code, ErrorCode::Malformed);
    }

    #[test]
    fn the_policy_refuses_the_v1_text_and_foreign_domains() {
        let a = auth("chat.example.org", "https://chat.example.org", 1).unwrap();
        let strict = Policy::parse(None, " chat.example.org , 127.0.0.1:8787, localhost").unwrap();
        assert!(strict.accepts("127.0.0.1:8787") && !strict.accepts("127.0.0.1:9000"));
        assert!(strict.accepts("localhost:9000") && strict.accepts("localhost"));
        assert!(!strict.accepts("chat.example.org.evil.example") && !strict.accepts("example.org"));
        assert_eq!(strict.admit(None).unwrap_err().code, ErrorCode::Malformed);
        assert!(strict.admit(Some(&a)).is_ok());
        let other = Auth { domain: "evil.example".into(), ..a.clone() };
        assert_eq!(strict.admit(Some(&other)).unwrap_err().code, ErrorCode::Forbidden);
        let open = Policy::parse(Some("0"), "").unwrap();
        assert!(open.admit(None).is_ok() && open.admit(Some(&other)).is_ok());
        assert!(Policy::parse(Some("yes"), "").is_err());
        assert!(Policy::parse(Some("1"), "Chat.example.org").is_err());
    }

    #[test]
    fn a_client_signs_in_to_its_relay() {
        let a = Auth::for_url("http://127.0.0.1:8787/", 1).unwrap();
        assert_eq!((a.domain.as_str(), a.uri.as_str()), ("127.0.0.1:8787", "http://127.0.0.1:8787"));
        let a = Auth::for_url("https://Relay.Example.org/base", 10).unwrap();
        assert_eq!(
            (a.domain.as_str(), a.uri.as_str(), a.chain_id),
            ("relay.example.org", "https://Relay.Example.org/base", 10)
        );
    }

    #[test]
    fn the_statement_is_one_siwe_statement_line() {
        // ERC-4361: statement = *( reserved / unreserved / " " ), no line break.
        let ok = |b: u8| b.is_ascii_alphanumeric() || b" -._~:/?#[]@!$&'()*+,;=".contains(&b);
        assert!(STATEMENT.bytes().all(ok));
    }
}
