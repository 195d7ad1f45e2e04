//! Status-list indexes for new licenses, handed out from blocks this instance
//! reserved in the database.

use std::sync::Mutex;

use crate::store::{now, Store};

/// Indexes reserved per database round trip.
pub const BLOCK: i64 = 256;

#[derive(Default)]
pub struct SlotAllocator {
    /// Reserved ranges not yet used up: `(list id, next index, end index)`.
    blocks: Mutex<Vec<(i64, i64, i64)>>,
}

impl SlotAllocator {
    fn take(&self) -> Option<(i64, i64)> {
        let mut blocks = self.blocks.lock().ok()?;
        while let Some(block) = blocks.last_mut() {
            if block.1 < block.2 {
                let slot = (block.0, block.1);
                block.1 += 1;
                return Some(slot);
            }
            blocks.pop();
        }
        None
    }

    /// The next free `(list id, index)`; reserves a new block when this
    /// instance has used up its own.
    pub async fn next(&self, store: &Store) -> crate::store::Result<(i64, i64)> {
        loop {
            if let Some(slot) = self.take() {
                return Ok(slot);
            }
            let block = store.reserve_status_block(BLOCK, now()).await?;
            if let Ok(mut blocks) = self.blocks.lock() {
                blocks.push(block);
            }
        }
    }
}
