//! Decision helpers.
