-- VOD job queue: the statuses of an uploaded master (uploaded, queued,
-- processing; pending and running stay valid), its progress and failure
-- reason, and the master's object key.
ALTER TABLE content DROP CONSTRAINT IF EXISTS content_encoding_status_check;
ALTER TABLE content ADD CONSTRAINT content_encoding_status_check CHECK (encoding_status IN
    ('pending', 'uploaded', 'queued', 'processing', 'running', 'ready', 'failed'));
ALTER TABLE content ADD COLUMN encoding_progress double precision NOT NULL DEFAULT 0
    CHECK (encoding_progress >= 0 AND encoding_progress <= 100);
ALTER TABLE content ADD COLUMN encoding_reason text NOT NULL DEFAULT '';
ALTER TABLE content ADD COLUMN master_key text NOT NULL DEFAULT '';
