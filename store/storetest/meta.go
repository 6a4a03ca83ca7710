package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
)

func ptr[T any](v T) *T { return &v }

// recent checks a time the store set: UTC, within a minute of now.
func recent(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.Location() != time.UTC || time.Since(tm).Abs() > time.Minute {
		t.Fatalf("%s = %v, want about now, in UTC", what, tm)
	}
}

// TestMeta runs the store.Meta contract. open returns a fresh, empty
// store and arranges its Close (and clean-up) with t.Cleanup.
func TestMeta(t *testing.T, open func(t *testing.T) store.Meta) {
	ctx := context.Background()

	t.Run("Channels", func(t *testing.T) {
		m := open(t)
		list, err := m.ListChannels(ctx)
		must(t, err, "list empty")
		if list == nil || len(list) != 0 {
			t.Fatalf("list on an empty store = %#v, want empty non-nil", list)
		}
		news, err := m.CreateChannel(ctx, store.Channel{Name: "news", Title: "News"}, "key-for-news-0123456789")
		must(t, err, "create")
		if news.KeyPrefix != "key-" {
			t.Fatalf("key prefix = %q, want \"key-\"", news.KeyPrefix)
		}
		recent(t, "created_at", news.CreatedAt)
		_, err = m.CreateChannel(ctx, store.Channel{Name: "arts"}, "key-for-arts-0123456789")
		must(t, err, "create second")

		got, err := m.GetChannel(ctx, "news")
		must(t, err, "get")
		if !reflect.DeepEqual(got, news) {
			t.Fatalf("get = %+v,\nwant  %+v", got, news)
		}
		list, err = m.ListChannels(ctx)
		must(t, err, "list")
		if len(list) != 2 || list[0].Name != "arts" || list[1].Name != "news" {
			t.Fatalf("list = %+v, want arts, news", list)
		}

		up, err := m.UpdateChannel(ctx, "news", store.ChannelUpdate{Description: ptr("all day")})
		must(t, err, "update")
		if up.Title != "News" || up.Description != "all day" || up.UpdatedAt.Before(news.UpdatedAt) {
			t.Fatalf("after update: %+v", up)
		}

		byKey, err := m.ChannelByStreamKey(ctx, "key-for-news-0123456789")
		must(t, err, "by key")
		if byKey.Name != "news" {
			t.Fatalf("by key = %q", byKey.Name)
		}
		rot, err := m.RotateStreamKey(ctx, "news", "NEWKEY-abcdefghijklmnop")
		must(t, err, "rotate")
		if rot.KeyPrefix != "NEWK" || rot.KeyRotatedAt.Before(news.KeyRotatedAt) {
			t.Fatalf("after rotate: %+v", rot)
		}
		_, err = m.ChannelByStreamKey(ctx, "key-for-news-0123456789")
		mustIs(t, err, store.ErrNotFound, "old key after rotation")
		if strings.Contains(fmt.Sprint(err), "key-for-news") {
			t.Fatalf("error shows the stream key: %v", err)
		}
		byKey, err = m.ChannelByStreamKey(ctx, "NEWKEY-abcdefghijklmnop")
		must(t, err, "new key")
		if byKey.Name != "news" {
			t.Fatalf("new key opens %q", byKey.Name)
		}

		must(t, m.DeleteChannel(ctx, "news"), "delete")
		_, err = m.GetChannel(ctx, "news")
		mustIs(t, err, store.ErrNotFound, "get deleted")
		_, err = m.ChannelByStreamKey(ctx, "NEWKEY-abcdefghijklmnop")
		mustIs(t, err, store.ErrNotFound, "key of deleted channel")
		mustIs(t, m.DeleteChannel(ctx, "news"), store.ErrNotFound, "delete again")
		_, err = m.UpdateChannel(ctx, "news", store.ChannelUpdate{Title: ptr("x")})
		mustIs(t, err, store.ErrNotFound, "update missing")
		_, err = m.RotateStreamKey(ctx, "news", "whatever-key-123456")
		mustIs(t, err, store.ErrNotFound, "rotate missing")
		must(t, m.Ping(ctx), "ping")
	})

	t.Run("ChannelConflicts", func(t *testing.T) {
		m := open(t)
		_, err := m.CreateChannel(ctx, store.Channel{Name: "a"}, "key-a-0123456789")
		must(t, err, "create")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "b"}, "key-b-0123456789")
		must(t, err, "create")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "a"}, "another-key-0123456789")
		mustIs(t, err, store.ErrConflict, "same name")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "c"}, "key-a-0123456789")
		mustIs(t, err, store.ErrConflict, "same key")
		_, err = m.RotateStreamKey(ctx, "b", "key-a-0123456789")
		mustIs(t, err, store.ErrConflict, "rotate onto a key in use")
		_, err = m.CreateChannel(ctx, store.Channel{Name: ""}, "key-x-0123456789")
		mustIs(t, err, store.ErrInvalid, "empty name")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "x"}, "")
		mustIs(t, err, store.ErrInvalid, "empty key")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "x", Title: "nul\x00"}, "key-x-0123456789")
		mustIs(t, err, store.ErrInvalid, "NUL in title")
		_, err = m.UpdateChannel(ctx, "a", store.ChannelUpdate{Title: ptr("\xff")})
		mustIs(t, err, store.ErrInvalid, "invalid UTF-8")
	})

	t.Run("Verbatim", func(t *testing.T) {
		m := open(t)
		large := big()
		ch, err := m.CreateChannel(ctx, store.Channel{Name: metachars, Title: metachars, Description: large}, metachars)
		must(t, err, "create with metacharacters")
		got, err := m.GetChannel(ctx, metachars)
		must(t, err, "get")
		if got.Name != metachars || got.Title != metachars || got.Description != large {
			t.Fatalf("not stored verbatim: name %q, title %q, description of %d bytes", got.Name, got.Title, len(got.Description))
		}
		if byKey, err := m.ChannelByStreamKey(ctx, metachars); err != nil || byKey.Name != ch.Name {
			t.Fatalf("by key: %v", err)
		}
		for _, pattern := range []string{"%", "_", "*", "' OR '1'='1"} {
			_, err := m.GetChannel(ctx, pattern)
			mustIs(t, err, store.ErrNotFound, "get "+pattern)
			_, err = m.UserByLogin(ctx, pattern)
			mustIs(t, err, store.ErrNotFound, "user by login "+pattern)
		}
		_, err = m.CreateChannel(ctx, store.Channel{Name: large}, "key-large-0123456789")
		mustIs(t, err, store.ErrInvalid, "1 MB channel name")
		_, err = m.CreateUser(ctx, store.User{Email: "l@x", Username: large})
		mustIs(t, err, store.ErrInvalid, "1 MB username")
		u, err := m.CreateUser(ctx, store.User{Email: metachars + "@x", Username: metachars, PasswordHash: large,
			Preferences: json.RawMessage(`{"q": "` + strings.Repeat(`'\"`, 1000) + `"}`)})
		must(t, err, "create user")
		gu, err := m.GetUser(ctx, u.ID)
		must(t, err, "get user")
		if gu.Username != metachars || gu.PasswordHash != large || gu.Email != metachars+"@x" {
			t.Fatal("user not stored verbatim")
		}
		c, err := m.CreateContent(ctx, store.Content{Title: metachars, Description: large, Genre: "%_"})
		must(t, err, "create content")
		gc, err := m.GetContent(ctx, c.ID)
		must(t, err, "get content")
		if !reflect.DeepEqual(gc, c) {
			t.Fatal("content not stored verbatim")
		}
	})

	t.Run("Users", func(t *testing.T) {
		m := open(t)
		_, err := m.GetUser(ctx, "nobody")
		mustIs(t, err, store.ErrNotFound, "get missing")
		u, err := m.CreateUser(ctx, store.User{Email: "Ann@Example.com", Username: "ann",
			PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", Role: store.RolePublisher,
			Preferences: json.RawMessage(`{"quality": "1080p", "captions": true, "volume": 0.5}`)})
		must(t, err, "create")
		if u.ID == "" || u.Tier != store.TierFree || !u.LastLoginAt.IsZero() {
			t.Fatalf("defaults: %+v", u)
		}
		recent(t, "created_at", u.CreatedAt)
		got, err := m.GetUser(ctx, u.ID)
		must(t, err, "get")
		if !jsonEqual(got.Preferences, u.Preferences) {
			t.Fatalf("preferences = %s, want %s", got.Preferences, u.Preferences)
		}
		got.Preferences = u.Preferences // JSON may come back reformatted (PostgreSQL's jsonb)
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("get = %+v,\nwant  %+v", got, u)
		}
		for _, login := range []string{"ann@example.com", "ANN", "Ann@Example.com"} {
			byLogin, err := m.UserByLogin(ctx, login)
			must(t, err, "by login "+login)
			if byLogin.ID != u.ID {
				t.Fatalf("by login %q = %s", login, byLogin.ID)
			}
		}
		_, err = m.UserByLogin(ctx, "bob")
		mustIs(t, err, store.ErrNotFound, "by unknown login")

		_, err = m.CreateUser(ctx, store.User{Email: "ann@EXAMPLE.com", Username: "ann2"})
		mustIs(t, err, store.ErrConflict, "same email, other case")
		_, err = m.CreateUser(ctx, store.User{Email: "ann2@example.com", Username: "Ann"})
		mustIs(t, err, store.ErrConflict, "same username, other case")
		_, err = m.CreateUser(ctx, store.User{ID: u.ID, Email: "x@example.com", Username: "x"})
		mustIs(t, err, store.ErrConflict, "same id")
		for name, bad := range map[string]store.User{
			"role":        {Email: "r@x", Username: "r", Role: "root"},
			"tier":        {Email: "t@x", Username: "t", Tier: "gold"},
			"prefs":       {Email: "p@x", Username: "p", Preferences: json.RawMessage(`{"a":`)},
			"prefs array": {Email: "p@x", Username: "p", Preferences: json.RawMessage(`[1]`)},
			"no email":    {Username: "e"},
			"no username": {Email: "u@x"},
		} {
			_, err = m.CreateUser(ctx, bad)
			mustIs(t, err, store.ErrInvalid, name)
		}

		at := time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.FixedZone("X", 3600))
		must(t, m.RecordLogin(ctx, u.ID, at), "record login")
		got, err = m.GetUser(ctx, u.ID)
		must(t, err, "get")
		if want := at.UTC().Truncate(time.Microsecond); !got.LastLoginAt.Equal(want) || got.LastLoginAt.Location() != time.UTC {
			t.Fatalf("last login = %v, want %v", got.LastLoginAt, want)
		}
		mustIs(t, m.RecordLogin(ctx, "nobody", at), store.ErrNotFound, "record login of nobody")
	})

	testUsers(t, open)
	testChannelOwners(t, open)
	testCatalog(t, open)

	t.Run("Content", func(t *testing.T) {
		m := open(t)
		c, err := m.CreateContent(ctx, store.Content{Title: "Film", Genre: "drama"})
		must(t, err, "create")
		if c.ID == "" || c.Visibility != store.VisibilityPublic || c.EncodingStatus != store.EncodingPending {
			t.Fatalf("defaults: %+v", c)
		}
		recent(t, "created_at", c.CreatedAt)
		got, err := m.GetContent(ctx, c.ID)
		must(t, err, "get")
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("get = %+v, want %+v", got, c)
		}
		must(t, m.SetEncodingStatus(ctx, c.ID, store.EncodingReady), "set status")
		got, _ = m.GetContent(ctx, c.ID)
		if got.EncodingStatus != store.EncodingReady {
			t.Fatalf("status = %q", got.EncodingStatus)
		}
		mustIs(t, m.SetEncodingStatus(ctx, c.ID, "done"), store.ErrInvalid, "unknown status")
		mustIs(t, m.SetEncodingStatus(ctx, "nope", store.EncodingReady), store.ErrNotFound, "status of missing")

		// The VOD pipeline's statuses, progress, reason and master key.
		v, err := m.CreateContent(ctx, store.Content{Title: "upload.mp4", EncodingStatus: store.EncodingQueued,
			MasterKey: "masters/u1/upload.mp4", OwnerID: "u1"})
		must(t, err, "create queued")
		got, _ = m.GetContent(ctx, v.ID)
		if !reflect.DeepEqual(got, v) || got.MasterKey != "masters/u1/upload.mp4" {
			t.Fatalf("queued item = %+v, want %+v", got, v)
		}
		must(t, m.UpdateEncoding(ctx, v.ID, store.Encoding{Status: store.EncodingProcessing, Progress: 42.5}), "processing")
		got, _ = m.GetContent(ctx, v.ID)
		if got.EncodingStatus != store.EncodingProcessing || got.EncodingProgress != 42.5 || got.EncodingReason != "" {
			t.Fatalf("processing = %+v", got)
		}
		long := strings.Repeat("é", store.MaxEncodingReason)
		must(t, m.UpdateEncoding(ctx, v.ID, store.Encoding{Status: store.EncodingFailed, Progress: 42.5, Reason: long}), "failed")
		got, _ = m.GetContent(ctx, v.ID)
		if got.EncodingStatus != store.EncodingFailed || len(got.EncodingReason) > store.MaxEncodingReason ||
			!strings.HasPrefix(long, got.EncodingReason) || got.EncodingReason == "" {
			t.Fatalf("failed = %q, %d bytes of reason", got.EncodingStatus, len(got.EncodingReason))
		}
		must(t, m.SetEncodingStatus(ctx, v.ID, store.EncodingQueued), "requeue")
		got, _ = m.GetContent(ctx, v.ID)
		if got.EncodingProgress != 0 || got.EncodingReason != "" {
			t.Fatalf("SetEncodingStatus kept progress/reason: %+v", got)
		}
		mustIs(t, m.UpdateEncoding(ctx, v.ID, store.Encoding{Status: store.EncodingProcessing, Progress: 101}), store.ErrInvalid, "progress > 100")
		mustIs(t, m.UpdateEncoding(ctx, v.ID, store.Encoding{Status: "done"}), store.ErrInvalid, "unknown status")
		mustIs(t, m.UpdateEncoding(ctx, "nope", store.Encoding{Status: store.EncodingReady}), store.ErrNotFound, "update missing")
		_, err = m.GetContent(ctx, "nope")
		mustIs(t, err, store.ErrNotFound, "get missing")
		_, err = m.CreateContent(ctx, store.Content{ID: c.ID})
		mustIs(t, err, store.ErrConflict, "same id")
		_, err = m.CreateContent(ctx, store.Content{Visibility: "secret"})
		mustIs(t, err, store.ErrInvalid, "unknown visibility")
		p, err := m.CreateContent(ctx, store.Content{ID: "asset-1", Visibility: store.VisibilityProtected})
		must(t, err, "create with id")
		if p.ID != "asset-1" {
			t.Fatalf("id = %q", p.ID)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		m := open(t)
		const workers, each = 6, 10
		var wg sync.WaitGroup
		var won atomic.Int32
		errs := make(chan error, workers*each*3)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					name := fmt.Sprintf("ch-%d-%d", w, i)
					if _, err := m.CreateChannel(ctx, store.Channel{Name: name}, "key-"+name+"-0123456789"); err != nil {
						errs <- err
					}
					if _, err := m.GetChannel(ctx, name); err != nil {
						errs <- err
					}
					if _, err := m.ListChannels(ctx); err != nil {
						errs <- err
					}
				}
				// Everybody races for the same name: one wins, the rest conflict.
				_, err := m.CreateChannel(ctx, store.Channel{Name: "contested"}, fmt.Sprintf("contested-key-%d-0123456789", w))
				switch {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, store.ErrConflict):
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if won.Load() != 1 {
			t.Fatalf("%d creates of the same channel succeeded, want 1", won.Load())
		}
		list, err := m.ListChannels(ctx)
		must(t, err, "list")
		if len(list) != workers*each+1 {
			t.Fatalf("%d channels, want %d", len(list), workers*each+1)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		m := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := m.GetChannel(cctx, "x"); !errors.Is(err, context.Canceled) {
			t.Fatalf("get with a canceled context: %v, want context.Canceled", err)
		}
		if _, err := m.CreateChannel(cctx, store.Channel{Name: "x"}, "key-x-0123456789"); !errors.Is(err, context.Canceled) {
			t.Fatalf("create with a canceled context: %v, want context.Canceled", err)
		}
	})
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
