//! Who is connecting: an HS256 JWT (`?token=` or `Authorization: Bearer`) when a secret is
//! configured, otherwise an anonymous name (`?name=`, or a generated `anon-xxxx`). Decided before
//! the upgrade so a refused client gets a plain HTTP status (401/400).

use http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::protocol::{valid_anonymous_name, valid_user};

/// The authenticated (or anonymous) user of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (`sub`, or the anonymous name).
    pub user: String,
    /// True in anonymous mode.
    pub anonymous: bool,
}

/// Why a connection was refused before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// Text for the response body.
    pub message: &'static str,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// Verifies JWTs with one HS256 secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier for `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }
}

/// Value of `key` in a query string (no percent-decoding beyond `%2D`-free tokens: JWTs and
/// valid names never need it).
pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// Decides the identity of an upgrade request.
pub fn identify(
    verifier: Option<&Verifier>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Identity, Refusal> {
    match verifier {
        Some(verifier) => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let token = query_param(query, "token").or(bearer);
            let unauthorized = |message| Refusal {
                status: StatusCode::UNAUTHORIZED,
                message,
            };
            let token = token.ok_or(unauthorized(
                "missing token: pass ?token=<jwt> or Authorization: Bearer <jwt>\n",
            ))?;
            let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
                .map_err(|_| unauthorized("invalid or expired token\n"))?;
            if !valid_user(&data.claims.sub) {
                return Err(unauthorized(
                    "token `sub` must be 1-128 bytes without control characters\n",
                ));
            }
            Ok(Identity {
                user: data.claims.sub,
                anonymous: false,
            })
        }
        None => match query_param(query, "name") {
            Some(name) if valid_anonymous_name(name) => Ok(Identity {
                user: name.to_owned(),
                anonymous: true,
            }),
            Some(_) => Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "name must be 1-64 chars of [A-Za-z0-9_.-]\n",
            }),
            None => Ok(Identity {
                user: format!("anon-{:04x}", rand::random::<u16>()),
                anonymous: true,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, sub: &str, exp_offset: i64) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + exp_offset;
        let claims = serde_json::json!({"sub": sub, "exp": exp});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn jwt_mode_accepts_valid_tokens_only() {
        let v = Verifier::new("s3cret");
        let ok = token("s3cret", "alice", 600);
        let id = identify(Some(&v), Some(&format!("token={ok}")), &HeaderMap::new()).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "alice".into(),
                anonymous: false
            }
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {ok}").parse().unwrap(),
        );
        assert!(identify(Some(&v), None, &headers).is_ok());
        for bad in [
            token("other", "alice", 600),
            token("s3cret", "alice", -3600),
            "garbage".into(),
        ] {
            let err =
                identify(Some(&v), Some(&format!("token={bad}")), &HeaderMap::new()).unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            identify(Some(&v), None, &HeaderMap::new())
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn anonymous_mode_names() {
        let id = identify(None, Some("name=bob"), &HeaderMap::new()).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "bob".into(),
                anonymous: true
            }
        );
        let generated = identify(None, None, &HeaderMap::new()).unwrap();
        assert!(generated.user.starts_with("anon-") && generated.anonymous);
        assert_eq!(
            identify(None, Some("name=b%20b"), &HeaderMap::new())
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
