//! OVHcloud API v6 request signing and endpoint names (`reference/api.md` §3.1, §3.2).
//!
//! A signed call carries `X-Ovh-Application`, `X-Ovh-Consumer`, `X-Ovh-Timestamp` and
//! `X-Ovh-Signature = "$1$" + hex(SHA1(AS+"+"+CK+"+"+METHOD+"+"+URL+"+"+BODY+"+"+TS))`, where the
//! URL is the full URL exactly as sent and BODY the exact bytes sent. The same function signs
//! in the client and verifies in the simulator, so the two cannot disagree; the go-ovh test
//! vectors pin it to what the real API computes.

use sha1::{Digest, Sha1};

/// The regions the official clients know, by alias (go-ovh `ovh/ovh.go`, python-ovh).
pub const REGIONS: [(&str, &str); 3] = [
    ("ovh-eu", "https://eu.api.ovh.com/1.0"),
    ("ovh-ca", "https://ca.api.ovh.com/1.0"),
    ("ovh-us", "https://api.us.ovhcloud.com/1.0"),
];

/// The signature of one call: `$1$` and the lower-case hex SHA-1 of
/// `secret+consumer_key+METHOD+url+body+timestamp` joined with `+`.
///
/// `method` is upper-cased here, as the real API compares the upper-case method.
pub fn signature(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    url: &str,
    body: &[u8],
    timestamp: i64,
) -> String {
    let mut h = Sha1::new();
    h.update(application_secret.as_bytes());
    h.update(b"+");
    h.update(consumer_key.as_bytes());
    h.update(b"+");
    h.update(method.to_ascii_uppercase().as_bytes());
    h.update(b"+");
    h.update(url.as_bytes());
    h.update(b"+");
    h.update(body);
    h.update(b"+");
    h.update(timestamp.to_string().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(3 + 40);
    out.push_str("$1$");
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Compares two signatures in time independent of where they differ, so the simulator does not
/// teach a caller the right signature byte by byte.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The base URL of an endpoint as written in `[source.ovh] endpoint` or `OVH_ENDPOINT`: a region
/// alias (`ovh-eu`, `ovh-ca`, `ovh-us`) or an `http(s)://` URL (its path kept, e.g. `/1.0`).
/// The error says what is allowed.
pub fn resolve_endpoint(value: &str) -> Result<url::Url, String> {
    let value = value.trim();
    if let Some((_, base)) = REGIONS.iter().find(|(alias, _)| *alias == value) {
        return url::Url::parse(base).map_err(|e| e.to_string());
    }
    let aliases = REGIONS.map(|(a, _)| a).join(", ");
    let url = url::Url::parse(value)
        .map_err(|_| format!("'{value}' is not one of {aliases} and not an http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "'{value}' is not one of {aliases} and its scheme is not http or https"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry credentials (user:password@host); use application_key, \
                    application_secret and consumer_key"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "'{value}' must be a base URL without query or fragment"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    // go-ovh `ovh/ovh_test.go` (reference/api.md §3.2).
    const AS: &str = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk";
    const CK: &str = "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY";
    const TS: i64 = 1_457_018_875;

    #[test]
    fn go_ovh_signature_vectors() {
        let body = br#"{"a":"b","c":"d"}"#;
        let cases: [(&str, &str, &[u8], &str); 5] = [
            (
                "GET",
                "https://eu.api.ovh.com/1.0/auth",
                b"",
                "$1$e9556054b6309771395efa467c22e627407461ad",
            ),
            (
                "POST",
                "https://eu.api.ovh.com/1.0/auth",
                body,
                "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1",
            ),
            (
                "PUT",
                "https://eu.api.ovh.com/1.0/auth",
                body,
                "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b",
            ),
            (
                "DELETE",
                "https://eu.api.ovh.com/1.0/auth",
                b"",
                "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85",
            ),
            (
                "GET",
                "https://eu.api.ovh.com/1.0/authTO",
                b"",
                "$1$1f0958be70f095ddaba525778a9ac1dcffac89f3",
            ),
        ];
        for (method, url, body, want) in cases {
            assert_eq!(
                signature(AS, CK, method, url, body, TS),
                want,
                "{method} {url}"
            );
        }
        // The method is compared upper-case.
        assert_eq!(
            signature(AS, CK, "get", "https://eu.api.ovh.com/1.0/auth", b"", TS),
            "$1$e9556054b6309771395efa467c22e627407461ad"
        );
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_equal("$1$ab", "$1$ab"));
        assert!(!signatures_equal("$1$ab", "$1$ac"));
        assert!(!signatures_equal("$1$ab", "$1$abc"));
    }

    #[test]
    fn endpoints_are_aliases_or_urls() {
        assert_eq!(
            resolve_endpoint("ovh-eu").unwrap().as_str(),
            "https://eu.api.ovh.com/1.0"
        );
        assert_eq!(
            resolve_endpoint(" ovh-us ").unwrap().as_str(),
            "https://api.us.ovhcloud.com/1.0"
        );
        assert_eq!(
            resolve_endpoint("http://127.0.0.1:4242/1.0")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:4242/1.0"
        );
        let err = resolve_endpoint("ovh-mars").unwrap_err();
        assert!(err.contains("ovh-eu, ovh-ca, ovh-us"), "{err}");
        assert!(resolve_endpoint("ftp://x").is_err());
        let err = resolve_endpoint("https://ak:secret@eu.api.ovh.com/1.0").unwrap_err();
        assert!(!err.contains("secret@"), "{err}");
    }
}
