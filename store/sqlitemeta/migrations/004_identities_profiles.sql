-- Accounts at OpenID Connect providers linked to users, and the profiles
-- of family-tier accounts.
CREATE TABLE user_identities (
    issuer     TEXT NOT NULL CHECK (issuer <> ''),
    subject    TEXT NOT NULL CHECK (subject <> ''),
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE user_profiles (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL CHECK (name <> ''),
    created_at INTEGER NOT NULL
) STRICT;
-- Unique per account without regard to ASCII case.
CREATE UNIQUE INDEX user_profiles_name ON user_profiles (user_id, lower(name));
