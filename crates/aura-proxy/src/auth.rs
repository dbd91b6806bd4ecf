//! `Proxy-Authorization`: the agent token, as `Bearer <token>` or HTTP Basic with the token as password (or as
//! user name with an empty password), which is what `http://agent:TOKEN@127.0.0.1:7471` in `HTTP_PROXY` sends.

use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::PROXY_AUTHORIZATION;

/// The token presented in `Proxy-Authorization`, if any.
pub(crate) fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(PROXY_AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned()).filter(|t| !t.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let token = if password.is_empty() { user } else { password };
        return Some(token.to_owned()).filter(|t| !t.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_forms_yield_the_token() {
        assert_eq!(
            presented(&headers("Bearer aura_x_y")).as_deref(),
            Some("aura_x_y")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("bot:aura_x_y");
        assert_eq!(
            presented(&headers(&format!("Basic {basic}"))).as_deref(),
            Some("aura_x_y")
        );
        let user_only = base64::engine::general_purpose::STANDARD.encode("aura_x_y:");
        assert_eq!(
            presented(&headers(&format!("basic {user_only}"))).as_deref(),
            Some("aura_x_y")
        );
        assert_eq!(presented(&headers("Digest abc")), None);
        assert_eq!(presented(&headers("Bearer ")), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
