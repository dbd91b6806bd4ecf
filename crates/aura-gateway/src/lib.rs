//! Aura's LLM gateway core: the wire formats of OpenAI, Anthropic and Gemini (request facts, usage extraction,
//! SSE parsing, token counting when a provider omits usage), the pricing table in integer micro-dollars, routing of
//! model names to deployments with load balancing and ordered fallbacks, retries honouring `Retry-After`, a
//! circuit breaker per deployment, translation between the OpenAI, Anthropic and Gemini chat formats (plain and
//! streamed) for cross-provider routes, exact-match caches, and a fake upstream that speaks every provider's format.
//!
//! Architecture invariant: this crate knows upstream wire formats and HTTP clients, but nothing of governance,
//! the audit log or the store: the server's gateway service decides, audits and settles around it. Provider API
//! keys live in [`router::Deployment`] only and never appear in `Debug`, errors or logs.

pub mod cache;
pub mod fake;
pub mod pricing;
pub mod protocol;
pub mod router;
pub mod sse;
pub mod translate;
pub mod translate_stream;

pub use aura_config::ProviderKind;
pub use pricing::{Price, Pricing};
pub use protocol::{Op, RequestFacts, Usage};
pub use router::{AttemptError, Deployment, Gateway, GatewayError, Upstream};
