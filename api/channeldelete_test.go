package api_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/streamd/streamd/api"
	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/fsstore"
)

// channelsWithObjects is the metadata store with the channels' live
// objects, as cmd/streamd wires it.
type channelsWithObjects struct {
	store.Meta
	*playback.ChannelObjects
}

// flakyObjects fails List while down is set.
type flakyObjects struct {
	*fsstore.Store
	down atomic.Bool
}

func (f *flakyObjects) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	if f.down.Load() {
		return nil, errors.New("object store down")
	}
	return f.Store.List(ctx, prefix)
}

func TestDeleteChannelRemovesItsObjects(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { deleteChannelRemovesObjects(t, open) })
	}
}

// A deleted protected channel takes its live objects with it, so the
// name taken again by another publisher plays nothing of it; a channel
// on air, or objects that cannot be removed, keep the channel.
func deleteChannelRemovesObjects(t *testing.T, open backend) {
	ctx := context.Background()
	fs, err := fsstore.New(filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatal(err)
	}
	objs := &flakyObjects{Store: fs}
	var onAir atomic.Bool
	e := newEnvWith(t, open, api.Limits{}, auth.Config{}, func(e *env, d *api.Deps) {
		d.Channels = channelsWithObjects{Meta: e.meta, ChannelObjects: &playback.ChannelObjects{Objects: objs,
			OnAir: func(string) bool { return onAir.Load() }}}
	})
	pubA, pubB := e.register(store.RolePublisher), e.register(store.RolePublisher)
	e.want(e.do("POST", "/api/publish/channels", pubA.access, map[string]string{"name": "paid", "visibility": "protected"}), 201, "create")
	keys := []string{"live/paid/index.m3u8", "live/paid/source/index.m3u8", "live/paid/source/r1-00001.m4s"}
	for _, k := range keys {
		if err := objs.Put(ctx, k, strings.NewReader("recording"), 9, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := objs.Put(ctx, "live/paid2/index.m3u8", strings.NewReader("other"), 5, ""); err != nil {
		t.Fatal(err)
	}

	onAir.Store(true)
	r := e.want(e.do("DELETE", "/api/publish/channels/paid", pubA.access, nil), 409, "delete on air")
	if m, _ := r.json(t)["error"].(map[string]any); !strings.Contains(m["message"].(string), "on air") {
		t.Errorf("on-air refusal says: %s", r.body)
	}
	onAir.Store(false)
	objs.down.Store(true)
	e.want(e.do("DELETE", "/api/publish/channels/paid", pubA.access, nil), 503, "delete with the object store down")
	objs.down.Store(false)
	e.want(e.do("GET", "/api/publish/channels/paid", pubA.access, nil), 200, "kept after refused deletes")
	if left, _ := objs.List(ctx, "live/paid/"); len(left) != len(keys) {
		t.Fatalf("a refused delete removed objects: %d left", len(left))
	}

	e.want(e.do("DELETE", "/api/publish/channels/paid", pubA.access, nil), 204, "delete")
	if left, _ := objs.List(ctx, "live/paid/"); len(left) != 0 {
		t.Fatalf("objects of the deleted channel left: %+v", left)
	}
	if left, _ := objs.List(ctx, "live/paid2/"); len(left) != 1 {
		t.Fatal("another channel's objects were removed")
	}
	e.want(e.do("GET", "/api/publish/channels/paid", pubA.access, nil), 404, "get deleted")
	e.want(e.do("POST", "/api/publish/channels", pubB.access, map[string]string{"name": "paid"}), 201, "B takes the name")
	if left, _ := objs.List(ctx, "live/paid/"); len(left) != 0 {
		t.Fatalf("the new channel inherits objects: %+v", left)
	}
}
