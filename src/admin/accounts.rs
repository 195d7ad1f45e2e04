//! Operations on a user's link to the business: the external id (your own
//! user id, or the payment provider's customer id), unique when set.

use super::ops::{no_such_user, Actor};
use crate::apikeys::Scope;
use crate::error::{AppError, Result};
use crate::store::audit::{AuditEvent, Event};
use crate::store::users::ExternalIdChange;
use crate::store::{now, Store};

/// External ids: 1 to 255 visible ASCII characters (no spaces).
pub const EXTERNAL_ID_PATTERN: &str = "^[!-~]{1,255}$";

pub fn valid_external_id(text: &str) -> bool {
    (1..=255).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Sets or (with `None`) clears a user's external id; whether anything changed.
pub async fn set_external_id(
    store: &Store,
    actor: &Actor<'_>,
    user_id: &str,
    external_id: Option<&str>,
) -> Result<bool> {
    actor.require(Some(Scope::UsersWrite))?;
    if external_id.is_some_and(|id| !valid_external_id(id)) {
        return Err(AppError::Unprocessable(
            "invalid-external-id",
            "External ids are 1 to 255 visible ASCII characters, without spaces.".into(),
        ));
    }
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        target: external_id,
        ..actor.audit(Event::UserExternalIdSet)
    };
    match store
        .set_external_id(user_id, external_id, &audit, now())
        .await?
    {
        ExternalIdChange::Changed => Ok(true),
        ExternalIdChange::Unchanged => Ok(false),
        ExternalIdChange::NoSuchUser => Err(no_such_user()),
        ExternalIdChange::Taken => Err(AppError::conflict(
            "external-id-taken",
            "Another user already has this external id.",
        )),
    }
}
