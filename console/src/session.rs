//! Server-side sessions: a sign-in exchanges an admin token for a random session id in an
//! HttpOnly, SameSite=Strict cookie. The token stays on the server, where the console uses it
//! to call the services on the person's behalf (so their audit trail names them, as for curl).
//!
//! Each session has an idle and an absolute expiry and its own CSRF token, which every write
//! must echo in `X-CSRF-Token`: a page of another site can neither read it nor send the cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cezbek_platform::auth::{Principal, Role, sha256};

/// The cookie that names a session.
pub const COOKIE: &str = "cezbek_console";
/// The header every write carries, with the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    /// A session unused this long is gone.
    pub idle: Duration,
    /// A session is gone this long after sign-in, however busy.
    pub absolute: Duration,
}

/// What a request's session says about who is asking.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub principal: Principal,
    /// The admin token the person signed in with, for the services' APIs.
    pub token: String,
    pub csrf: String,
    /// Seconds until the session ends unless used again (the idle expiry, capped by the
    /// absolute one).
    pub expires_in: Duration,
}

impl SignedIn {
    pub fn can_write(&self) -> bool {
        self.principal.role >= Role::Admin
    }

    /// Whether `presented` is this session's CSRF token. Both sides are hashed first, so the
    /// comparison's time says nothing about the token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented
            .is_some_and(|presented| sha256(presented.as_bytes()) == sha256(self.csrf.as_bytes()))
    }
}

#[derive(Debug)]
struct Session {
    signed_in: SignedIn,
    started: Instant,
    last_used: Instant,
}

