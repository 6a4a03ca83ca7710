package sqlitemeta

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/metacheck"
)

// LinkIdentity implements store.Meta.
func (db *DB) LinkIdentity(ctx context.Context, id store.Identity) (store.Identity, error) {
	if err := id.Validate(); err != nil {
		return store.Identity{}, err
	}
	id.CreatedAt = metacheck.Now()
	// INSERT … SELECT: no row when the user does not exist (ErrNotFound
	// rather than a foreign-key failure, as in PostgreSQL).
	res, err := db.w.ExecContext(ctx, `INSERT INTO user_identities (issuer, subject, user_id, created_at)
		SELECT ?, ?, id, ? FROM users WHERE id = ?`, id.Issuer, id.Subject, us(id.CreatedAt), id.UserID)
	if err != nil {
		return store.Identity{}, db.wrap("link identity", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.Identity{}, notFound("user", id.UserID)
	}
	return id, nil
}

// UserByIdentity implements store.Meta.
func (db *DB) UserByIdentity(ctx context.Context, issuer, subject string) (store.User, error) {
	u, err := scanUser(db.r.QueryRowContext(ctx, `SELECT `+prefixed("u.", userCols)+` FROM user_identities i
		JOIN users u ON u.id = i.user_id WHERE i.issuer = ? AND i.subject = ?`, issuer, subject))
	if err != nil {
		return store.User{}, db.wrap("user by identity", err)
	}
	return u, nil
}

// CreateProfile implements store.Meta.
func (db *DB) CreateProfile(ctx context.Context, p store.Profile, max int) (store.Profile, error) {
	if p.ID == "" {
		p.ID = store.NewID()
	}
	if len(bytes.TrimSpace(p.Preferences)) == 0 {
		p.Preferences = json.RawMessage("{}")
	}
	if err := p.Validate(max); err != nil {
		return store.Profile{}, err
	}
	p.CreatedAt = metacheck.Now()
	// One writer connection and BEGIN IMMEDIATE: the count and the insert
	// see no concurrent write.
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Profile{}, db.wrap("create profile", err)
	}
	defer tx.Rollback()
	var one, n int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, p.UserID).Scan(&one); err != nil {
		return store.Profile{}, db.wrap("create profile of user "+quote(p.UserID), err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM user_profiles WHERE user_id = ?`, p.UserID).Scan(&n); err != nil {
		return store.Profile{}, db.wrap("create profile", err)
	}
	if n >= max {
		return store.Profile{}, fmt.Errorf("sqlite: create profile: %d of %d: %w", n, max, store.ErrLimit)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_profiles (id, user_id, name, preferences, created_at) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.UserID, p.Name, string(p.Preferences), us(p.CreatedAt)); err != nil {
		return store.Profile{}, db.wrap("create profile", err)
	}
	return p, db.wrap("create profile", tx.Commit())
}

// ListProfiles implements store.Meta.
func (db *DB) ListProfiles(ctx context.Context, userID string) ([]store.Profile, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+profileCols+` FROM user_profiles
		WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, db.wrap("list profiles", err)
	}
	defer rows.Close()
	out := []store.Profile{}
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, db.wrap("list profiles", err)
		}
		out = append(out, p)
	}
	return out, db.wrap("list profiles", rows.Err())
}

// DeleteProfile implements store.Meta.
func (db *DB) DeleteProfile(ctx context.Context, userID, profileID string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM user_profiles WHERE user_id = ? AND id = ?`, userID, profileID)
	if err != nil {
		return db.wrap("delete profile", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("profile", profileID)
	}
	return nil
}

const profileCols = `id, user_id, name, preferences, created_at`

func scanProfile(s scanner) (store.Profile, error) {
	var p store.Profile
	var prefs string
	var cr int64
	err := s.Scan(&p.ID, &p.UserID, &p.Name, &prefs, &cr)
	p.Preferences, p.CreatedAt = json.RawMessage(prefs), fromUs(cr)
	return p, err
}

// GetProfile implements store.Meta.
func (db *DB) GetProfile(ctx context.Context, userID, profileID string) (store.Profile, error) {
	if !store.ValidText(userID) || !store.ValidText(profileID) {
		return store.Profile{}, notFound("profile", profileID) // no stored id is such text
	}
	p, err := scanProfile(db.r.QueryRowContext(ctx, `SELECT `+profileCols+` FROM user_profiles
		WHERE user_id = ? AND id = ?`, userID, profileID))
	if err != nil {
		return store.Profile{}, db.wrap("get profile "+quote(profileID), err)
	}
	return p, nil
}

// UpdateViewerProfile implements store.Meta.
func (db *DB) UpdateViewerProfile(ctx context.Context, userID, profileID string, u store.ViewerProfileUpdate) (store.Profile, error) {
	if err := u.Validate(); err != nil {
		return store.Profile{}, err
	}
	if !store.ValidText(userID) || !store.ValidText(profileID) {
		return store.Profile{}, notFound("profile", profileID)
	}
	var prefs *string
	if u.Preferences != nil {
		s := string(u.Preferences)
		prefs = &s
	}
	p, err := scanProfile(db.w.QueryRowContext(ctx, `UPDATE user_profiles SET
		name = coalesce(?, name), preferences = coalesce(?, preferences)
		WHERE user_id = ? AND id = ? RETURNING `+profileCols,
		u.Name, prefs, userID, profileID))
	if err != nil {
		return store.Profile{}, db.wrap("update profile "+quote(profileID), err)
	}
	return p, nil
}

// prefixed qualifies a column list: prefixed("u.", "a, b") is "u.a, u.b".
func prefixed(p, cols string) string {
	return p + strings.ReplaceAll(cols, ", ", ", "+p)
}
