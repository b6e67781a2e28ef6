//! Messages: post (nonce, replies, mentions, slowmode, attachments, E2E), history, edit,
//! delete and bulk delete, reactions, pins, typing, attachments with signed URLs, search and
//! read states. Server channels are judged by `xcord_permissions`; private channels by
//! membership.

mod activity;
mod attachments;
mod context;
mod editing;
mod history;
mod pins;
mod posting;
mod reactions;
mod read_states;
mod rendering;
mod search;

pub use activity::ChannelActivity;
pub use context::ChannelContext;
pub use history::HistoryPage;
pub(crate) use posting::require_message_channel;
pub use reactions::check_emoji;
pub use search::SearchScope;
