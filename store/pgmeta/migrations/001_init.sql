-- Channels, users and content. Run by tern (github.com/jackc/tern/v2).
CREATE TABLE channels (
    name           text PRIMARY KEY CHECK (name <> ''),
    title          text NOT NULL DEFAULT '',
    description    text NOT NULL DEFAULT '',
    key_hash       text NOT NULL UNIQUE,   -- hex SHA-256 of the stream key
    key_prefix     text NOT NULL,
    key_rotated_at timestamptz NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE users (
    id            text PRIMARY KEY,
    email         text NOT NULL CHECK (email <> ''),
    username      text NOT NULL CHECK (username <> ''),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'publisher', 'viewer')),
    tier          text NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'premium', 'family')),
    preferences   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(preferences) = 'object'),
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz
);
-- Unique without regard to case, as in SQLite (for ASCII, the same rule).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE content (
    id              text PRIMARY KEY,
    title           text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    genre           text NOT NULL DEFAULT '',
    visibility      text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'protected')),
    encoding_status text NOT NULL DEFAULT 'pending' CHECK (encoding_status IN ('pending', 'running', 'ready', 'failed')),
    created_at      timestamptz NOT NULL
);
CREATE INDEX content_created_at ON content (created_at);
