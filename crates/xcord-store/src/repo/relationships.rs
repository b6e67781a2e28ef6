//! Friendships, friend requests and blocks. One row per direction: a friendship is two
//! `friend` rows, a request is `pending_outgoing` one way and `pending_incoming` the other,
//! a block is one `blocked` row owned by the blocker.

use sqlx::Row as _;
use xcord_types::{Snowflake, Timestamp};

use crate::{Store, StoreResult};

/// The kind of a relationship row, as seen by its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationshipType {
    /// Mutual friends.
    Friend,
    /// The owner asked the other to be friends.
    PendingOutgoing,
    /// The other asked the owner to be friends.
    PendingIncoming,
    /// The owner blocks the other.
    Blocked,
}

impl RelationshipType {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipType::Friend => "friend",
            RelationshipType::PendingOutgoing => "pending_outgoing",
            RelationshipType::PendingIncoming => "pending_incoming",
            RelationshipType::Blocked => "blocked",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "friend" => RelationshipType::Friend,
            "pending_outgoing" => RelationshipType::PendingOutgoing,
            "pending_incoming" => RelationshipType::PendingIncoming,
            "blocked" => RelationshipType::Blocked,
            _ => return None,
        })
    }
}

/// One relationship row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRecord {
    /// The other user.
    pub other_user_id: Snowflake,
    /// What the owner has with them.
    pub kind: RelationshipType,
    /// Since when.
    pub created_at: Timestamp,
}

/// Storage of relationships.
impl Store {
    /// Both directions between `a` and `b`: (a's row about b, b's row about a).
    pub async fn relationship_pair(
        &self,
        a: Snowflake,
        b: Snowflake,
    ) -> StoreResult<(Option<RelationshipType>, Option<RelationshipType>)> {
        let rows = sqlx::query(
            "SELECT user_id, type FROM relationships WHERE (user_id = $1 AND other_user_id = $2) \
             OR (user_id = $2 AND other_user_id = $1)",
        )
        .bind(a.get())
        .bind(b.get())
        .fetch_all(self.pool())
        .await?;
        let (mut ab, mut ba) = (None, None);
        for r in rows {
            let owner: i64 = r.try_get(0)?;
            let kind = RelationshipType::parse(&r.try_get::<String, _>(1)?);
            if owner == a.get() {
                ab = kind;
            } else {
                ba = kind;
            }
        }
        Ok((ab, ba))
    }

    /// Replaces both directions in one transaction (`None` deletes a row).
    pub async fn set_relationship_pair(
        &self,
        tx: &mut crate::WriteTx,
        a: Snowflake,
        b: Snowflake,
        a_to_b: Option<RelationshipType>,
        b_to_a: Option<RelationshipType>,
        now: Timestamp,
    ) -> StoreResult<()> {
        for (owner, other, kind) in [(a, b, a_to_b), (b, a, b_to_a)] {
            match kind {
                None => {
                    sqlx::query(
                        "DELETE FROM relationships WHERE user_id = $1 AND other_user_id = $2",
                    )
                    .bind(owner.get())
                    .bind(other.get())
                    .execute(&mut **tx)
                    .await?;
                }
                Some(kind) => {
                    sqlx::query(
                        "INSERT INTO relationships (user_id, other_user_id, type, created_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (user_id, other_user_id) DO UPDATE SET type = excluded.type, \
                         created_at = CASE WHEN relationships.type = excluded.type THEN relationships.created_at \
                         ELSE excluded.created_at END",
                    )
                    .bind(owner.get())
                    .bind(other.get())
                    .bind(kind.as_str())
                    .bind(now.as_millis())
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Every row `user` owns, oldest first.
    pub async fn relationships_of(&self, user: Snowflake) -> StoreResult<Vec<RelationshipRecord>> {
        let rows = sqlx::query(
            "SELECT other_user_id, type, created_at FROM relationships WHERE user_id = $1 ORDER BY created_at, other_user_id",
        )
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(kind) = RelationshipType::parse(&r.try_get::<String, _>(1)?) {
                out.push(RelationshipRecord {
                    other_user_id: Snowflake::from_i64(r.try_get(0)?),
                    kind,
                    created_at: Timestamp::from_millis(r.try_get(2)?),
                });
            }
        }
        Ok(out)
    }

    /// Friends and private-channel partners of `user` (not server co-members).
    pub async fn personal_contacts_of(&self, user: Snowflake) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query(
            "SELECT other_user_id AS id FROM relationships WHERE user_id = $1 AND type = 'friend' \
             UNION SELECT r2.user_id FROM channel_recipients r1 JOIN channel_recipients r2 \
               ON r2.channel_id = r1.channel_id WHERE r1.user_id = $1 AND r2.user_id <> $1",
        )
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }

    /// Users who share a friendship, a private channel or a server with `user`.
    pub async fn contacts_of(&self, user: Snowflake) -> StoreResult<Vec<Snowflake>> {
        let rows = sqlx::query(
            "SELECT other_user_id AS id FROM relationships WHERE user_id = $1 AND type = 'friend' \
             UNION SELECT r2.user_id FROM channel_recipients r1 JOIN channel_recipients r2 \
               ON r2.channel_id = r1.channel_id WHERE r1.user_id = $1 AND r2.user_id <> $1 \
             UNION SELECT m2.user_id FROM members m1 JOIN members m2 \
               ON m2.server_id = m1.server_id WHERE m1.user_id = $1 AND m2.user_id <> $1",
        )
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(Snowflake::from_i64(r.try_get(0)?)))
            .collect()
    }

    /// Whether `a` and `b` share a friendship, a private channel or a server.
    pub async fn are_contacts(&self, a: Snowflake, b: Snowflake) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM relationships WHERE user_id = $1 AND other_user_id = $2 AND type = 'friend') \
               OR EXISTS (SELECT 1 FROM channel_recipients r1 JOIN channel_recipients r2 ON r2.channel_id = r1.channel_id \
                          WHERE r1.user_id = $1 AND r2.user_id = $2) \
               OR EXISTS (SELECT 1 FROM members m1 JOIN members m2 ON m2.server_id = m1.server_id \
                          WHERE m1.user_id = $1 AND m2.user_id = $2) \
             THEN 1 ELSE 0 END",
        )
        .bind(a.get())
        .bind(b.get())
        .fetch_one(self.pool())
        .await?;
        // CASE yields an integer on both engines (a boolean would not decode on SQLite).
        Ok(row.try_get::<i64, _>(0)? == 1)
    }
}
