//! The governance kernel (work in progress).
