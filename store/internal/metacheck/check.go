// Package metacheck holds what every store.Meta backend does before
// writing: defaults and validation, so that SQLite and PostgreSQL refuse
// the same values with the same errors.
package metacheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamd/streamd/store"
)

// Now returns the current time as the backends keep it: UTC, microseconds.
func Now() time.Time { return Time(time.Now()) }

// Time normalizes t to what the backends keep (zero stays zero).
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

func invalid(what string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(what, args...), store.ErrInvalid)
}

// Length limits of the indexed columns: a B-tree entry must fit in a page
// (PostgreSQL refuses index rows over ~8 kB), and no real name is longer.
const (
	maxName  = 256  // channel name, username, ids
	maxEmail = 320  // RFC 5321's 64 + 1 + 255
	maxKey   = 1024 // stream key (only its hash is indexed, but still)
	maxGenre = 256  // indexed
	maxQuery = 1024 // a catalog search text
)

func length(what, s string, limit int) error {
	if len(s) > limit {
		return invalid("%s: %d bytes, at most %d", what, len(s), limit)
	}
	return nil
}

func texts(fields ...string) error {
	for i := 0; i < len(fields); i += 2 {
		if !store.ValidText(fields[i+1]) {
			return invalid("%s: not valid UTF-8 or contains NUL", fields[i])
		}
	}
	return nil
}

// Channel validates a channel about to be created.
func Channel(ch store.Channel, key string) error {
	if ch.Name == "" {
		return invalid("channel name is empty")
	}
	if key == "" {
		return invalid("channel %q: stream key is empty", ch.Name)
	}
	if ch.Visibility != "" && !ch.Visibility.Valid() {
		return invalid("channel %q: visibility %q: want public or protected", ch.Name, ch.Visibility)
	}
	if err := errors.Join(length("channel name", ch.Name, maxName), length("stream key", key, maxKey),
		length("owner id", ch.OwnerID, maxName)); err != nil {
		return err
	}
	return texts("name", ch.Name, "title", ch.Title, "description", ch.Description, "stream key", key,
		"owner id", ch.OwnerID)
}

// ChannelUpdate validates an update.
func ChannelUpdate(u store.ChannelUpdate) error {
	if u.OwnerID != nil {
		if err := errors.Join(length("owner id", *u.OwnerID, maxName), texts("owner id", *u.OwnerID)); err != nil {
			return err
		}
	}
	if u.Title != nil {
		if err := texts("title", *u.Title); err != nil {
			return err
		}
	}
	if u.Visibility != nil && !u.Visibility.Valid() {
		return invalid("channel visibility %q: want public or protected", *u.Visibility)
	}
	if u.Description != nil {
		return texts("description", *u.Description)
	}
	return nil
}

// User fills defaults (id, role viewer, tier free, preferences {},
// created_at) and validates.
func User(u store.User) (store.User, error) {
	if u.ID == "" {
		u.ID = store.NewID()
	}
	if u.Role == "" {
		u.Role = store.RoleViewer
	}
	if u.Tier == "" {
		u.Tier = store.TierFree
	}
	if len(bytes.TrimSpace(u.Preferences)) == 0 {
		u.Preferences = json.RawMessage("{}")
	}
	u.CreatedAt = Now()
	u.LastLoginAt = Time(u.LastLoginAt)
	switch {
	case u.Email == "":
		return u, invalid("user: email is empty")
	case u.Username == "":
		return u, invalid("user: username is empty")
	case !u.Role.Valid():
		return u, invalid("user: role %q (want admin, publisher or viewer)", u.Role)
	case !u.Tier.Valid():
		return u, invalid("user: tier %q (want free, premium or family)", u.Tier)
	case !json.Valid(u.Preferences) || bytes.TrimSpace(u.Preferences)[0] != '{':
		return u, invalid("user: preferences are not a JSON object")
	}
	if err := errors.Join(length("user id", u.ID, maxName), length("email", u.Email, maxEmail),
		length("username", u.Username, maxName)); err != nil {
		return u, err
	}
	return u, texts("id", u.ID, "email", u.Email, "username", u.Username,
		"password hash", u.PasswordHash, "preferences", string(u.Preferences))
}

// Content fills defaults (id, public, pending, created_at) and validates.
func Content(c store.Content) (store.Content, error) {
	if c.ID == "" {
		c.ID = store.NewID()
	}
	if c.Visibility == "" {
		c.Visibility = store.VisibilityPublic
	}
	if c.EncodingStatus == "" {
		c.EncodingStatus = store.EncodingPending
	}
	c.CreatedAt = Now()
	switch {
	case !c.Visibility.Valid():
		return c, invalid("content: visibility %q (want public or protected)", c.Visibility)
	case !c.EncodingStatus.Valid():
		return c, invalid("content: encoding status %q", c.EncodingStatus)
	}
	e, err := Encoding(store.Encoding{Status: c.EncodingStatus, Progress: c.EncodingProgress, Reason: c.EncodingReason})
	if err != nil {
		return c, err
	}
	c.EncodingReason = e.Reason
	if err := errors.Join(length("content id", c.ID, maxName), length("genre", c.Genre, maxGenre),
		length("owner id", c.OwnerID, maxName), length("master key", c.MasterKey, 4096)); err != nil {
		return c, err
	}
	return c, texts("id", c.ID, "title", c.Title, "description", c.Description, "genre", c.Genre,
		"owner id", c.OwnerID, "master key", c.MasterKey)
}

// ContentUpdate validates an update.
func ContentUpdate(u store.ContentUpdate) error {
	if u.Visibility != nil && !u.Visibility.Valid() {
		return invalid("content: visibility %q (want public or protected)", *u.Visibility)
	}
	if u.Genre != nil {
		if err := length("genre", *u.Genre, maxGenre); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"title", u.Title}, {"description", u.Description}, {"genre", u.Genre}} {
		if f.v != nil {
			if err := texts(f.name, *f.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ContentQuery fills the default limit and validates.
func ContentQuery(q store.ContentQuery) (store.ContentQuery, error) {
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > 1000 {
		return q, invalid("content query: limit %d (want 1..1000)", q.Limit)
	}
	if err := errors.Join(length("genre", q.Genre, maxGenre), length("search text", q.Text, maxQuery),
		length("after", q.After, maxName)); err != nil {
		return q, err
	}
	return q, texts("genre", q.Genre, "search text", q.Text, "after", q.After)
}

// EncodingStatus validates a status change.
func EncodingStatus(s store.EncodingStatus) error {
	if !s.Valid() {
		return invalid("encoding status %q", s)
	}
	return nil
}

// Encoding checks an UpdateEncoding and cuts the reason to its limit (at
// a rune boundary, keeping valid UTF-8).
func Encoding(e store.Encoding) (store.Encoding, error) {
	if err := EncodingStatus(e.Status); err != nil {
		return e, err
	}
	if !(e.Progress >= 0 && e.Progress <= 100) { // also refuses NaN
		return e, invalid("encoding progress %v (want 0..100)", e.Progress)
	}
	e.Reason = strings.ToValidUTF8(strings.ReplaceAll(e.Reason, "\x00", ""), "?")
	if len(e.Reason) > store.MaxEncodingReason {
		cut := store.MaxEncodingReason
		for cut > 0 && !utf8.RuneStart(e.Reason[cut]) {
			cut--
		}
		e.Reason = e.Reason[:cut]
	}
	return e, nil
}
