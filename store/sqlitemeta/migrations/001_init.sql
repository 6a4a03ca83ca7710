-- Channels, users and content. Times are Unix microseconds (UTC).
CREATE TABLE channels (
    name           TEXT PRIMARY KEY CHECK (name <> ''),
    title          TEXT NOT NULL DEFAULT '',
    description    TEXT NOT NULL DEFAULT '',
    key_hash       TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the stream key
    key_prefix     TEXT NOT NULL,
    key_rotated_at INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL CHECK (email <> ''),
    username      TEXT NOT NULL CHECK (username <> ''),
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'viewer')),
    tier          TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'premium', 'family')),
    preferences   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(preferences) AND json_type(preferences) = 'object'),
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT;
-- Unique without regard to ASCII case (SQLite's lower() is ASCII-only).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE content (
    id              TEXT PRIMARY KEY,
    title           TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    genre           TEXT NOT NULL DEFAULT '',
    visibility      TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'protected')),
    encoding_status TEXT NOT NULL DEFAULT 'pending' CHECK (encoding_status IN ('pending', 'running', 'ready', 'failed')),
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX content_created_at ON content (created_at);
