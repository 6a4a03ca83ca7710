package fsstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
)

// openTest opens a store in a fresh folder with set applied.
func openTest(t *testing.T, dir string, set func(*Store)) *Store {
	t.Helper()
	s, err := open(dir, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Put must fsync the data before the rename makes it visible, the folder
// after the rename, and the parent of every folder it creates: a power
// cut between any two of those steps then loses at most the object being
// written, never the bytes of one a later playlist names.
func TestPutSyncsDataBeforeRenameAndFoldersAfter(t *testing.T) {
	root := t.TempDir()
	var synced []string
	final := filepath.Join(root, "live", "main", "seg1.m4s")
	var s *Store
	s = openTest(t, root, func(s *Store) {
		s.onSync = func(p string) {
			rel, _ := filepath.Rel(root, p)
			if strings.HasPrefix(filepath.Base(p), tempPrefix) {
				if _, err := os.Stat(final); err == nil {
					t.Errorf("temp file %s synced after the object was already visible", rel)
				}
				rel = "temp"
			}
			synced = append(synced, filepath.ToSlash(rel))
		}
	})
	synced = nil // what open itself synced is not under test here
	if err := s.Put(context.Background(), "live/main/seg1.m4s", strings.NewReader("data"), 4, ""); err != nil {
		t.Fatal(err)
	}
	want := []string{".", "live", "temp", "live/main"}
	if !slices.Equal(synced, want) {
		t.Errorf("synced %q, want %q (new folders' parents, the data, then the folder holding the rename)", synced, want)
	}

	// Into a folder that exists: the data and the folder only.
	synced = nil
	final = filepath.Join(root, "live", "main", "seg2.m4s")
	if err := s.Put(context.Background(), "live/main/seg2.m4s", strings.NewReader("data"), 4, ""); err != nil {
		t.Fatal(err)
	}
	if want := []string{"temp", "live/main"}; !slices.Equal(synced, want) {
		t.Errorf("synced %q, want %q", synced, want)
	}
}

// A crash mid-Put leaves a temp file: List never shows it, and the next
// New removes it once it is old enough that no live Put can own it.
func TestStaleTempFilesHiddenAndRemovedOnOpen(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, func(*Store) {})
	ctx := context.Background()
	if err := s.Put(ctx, "vod/film/seg.m4s", strings.NewReader("whole"), 5, ""); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "vod", "film")
	stale, fresh := filepath.Join(dir, tempPrefix+"111"), filepath.Join(dir, tempPrefix+"222")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("part"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "vod/")
	if err != nil || len(list) != 1 || list[0].Key != "vod/film/seg.m4s" {
		t.Fatalf("List shows %v (%v), want the one whole object", list, err)
	}

	if _, err := New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file still there after New: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a recent temp file (a Put of another process in flight) was removed: %v", err)
	}
}

// Keys naming temp files are refused: such an object would be invisible
// to List and deleted by the next New.
func TestTempNamesAreNotKeys(t *testing.T) {
	s := openTest(t, t.TempDir(), func(*Store) {})
	ctx := context.Background()
	for _, k := range []string{".tmp-1", "live/.tmp-x/seg.m4s", "live/main/.tmp-seg.m4s"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1, ""); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Stat(%q): %v, want ErrInvalidKey", k, err)
		}
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

// A Put that fails part-way leaves neither the object nor its temp file.
func TestFailedPutLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, func(*Store) {})
	ctx := context.Background()
	if err := s.Put(ctx, "a/seg.m4s", &failingReader{n: 1000}, 5000, ""); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if err := s.Put(ctx, "a/seg.m4s", bytes.NewReader(make([]byte, 10)), 20, ""); err == nil {
		t.Fatal("Put of fewer bytes than declared succeeded")
	}
	if _, err := s.Stat(ctx, "a/seg.m4s"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after failed Puts: %v, want not found", err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "a"))
	for _, e := range ents {
		t.Errorf("left behind: %s", e.Name())
	}
}
