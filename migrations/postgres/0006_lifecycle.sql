-- The account's whole life: recovery links (enrollment codes for an existing
-- user, issued by an administrator) and recovery codes (issued by the user).

-- 'enroll': the first passkey of a user made through the admin API.
-- 'recovery': a new passkey for an existing user; with revoke_others, the
-- user's other passkeys, sessions and licenses are revoked in the same
-- transaction as the new passkey is stored.
ALTER TABLE enrollments ADD COLUMN purpose TEXT NOT NULL DEFAULT 'enroll';
ALTER TABLE enrollments ADD COLUMN revoke_others BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX enrollments_user ON enrollments(user_id);

-- Recovery codes a signed-in user generated (a new set replaces the old one).
-- Only SHA-256 hashes of user id and code are kept; each works once.
CREATE TABLE recovery_codes (
    code_hash   TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id);

-- Wrong recovery codes, counted per account and per address to limit guessing.
CREATE TABLE recovery_failures (
    user_id      TEXT,                 -- NULL when the username is unknown
    client_addr  TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX recovery_failures_user ON recovery_failures(user_id, at);
CREATE INDEX recovery_failures_addr ON recovery_failures(client_addr, at);

-- Devices: a device is a device key (the licenses' cnf.jkt), recorded by the
-- mint that first sees it for a user. Removing one revokes its licenses; a
-- removed device that mints again comes back as the same row.
CREATE TABLE devices (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    jkt         TEXT NOT NULL,
    name        TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_sync   BIGINT NOT NULL,
    removed_at  BIGINT,
    PRIMARY KEY (user_id, jkt)
);
-- Devices that minted before this migration.
INSERT INTO devices (user_id, jkt, name, first_seen, last_sync)
SELECT user_id, device_jkt, 'Device', MIN(issued_at), MAX(issued_at) FROM licenses GROUP BY user_id, device_jkt;

-- How many devices an entitlement allows at once; NULL: LATCHKEY_MAX_DEVICES
-- (unlimited when that is unset).
ALTER TABLE entitlements ADD COLUMN max_devices BIGINT;
