//! Audit rows, written in the transaction of the change they record.

use xcord_store::AuditRecord;
use xcord_types::Snowflake;

use crate::Core;

impl Core {
    /// An audit row, for a store method that writes it with the change it records.
    pub(crate) fn audit_record(
        &self,
        server: Snowflake,
        actor: Snowflake,
        action: &str,
        target: Option<Snowflake>,
        reason: Option<&str>,
        changes: Option<serde_json::Value>,
    ) -> AuditRecord {
        AuditRecord {
            id: self.ids.next_id(),
            server_id: server,
            actor_id: actor,
            action: action.to_owned(),
            target_id: target,
            reason: reason.map(str::to_owned),
            changes: changes.map(|c| c.to_string()),
            created_at: self.clock.now(),
        }
    }
}
