//! The HAProxy dynamic-cookie key. Every HAProxy replica must use the same key so a sticky
//! cookie issued by one replica is honoured by all; the key reaches HAProxy as an environment
//! variable and never appears in the ConfigMap.
//!
//! The Secret is created once (if absent) and then left alone: re-applying a fresh random key
//! would invalidate every client's cookie. The key itself is an input ([`with_cookie_key`]), so
//! the desired state stays deterministic.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Component, Ctx};
use crate::crd::SecretKeyRef;

/// Key of the cookie key inside the generated Secret.
pub const COOKIE_KEY: &str = "cookie-key";

/// Name of the generated Secret.
pub fn name(ctx: &Ctx) -> String {
    ctx.object_name("haproxy-cookie")
}

/// Where HAProxy reads the key: the user's Secret if the spec names one, else the generated one.
pub fn cookie_key_ref(ctx: &Ctx) -> SecretKeyRef {
    ctx.cc
        .spec
        .haproxy
        .cookie_key_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: name(ctx),
            key: COOKIE_KEY.to_owned(),
        })
}

/// The Secret to create when absent, without data; `None` when the spec names its own Secret.
pub fn cookie_secret(ctx: &Ctx) -> Option<Secret> {
    if ctx.cc.spec.haproxy.cookie_key_secret_ref.is_some() {
        return None;
    }
    Some(Secret {
        metadata: ctx.meta(name(ctx), Component::Haproxy),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The Secret with its key filled in.
pub fn with_cookie_key(mut secret: Secret, key: &str) -> Secret {
    secret.data = Some(BTreeMap::from([(
        COOKIE_KEY.to_owned(),
        ByteString(key.as_bytes().to_vec()),
    )]));
    secret
}

/// A fresh random key (32 bytes, hex): the only impure function here, for the caller to use.
pub fn generate_cookie_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
