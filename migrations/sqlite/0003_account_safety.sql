-- Account safety (issue 11): step-up provenance of passkeys, single-use
-- confirmations, confusable usernames, and audit-log retention.

-- A passkey added while the session had just proved a passkey (or the first
-- passkey of a new account). Older passkeys are not.
ALTER TABLE credentials ADD COLUMN added_with_step_up BOOLEAN NOT NULL DEFAULT FALSE;

-- Passkey confirmations (a sign-in or a step-up) spent by a change that needs a
-- fresh one each time; a confirmation is spent at most once.
CREATE TABLE spent_confirmations (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX spent_confirmations_expiry ON spent_confirmations(expires_at);

-- The Unicode TS #39 skeleton of the username key; the service fills it for
-- existing users at start-up and then makes it unique.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;

-- How long audit rows are kept. Rows younger than this cannot be deleted, and
-- it can never be shorter than 30 days.
CREATE TABLE audit_policy (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    retention_secs  BIGINT NOT NULL CHECK (retention_secs >= 2592000)
);
INSERT INTO audit_policy (id, retention_secs) VALUES (1, 34560000);

DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.at > CAST(strftime('%s', 'now') AS INTEGER) - (SELECT retention_secs FROM audit_policy WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
