-- Connecting Latchkey to the business: API keys, external user ids, payment
-- webhooks (Stripe, Paddle) and the outbox of event webhooks.

-- Your own id for a user (or your payment provider's customer id); unique when set.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users(external_id);

-- Changes made with an API key name the key as their actor.
ALTER TABLE audit_log ADD COLUMN actor_key_id TEXT;
ALTER TABLE audit_log ADD COLUMN actor_key_name TEXT;

-- One-time codes with which a user created through the admin API adds their first passkey.
CREATE TABLE enrollments (
    token_hash  TEXT PRIMARY KEY,              -- SHA-256 of the code; the code itself is never stored
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,            -- public id, key_…
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL UNIQUE,        -- SHA-256 of the whole lk_… secret; the secret itself is never stored
    hint          TEXT NOT NULL,               -- the secret's first characters, to recognise it in lists
    scopes        TEXT NOT NULL,               -- space-separated
    created_by    TEXT,                        -- the admin's user id; NULL from the command line
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

-- Payment-provider events already applied: a repeat delivery changes nothing.
CREATE TABLE billing_events (
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- The newest known state of each subscription, and what it granted.
CREATE TABLE subscriptions (
    provider         TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    user_id          TEXT REFERENCES users(id) ON DELETE SET NULL,   -- NULL until a checkout links it
    customer_id      TEXT,
    status           TEXT NOT NULL,
    entitlements     TEXT NOT NULL,            -- JSON array of the names its prices map to
    period_end       BIGINT,
    rank_final       BIGINT NOT NULL,          -- 1 once canceled: nothing older revives it
    rank_at          BIGINT NOT NULL,          -- the object's own time that orders its states
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (provider, subscription_id)
);
CREATE INDEX subscriptions_user ON subscriptions(user_id);

-- Configured receivers of event webhooks (LATCHKEY_WEBHOOK_URL), and who may send to each now.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,         -- ep_ and a hash of the URL
    url              TEXT NOT NULL,
    active           BOOLEAN NOT NULL,         -- still configured
    disabled_at      BIGINT,                   -- answered 410 Gone
    disabled_reason  TEXT,
    lease_owner      TEXT,                     -- the instance delivering to it now
    lease_until      BIGINT                    -- milliseconds
);

-- The outbox: one row per event and endpoint, written by the trigger below in
-- the same transaction as the audit row of the change, so an event exists
-- exactly when its change committed.
CREATE TABLE webhook_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    msg_id           TEXT NOT NULL UNIQUE,
    event            TEXT NOT NULL,            -- the audit event's name
    at               BIGINT NOT NULL,
    user_id          TEXT,
    target           TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',   -- pending, delivered, failed
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,          -- milliseconds
    last_status      BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT
);
CREATE INDEX webhook_outbox_queue ON webhook_outbox(endpoint_id, status, id);

CREATE TRIGGER audit_log_to_webhook_outbox AFTER INSERT ON audit_log
WHEN NEW.event IN ('registration', 'user.disabled', 'user.enabled', 'entitlement.granted',
                   'entitlement.removed', 'license.minted', 'license.revoked', 'passkey.added',
                   'passkey.removed', 'passkey.revoked')
BEGIN
    INSERT INTO webhook_outbox (endpoint_id, msg_id, event, at, user_id, target, next_attempt_at)
    SELECT e.id, 'msg_' || NEW.id || '_' || e.id, NEW.event, NEW.at,
           COALESCE(NEW.target_user_id, NEW.actor_user_id), NEW.target, NEW.at * 1000
    FROM webhook_endpoints e WHERE e.active;
END;
