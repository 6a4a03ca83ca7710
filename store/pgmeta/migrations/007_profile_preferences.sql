-- Each viewer profile has its own preferences (a JSON object, as users').
ALTER TABLE user_profiles ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(preferences) = 'object');
