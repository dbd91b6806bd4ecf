//! Who is calling: roles, the permissions they grant, agent names and the authenticated principal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role a token carries. Roles are not a ladder: each grants a fixed set of [`Permission`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including token management.
    Admin,
    /// Runs the system: reads everything and operates it, but does not manage tokens.
    Operator,
    /// An autonomous agent acting under governance; sees itself, not the fleet's administration.
    Agent,
    /// Reads, never changes.
    Viewer,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Agent, Role::Viewer];

    /// The lowercase name used in config, storage and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role grants `permission`.
    pub const fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(
                permission,
                Authenticated | ReadInventory | ReadConfig | ReadAudit | Govern
            ),
            Role::Viewer => matches!(permission, Authenticated | ReadInventory | ReadAudit),
            Role::Agent => matches!(permission, Authenticated | Act),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`, expected one of admin, operator, agent, viewer")]
pub struct RoleParseError(pub String);

impl FromStr for Role {
    type Err = RoleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleParseError(s.to_owned()))
    }
}

/// What a route requires of its caller. Each route names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Any valid token.
    Authenticated,
    /// Read the agent registry and, later, assets and decisions.
    ReadInventory,
    /// Read the effective configuration (secrets redacted).
    ReadConfig,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Read the audit log: entries, checkpoints, proofs.
    ReadAudit,
    /// Ask the kernel for decisions and settle them (agents; admins on an agent's behalf).
    Act,
    /// Operate governance: reload policies, decide approvals, halt and resume agents.
    Govern,
}

/// A validated agent name: 1–64 characters of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentName(String);

/// A name that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name `{name}`: {reason}")]
pub struct NameError {
    /// The rejected input.
    pub name: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl AgentName {
    /// Validates `name` against the naming rule.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the shared naming rule used for agents and tokens.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
    let err = |reason| {
        Err(NameError {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return err("must not be empty");
    }
    if name.len() > 64 {
        return err("must be at most 64 characters");
    }
    let mut chars = name.chars();
    if !chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return err("must start with a lowercase letter or a digit");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return err("may contain only a-z, 0-9, `.`, `_` and `-`");
    }
    Ok(())
}

impl TryFrom<String> for AgentName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AgentName> for String {
    fn from(value: AgentName) -> Self {
        value.0
    }
}

impl FromStr for AgentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The id of the token that authenticated the call.
    pub token_id: crate::TokenId,
    /// The token's human-readable name.
    pub token_name: String,
    /// The token's role.
    pub role: Role,
    /// The agent the token acts for, if any.
    pub agent: Option<AgentName>,
}

impl Principal {
    /// Whether this caller may do what `permission` guards.
    pub fn may(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_admin_manages_tokens() {
        for role in Role::ALL {
            assert_eq!(role.allows(Permission::ManageTokens), role == Role::Admin);
            assert!(role.allows(Permission::Authenticated));
        }
        assert!(!Role::Agent.allows(Permission::ReadInventory));
        assert!(Role::Viewer.allows(Permission::ReadInventory));
        assert!(!Role::Viewer.allows(Permission::ReadConfig));
        assert!(Role::Agent.allows(Permission::Act) && !Role::Viewer.allows(Permission::Act));
        assert!(
            Role::Operator.allows(Permission::Govern) && !Role::Agent.allows(Permission::Govern)
        );
    }

    #[test]
    fn agent_names_follow_the_rule() {
        for ok in ["a", "planner-1", "ops.bot_2", "0x"] {
            assert!(AgentName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a b", "é", &"a".repeat(65)] {
            assert!(AgentName::new(bad).is_err(), "{bad}");
        }
    }
}
