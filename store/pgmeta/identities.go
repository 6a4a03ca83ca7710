package pgmeta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
	// rather than a foreign-key failure).
	res, err := db.pool.Exec(ctx, `INSERT INTO user_identities (issuer, subject, user_id, created_at)
		SELECT $1::text, $2::text, id, $3::timestamptz FROM users WHERE id = $4`, id.Issuer, id.Subject, id.CreatedAt, id.UserID)
	if err != nil {
		return store.Identity{}, db.wrap("link identity", err)
	}
	if res.RowsAffected() == 0 {
		return store.Identity{}, notFound("user", id.UserID)
	}
	return id, nil
}

// UserByIdentity implements store.Meta.
func (db *DB) UserByIdentity(ctx context.Context, issuer, subject string) (store.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+prefixed("u.", userCols)+` FROM user_identities i
		JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2`, issuer, subject))
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
	var n int
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var one int
		// FOR UPDATE: concurrent creations for one account take turns, so
		// the count below stays true until the insert.
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, p.UserID).Scan(&one); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM user_profiles WHERE user_id = $1`, p.UserID).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return store.ErrLimit
		}
		_, err := tx.Exec(ctx, `INSERT INTO user_profiles (id, user_id, name, preferences, created_at) VALUES ($1, $2, $3, $4::jsonb, $5)`,
			p.ID, p.UserID, p.Name, string(p.Preferences), p.CreatedAt)
		return err
	})
	if err == store.ErrLimit {
		return store.Profile{}, fmt.Errorf("postgres: create profile: %d of %d: %w", n, max, store.ErrLimit)
	}
	if err != nil {
		return store.Profile{}, db.wrapPrefs("create profile of user "+quote(p.UserID), err)
	}
	return p, nil
}

// ListProfiles implements store.Meta.
func (db *DB) ListProfiles(ctx context.Context, userID string) ([]store.Profile, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+profileCols+` FROM user_profiles
		WHERE user_id = $1 ORDER BY created_at, id COLLATE "C"`, userID)
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
	res, err := db.pool.Exec(ctx, `DELETE FROM user_profiles WHERE user_id = $1 AND id = $2`, userID, profileID)
	if err != nil {
		return db.wrap("delete profile", err)
	}
	if res.RowsAffected() == 0 {
		return notFound("profile", profileID)
	}
	return nil
}

const profileCols = `id, user_id, name, preferences, created_at`

func scanProfile(s scanner) (store.Profile, error) {
	var p store.Profile
	var prefs string
	err := s.Scan(&p.ID, &p.UserID, &p.Name, &prefs, &p.CreatedAt)
	p.Preferences, p.CreatedAt = json.RawMessage(prefs), p.CreatedAt.UTC()
	return p, err
}

// GetProfile implements store.Meta.
func (db *DB) GetProfile(ctx context.Context, userID, profileID string) (store.Profile, error) {
	// Text PostgreSQL refuses (invalid UTF-8, NUL) names no stored
	// profile: not found, as in SQLite, rather than an invalid value.
	if !store.ValidText(userID) || !store.ValidText(profileID) {
		return store.Profile{}, notFound("profile", profileID)
	}
	p, err := scanProfile(db.pool.QueryRow(ctx, `SELECT `+profileCols+` FROM user_profiles
		WHERE user_id = $1 AND id = $2`, userID, profileID))
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
	p, err := scanProfile(db.pool.QueryRow(ctx, `UPDATE user_profiles SET
		name = coalesce($1, name), preferences = coalesce($2::jsonb, preferences)
		WHERE user_id = $3 AND id = $4 RETURNING `+profileCols,
		u.Name, prefs, userID, profileID))
	if err != nil {
		return store.Profile{}, db.wrapPrefs("update profile "+quote(profileID), err)
	}
	return p, nil
}

// wrapPrefs is wrap for writes of user or profile preferences: jsonb refuses
// some JSON that SQLite stores (numbers beyond numeric's range), and such
// a data exception (SQLSTATE class 22) is the value's fault: ErrInvalid,
// not an internal error.
func (db *DB) wrapPrefs(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
		return fmt.Errorf("postgres: %s: %w: %s", op, store.ErrInvalid, pe.Message)
	}
	return db.wrap(op, err)
}

// prefixed qualifies a column list: prefixed("u.", "a, b") is "u.a, u.b".
func prefixed(p, cols string) string {
	return p + strings.ReplaceAll(cols, ", ", ", "+p)
}
