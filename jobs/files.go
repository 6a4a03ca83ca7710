package jobs

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/streamd/streamd/store/fsstore"
)

// download streams the master into dir, keeping its file name.
func (w *worker) download(ctx context.Context, key, dir string) (string, error) {
	rc, _, err := w.cfg.Objects.Get(ctx, key, nil)
	if err != nil {
		return "", fmt.Errorf("master %s: %w", key, err)
	}
	defer rc.Close()
	name := path.Base(key)
	if name == "." || name == "/" || name == "" {
		name = "master"
	}
	p := filepath.Join(dir, "master-"+name)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return "", fmt.Errorf("downloading master %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return p, nil
}

// storeTree uploads every file under dir to prefix+relative path, the
// manifests last: a player that finds index.m3u8 or manifest.mpd finds
// everything they name.
func (w *worker) storeTree(ctx context.Context, dir, prefix string, progress func(float64)) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	rank := func(rel string) int {
		switch {
		case rel == "index.m3u8" || rel == "manifest.mpd":
			return 2
		case strings.HasSuffix(rel, ".m3u8"):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(files, func(a, b string) int { return rank(a) - rank(b) })
	for i, rel := range files {
		if err := w.putFile(ctx, filepath.Join(dir, filepath.FromSlash(rel)), prefix+rel); err != nil {
			return err
		}
		progress(float64(i+1) / float64(len(files)))
	}
	return nil
}

func (w *worker) putFile(ctx context.Context, p, key string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := w.cfg.Objects.Put(ctx, key, f, fi.Size(), fsstore.ContentType(key)); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return nil
}
