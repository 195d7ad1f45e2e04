-- The account's whole life: recovery links (enrollment codes for an existing
-- user, issued by an administrator) and recovery codes (issued by the user).

-- 'enroll': the first passkey of a user made through the admin API.
-- 'recovery': a new passkey for an existing user; with revoke_others, the
-- user's other passkeys, sessions and licenses are revoked in the same
-- transaction as the new passkey is stored.
ALTER TABLE enrollments ADD COLUMN purpose TEXT NOT NULL DEFAULT 'enroll';
ALTER TABLE enrollments ADD COLUMN revoke_others BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX enrollments_user ON enrollments(user_id);
