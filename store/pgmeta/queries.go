package pgmeta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/internal/metacheck"
)

const channelCols = `name, title, description, key_prefix, owner_id, from_config, visibility, key_rotated_at, created_at, updated_at`

type scanner interface{ Scan(...any) error }

func scanChannel(s scanner) (store.Channel, error) {
	var c store.Channel
	err := s.Scan(&c.Name, &c.Title, &c.Description, &c.KeyPrefix, &c.OwnerID, &c.FromConfig, &c.Visibility, &c.KeyRotatedAt, &c.CreatedAt, &c.UpdatedAt)
	c.KeyRotatedAt, c.CreatedAt, c.UpdatedAt = c.KeyRotatedAt.UTC(), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, err
}

// CreateChannel implements store.Meta.
func (db *DB) CreateChannel(ctx context.Context, ch store.Channel, key string) (store.Channel, error) {
	if err := metacheck.Channel(ch, key); err != nil {
		return store.Channel{}, err
	}
	now := metacheck.Now()
	ch.KeyPrefix, ch.KeyRotatedAt, ch.CreatedAt, ch.UpdatedAt = store.StreamKeyPrefix(key), now, now, now
	if ch.Visibility == "" {
		ch.Visibility = store.VisibilityPublic
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO channels (name, title, description, key_hash, key_prefix, owner_id, from_config, visibility, key_rotated_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		ch.Name, ch.Title, ch.Description, store.HashStreamKey(key), ch.KeyPrefix, ch.OwnerID, ch.FromConfig, ch.Visibility, now, now, now)
	if err != nil {
		return store.Channel{}, db.wrap("create channel "+quote(ch.Name), err)
	}
	return ch, nil
}

func quote(s string) string {
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64]) + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// GetChannel implements store.Meta.
func (db *DB) GetChannel(ctx context.Context, name string) (store.Channel, error) {
	c, err := scanChannel(db.pool.QueryRow(ctx, `SELECT `+channelCols+` FROM channels WHERE name = $1`, name))
	if err != nil {
		return store.Channel{}, db.wrap("get channel "+quote(name), err)
	}
	return c, nil
}

// ListChannels implements store.Meta.
func (db *DB) ListChannels(ctx context.Context) ([]store.Channel, error) {
	return db.listChannels(ctx, `SELECT `+channelCols+` FROM channels ORDER BY name`)
}

// ChannelsByOwner implements store.Meta.
func (db *DB) ChannelsByOwner(ctx context.Context, ownerID string) ([]store.Channel, error) {
	return db.listChannels(ctx, `SELECT `+channelCols+` FROM channels WHERE owner_id = $1 ORDER BY name`, ownerID)
}

func (db *DB) listChannels(ctx context.Context, query string, args ...any) ([]store.Channel, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, db.wrap("list channels", err)
	}
	defer rows.Close()
	out := []store.Channel{}
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, db.wrap("list channels", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap("list channels", err)
	}
	return out, nil
}

// UpdateChannel implements store.Meta.
func (db *DB) UpdateChannel(ctx context.Context, name string, u store.ChannelUpdate) (store.Channel, error) {
	if err := metacheck.ChannelUpdate(u); err != nil {
		return store.Channel{}, err
	}
	c, err := scanChannel(db.pool.QueryRow(ctx, `UPDATE channels SET
		title = coalesce($1, title), description = coalesce($2, description),
		owner_id = coalesce($3, owner_id), from_config = coalesce($4, from_config),
		visibility = coalesce($5, visibility), updated_at = $6
		WHERE name = $7 RETURNING `+channelCols,
		u.Title, u.Description, u.OwnerID, u.FromConfig, u.Visibility, metacheck.Now(), name))
	if err != nil {
		return store.Channel{}, db.wrap("update channel "+quote(name), err)
	}
	return c, nil
}

// RotateStreamKey implements store.Meta.
func (db *DB) RotateStreamKey(ctx context.Context, name, key string) (store.Channel, error) {
	if err := metacheck.Channel(store.Channel{Name: name}, key); err != nil {
		return store.Channel{}, err
	}
	now := metacheck.Now()
	c, err := scanChannel(db.pool.QueryRow(ctx, `UPDATE channels SET
		key_hash = $1, key_prefix = $2, key_rotated_at = $3, updated_at = $4
		WHERE name = $5 RETURNING `+channelCols,
		store.HashStreamKey(key), store.StreamKeyPrefix(key), now, now, name))
	if err != nil {
		return store.Channel{}, db.wrap("rotate stream key of "+quote(name), err)
	}
	return c, nil
}

