//! Admin bearer tokens. The configuration holds only SHA-256 hashes of the tokens, so a leaked
//! config file or environment dump gives nobody access.
//!
//! `CEZBEK_ADMIN_TOKENS=name:role:sha256hex,…` with role `admin` (read and write) or `viewer`
//! (read). Make a hash with `printf %s "$TOKEN" | sha256sum`.

use sha2::{Digest, Sha256};

use crate::config::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Admin,
}

/// Who made a request: the token's configured name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminTokens {
    /// `(sha256 of the token, who it is)`.
    tokens: Vec<([u8; 32], Principal)>,
}

impl AdminTokens {
    pub fn from_env(env: &mut Env) -> Self {
        let variable = "CEZBEK_ADMIN_TOKENS";
        let mut tokens = Vec::new();
        for entry in env.list(variable, "") {
            let parts: Vec<&str> = entry.split(':').collect();
            let [name, role, hash] = parts.as_slice() else {
                env.problem(variable, format!("{entry:?} is not name:role:sha256hex"));
                continue;
            };
            let role = match *role {
                "admin" => Role::Admin,
                "viewer" => Role::Viewer,
                other => {
                    env.problem(
                        variable,
                        format!("role {other:?} of {name:?} is neither admin nor viewer"),
                    );
                    continue;
                }
            };
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(hash, &mut digest).is_err() {
                env.problem(variable, format!("the hash of {name:?} is not 64 hex digits"));
                continue;
            }
            tokens.push((digest, Principal { name: (*name).to_owned(), role }));
        }
        Self { tokens }
    }

    /// A single token, for tests and the demo.
    pub fn with_token(mut self, name: &str, role: Role, token: &str) -> Self {
        self.tokens.push((sha256(token.as_bytes()), Principal { name: name.to_owned(), role }));
        self
    }

    /// Who holds `token`, if anyone.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let digest = sha256(token.as_bytes());
        // Comparing hashes: timing tells an attacker nothing about a token.
        self.tokens.iter().find(|(known, _)| *known == digest).map(|(_, principal)| principal)
    }

    /// The principal of an `Authorization: Bearer …` header value.
    pub fn authenticate_header(&self, header: Option<&str>) -> Option<&Principal> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        self.authenticate(token)
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_configured_by_hash_and_bad_entries_are_reported() {
        let hash = hex::encode(sha256(b"s3cret"));
        let mut env = Env::from_pairs([(
            "CEZBEK_ADMIN_TOKENS",
            format!("alice:admin:{hash},bob:owner:{hash},carol:viewer:xyz,broken"),
        )]);
        let tokens = AdminTokens::from_env(&mut env);
        let problems = env.finish(()).unwrap_err().problems;
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            tokens.authenticate("s3cret").map(|p| (p.name.as_str(), p.role)),
            Some(("alice", Role::Admin))
        );
        assert_eq!(
            tokens.authenticate_header(Some("Bearer s3cret")).map(|p| p.role),
            Some(Role::Admin)
        );
        assert!(tokens.authenticate("wrong").is_none());
        assert!(tokens.authenticate_header(Some("Basic s3cret")).is_none());
        assert!(tokens.authenticate_header(None).is_none());
    }
}
