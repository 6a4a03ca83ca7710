-- VOD job queue: the statuses of an uploaded master (uploaded, queued,
-- processing; pending and running stay valid), its progress and failure
-- reason, and the master's object key. SQLite cannot change a CHECK, so the
-- table is rebuilt (nothing references it).
CREATE TABLE content_new (
    id                TEXT PRIMARY KEY,
    title             TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    genre             TEXT NOT NULL DEFAULT '',
    visibility        TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'protected')),
    encoding_status   TEXT NOT NULL DEFAULT 'pending' CHECK (encoding_status IN
                          ('pending', 'uploaded', 'queued', 'processing', 'running', 'ready', 'failed')),
    created_at        INTEGER NOT NULL,
    owner_id          TEXT NOT NULL DEFAULT '',
    encoding_progress REAL NOT NULL DEFAULT 0 CHECK (encoding_progress >= 0 AND encoding_progress <= 100),
    encoding_reason   TEXT NOT NULL DEFAULT '',
    master_key        TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT INTO content_new (id, title, description, genre, visibility, encoding_status, created_at, owner_id)
    SELECT id, title, description, genre, visibility, encoding_status, created_at, owner_id FROM content;
DROP TABLE content;
ALTER TABLE content_new RENAME TO content;
CREATE INDEX content_created_at ON content (created_at);
CREATE INDEX content_newest ON content (created_at DESC, id DESC);
CREATE INDEX content_genre_newest ON content (genre, created_at DESC, id DESC);