// DeleteChannel implements store.Meta.
func (db *DB) DeleteChannel(ctx context.Context, name string) error {
	res, err := db.pool.Exec(ctx, `DELETE FROM channels WHERE name = $1`, name)
	if err != nil {
		return db.wrap("delete channel "+quote(name), err)
	}
	if res.RowsAffected() == 0 {
		return notFound("channel", name)
	}
	return nil
}

// ChannelByStreamKey implements store.Meta.
func (db *DB) ChannelByStreamKey(ctx context.Context, key string) (store.Channel, error) {
	c, err := scanChannel(db.pool.QueryRow(ctx, `SELECT `+channelCols+` FROM channels WHERE key_hash = $1`,
		store.HashStreamKey(key)))
	if err != nil {
		// Never the key itself in an error: errors get logged.
		return store.Channel{}, db.wrap("channel by stream key", err)
	}
	return c, nil
}

const userCols = `id, email, username, password_hash, role, tier, preferences, created_at, last_login_at`

func scanUser(s scanner) (store.User, error) {
	var u store.User
	var prefs string
	var last *time.Time
	err := s.Scan(&u.ID, &u.Email, &u.Username, &u.PasswordHash, &u.Role, &u.Tier, &prefs, &u.CreatedAt, &last)
	u.Preferences, u.CreatedAt = json.RawMessage(prefs), u.CreatedAt.UTC()
	if last != nil {
		u.LastLoginAt = last.UTC()
	}
	return u, err
}

// CreateUser implements store.Meta.
func (db *DB) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	u, err := metacheck.User(u)
	if err != nil {
		return store.User{}, err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		u.ID, u.Email, u.Username, u.PasswordHash, string(u.Role), string(u.Tier), string(u.Preferences),
		u.CreatedAt, nullTime(u.LastLoginAt))
	if err != nil {
		return store.User{}, db.wrap("create user "+quote(u.Username), err)
	}
	return u, nil
}

// GetUser implements store.Meta.
func (db *DB) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return store.User{}, db.wrap("get user "+quote(id), err)
	}
	return u, nil
}

// UserByLogin implements store.Meta.
func (db *DB) UserByLogin(ctx context.Context, login string) (store.User, error) {
	// An email match wins over a username match (someone could pick
	// another user's email as a username).
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users
		WHERE lower(email) = lower($1) OR lower(username) = lower($1)
		ORDER BY lower(email) = lower($1) DESC LIMIT 1`, login))
	if err != nil {
		return store.User{}, db.wrap("user by login "+quote(login), err)
	}
	return u, nil
}

// RecordLogin implements store.Meta.
func (db *DB) RecordLogin(ctx context.Context, id string, at time.Time) error {
	res, err := db.pool.Exec(ctx, `UPDATE users SET last_login_at = $1 WHERE id = $2`, metacheck.Time(at), id)
	if err != nil {
		return db.wrap("record login of "+quote(id), err)
	}
	if res.RowsAffected() == 0 {
		return notFound("user", id)
	}
	return nil
}

const contentCols = `id, title, description, genre, visibility, encoding_status, owner_id, created_at, encoding_progress, encoding_reason, master_key`

func scanContent(s scanner) (store.Content, error) {
	var c store.Content
	err := s.Scan(&c.ID, &c.Title, &c.Description, &c.Genre, &c.Visibility, &c.EncodingStatus, &c.OwnerID, &c.CreatedAt,
		&c.EncodingProgress, &c.EncodingReason, &c.MasterKey)
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// CreateContent implements store.Meta.
func (db *DB) CreateContent(ctx context.Context, c store.Content) (store.Content, error) {
	c, err := metacheck.Content(c)
	if err != nil {
		return store.Content{}, err
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO content (`+contentCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		c.ID, c.Title, c.Description, c.Genre, string(c.Visibility), string(c.EncodingStatus), c.OwnerID, c.CreatedAt,
		c.EncodingProgress, c.EncodingReason, c.MasterKey)
	if err != nil {
		return store.Content{}, db.wrap("create content "+quote(c.ID), err)
	}
	return c, nil
}

