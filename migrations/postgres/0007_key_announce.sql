-- Signing keys are announced before they sign: a key made by `latchkey keys rotate` is
-- published (JWK set and /latchkey-keys.json) from its creation and signs from `signs_from`.
-- NULL (keys made before this migration) means: from `created_at`.
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT;
