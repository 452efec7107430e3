//! Signed requests (PROTOCOL.md §3.1): how a wallet's device proves it may read
//! that wallet's inbox, by headers or, for browser WebSockets, by query parameters.

use crate::encoding::b64_decode_exact;
use crate::envelope::SignKey;
use crate::error::Error;
use crate::wallet::Wallet;

/// The four credential names as headers (§3.1), in order: wallet, key, time, signature.
pub const HEADERS: [&str; 4] = ["Denet-Wallet", "Denet-Key", "Denet-Time", "Denet-Signature"];
/// The same four as query parameters (browser WebSockets).
pub const PARAMS: [&str; 4] = ["denet_wallet", "denet_key", "denet_time", "denet_sig"];

/// A signed request whose shape is checked; [`SignedRequest::verify`] checks the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub wallet: Wallet,
    pub key: SignKey,
    pub time: u64,
    pub sig: [u8; 64],
    /// The path and query as sent, less the four `denet_*` parameters.
    pub signed_path: String,
}

/// A request split for §3.1: its credentials (if any) and the query left for the route.
#[derive(Debug)]
pub struct Extracted {
    pub credentials: Result<SignedRequest, Error>,
    /// The query without the `denet_*` parameters (empty when none is left).
    pub query: String,
}

/// Builds the text a device signs for a request. A request with a body (from 1.4:
/// `PUT /v1/backup/{wallet}`) signs it too, as a fifth line: the hex sha256 of its bytes.
pub fn signing_text(method: &str, signed_path: &str, time: u64, body: Option<&[u8]>) -> String {
    match body {
        Some(bytes) => {
            format!("denet/v1/request\n{method}\n{signed_path}\n{time}\n{}", crate::encoding::sha256_hex(bytes))
        }
        None => format!("denet/v1/request\n{method}\n{signed_path}\n{time}"),
    }
}

/// Splits `path?query` into the signed path and the credentials, taken from the
/// `Denet-*` headers (`header(name)`) or from the `denet_*` query parameters.
pub fn extract(path: &str, query: Option<&str>, header: impl Fn(&str) -> Option<String>) -> Extracted {
    let mut kept = Vec::new();
    let mut from_query: [Option<&str>; 4] = [None; 4];
    let mut repeated = false;
    let pairs = query.filter(|q| !q.is_empty()).map(|q| q.split('&'));
    for pair in pairs.into_iter().flatten() {
        let name = pair.split('=').next().unwrap_or("");
        match PARAMS.iter().position(|p| *p == name) {
            Some(i) => {
                repeated |= from_query[i].is_some();
                from_query[i] = Some(pair.get(name.len() + 1..).unwrap_or(""));
            }
            None => kept.push(pair),
        }
    }
    let rest = kept.join("&");
    let signed_path = if rest.is_empty() { path.to_owned() } else { format!("{path}?{rest}") };
    let from_headers: [Option<String>; 4] = HEADERS.map(&header);
    let credentials = if repeated {
        Err(Error::malformed("a denet_* query parameter is repeated"))
    } else if from_query.iter().any(Option::is_some) {
        if from_headers.iter().any(Option::is_some) {
            Err(Error::malformed("send the signature as Denet-* headers or denet_* parameters, not both"))
        } else {
            parse_values(from_query.map(|v| v.map(str::to_owned)), signed_path)
        }
    } else {
        parse_values(from_headers, signed_path)
    };
    Extracted { credentials, query: rest }
}

fn parse_values(values: [Option<String>; 4], signed_path: String) -> Result<SignedRequest, Error> {
    let [Some(wallet), Some(key), Some(time), Some(sig)] = values else {
        return Err(Error::invalid_signature(
            "this route needs a signed request: Denet-Wallet, Denet-Key, Denet-Time and Denet-Signature",
        ));
    };
    let wallet = Wallet::parse_lenient(&wallet)?;
    let key = SignKey::parse(&key).ok_or_else(|| Error::malformed("Denet-Key must be 32 bytes of base64url"))?;
    let time = crate::query::parse_u64(&time).ok_or_else(|| Error::malformed("Denet-Time must be an integer"))?;
    let sig = b64_decode_exact::<64>(&sig)
        .ok_or_else(|| Error::malformed("Denet-Signature must be 64 bytes of base64url"))?;
    Ok(SignedRequest { wallet, key, time, sig, signed_path })
}

