// Package store declares the storage interfaces streamd runs on and holds
// their backends in subpackages. It imports no other streamd package.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrInvalidKey is returned (wrapped) for keys that could escape the store:
// empty, absolute, with "." or ".." elements, backslashes or NUL bytes.
var ErrInvalidKey = errors.New("invalid object key")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key         string
	Size        int64
	ModTime     time.Time
	ETag        string // quoted, as in an HTTP ETag header
	ContentType string
}

// Range selects bytes [Start, Start+Length) of an object; Length < 0 means
// "to the end".
type Range struct {
	Start  int64
	Length int64
}

// Objects is the object store: segments, playlists, masters.
// Keys are slash-separated relative paths ("live/main/index.m3u8").
// Put is atomic: a reader sees the old object or the whole new one.
type Objects interface {
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Get returns a reader for the whole object or the given range. The
	// returned info always describes the whole object.
	Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, ObjectInfo, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes the objects; missing ones are not an error.
	Delete(ctx context.Context, keys ...string) error
	// List returns the objects whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
}
