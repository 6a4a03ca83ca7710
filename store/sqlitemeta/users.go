package sqlitemeta

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

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
	got, err := scanUser(db.w.QueryRowContext(ctx, `UPDATE users SET
		email = coalesce(?, email), username = coalesce(?, username),
		password_hash = coalesce(?, password_hash), role = coalesce(?, role),
		tier = coalesce(?, tier), preferences = coalesce(?, preferences)
		WHERE id = ? RETURNING `+userCols,
		u.Email, u.Username, u.PasswordHash, (*string)(u.Role), (*string)(u.Tier), prefs, id))
	if err != nil {
		return store.User{}, db.wrap("update user "+quote(id), err)
	}
	return got, nil
}

func pageSize(limit int) (int, error) {
	switch {
	case limit == 0:
		return 100, nil
	case limit < 0 || limit > 1000:
		return 0, fmt.Errorf("list users: limit %d (want 1..1000): %w", limit, store.ErrInvalid)
	}
	return limit, nil
}

// ListUsers implements store.Meta.
func (db *DB) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	limit, err := pageSize(limit)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+userCols+` FROM users WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
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
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap("set mfa", err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, userID).Scan(&one); err != nil {
		return db.wrap("set mfa of "+quote(userID), err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_mfa WHERE user_id = ?`, userID); err != nil {
		return db.wrap("set mfa", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_mfa (user_id, secret, confirmed_at, created_at) VALUES (?, ?, ?, ?)`,
		userID, m.Secret, nullUs(metacheck.Time(m.ConfirmedAt)), us(metacheck.Now())); err != nil {
		return db.wrap("set mfa", err)
	}
	for _, h := range m.RecoveryCodes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_recovery_codes (user_id, code_hash) VALUES (?, ?)`, userID, h); err != nil {
			return db.wrap("set mfa", err)
		}
	}
	return db.wrap("set mfa", tx.Commit())
}

// GetMFA implements store.Meta.
func (db *DB) GetMFA(ctx context.Context, userID string) (store.MFA, error) {
	var m store.MFA
	var conf sql.NullInt64
	var cr int64
	err := db.r.QueryRowContext(ctx, `SELECT secret, confirmed_at, created_at FROM user_mfa WHERE user_id = ?`, userID).
		Scan(&m.Secret, &conf, &cr)
	if err != nil {
		return store.MFA{}, db.wrap("get mfa of "+quote(userID), err)
	}
	m.ConfirmedAt, m.CreatedAt = fromNullUs(conf), fromUs(cr)
	rows, err := db.r.QueryContext(ctx, `SELECT code_hash FROM user_recovery_codes WHERE user_id = ?`, userID)
	if err != nil {
		return store.MFA{}, db.wrap("get mfa of "+quote(userID), err)
	}
	defer rows.Close()
	m.RecoveryCodes = []string{}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return store.MFA{}, db.wrap("get mfa", err)
		}
		m.RecoveryCodes = append(m.RecoveryCodes, h)
	}
	if err := rows.Err(); err != nil {
		return store.MFA{}, db.wrap("get mfa", err)
	}
	slices.Sort(m.RecoveryCodes)
	return m, nil
}

// ConfirmMFA implements store.Meta.
func (db *DB) ConfirmMFA(ctx context.Context, userID string, at time.Time) error {
	res, err := db.w.ExecContext(ctx, `UPDATE user_mfa SET confirmed_at = ? WHERE user_id = ?`, us(metacheck.Time(at)), userID)
	if err != nil {
		return db.wrap("confirm mfa of "+quote(userID), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("mfa of user", userID)
	}
	return nil
}

// UseRecoveryCode implements store.Meta.
func (db *DB) UseRecoveryCode(ctx context.Context, userID, codeHash string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM user_recovery_codes WHERE user_id = ? AND code_hash = ?`, userID, codeHash)
	if err != nil {
		return db.wrap("use recovery code", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: recovery code of user %s: %w", quote(userID), store.ErrNotFound)
	}
	return nil
}

// DeleteMFA implements store.Meta.
func (db *DB) DeleteMFA(ctx context.Context, userID string) error {
	_, err := db.w.ExecContext(ctx, `DELETE FROM user_mfa WHERE user_id = ?`, userID)
	return db.wrap("delete mfa of "+quote(userID), err)
}
