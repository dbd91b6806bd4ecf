//! The versioned schema migrations of each backend, compiled into the binary.
//!
//! To change the schema, append a `(version, description, sql)` entry to **both** lists with the next version and
//! put its SQL in `migrations/{sqlite,postgres}/NNNN_description.sql`. Never edit or remove an applied entry: sqlx
//! stores each migration's checksum and [`crate::open`] refuses a database whose ledger disagrees with this build.

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration: version, description, SQL.
type Script = (i64, &'static str, &'static str);

const SQLITE: &[Script] = &[
    (
        1,
        "tokens agents",
        include_str!("migrations/sqlite/0001_tokens_agents.sql"),
    ),
    (
        2,
        "governance",
        include_str!("migrations/sqlite/0002_governance.sql"),
    ),
    (
        4,
        "llm usage",
        include_str!("migrations/sqlite/0004_llm_usage.sql"),
    ),
];

const POSTGRES: &[Script] = &[
    (
        1,
        "tokens agents",
        include_str!("migrations/postgres/0001_tokens_agents.sql"),
    ),
    (
        2,
        "governance",
        include_str!("migrations/postgres/0002_governance.sql"),
    ),
    (
        4,
        "llm usage",
        include_str!("migrations/postgres/0004_llm_usage.sql"),
    ),
];

/// The SQLite migrator.
pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// The PostgreSQL migrator; it creates `schema` (already validated) under its advisory lock.
pub(crate) fn postgres(schema: Option<&str>) -> Migrator {
    let mut migrator = migrator(POSTGRES);
    if let Some(schema) = schema {
        migrator.create_schema(format!("\"{schema}\""));
    }
    migrator
}

fn migrator(scripts: &[Script]) -> Migrator {
    let migrations = scripts
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    // `locking` stays on (the default): PostgreSQL takes `pg_advisory_lock` around the whole run.
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_contiguous_versions() {
        let versions = |scripts: &[Script]| scripts.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
        // Versions increase; gaps are allowed (numbers are assigned per branch and merged).
        assert_eq!(SQLITE.first().map(|s| s.0), Some(1));
        for pair in SQLITE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "versions must increase");
        }
    }
}
