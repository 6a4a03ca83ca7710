-- TOTP second factor and single-use recovery codes (hashes only).
CREATE TABLE user_mfa (
    user_id      text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       text NOT NULL CHECK (secret <> ''),
    confirmed_at timestamptz,
    created_at   timestamptz NOT NULL
);

CREATE TABLE user_recovery_codes (
    user_id   text NOT NULL REFERENCES user_mfa (user_id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);
