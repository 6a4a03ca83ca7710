-- Each viewer profile has its own preferences (a JSON object, as users').
ALTER TABLE user_profiles ADD COLUMN preferences TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(preferences) AND json_type(preferences) = 'object');
