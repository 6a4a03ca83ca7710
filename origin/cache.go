package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/streamd/streamd/store"
)

// The hot cache keeps whole small objects in memory, so the objects every
// viewer asks for at the live edge (the newest segments, the init segment,
// the playlists) cost one store read per origin instead of one per viewer.
const (
	// DefaultCacheBytes is the cache size when Config.CacheBytes is zero.
	DefaultCacheBytes = 256 << 20
	// maxCachedObject is the largest object kept: a few seconds of even a
	// high-bitrate rendition. Anything bigger (VOD masters, long
	// segments) is streamed from the store, never held whole in memory.
	maxCachedObject = 8 << 20
	// immutableTTL bounds how long a segment stays served after it was
	// deleted from the store (a withdrawn VOD asset, say). Segments are
	// never rewritten under the same name, so the content itself cannot
	// go stale; the LRU-like policy usually evicts them long before.
	immutableTTL = time.Hour
	// entryOverhead approximates what an entry costs beyond its body
	// (key, info strings, cache node), so that many tiny playlists still
	// count against the bound.
	entryOverhead = 256
)

// cacheKind says how an object may be cached, from its key alone.
type cacheKind int

const (
	notCached cacheKind = iota
	immutable           // segments, init segments: cached until evicted
	playlist            // rewritten in place: cached for a fraction of max-age
)

func kindOf(key string) cacheKind {
	switch strings.ToLower(path.Ext(key)) {
	case ".m3u8", ".mpd":
		return playlist
	case ".m4s", ".mp4", ".m4a", ".m4v", ".ts", ".aac", ".vtt", ".jpg", ".jpeg":
		// Never rewritten under the same name (the packager's promise).
		return immutable
	}
	return notCached
}

// entry is one cached object: its info and whole body, both from the same
// store read, so they always agree. big entries have no body: they record
// that the object is larger than the per-object limit, so later requests
// go straight to streaming instead of starting a load that cannot be kept.
type entry struct {
	info store.ObjectInfo
	body []byte
	big  bool
	kind cacheKind
}

// hotCache is the bounded cache plus the coalescing of loads into it.
type hotCache struct {
	objs        store.Objects
	c           *otter.Cache[string, *entry]
	flights     flightGroup[*entry]
	maxObject   int64
	playlistTTL time.Duration // <= 0: playlists are coalesced but not kept
}

// newHotCache returns nil when the cache is disabled (bytes < 0).
func newHotCache(objs store.Objects, bytes int64, playlistTTL time.Duration) *hotCache {
	if bytes < 0 {
		return nil
	}
	if bytes == 0 {
		bytes = DefaultCacheBytes
	}
	hc := &hotCache{
		objs: objs,
		// One object may fill at most a sixteenth of the cache, so a
		// small cache is not flushed by every large segment.
		maxObject:   min(maxCachedObject, bytes/16),
		playlistTTL: playlistTTL,
	}
	hc.c = otter.Must(&otter.Options[string, *entry]{
		MaximumWeight: uint64(bytes),
		Weigher: func(key string, e *entry) uint32 {
			return uint32(len(key) + len(e.body) + entryOverhead)
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *entry]) time.Duration {
			if e.Value.kind == playlist {
				return hc.playlistTTL
			}
			return immutableTTL
		}),
	})
	return hc
}

// lookup returns the cached entry for key, or loads it, one load for all
// concurrent callers. It returns (nil, nil) for keys it does not cache.
func (hc *hotCache) lookup(ctx context.Context, key string, load bool) (*entry, error) {
	kind := kindOf(key)
	if kind == notCached {
		return nil, nil
	}
	if e, ok := hc.c.GetIfPresent(key); ok {
		return e, nil
	}
	if !load {
		return nil, nil
	}
	return hc.flights.do(ctx, key, func(ctx context.Context) (*entry, error) {
		// A load that started just after another one finished finds
		// the result here instead of reading again.
		if e, ok := hc.c.GetIfPresent(key); ok {
			return e, nil
		}
		e, err := hc.load(ctx, key, kind)
		if err != nil {
			// Errors are not cached: a segment that 404s now is
			// written a moment later.
			return nil, err
		}
		if kind == immutable || hc.playlistTTL > 0 {
			hc.c.Set(key, e)
		}
		return e, nil
	})
}

// load reads the whole object, or only learns that it is too big to keep.
func (hc *hotCache) load(ctx context.Context, key string, kind cacheKind) (*entry, error) {
	body, info, err := hc.objs.Get(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if info.Size < 0 || info.Size > hc.maxObject {
		// Closing after the headers costs one round trip, once: the
		// big entry sends later requests straight to the store.
		return &entry{info: info, big: true, kind: kind}, nil
	}
	buf := make([]byte, info.Size)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return &entry{info: info, body: buf, kind: kind}, nil
}

// serveEntry answers GET or HEAD from a cached body: validators, ranges
// and HEAD work exactly as when serving from the store, without touching it.
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, key string, e *entry) error {
	p, err := decide(w, r, e.info)
	if err != nil || p.notModified {
		if p.notModified {
			h.writeNotModified(w, key, e.info)
		}
		return err
	}
	h.objectHeaders(w, key, e.info)
	bodyHeaders(w, p.rng, e.info.Size, p.length)
	w.WriteHeader(p.status)
	if r.Method == http.MethodHead {
		return nil
	}
	b := e.body
	if p.rng != nil {
		b = b[p.rng.Start : p.rng.Start+p.rng.Length]
	}
	if _, err := w.Write(b); err != nil && r.Context().Err() == nil {
		h.log.Warn("body write failed", "key", key, "remote", r.RemoteAddr, "err", err)
	}
	return nil
}
