//! Reading one page of an address (§4.1), shared by direct pulls and long-polls.

use crate::store;
use denet_core::query::{PageBounds, cut_page};
use denet_core::{Address, Cursor, PageQuery};
use serde_json::{Value, json};
use worker::{D1Database, Result};

/// A page: messages ascending by seq, `next` and `more`.
pub struct Page {
    pub messages: Vec<store::MessageRow>,
    pub next: u64,
    pub more: bool,
}

impl Page {
    pub fn to_json(&self) -> Value {
        let messages: Vec<Value> = self.messages.iter().map(store::MessageRow::to_json).collect();
        json!({"messages": messages, "next": self.next, "more": self.more})
    }
}

/// Reads the page `query` asks for. Because `received_at` never decreases along
/// seq, "received at or after `since`" is every seq after the last one received
/// before it, so both cursors become an `after`.
/// A page ends at `query.limit` messages or before its JSON passes `max_bytes`.
pub async fn read(db: &D1Database, address: &Address, query: &PageQuery, max_bytes: u64) -> Result<Page> {
    let after = match query.cursor {
        Cursor::After(after) => after,
        Cursor::Since(since) => store::seq_before(db, address, since).await?,
    };
    read_after(db, address, after, PageBounds { limit: query.limit, max_bytes }).await
}

/// The page after `after` within `bounds` (also the chunks of a socket replay).
pub async fn read_after(db: &D1Database, address: &Address, after: u64, bounds: PageBounds) -> Result<Page> {
    let rows = store::messages_after(db, address, after, bounds.limit + 1).await?;
    let (messages, next, more) = cut_page(rows, bounds, after, |r| r.seq, store::MessageRow::json_len);
    Ok(Page { messages, next, more })
}
