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

/// How long an enrollment code works.
pub const ENROLLMENT_TTL_SECS: i64 = 7 * 86_400;

/// A user made without a passkey, and the one-time code with which they add one.
pub struct NewAccount {
    pub user: crate::store::users::User,
    pub code: String,
    pub code_expires_at: i64,
}

/// Creates a user without a passkey; they enroll one with the returned code
/// (`POST /api/register/enroll`), which works once, for seven days.
pub async fn create_user(
    store: &Store,
    actor: &Actor<'_>,
    username: &str,
    display_name: Option<&str>,
    external_id: Option<&str>,
) -> Result<NewAccount> {
    actor.require(Some(Scope::UsersWrite))?;
    // The same rules as self-registration: PRECIS keys and confusable skeletons.
    let name = crate::usernames::parse(username.trim())
        .map_err(|e| AppError::Unprocessable("invalid-name", e.to_string()))?;
    let display_name = match display_name {
        Some(text) => crate::passkey::clean_name("display name", text)?,
        None => name.display.clone(),
    };
    let username = name.display.clone();
    if external_id.is_some_and(|id| !valid_external_id(id)) {
        return Err(AppError::Unprocessable(
            "invalid-external-id",
            "External ids are 1 to 255 visible ASCII characters, without spaces.".into(),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (code, code_hash) = crate::passkey::enroll::new_code();
    let now = now();
    let audit = AuditEvent {
        target_user_id: Some(&id),
        target: Some(&username),
        ..actor.audit(Event::UserCreated)
    };
    let created = crate::store::enrollments::CreatedUser {
        id: &id,
        username: &username,
        username_key: &name.key,
        username_skeleton: &name.skeleton,
        display_name: &display_name,
        external_id,
        code_hash: &code_hash,
        code_expires_at: now + ENROLLMENT_TTL_SECS,
    };
    match store.create_user(&created, &audit, now).await? {
        crate::store::enrollments::Creation::Created => {}
        crate::store::enrollments::Creation::UsernameTaken => {
            return Err(AppError::conflict(
                "username-taken",
                "This username is taken; choose another.",
            ))
        }
        crate::store::enrollments::Creation::ExternalIdTaken => {
            return Err(AppError::conflict(
                "external-id-taken",
                "Another user already has this external id.",
            ))
        }
    }
    let user = store.user_by_id(&id).await?.ok_or_else(no_such_user)?;
    Ok(NewAccount {
        user,
        code,
        code_expires_at: now + ENROLLMENT_TTL_SECS,
    })
}

/// How long a recovery link works unless told otherwise, and at most.
pub const RECOVERY_TTL_SECS: i64 = 3_600;
pub const RECOVERY_MAX_TTL_SECS: i64 = 86_400;
/// The shortest lifetime a recovery link may be given.
pub const RECOVERY_MIN_TTL_SECS: i64 = 60;

/// A recovery link's code, shown once.
pub struct IssuedRecovery {
    pub code: String,
    pub expires_at: i64,
}

/// The page a recovery link opens: the demo PWA at `origin` + `base_path`.
pub fn recovery_url(origin: &str, base_path: &str, code: &str) -> String {
    format!("{origin}{base_path}/?recover={code}")
}

/// Issues a recovery link for an existing user: a one-time enrollment code
/// with which the holder adds a new passkey to the account (the username
/// stays). It replaces the user's unused codes; with `revoke_others`, using
/// it revokes the user's other passkeys, sessions and licenses. Through the
/// API this needs `users:write` (keys) or a recent passkey sign-in (admins).
pub async fn issue_recovery(
    store: &Store,
    actor: &Actor<'_>,
    user_id: &str,
    ttl_secs: Option<i64>,
    revoke_others: bool,
) -> Result<IssuedRecovery> {
    actor.require(Some(Scope::UsersWrite))?;
    let ttl = ttl_secs.unwrap_or(RECOVERY_TTL_SECS);
    if !(RECOVERY_MIN_TTL_SECS..=RECOVERY_MAX_TTL_SECS).contains(&ttl) {
        return Err(AppError::Unprocessable(
            "invalid-ttl",
            "A recovery link lasts from 1 minute to 24 hours.".into(),
        ));
    }
    let spend = actor.confirm_destructive(store).await?;
    let (code, code_hash) = crate::passkey::enroll::new_code();
    let now = now();
    let detail = format!(
        "ttl {ttl}s; {}",
        if revoke_others {
            "revokes the other passkeys"
        } else {
            "keeps the other passkeys"
        }
    );
    let audit = AuditEvent {
        target_user_id: Some(user_id),
        detail: Some(&detail),
        ..actor.audit(Event::RecoveryIssued)
    };
    let link = crate::store::enrollments::RecoveryLink {
        user_id,
        code_hash: &code_hash,
        expires_at: now + ttl,
        revoke_others,
    };
    use crate::store::enrollments::Recovery;
    match store
        .issue_recovery(&link, spend.as_deref(), &audit, now)
        .await?
    {
        Recovery::Issued => Ok(IssuedRecovery {
            code,
            expires_at: now + ttl,
        }),
        Recovery::NoSuchUser => Err(no_such_user()),
        Recovery::Disabled => Err(AppError::conflict(
            "user-disabled",
            "This user is disabled; enable them before issuing a recovery link.",
        )),
        Recovery::Unconfirmed => Err(super::guard::reauthentication_required()),
    }
}
