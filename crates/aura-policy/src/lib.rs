//! The policy language (work in progress).
