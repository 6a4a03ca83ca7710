-- Protected channels: their playback needs a signed URL.
ALTER TABLE channels ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'
    CHECK (visibility IN ('public', 'protected'));
