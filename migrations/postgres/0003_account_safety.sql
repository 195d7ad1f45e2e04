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

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at <= CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)
        - (SELECT retention_secs FROM audit_policy WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
