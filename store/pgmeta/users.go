package pgmeta

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/metacheck"
)

// UpdateUser implements store.Meta.
func (db *DB) UpdateUser(ctx context.Context, id string, u store.UserUpdate) (store.User, error) {
	if err := u.Validate(); err != nil {
		return store.User{}, err
	}
	var prefs *string
	if u.Preferences != nil {
		s := string(*u.Preferences)
		prefs = &s
	}
	got, err := scanUser(db.pool.QueryRow(ctx, `UPDATE users SET
		email = coalesce($1, email), username = coalesce($2, username),
		password_hash = coalesce($3, password_hash), role = coalesce($4, role),
		tier = coalesce($5, tier), preferences = coalesce($6::jsonb, preferences)
		WHERE id = $7 RETURNING `+userCols,
		u.Email, u.Username, u.PasswordHash, (*string)(u.Role), (*string)(u.Tier), prefs, id))
	if err != nil {
		return store.User{}, db.wrapPrefs("update user "+quote(id), err)
	}
	return got, nil
}

// ListUsers implements store.Meta.
func (db *DB) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	switch {
	case limit == 0:
		limit = 100
	case limit < 0 || limit > 1000:
		return nil, fmt.Errorf("list users: limit %d (want 1..1000): %w", limit, store.ErrInvalid)
	}
	// COLLATE "C": byte order, the same as SQLite's, whatever the
	// database's collation.
	rows, err := db.pool.Query(ctx, `SELECT `+userCols+` FROM users WHERE id > $1 COLLATE "C" ORDER BY id COLLATE "C" LIMIT $2`, after, limit)
	if err != nil {
		return nil, db.wrap("list users", err)
	}
	defer rows.Close()
	out := []store.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, db.wrap("list users", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap("list users", err)
	}
	return out, nil
}

// SetMFA implements store.Meta.
func (db *DB) SetMFA(ctx context.Context, userID string, m store.MFA) error {
	if m.Secret == "" || !store.ValidText(m.Secret) {
		return fmt.Errorf("set mfa: secret empty or not text: %w", store.ErrInvalid)
	}
	for _, h := range m.RecoveryCodes {
		if h == "" || !store.ValidText(h) {
			return fmt.Errorf("set mfa: recovery code hash empty or not text: %w", store.ErrInvalid)
		}
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var one int
		// FOR UPDATE: a concurrent SetMFA of the same user waits here.
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM user_mfa WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_mfa (user_id, secret, confirmed_at, created_at) VALUES ($1, $2, $3, $4)`,
			userID, m.Secret, nullTime(metacheck.Time(m.ConfirmedAt)), metacheck.Now()); err != nil {
			return err
		}
		for _, h := range m.RecoveryCodes {
			if _, err := tx.Exec(ctx, `INSERT INTO user_recovery_codes (user_id, code_hash) VALUES ($1, $2)`, userID, h); err != nil {
				return err
			}
		}
		return nil
	})
	return db.wrap("set mfa of "+quote(userID), err)
}

// GetMFA implements store.Meta.
func (db *DB) GetMFA(ctx context.Context, userID string) (store.MFA, error) {
	var m store.MFA
	var conf *time.Time
	err := db.pool.QueryRow(ctx, `SELECT secret, confirmed_at, created_at,
		coalesce((SELECT array_agg(code_hash) FROM user_recovery_codes r WHERE r.user_id = m.user_id), '{}')
		FROM user_mfa m WHERE user_id = $1`, userID).Scan(&m.Secret, &conf, &m.CreatedAt, &m.RecoveryCodes)
	if err != nil {
		return store.MFA{}, db.wrap("get mfa of "+quote(userID), err)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if conf != nil {
		m.ConfirmedAt = conf.UTC()
	}
	slices.Sort(m.RecoveryCodes)
	return m, nil
}

// ConfirmMFA implements store.Meta.
func (db *DB) ConfirmMFA(ctx context.Context, userID string, at time.Time) error {
	res, err := db.pool.Exec(ctx, `UPDATE user_mfa SET confirmed_at = $1 WHERE user_id = $2`, metacheck.Time(at), userID)
	if err != nil {
		return db.wrap("confirm mfa of "+quote(userID), err)
	}
	if res.RowsAffected() == 0 {
		return notFound("mfa of user", userID)
	}
	return nil
}

// UseRecoveryCode implements store.Meta.
func (db *DB) UseRecoveryCode(ctx context.Context, userID, codeHash string) error {
	res, err := db.pool.Exec(ctx, `DELETE FROM user_recovery_codes WHERE user_id = $1 AND code_hash = $2`, userID, codeHash)
	if err != nil {
		return db.wrap("use recovery code", err)
	}
	if res.RowsAffected() == 0 {
		return fmt.Errorf("postgres: recovery code of user %s: %w", quote(userID), store.ErrNotFound)
	}
	return nil
}

// DeleteMFA implements store.Meta.
func (db *DB) DeleteMFA(ctx context.Context, userID string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM user_mfa WHERE user_id = $1`, userID)
	return db.wrap("delete mfa of "+quote(userID), err)
}
