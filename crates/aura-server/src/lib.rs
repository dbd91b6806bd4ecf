//! Aura's HTTP edge and the services behind it: the authenticated REST API, health, Prometheus metrics,
//! the generated OpenAPI document, and the server lifecycle (bind, serve, drain, flush).
//!
//! Layering: route handlers (`routes::*`) are thin; they authenticate through the `auth` module, call a service
//! (`services::*`), and convert domain values into their own wire structs. Services own ids and timestamps
//! and talk to the [`aura_store::Store`]. Nothing here prints to stdout: the CLI decides what the user sees.

mod app;
mod auth;
mod error;
mod lifecycle;
mod routes;
pub mod services;
mod telemetry;
mod watch;

pub use lifecycle::{BoundServer, ServeError, ShutdownReport, StoreSettings, bind, open_store};
pub use routes::openapi_document;
