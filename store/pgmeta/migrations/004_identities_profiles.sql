-- Accounts at OpenID Connect providers linked to users, and the profiles
-- of family-tier accounts.
CREATE TABLE user_identities (
    issuer     text NOT NULL CHECK (issuer <> ''),
    subject    text NOT NULL CHECK (subject <> ''),
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE user_profiles (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL
);
-- Unique per account without regard to case (as users' emails are).
CREATE UNIQUE INDEX user_profiles_name ON user_profiles (user_id, lower(name));