// GetContent implements store.Meta.
func (db *DB) GetContent(ctx context.Context, id string) (store.Content, error) {
	c, err := scanContent(db.pool.QueryRow(ctx, `SELECT `+contentCols+` FROM content WHERE id = $1`, id))
	if err != nil {
		return store.Content{}, db.wrap("get content "+quote(id), err)
	}
	return c, nil
}

// UpdateContent implements store.Meta.
func (db *DB) UpdateContent(ctx context.Context, id string, u store.ContentUpdate) (store.Content, error) {
	if err := metacheck.ContentUpdate(u); err != nil {
		return store.Content{}, err
	}
	c, err := scanContent(db.pool.QueryRow(ctx, `UPDATE content SET title = coalesce($1, title), description = coalesce($2, description),
		genre = coalesce($3, genre), visibility = coalesce($4, visibility) WHERE id = $5 RETURNING `+contentCols,
		u.Title, u.Description, u.Genre, u.Visibility, id))
	if err != nil {
		return store.Content{}, db.wrap("update content "+quote(id), err)
	}
	return c, nil
}

// SetEncodingStatus implements store.Meta.
func (db *DB) SetEncodingStatus(ctx context.Context, id string, s store.EncodingStatus) error {
	if err := metacheck.EncodingStatus(s); err != nil {
		return err
	}
	res, err := db.pool.Exec(ctx, `UPDATE content SET encoding_status = $1, encoding_progress = 0, encoding_reason = '' WHERE id = $2`, string(s), id)
	if err != nil {
		return db.wrap("set encoding status of "+quote(id), err)
	}
	if res.RowsAffected() == 0 {
		return notFound("content", id)
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// UpdateEncoding implements store.Meta.
func (db *DB) UpdateEncoding(ctx context.Context, id string, e store.Encoding) error {
	e, err := metacheck.Encoding(e)
	if err != nil {
		return err
	}
	res, err := db.pool.Exec(ctx, `UPDATE content SET encoding_status = $1, encoding_progress = $2, encoding_reason = $3 WHERE id = $4`, string(e.Status), e.Progress, e.Reason, id)
	if err != nil {
		return db.wrap("update encoding of "+quote(id), err)
	}
	if res.RowsAffected() == 0 {
		return notFound("content", id)
	}
	return nil
}

// ListContent implements store.Meta. Every value is a bound parameter; the
// text search uses strpos, not LIKE, so % and _ match themselves.
func (db *DB) ListContent(ctx context.Context, q store.ContentQuery) ([]store.Content, error) {
	q, err := metacheck.ContentQuery(q)
	if err != nil {
		return nil, err
	}
	where, args := []string{"true"}, []any{}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Genre != "" {
		where = append(where, "genre = "+arg(q.Genre))
	}
	if q.Text != "" {
		p := arg(q.Text)
		where = append(where, "(strpos(lower(title), lower("+p+")) > 0 OR strpos(lower(description), lower("+p+")) > 0)")
	}
	if !q.IncludeProtected {
		where = append(where, "visibility = "+arg(string(store.VisibilityPublic)))
	}
	if q.After != "" {
		var cr time.Time
		err := db.pool.QueryRow(ctx, `SELECT created_at FROM content WHERE id = $1`, q.After).Scan(&cr)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("postgres: list content: after %s: no such content: %w", quote(q.After), store.ErrInvalid)
		}
		if err != nil {
			return nil, db.wrap("list content", err)
		}
		where = append(where, "(created_at, id) < ("+arg(cr)+", "+arg(q.After)+")")
	}
	rows, err := db.pool.Query(ctx, `SELECT `+contentCols+` FROM content WHERE `+strings.Join(where, " AND ")+
		` ORDER BY created_at DESC, id DESC LIMIT `+arg(q.Limit), args...)
	if err != nil {
		return nil, db.wrap("list content", err)
	}
	defer rows.Close()
	out := []store.Content{}
	for rows.Next() {
		c, err := scanContent(rows)
		if err != nil {
			return nil, db.wrap("list content", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap("list content", err)
	}
	return out, nil
}
