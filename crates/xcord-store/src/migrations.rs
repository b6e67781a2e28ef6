//! Embedded migrations, one folder per backend.
//!
//! The folders must list the same versions with the same descriptions, so that a database
//! at version N means the same schema on either backend; a unit test checks it.

use sqlx::migrate::Migrator;

/// Migrations for SQLite (`migrations/sqlite`).
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Migrations for PostgreSQL (`migrations/postgres`).
pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// `(version, description)` of every migration of a migrator, in order.
pub fn versions(m: &Migrator) -> Vec<(i64, String)> {
    m.iter()
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_identical_version_lists() {
        let sqlite = versions(&SQLITE);
        let postgres = versions(&POSTGRES);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}
