package playback_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/sqlitemeta"
)

func openMeta(t *testing.T) *sqlitemeta.DB {
	t.Helper()
	db, err := sqlitemeta.Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"), sqlitemeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	db := openMeta(t)
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "paid", Visibility: store.VisibilityProtected}, "key-paid-0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "free"}, "key-free-0123456789"); err != nil {
		t.Fatal(err)
	}
	film, err := db.CreateContent(ctx, store.Content{Title: "Film", Visibility: store.VisibilityProtected})
	if err != nil {
		t.Fatal(err)
	}
	clip, err := db.CreateContent(ctx, store.Content{Title: "Clip"})
	if err != nil {
		t.Fatal(err)
	}
	p := playback.NewPolicy(db, 50*time.Millisecond, nil)
	for key, want := range map[string]bool{
		"live/paid/index.m3u8":           true,
		"live/paid/1080p/r1-00001.m4s":   true,
		"live/paidx/index.m3u8":          true, // another channel, unknown: fails closed
		"live/free/index.m3u8":           false,
		"live/nobody/index.m3u8":         true,
		"live/paid":                      false, // not inside the folder
		"vod/" + film.ID + "/index.m3u8": true,
		"vod/" + film.ID + "/r0/seg.m4s": true,
		"vod/" + clip.ID + "/index.m3u8": false,
		"vod/unknown/manifest.mpd":       true,
		"other/paid/index.m3u8":          false,
	} {
		got, err := p.Protected(ctx, key)
		if err != nil || got != want {
			t.Errorf("Protected(%q) = %v, %v; want %v", key, got, err, want)
		}
	}

	// A change reaches the origin within the memo's lifetime.
	if _, err := db.UpdateChannel(ctx, "free", store.ChannelUpdate{Visibility: ptr(store.VisibilityProtected)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := p.Protected(ctx, "live/free/index.m3u8")
		if err != nil {
			t.Fatal(err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a channel made protected stayed public past the memo's lifetime")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An unreachable store: the last answer stands for names already
	// seen; a name never seen is an error, never "public".
	db.Close()
	time.Sleep(60 * time.Millisecond)
	for key, want := range map[string]bool{"live/paid/index.m3u8": true, "live/free/x.m4s": true, "live/nobody/index.m3u8": true} {
		if got, err := p.Protected(ctx, key); err != nil || got != want {
			t.Errorf("closed store, %s seen before: %v, %v; want %v", key, got, err, want)
		}
	}
	if got, err := p.Protected(ctx, "live/never-seen/index.m3u8"); err == nil {
		t.Fatalf("closed store, a new name: Protected = %v with no error", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestIssuer(t *testing.T) {
	signer, err := auth.NewURLSigner(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	iss := playback.Issuer{Signer: signer, TTL: time.Hour, TierMaxHeight: map[store.Tier]int{store.TierFree: 1080},
		Now: func() time.Time { return now }}
	s, err := iss.Sign(playback.ChannelPrefix("main"), playback.Viewer{UserID: "u1", Tier: store.TierFree}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Expires.Equal(now.Add(time.Hour).Truncate(time.Second)) || s.MaxHeight != 1080 {
		t.Fatalf("signed %+v", s)
	}
	g, err := signer.Verify(s.Token, "/live/main/720p/index.m3u8", "198.51.100.7", now)
	if err != nil {
		t.Fatalf("token refused inside its prefix: %v", err)
	}
	if g.MaxHeight != 1080 || g.ClientIP != "" || g.Subject != "u1" || !g.IssuedAt.Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("grant %+v: want max height 1080, no IP binding, subject u1 issued now", g)
	}
	if _, err := signer.Verify(s.Token, "/live/other/index.m3u8", "", now); err == nil {
		t.Error("token opened another channel")
	}
	if _, err := signer.Verify(s.Token, "/live/main/index.m3u8", "", now.Add(time.Hour+time.Second)); err == nil {
		t.Error("token worked after it expired")
	}

	// Premium: no cap. Bound to the address.
	iss.BindIP = true
	s, err = iss.Sign(playback.ContentPrefix("abc"), playback.Viewer{UserID: "u2", Tier: store.TierPremium}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxHeight != 0 {
		t.Errorf("premium max height %d, want 0", s.MaxHeight)
	}
	if _, err := signer.Verify(s.Token, "/vod/abc/index.m3u8", "192.0.2.1", now); err != nil {
		t.Errorf("bound token refused from its address: %v", err)
	}
	if _, err := signer.Verify(s.Token, "/vod/abc/index.m3u8", "192.0.2.2", now); err == nil {
		t.Error("bound token worked from another address")
	}
}

func BenchmarkPolicyHit(b *testing.B) {
	db, err := sqlitemeta.Open(context.Background(), filepath.Join(b.TempDir(), "meta.db"), sqlitemeta.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := playback.NewPolicy(db, time.Hour, nil)
	ctx := context.Background()
	if _, err := p.Protected(ctx, "live/main/index.m3u8"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Protected(ctx, "live/main/720p/r1-00001.m4s"); err != nil {
			b.Fatal(err)
		}
	}
}
