//! Alert intake's contract: which sources exist (`[alerts.sources.NAME]`), how each one proves
//! who it is (a bearer token from the environment, compared in constant time; for Grafana an
//! optional HMAC-SHA256 signature), and how each payload format becomes one
//! `domain::alert::AlertNotice` (`payload`).
//!
//! What a notice then changes is the domain's business (`domain::alert`), committed through
//! `App::ingest_alert`; the HTTP side is in `crate::http`.

pub mod ingest;
pub mod payload;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::alert::{Route, SourcePolicy};

/// The payload format a source speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Prometheus Alertmanager's webhook (`version` "4").
    Alertmanager,
    /// Grafana's webhook contact point (`version` "1", with `orgId` and `state`).
    Grafana,
    /// The PagerDuty Events API v2 shape.
    Events,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Grafana => "grafana",
            SourceKind::Events => "events",
        }
    }
}

/// One `[alerts.sources.NAME]` table, as configured (no secrets: only variable names).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// The environment variable that holds the source's token.
    pub token_env: String,
    /// Grafana only: the variable that holds the HMAC secret.
    pub secret_env: Option<String>,
    pub auto_resolve: bool,
    pub service: Option<String>,
}

/// `[alerts]`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AlertsConfig {
    pub sources: BTreeMap<String, SourceConfig>,
    pub routes: Vec<Route>,
}

impl AlertsConfig {
    /// For `warroom check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.sources.is_empty() {
            out.push_str("Alert sources: none\n");
            return out;
        }
        out.push_str("Alert sources:\n");
        for (name, s) in &self.sources {
            let _ = writeln!(
                out,
                "  POST /alerts/{name}: {}, token from ${}{}{}, auto_resolve {}",
                s.kind.as_str(),
                s.token_env,
                s.secret_env
                    .as_ref()
                    .map_or(String::new(), |e| format!(", signature secret from ${e}")),
                s.service
                    .as_ref()
                    .map_or(String::new(), |v| format!(", service {v}")),
                if s.auto_resolve { "on" } else { "off" }
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            let m = r
                .matchers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  route {}: {{{m}}} → {}{}",
                i + 1,
                r.severity
                    .map_or("severity from labels".into(), |s| s.to_string()),
                r.service
                    .as_ref()
                    .map_or(String::new(), |s| format!(", service {s}"))
            );
        }
        out
    }

    /// Reads every source's token (and secret) from the environment through `lookup`. A source
    /// whose variable is unset or empty is refused, naming the source and the variable.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Sources, String> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.sources {
            let read = |var: &str, what: &str| -> Result<Secret, String> {
                match lookup(var) {
                    Some(v) if !v.trim().is_empty() => Ok(Secret(v.trim().as_bytes().to_vec())),
                    _ => Err(format!(
                        "alert source '{name}' (alerts.sources.{name}): the environment variable {var} that should hold its {what} is not set; set it, or remove the source"
                    )),
                }
            };
            let token = read(&s.token_env, "token")?;
            let secret = match &s.secret_env {
                Some(var) => Some(read(var, "signature secret")?),
                None => None,
            };
            out.insert(
                name.clone(),
                Source {
                    kind: s.kind,
                    token,
                    secret,
                    policy: SourcePolicy {
                        name: name.clone(),
                        auto_resolve: s.auto_resolve,
                        service: s.service.clone(),
                    },
                },
            );
        }
        Ok(Sources {
            sources: out,
            routes: self.routes.clone(),
        })
    }
}

/// A token or secret. It is never printed: `Debug` shows only that it is there.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Whether `given` is this secret, in time that depends on neither's content or length:
    /// both are hashed first, and the digests compared in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        let a = Sha256::digest(&self.0);
        let b = Sha256::digest(given);
        bool::from(a.as_slice().ct_eq(b.as_slice()))
    }
}

/// A source ready to serve: its kind, its token, and its policy.
#[derive(Clone, Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub token: Secret,
    pub secret: Option<Secret>,
    pub policy: SourcePolicy,
}

impl Source {
    /// Whether `signature` (lowercase hex, as Grafana sends it in
    /// `X-Grafana-Alerting-Signature`) is the HMAC-SHA256 of `body` under the source's secret.
    /// A source without a secret accepts any body.
    pub fn signature_ok(&self, body: &[u8], signature: Option<&str>) -> bool {
        let Some(secret) = &self.secret else {
            return true;
        };
        let Some(given) = signature.and_then(|s| hex_decode(s.trim())) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
            return false;
        };
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).is_ok()
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digits: Vec<u8> = s
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    Some(
        digits
            .chunks(2)
            .map(|p| match p {
                [hi, lo] => hi.wrapping_mul(16).wrapping_add(*lo),
                _ => 0,
            })
            .collect(),
    )
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret`: what Grafana puts in its
/// signature header (for tests and the README's example).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes a key of any length; this arm is never reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The configured sources with their secrets, and the routes.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub sources: BTreeMap<String, Source>,
    pub routes: Vec<Route>,
}

impl Sources {
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }
    pub fn names(&self) -> String {
        if self.sources.is_empty() {
            return "none is configured".into();
        }
        self.sources
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_never_print() {
        let s = Secret(b"s3cret".to_vec());
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(…)");
    }

    #[test]
    fn grafana_signatures_are_checked() {
        let src = Source {
            kind: SourceKind::Grafana,
            token: Secret(b"t".to_vec()),
            secret: Some(Secret(b"k".to_vec())),
            policy: SourcePolicy::default(),
        };
        let good = sign(b"k", b"{}");
        assert_eq!(good.len(), 64);
        assert!(src.signature_ok(b"{}", Some(&good)));
        assert!(!src.signature_ok(b"{ }", Some(&good)));
        assert!(!src.signature_ok(b"{}", Some("zz")));
        assert!(!src.signature_ok(b"{}", None));
    }
}