impl SignedRequest {
    /// Checks, in §4 order, the clock window, the signature, and that the request is
    /// for `path_wallet`. Whether `key` is an active key of the wallet is the
    /// caller's lookup.
    pub fn verify(&self, method: &str, path_wallet: &Wallet, now_ms: u64, skew_ms: u64) -> Result<(), Error> {
        self.verify_with_body(method, None, path_wallet, now_ms, skew_ms)
    }

    /// [`SignedRequest::verify`] for a request whose `body` is signed too (a write).
    pub fn verify_with_body(
        &self,
        method: &str,
        body: Option<&[u8]>,
        path_wallet: &Wallet,
        now_ms: u64,
        skew_ms: u64,
    ) -> Result<(), Error> {
        crate::check_skew(self.time, now_ms, skew_ms, "Denet-Time")?;
        self.key
            .verify(signing_text(method, &self.signed_path, self.time, body).as_bytes(), &self.sig)
            .map_err(|_| Error::invalid_signature("request signature does not verify"))?;
        if self.wallet != *path_wallet {
            return Err(Error::forbidden("a signed request may only reach its own wallet's inbox or backup"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn missing_credentials_are_invalid_signature() {
        let x = extract("/v1/inbox/x/messages", Some("after=1"), no_headers);
        assert_eq!(x.credentials.unwrap_err().code, ErrorCode::InvalidSignature);
        assert_eq!(x.query, "after=1");
    }

    #[test]
    fn query_credentials_are_removed_from_the_signed_path() {
        let q = "after=3&denet_wallet=0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce&denet_key=hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU&denet_time=5&denet_sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&limit=2";
        let x = extract("/p", Some(q), no_headers);
        let r = x.credentials.unwrap();
        assert_eq!(r.signed_path, "/p?after=3&limit=2");
        assert_eq!(r.time, 5);
        assert_eq!(x.query, "after=3&limit=2");
        let only = "denet_wallet=0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce&denet_key=hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU&denet_time=5&denet_sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(extract("/p", Some(only), no_headers).credentials.unwrap().signed_path, "/p");
    }

    #[test]
    fn bad_values_are_malformed() {
        let header = |bad: usize| {
            move |name: &str| {
                let good = [
                    "0xb8c7f3cb8155c163749f3d1eed3ccbfde8672cce",
                    "hIyB-ncYaVPPtmcPfx1OmM6bbb3Tm_X5qC48P19FMqU",
                    "1764100007000",
                    "s9ijYOHKFW9DN1mxNk_C17UtLNhTOgZpPX5JjyRW-BqLl309AZqM-Qh9jxrzowG9Gn6w2JafLaSNSAEz000hAQ",
                ];
                let i = HEADERS.iter().position(|h| *h == name)?;
                Some(if i == bad { "1.5x".to_owned() } else { good[i].to_owned() })
            }
        };
        for bad in 0..4 {
            let x = extract("/p", None, header(bad));
            assert_eq!(x.credentials.unwrap_err().code, ErrorCode::Malformed, "field {bad}");
        }
        assert!(extract("/p", None, header(9)).credentials.is_ok());
    }

    #[test]
    fn headers_and_query_together_are_malformed() {
        let x = extract("/p", Some("denet_time=1"), |_| Some("x".into()));
        assert_eq!(x.credentials.unwrap_err().code, ErrorCode::Malformed);
        let x = extract("/p", Some("denet_time=1&denet_time=2"), no_headers);
        assert_eq!(x.credentials.unwrap_err().code, ErrorCode::Malformed);
    }
}
