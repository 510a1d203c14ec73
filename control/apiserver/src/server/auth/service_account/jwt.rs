//! Compact JWS (RFC 7515) as kube's ServiceAccount tokens use it: three
//! base64url parts `header.payload.signature`, header `{"alg":"ES256",
//! "kid":...}`, the claims of [`Claims`] as payload.
//!
//! [`peek`] is kube's `hasCorrectIssuer`: only a token of that shape whose
//! (not yet verified) `iss` is one of ours is read further, so any other
//! bearer token (a static or bootstrap token, another issuer's JWT) falls
//! through to the next authenticator without a word.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::keys::SigningKey;

/// go-jose's `jwt.DefaultLeeway`, which kube's validator uses for `exp`,
/// `nbf`, `iat` and the deletion of the objects a token is bound to.
pub const LEEWAY_SECONDS: i64 = 60;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// A token's parts before its signature is checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// `header.payload`, what the signature signs.
    pub signing_input: &'a str,
    pub header: Value,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Unverified<'_> {
    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    pub fn kid(&self) -> Option<&str> {
        self.header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
    }
}

/// The token's parts when it is a compact JWS whose `iss` is in `issuers`
/// (kube's `hasCorrectIssuer`); `None` for anything else.
pub fn peek<'a>(token: &'a str, issuers: &[String]) -> Option<Unverified<'a>> {
    if token.trim_start().starts_with('{') {
        return None;
    }
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload = unb64(payload)?;
    #[derive(Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: String,
    }
    let issuer: Issuer = serde_json::from_slice(&payload).ok()?;
    if !issuers.contains(&issuer.iss) {
        return None;
    }
    let header: Value = serde_json::from_slice(&unb64(header)?).ok()?;
    header.is_object().then_some(())?;
    Some(Unverified {
        signing_input: &token[..token.rfind('.')?],
        header,
        payload,
        signature: unb64(signature)?,
    })
}

/// `aud`: one string or a list (go-jose's `jwt.Audience`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn list(&self) -> Vec<String> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

/// A NumericDate: seconds since the epoch, possibly fractional (go-jose
/// reads a float and truncates it).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct NumericDate(f64);

impl NumericDate {
    pub fn seconds(self) -> i64 {
        // `as` saturates: a date past i64 is the end of time.
        self.0 as i64
    }
}

/// `{"name", "uid"}` of an object a token names.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Ref {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// The private claim `kubernetes.io` (kube's `privateClaims`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Kubernetes {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub serviceaccount: Ref,
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    pub node: Option<Ref>,
}

/// The claims hami reads (kube's `jwt.Claims` and `privateClaims`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub aud: Audience,
    pub exp: Option<NumericDate>,
    pub nbf: Option<NumericDate>,
    pub iat: Option<NumericDate>,
    #[serde(default)]
    pub jti: String,
    #[serde(rename = "kubernetes.io", default)]
    pub kubernetes: Kubernetes,
}

/// Why the times of a token do not allow it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    Expired,
    NotValidYet,
    IssuedInTheFuture,
}

impl Claims {
    /// go-jose's `Claims.ValidateWithLeeway(now, DefaultLeeway)`.
    pub fn check_times(&self, now: i64) -> Result<(), TimeError> {
        let leeway = LEEWAY_SECONDS;
        if let Some(exp) = self.exp
            && now >= exp.seconds().saturating_add(leeway)
        {
            return Err(TimeError::Expired);
        }
        if let Some(nbf) = self.nbf
            && now.saturating_add(leeway) < nbf.seconds()
        {
            return Err(TimeError::NotValidYet);
        }
        if let Some(iat) = self.iat
            && now.saturating_add(leeway) < iat.seconds()
        {
            return Err(TimeError::IssuedInTheFuture);
        }
        Ok(())
    }
}

/// The compact ES256 JWS of `claims`, with `kid` in its header (kube's
/// `jwtTokenGenerator`).
pub fn sign(key: &SigningKey, claims: &Value) -> Result<String, String> {
    let header = serde_json::json!({"alg": "ES256", "kid": key.public().kid()});
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let signature = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&signature)))
}
