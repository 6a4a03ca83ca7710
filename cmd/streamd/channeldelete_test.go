package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
)

// TestDeletedChannelGoesWithItsObjects: the whole server — a publisher
// deletes a protected channel, its objects are gone and it answers 404;
// the config channel still plays; another publisher who creates the
// name as public gets nothing of the old recording.
func TestDeletedChannelGoesWithItsObjects(t *testing.T) {
	m := inProcess(t, nil, nil, [2]string{"pub-a", "publisher"}, [2]string{"pub-b", "publisher"})
	base := "http://" + m.HTTPAddr.String()
	ctx := context.Background()
	a, b := loginToken(t, base, "pub-a"), loginToken(t, base, "pub-b")
	if code, body := apiJSON(t, "POST", base+"/api/publish/channels", a, `{"name":"paid","visibility":"protected"}`); code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	keys := []string{"live/paid/index.m3u8", "live/paid/source/r1-00001.m4s", "live/main/index.m3u8"}
	for _, k := range keys {
		if err := m.Objects.Put(ctx, k, strings.NewReader("#EXTM3U\n"), 8, ""); err != nil {
			t.Fatal(err)
		}
	}
	get := func(p string) int {
		t.Helper()
		res, err := http.Get(base + "/" + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get(keys[1]); c != http.StatusUnauthorized {
		t.Fatalf("protected segment without a token: %d", c)
	}
	if code, body := apiJSON(t, "DELETE", base+"/api/publish/channels/paid", a, ""); code != 204 {
		t.Fatalf("delete: %d %v", code, body)
	}
	if left, _ := m.Objects.List(ctx, "live/paid/"); len(left) != 0 {
		t.Fatalf("objects left: %+v", left)
	}
	for _, k := range keys[:2] {
		if c := get(k); c != http.StatusNotFound {
			t.Errorf("deleted channel's %s: %d, want 404", k, c)
		}
	}
	if c := get("live/main/index.m3u8"); c != http.StatusOK {
		t.Errorf("config channel: %d, want 200 (config channels are in the store)", c)
	}
	if code, body := apiJSON(t, "POST", base+"/api/publish/channels", b, `{"name":"paid"}`); code != 201 {
		t.Fatalf("name taken again: %d %v", code, body)
	}
	if c := get(keys[1]); c != http.StatusNotFound {
		t.Errorf("old segment under the new public channel: %d, want 404", c)
	}
}

// Creating a channel clears what a deleted channel of that name left
// (a segment written after the delete, by another node), and never
// touches an existing channel's objects.
func TestCreateChannelClearsLeftovers(t *testing.T) {
	ctx := context.Background()
	db := openTestMeta(t)
	objs, err := fsstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chans := apiChannels{Meta: db, objects: &playback.ChannelObjects{Objects: objs}}
	if _, err := chans.CreateChannel(ctx, store.Channel{Name: "main"}, "key-main-0123456789"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"live/ghost/source/r1-00001.m4s", "live/main/index.m3u8"} {
		if err := objs.Put(ctx, k, strings.NewReader("x"), 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chans.CreateChannel(ctx, store.Channel{Name: "ghost"}, "key-ghost-0123456789"); err != nil {
		t.Fatal(err)
	}
	if left, _ := objs.List(ctx, "live/ghost/"); len(left) != 0 {
		t.Fatalf("leftovers kept: %+v", left)
	}
	if _, err := chans.CreateChannel(ctx, store.Channel{Name: "main"}, "key-main-other-0123"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("existing name: %v", err)
	}
	if left, _ := objs.List(ctx, "live/main/"); len(left) != 1 {
		t.Fatal("an existing channel's objects were removed")
	}
}
