//! Cache tiers.
