// Package fsstore keeps objects as files in a local folder: the embedded
// default object store.
package fsstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamd/streamd/store"
)

// Store is an object store rooted at a folder.
type Store struct {
	root string
	// noSync skips every fsync: only the benchmark sets it, to measure
	// what durability costs in the same run.
	noSync bool
	// staleTemp is how old a temp file must be for New to remove it.
	staleTemp time.Duration
	// onSync, when set (tests), is called with each path just before it
	// is fsynced, so a test can check what is synced and in which order.
	onSync func(path string)
}

var _ store.Objects = (*Store)(nil)

// New opens (creating if needed) the folder dir as an object store, and
// removes temp files that a crashed Put left behind.
func New(dir string) (*Store, error) {
	return open(dir, func(*Store) {})
}

// open is New with test-only settings applied before the cleanup.
func open(dir string, set func(*Store)) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage.objects.path %q: %w", dir, err)
	}
	s := &Store{root: abs, staleTemp: defaultStaleTemp}
	set(s)
	if err := s.mkdirs(abs); err != nil {
		return nil, fmt.Errorf("storage.objects.path %q: %w", dir, err)
	}
	s.removeStaleTemp()
	return s, nil
}

// Root is the absolute folder the store writes to.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) (string, error) {
	k, err := store.CleanKey(key)
	if err != nil {
		return "", err
	}
	// A key naming a temp file would be hidden from List and removed by
	// the cleanup on open: refuse it rather than lose it later.
	for _, el := range strings.Split(k, "/") {
		if strings.HasPrefix(el, tempPrefix) {
			return "", fmt.Errorf("%w: %q (elements starting %q are the store's temp files)", store.ErrInvalidKey, key, tempPrefix)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(k)), nil
}

// Put writes to a temporary file in the target folder and renames it into
// place, so readers never see a partial object. The data is fsynced before
// the rename and the folder after it: without that, after a power cut the
// rename can reach the disk before the bytes do, and a playlist written
// later could name a segment that comes back empty or truncated.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := s.mkdirs(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	n, err := io.Copy(f, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("short write: %d of %d bytes", n, size)
	}
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, err)
	}
	// The rename is durable only once the folder's entry is.
	if err := s.syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (s *Store) info(key string, fi fs.FileInfo) store.ObjectInfo {
	// The ETag is derived from size and modification time: cheap, and it
	// changes whenever Put replaces the file.
	h := sha256.Sum256([]byte(strconv.FormatInt(fi.Size(), 10) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)))
	return store.ObjectInfo{
		Key:         key,
		Size:        fi.Size(),
		ModTime:     fi.ModTime(),
		ETag:        `"` + hex.EncodeToString(h[:8]) + `"`,
		ContentType: ContentType(key),
	}
}

// ContentType guesses a media type from the key's extension.
func ContentType(key string) string {
	switch strings.ToLower(path.Ext(key)) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".m4s":
		return "video/iso.segment"
	case ".mp4":
		return "video/mp4"
	case ".mpd":
		return "application/dash+xml"
	case ".ts":
		return "video/mp2t"
	case ".vtt":
		return "text/vtt"
	}
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	return err
}

// Stat describes one object.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return store.ObjectInfo{}, notFound(key, err)
	}
	if fi.IsDir() {
		return store.ObjectInfo{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	return s.info(key, fi), nil
}

type sectionCloser struct {
	io.Reader
	io.Closer
}

// Get opens an object, optionally a byte range of it.
func (s *Store) Get(ctx context.Context, key string, rng *store.Range) (io.ReadCloser, store.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, store.ObjectInfo{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, store.ObjectInfo{}, notFound(key, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil, store.ObjectInfo{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	info := s.info(key, fi)
	if rng == nil {
		return f, info, nil
	}
	if rng.Start < 0 || rng.Start > fi.Size() {
		f.Close()
		return nil, info, fmt.Errorf("range start %d outside object of %d bytes", rng.Start, fi.Size())
	}
	n := rng.Length
	if n < 0 || rng.Start+n > fi.Size() {
		n = fi.Size() - rng.Start
	}
	return sectionCloser{io.NewSectionReader(f, rng.Start, n), f}, info, nil
}

// Delete removes objects and then any folders they leave empty.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, key := range keys {
		p, err := s.path(key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List walks the folder for keys with the prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	prefix, err := store.CleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	// Walk only the deepest folder the prefix names.
	base := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	var out []store.ObjectInfo
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed while walking
		}
		out = append(out, s.info(key, fi))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, ctx.Err()
}
