//! Shared vocabulary of Aura: roles and principals, API tokens, validated names and the injected clock.
//!
//! This crate holds plain domain types that every other crate speaks. It does no I/O and knows no wire format
//! beyond the serde derives needed to carry its values through configuration and storage.

mod action;
mod clock;
mod identity;
mod token;

pub use action::{Action, ActionError, ActionKind, Estimate, RawAction, Reason, Verdict};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use identity::{AgentName, NameError, Permission, Principal, Role, RoleParseError};
pub use token::{IssuedToken, TokenError, TokenHash, TokenId};
