//! Who may see the board: the viewer token (from the environment), the session cookie it is
//! exchanged for, and per-incident share links. Every check is an HMAC compared in constant
//! time; nothing here is stored, so a restart keeps sessions and links valid, and changing the
//! token revokes all of them at once.
//!
//! The keys. The server secret is derived from the viewer token:
//! `key = HMAC-SHA256(token, "warroom board v1")`. It therefore lives where the token lives (the
//! environment, never a file or the store), needs no second variable, and is rotated with it.
//! - Session cookie: `v1.<expiry unix seconds>.<hex HMAC(key, "session\0" ‖ expiry)>`, valid
//!   until its expiry on the wall clock ([`SESSION_HOURS`]).
//! - Share link: `/share/INC-n/<hex HMAC(key, "share\0" ‖ "INC-n")>`. It names one incident and
//!   carries no expiry: its validity is read from the incident itself at each request, open or
//!   resolved less than [`SHARE_GRACE_HOURS`] ago (on the app's clock), so it lasts exactly
//!   "until the incident resolves plus a day", however long the incident stays open.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::{Incident, IncidentId, IncidentState};

type HmacSha256 = Hmac<Sha256>;

/// How long a session cookie lasts.
pub const SESSION_HOURS: i64 = 12;
/// How long a share link outlives its incident's resolution.
pub const SHARE_GRACE_HOURS: i64 = 24;
/// The shortest viewer token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;
/// The session cookie's name.
pub const COOKIE: &str = "warroom_board";

/// The viewer token and the key derived from it. `Debug` shows neither.
#[derive(Clone)]
pub struct Access {
    key: [u8; 32],
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(…)")
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length, so `new_from_slice` cannot fail here.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `given` (hex) is `want`, in constant time for a given length.
fn hex_matches(want: &[u8; 32], given: &str) -> bool {
    let expected = hex(want);
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Why a viewer token from the environment is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the board is enabled but ${0} is not set; set it to the viewer token (at least {MIN_TOKEN_LEN} characters), or set board.enabled = false"
    )]
    Unset(String),
    #[error(
        "${0} holds a viewer token shorter than {MIN_TOKEN_LEN} characters; use a longer, random one"
    )]
    Short(String),
}

impl Access {
    /// From the token's variable name and its value, as read from the environment.
    pub fn new(var: &str, token: Option<String>) -> Result<Access, TokenError> {
        let token = token.ok_or_else(|| TokenError::Unset(var.to_string()))?;
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(TokenError::Short(var.to_string()));
        }
        Ok(Access {
            key: mac(token.as_bytes(), &[b"warroom board v1"]),
        })
    }

    /// Whether `given` is the viewer token: both are hashed under the derived key first, so
    /// the comparison's time depends on neither's content or length.
    pub fn token_matches(&self, given: &str) -> bool {
        let want = mac(b"token check", &[&self.key]);
        let derived = mac(given.trim().as_bytes(), &[b"warroom board v1"]);
        let got = mac(b"token check", &[&derived]);
        bool::from(want.ct_eq(&got))
    }

    /// A session cookie's value, valid until `now` plus [`SESSION_HOURS`].
    pub fn session(&self, now: DateTime<Utc>) -> String {
        let expiry = now
            .checked_add_signed(TimeDelta::hours(SESSION_HOURS))
            .unwrap_or(now)
            .timestamp();
        let e = expiry.to_string();
        format!(
            "v1.{e}.{}",
            hex(&mac(&self.key, &[b"session\0", e.as_bytes()]))
        )
    }

    /// Whether a session cookie's value is one of ours and not expired at `now`.
    pub fn session_valid(&self, value: &str, now: DateTime<Utc>) -> bool {
        let mut parts = value.split('.');
        let (Some("v1"), Some(e), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expiry) = e.parse::<i64>() else {
            return false;
        };
        hex_matches(&mac(&self.key, &[b"session\0", e.as_bytes()]), sig) && now.timestamp() < expiry
    }

    /// The share link's signature for one incident.
    pub fn share_sig(&self, id: IncidentId) -> String {
        hex(&mac(&self.key, &[b"share\0", id.to_string().as_bytes()]))
    }

    /// The share link's path for one incident.
    pub fn share_path(&self, id: IncidentId) -> String {
        format!("/share/{id}/{}", self.share_sig(id))
    }

    /// Whether `sig` signs this incident's id (not whether the link is still valid).
    pub fn share_sig_matches(&self, id: IncidentId, sig: &str) -> bool {
        hex_matches(
            &mac(&self.key, &[b"share\0", id.to_string().as_bytes()]),
            sig,
        )
    }
}

/// Whether a share link to `inc` is still valid at `now`: while the incident is open, and for
/// [`SHARE_GRACE_HOURS`] after it resolved.
pub fn share_live(inc: &Incident, now: DateTime<Utc>) -> bool {
    match &inc.state {
        IncidentState::Open => true,
        IncidentState::Resolved { at, .. } => at
            .checked_add_signed(TimeDelta::hours(SHARE_GRACE_HOURS))
            .is_none_or(|end| now < end),
    }
}

/// The value of the cookie `name` in a `Cookie` header, if present.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new("T", Some("0123456789abcdef-viewer".into())).unwrap()
    }

    #[test]
    fn the_token_matches_itself_only() {
        let a = access();
        assert!(a.token_matches("0123456789abcdef-viewer"));
        assert!(!a.token_matches("0123456789abcdef-viewe"));
        assert!(!a.token_matches(""));
    }

    #[test]
    fn short_or_missing_tokens_are_refused() {
        assert_eq!(
            Access::new("T", None).unwrap_err(),
            TokenError::Unset("T".into())
        );
        assert_eq!(
            Access::new("T", Some("short".into())).unwrap_err(),
            TokenError::Short("T".into())
        );
    }

    #[test]
    fn a_session_expires_and_cannot_be_forged() {
        let a = access();
        let now = Utc::now();
        let s = a.session(now);
        assert!(a.session_valid(&s, now));
        let later = now + TimeDelta::hours(SESSION_HOURS + 1);
        assert!(!a.session_valid(&s, later));
        // Moving the expiry breaks the signature.
        let mut parts: Vec<&str> = s.split('.').collect();
        let moved = (later.timestamp() + 100).to_string();
        parts[1] = &moved;
        assert!(!a.session_valid(&parts.join("."), later));
        let other = Access::new("T", Some("another-token-of-length".into())).unwrap();
        assert!(!other.session_valid(&s, now));
    }

    #[test]
    fn a_share_signature_names_one_incident() {
        let a = access();
        let sig = a.share_sig(IncidentId(1));
        assert!(a.share_sig_matches(IncidentId(1), &sig));
        assert!(!a.share_sig_matches(IncidentId(2), &sig));
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie("a=1; warroom_board=x.y; b=2", COOKIE), Some("x.y"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
