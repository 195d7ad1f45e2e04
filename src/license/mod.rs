//! Offline licenses: minting with DPoP device binding, the published keys, and
//! the premium example. The license format itself is `latchkey_core`.

mod jwks;
mod mint;
mod premium;
mod proof;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Session routes: minting (the premium example authenticates by its license).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mint::mint))
        .routes(routes!(premium::example))
}

/// The published keys: public, read-only, no session.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks::jwks))
        .routes(routes!(jwks::pinned_keys))
}
