package sqlitemeta

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.TestMeta(t, func(t *testing.T) store.Meta {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	})
}

// Reopening keeps data and does not re-run migrations; a path with URI
// metacharacters is a plain file name.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "odd?name#1 %20.db")
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateChannel(ctx, store.Channel{Name: "a"}, "key-a-0123456789"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not at the given path: %v", err)
	}
	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.GetChannel(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenError(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "dir", "meta.db"), Options{})
	if err == nil {
		t.Fatal("no error for a missing folder")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("error %v does not match ErrUnavailable", err)
	}
	t.Log(err)
}
