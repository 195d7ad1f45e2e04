-- Latchkey schema (SQLite). Times are Unix seconds; ids are text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,            -- UUID; also the WebAuthn user handle
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,        -- lower-cased username: case-insensitive uniqueness
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE credentials (
    id               TEXT PRIMARY KEY,         -- credential id, base64url
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    passkey          TEXT NOT NULL,            -- webauthn-rs Passkey (JSON)
    public_jwk       TEXT NOT NULL,            -- the public key as a JWK, for license `cks`
    counter          BIGINT NOT NULL DEFAULT 0,
    aaguid           TEXT NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    backup_state     BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    last_used_at     BIGINT,
    revoked_at       BIGINT,
    revoked_reason   TEXT
);
CREATE INDEX credentials_user ON credentials(user_id);

CREATE TABLE sessions (
    id_hash           TEXT PRIMARY KEY,        -- SHA-256 of the cookie value; the value itself is never stored
    user_id           TEXT REFERENCES users(id) ON DELETE CASCADE,
    login_id          TEXT,                    -- one passkey sign-in; licenses point at it
    credential_id     TEXT,
    authenticated_at  BIGINT,
    data              TEXT NOT NULL,
    expires_at        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    client_addr       TEXT,
    user_agent        TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_login ON sessions(login_id);
CREATE INDEX sessions_credential ON sessions(credential_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE ceremonies (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ceremonies_expiry ON ceremonies(expires_at);

CREATE TABLE entitlements (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    expires_at  BIGINT,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,          -- RFC 7638 thumbprint
    generation      BIGINT NOT NULL UNIQUE,    -- 1, 2, 3…: the newest unretired key signs
    public_key      BLOB NOT NULL,
    sealed_private  BLOB NOT NULL,             -- XChaCha20-Poly1305 under the KEK, nonce || ciphertext
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

CREATE TABLE status_lists (
    id          BIGINT PRIMARY KEY,
    next_idx    BIGINT NOT NULL DEFAULT 0,
    capacity    BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE licenses (
    jti             TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kid             TEXT NOT NULL,
    device_jkt      TEXT NOT NULL,
    login_id        TEXT,
    credential_id   TEXT,
    list_id         BIGINT NOT NULL,
    idx             BIGINT NOT NULL,
    entitlements    TEXT NOT NULL,             -- JSON array
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    revoked_reason  TEXT,
    UNIQUE (list_id, idx)
);
CREATE INDEX licenses_user ON licenses(user_id);
CREATE INDEX licenses_login ON licenses(login_id);
CREATE INDEX licenses_credential ON licenses(credential_id);
CREATE INDEX licenses_revoked ON licenses(list_id, revoked_at);
CREATE INDEX licenses_kid ON licenses(kid, expires_at);

CREATE TABLE dpop_proofs (
    id          TEXT PRIMARY KEY,              -- hash of key thumbprint and jti
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              BIGINT NOT NULL,
    event           TEXT NOT NULL,
    actor_user_id   TEXT,
    target_user_id  TEXT,
    target          TEXT,
    client_addr     TEXT,
    user_agent      TEXT,
    detail          TEXT
);
CREATE INDEX audit_user ON audit_log(target_user_id, id);
CREATE INDEX audit_event ON audit_log(event, id);
