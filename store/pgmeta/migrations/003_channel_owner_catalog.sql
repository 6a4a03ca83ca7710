-- Channel owners (publishers manage their own), channels synced from the
-- config file, content owners, and the catalog's ordering and genre filter.
ALTER TABLE channels ADD COLUMN owner_id text NOT NULL DEFAULT '';
ALTER TABLE channels ADD COLUMN from_config boolean NOT NULL DEFAULT false;
CREATE INDEX channels_owner ON channels (owner_id, name);

ALTER TABLE content ADD COLUMN owner_id text NOT NULL DEFAULT '';
CREATE INDEX content_newest ON content (created_at DESC, id DESC);
CREATE INDEX content_genre_newest ON content (genre, created_at DESC, id DESC);
