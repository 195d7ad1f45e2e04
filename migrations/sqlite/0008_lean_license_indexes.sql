-- Each index on licenses is written by every mint. These two were never read
-- alone: licenses are found by login only through their user, and a revoked
-- passkey's licenses through its owner (`licenses_user`).
DROP INDEX licenses_login;
DROP INDEX licenses_credential;
