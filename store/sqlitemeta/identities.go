package sqlitemeta

import (
	"context"
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_profiles (id, user_id, name, created_at) VALUES (?, ?, ?, ?)`,
		p.ID, p.UserID, p.Name, us(p.CreatedAt)); err != nil {
		return store.Profile{}, db.wrap("create profile", err)
	}
	return p, db.wrap("create profile", tx.Commit())
}

// ListProfiles implements store.Meta.
func (db *DB) ListProfiles(ctx context.Context, userID string) ([]store.Profile, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, user_id, name, created_at FROM user_profiles
		WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, db.wrap("list profiles", err)
	}
	defer rows.Close()
	out := []store.Profile{}
	for rows.Next() {
		var p store.Profile
		var cr int64
		if err := rows.Scan(&p.ID, &p.UserID, &p.Name, &cr); err != nil {
			return nil, db.wrap("list profiles", err)
		}
		p.CreatedAt = fromUs(cr)
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

// prefixed qualifies a column list: prefixed("u.", "a, b") is "u.a, u.b".
func prefixed(p, cols string) string {
	return p + strings.ReplaceAll(cols, ", ", ", "+p)
}
