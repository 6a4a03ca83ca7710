-- Channel owners (publishers manage their own), channels synced from the
-- config file, content owners, and the catalog's ordering and genre filter.
ALTER TABLE channels ADD COLUMN owner_id TEXT NOT NULL DEFAULT '';
ALTER TABLE channels ADD COLUMN from_config INTEGER NOT NULL DEFAULT 0 CHECK (from_config IN (0, 1));
CREATE INDEX channels_owner ON channels (owner_id, name);

ALTER TABLE content ADD COLUMN owner_id TEXT NOT NULL DEFAULT '';
CREATE INDEX content_newest ON content (created_at DESC, id DESC);
CREATE INDEX content_genre_newest ON content (genre, created_at DESC, id DESC);