/// The sessions of this console instance. Kept in memory: a restart signs everybody out, and
/// more than one replica needs sticky sessions (see the README).
#[derive(Debug)]
pub struct Sessions {
    expiry: Expiry,
    /// By the SHA-256 of the session id, so a memory dump shows no usable cookie.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug, thiserror::Error)]
#[error("no randomness for a session id: {0}")]
pub struct RandomnessError(String);

impl Sessions {
    pub fn new(expiry: Expiry) -> Self {
        Self { expiry, sessions: Mutex::new(HashMap::new()) }
    }

    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Starts a session; returns its id (the cookie's value) and what it says.
    pub fn start(
        &self,
        principal: Principal,
        token: String,
    ) -> Result<(String, SignedIn), RandomnessError> {
        self.start_at(principal, token, Instant::now())
    }

    fn start_at(
        &self,
        principal: Principal,
        token: String,
        now: Instant,
    ) -> Result<(String, SignedIn), RandomnessError> {
        let id = random_hex()?;
        let signed_in = SignedIn {
            principal,
            token,
            csrf: random_hex()?,
            expires_in: self.expiry.idle.min(self.expiry.absolute),
        };
        let session = Session { signed_in: signed_in.clone(), started: now, last_used: now };
        self.lock().insert(sha256(id.as_bytes()), session);
        Ok((id, signed_in))
    }

    /// The live session of `id`, which this use keeps alive; an expired one is removed.
    pub fn find(&self, id: &str) -> Option<SignedIn> {
        self.find_at(id, Instant::now())
    }

    fn find_at(&self, id: &str, now: Instant) -> Option<SignedIn> {
        let key = sha256(id.as_bytes());
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        if self.expired(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        let absolute_left = self.expiry.absolute.saturating_sub(now - session.started);
        let mut signed_in = session.signed_in.clone();
        signed_in.expires_in = self.expiry.idle.min(absolute_left);
        Some(signed_in)
    }

    /// Signs out: the id is worthless from now on.
    pub fn end(&self, id: &str) {
        self.lock().remove(&sha256(id.as_bytes()));
    }

    /// Forgets expired sessions (run now and then; `find` also removes the one it meets).
    pub fn sweep(&self) -> usize {
        self.sweep_at(Instant::now())
    }

    fn sweep_at(&self, now: Instant) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, session| !self.expired(session, now));
        before - sessions.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now - session.last_used >= self.expiry.idle || now - session.started >= self.expiry.absolute
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves the map itself consistent (every change is
        // one insert or remove), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn random_hex() -> Result<String, RandomnessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| RandomnessError(error.to_string()))?;
    Ok(hex::encode(bytes))
}

/// The `Set-Cookie` value that hands a session to the browser: HttpOnly (no script reads it),
/// SameSite=Strict (no other site's page sends it), Secure when the console is served over
/// TLS, and no longer-lived than the session can be.
pub fn cookie(id: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    cookie("", Duration::ZERO, secure)
}

/// The session id in a `Cookie` header, if any.
pub fn session_id(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(role: Role) -> Principal {
        Principal { name: "alice".into(), role }
    }

    fn sessions() -> Sessions {
        Sessions::new(Expiry { idle: Duration::from_secs(60), absolute: Duration::from_secs(300) })
    }

    #[test]
    fn a_session_lives_while_used_and_ends_idle_or_at_its_absolute_expiry() {
        let sessions = sessions();
        let start = Instant::now();
        let (id, signed_in) = sessions.start_at(alice(Role::Admin), "tok".into(), start).unwrap();
        assert_eq!(signed_in.token, "tok");
        assert!(signed_in.can_write());
        // Used every 50 s: the idle expiry (60 s) never comes...
        for step in 1..=5 {
            let now = start + Duration::from_secs(50 * step);
            let found = sessions.find_at(&id, now);
            assert!(found.is_some(), "step {step}");
            let left = found.unwrap().expires_in;
            assert_eq!(left, Duration::from_secs(60).min(Duration::from_secs(300 - 50 * step)));
        }
        // ...but the absolute one (300 s) does.
        assert!(sessions.find_at(&id, start + Duration::from_secs(300)).is_none());
        assert!(sessions.is_empty(), "an expired session is removed when met");

        let (idle, _) = sessions.start_at(alice(Role::Viewer), "tok".into(), start).unwrap();
        assert!(sessions.find_at(&idle, start + Duration::from_secs(59)).is_some());
        assert!(sessions.find_at(&idle, start + Duration::from_secs(59 + 60)).is_none());
    }

    #[test]
    fn signing_out_and_sweeping_forget_sessions() {
        let sessions = sessions();
        let start = Instant::now();
        let (first, _) = sessions.start_at(alice(Role::Admin), "a".into(), start).unwrap();
        let (second, _) = sessions.start_at(alice(Role::Viewer), "b".into(), start).unwrap();
        assert_ne!(first, second);
        sessions.end(&first);
        assert!(sessions.find_at(&first, start).is_none());
        assert_eq!(sessions.sweep_at(start + Duration::from_secs(61)), 1);
        assert!(sessions.find_at(&second, start).is_none());
        assert!(sessions.find_at("not-a-session", start).is_none());
    }

    #[test]
    fn the_csrf_token_must_be_presented_exactly() {
        let sessions = sessions();
        let (_, signed_in) = sessions.start(alice(Role::Viewer), "tok".into()).unwrap();
        assert!(!signed_in.can_write());
        assert_eq!(signed_in.csrf.len(), 64);
        assert!(signed_in.csrf_matches(Some(&signed_in.csrf.clone())));
        assert!(!signed_in.csrf_matches(None));
        assert!(!signed_in.csrf_matches(Some("")));
        assert!(!signed_in.csrf_matches(Some(&signed_in.csrf[1..])));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = cookie("abc", Duration::from_secs(1800), false);
        assert_eq!(plain, "cezbek_console=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=1800");
        assert!(cookie("abc", Duration::from_secs(1), true).ends_with("; Secure"));
        assert!(
            cleared_cookie(false).contains("cezbek_console=;")
                && cleared_cookie(false).contains("Max-Age=0")
        );
        assert_eq!(session_id("a=1; cezbek_console=abc; b=2"), Some("abc"));
        assert_eq!(session_id("cezbek_console="), None);
        assert_eq!(session_id("other=abc"), None);
    }
}
