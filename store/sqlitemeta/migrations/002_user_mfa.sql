-- TOTP second factor and single-use recovery codes (hashes only).
CREATE TABLE user_mfa (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT NOT NULL CHECK (secret <> ''),
    confirmed_at INTEGER,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE user_recovery_codes (
    user_id   TEXT NOT NULL REFERENCES user_mfa (user_id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) STRICT;
