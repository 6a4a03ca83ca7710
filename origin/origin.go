// Package origin is the HTTP origin: it serves the objects the packager
// writes (playlists, init segments, media segments) straight from the object
// store, with the cache, validator, range and CORS headers a CDN and a
// browser player need.
//
// The URL path is the object key: GET /live/main/index.m3u8 reads the key
// "live/main/index.m3u8". Mount the handler at "/live/" (and later "/vod/");
// the key always comes from the full request path, so the mount point is the
// key prefix and no http.StripPrefix is needed or wanted.
package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/streamd/streamd/store"
)

// Config configures the origin handler.
type Config struct {
	// AllowedOrigins lists the browser origins allowed to read responses
	// (CORS), e.g. "https://example.com". "*" anywhere in the list allows
	// every origin. Empty means ["*"].
	AllowedOrigins []string
	// PlaylistMaxAge is the Cache-Control max-age of playlists. The caller
	// passes half the target segment duration so a CDN never serves a
	// playlist older than that. Zero means 1s. HTTP max-age counts whole
	// seconds, so the value is rounded down: anything under 1s (but not
	// zero) gives max-age=0, i.e. caches revalidate every time (cheap, they
	// get a 304 while the playlist is unchanged). Rounding up would break
	// the "at most half a segment" promise.
	PlaylistMaxAge time.Duration
	// CacheBytes bounds the in-memory hot cache of segments, init
	// segments and playlists. Zero means DefaultCacheBytes (256 MiB);
	// negative disables the cache (every request reads the store).
	// Playlists stay cached for at most half of PlaylistMaxAge, so a
	// viewer behind a CDN sees a playlist at most 1.5 max-age old.
	CacheBytes int64
	// Guard, when set, protects the keys it calls protected: they need a
	// valid playback token (query parameter st=), and their HLS playlists
	// are rewritten per viewer (see guard.go). nil: everything is public.
	Guard Guard
	// ClientIP returns the client address that IP-bound tokens are
	// checked against. nil: RemoteAddrIP, the TCP peer, which behind a
	// proxy or CDN is the proxy: pass a resolver that trusts it there.
	ClientIP func(*http.Request) string
}

// Handler serves GET, HEAD and OPTIONS for objects in the store.
type Handler struct {
	objs       store.Objects
	log        *slog.Logger
	anyOrigin  bool
	origins    map[string]bool
	playlistCC string
	cache      *hotCache   // nil when disabled
	gs         *guardState // nil without a Guard
}

// Cache-Control values. Segments and init segments never change once
// written (the packager gives every new version a new name), so they are
// immutable. Misses must not be pinned by a CDN: a playlist that 404s now
// appears a moment later when the publisher starts.
const (
	ccImmutable = "public, max-age=31536000, immutable"
	ccMiss      = "no-cache"
	ccError     = "no-store"
	// ccOther is for keys that are neither playlists nor segments: we
	// cannot know they are immutable, so caches must revalidate.
	ccOther = "no-cache"
)

const (
	allowMethods  = "GET, HEAD, OPTIONS"
	exposeHeaders = "Content-Length, Content-Range, ETag"
)

// New returns the origin handler.
func New(cfg Config, objs store.Objects, log *slog.Logger) *Handler {
	h := &Handler{
		objs:    objs,
		log:     log.With("component", "origin"),
		origins: map[string]bool{},
	}
	if len(cfg.AllowedOrigins) == 0 {
		h.anyOrigin = true
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/")
		if o == "*" {
			h.anyOrigin = true
		}
		h.origins[strings.ToLower(o)] = true
	}
	maxAge := cfg.PlaylistMaxAge
	if maxAge == 0 {
		maxAge = time.Second
	}
	secs := max(int64(maxAge/time.Second), 0)
	h.playlistCC = "public, max-age=" + strconv.FormatInt(secs, 10)
	h.cache = newHotCache(objs, cfg.CacheBytes, maxAge/2)
	h.initGuard(cfg)
	return h
}

// httpError is an error with the status and the one-line message the
// client sees. Every response that is not a success is built from one by
// writeError, which keeps the mapping from errors to statuses in one place.
type httpError struct {
	status int
	msg    string
	err    error // logged, never shown
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.err }

var errNotSatisfiable = errors.New("range not satisfiable")

// errChanged reports that an object kept being replaced between our Stat
// and our Get (a playlist rewritten every few hundred ms, say).
var errChanged = errors.New("object changed while being read")

// ServeHTTP serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cors(w, r)
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		w.Header().Set("Allow", allowMethods)
		h.writeError(w, r, "", &httpError{status: http.StatusMethodNotAllowed, msg: "method not allowed"})
		return
	}
	key, err := objectKey(r.URL.EscapedPath())
	if err != nil {
		h.writeError(w, r, "", err)
		return
	}
	if r.Method == http.MethodOptions {
		h.options(w, r)
		return
	}
	prot, err := h.protected(r.Context(), key)
	if err != nil {
		h.writeError(w, r, key, err)
		return
	}
	if prot {
		if err := h.serveGuarded(w, r, key); err != nil {
			h.writeError(w, r, key, err)
		}
		return
	}
	if err := h.serveObject(w, r, key); err != nil {
		h.writeError(w, r, key, err)
	}
}

// cors sets the CORS response headers every response carries, so a player
// on another origin can read errors as well as objects.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Expose-Headers", exposeHeaders)
	if h.anyOrigin {
		hd.Set("Access-Control-Allow-Origin", "*")
		return
	}
	// The answer depends on the Origin header, so shared caches must key
	// on it even when this request carries none.
	hd.Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" && h.origins[strings.ToLower(o)] {
		hd.Set("Access-Control-Allow-Origin", o)
	}
}

func (h *Handler) options(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Allow", allowMethods)
	if r.Header.Get("Access-Control-Request-Method") != "" {
		hd.Set("Access-Control-Allow-Methods", allowMethods)
		// Range is the only non-simple request header players send.
		hd.Set("Access-Control-Allow-Headers", "Range")
		hd.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveObject answers GET and HEAD for key.
//
// A plain GET (no validators, no Range) costs one store call: Get, whose
// info describes the object. Everything else first needs the object's
// size or validators, so it calls Stat, decides, and only then opens the
// (ranged) body; if the object was replaced between the two calls, the
// decision is made again.
//
// With the hot cache, segments and playlists are served from memory; a
// miss by a GET of the whole object loads it once for all concurrent
// requests. A HEAD or a Range request that misses goes to the store as
// below without filling the cache: a HEAD needs no body, and filling for a
// Range would read the whole object to answer for a part of it.
func (h *Handler) serveObject(w http.ResponseWriter, r *http.Request, key string) error {
	ctx := r.Context()
	if h.cache != nil {
		fill := r.Method == http.MethodGet && r.Header.Get("Range") == ""
		e, err := h.cache.lookup(ctx, key, fill)
		if err != nil {
			return err
		}
		if e != nil && !e.big {
			return h.serveEntry(w, r, key, e)
		}
	}
	plain := r.Method == http.MethodGet && r.Header.Get("Range") == "" &&
		r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == ""
	if plain {
		body, info, err := h.objs.Get(ctx, key, nil)
		if err != nil {
			return err
		}
		defer body.Close()
		h.objectHeaders(w, key, info)
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.WriteHeader(http.StatusOK)
		h.copyBody(w, r, key, body)
		return nil
	}

	for range 3 {
		info, err := h.objs.Stat(ctx, key)
		if err != nil {
			return err
		}
		p, err := decide(w, r, info)
		if err != nil {
			return err
		}
		if p.notModified {
			h.writeNotModified(w, key, info)
			return nil
		}
		rng, status, length := p.rng, p.status, p.length
		if r.Method == http.MethodHead {
			h.objectHeaders(w, key, info)
			bodyHeaders(w, rng, info.Size, length)
			w.WriteHeader(status)
			return nil
		}
		body, ginfo, err := h.objs.Get(ctx, key, rng)
		if err != nil {
			return err
		}
		if ginfo.ETag != info.ETag || ginfo.Size != info.Size {
			body.Close()
			continue // replaced since Stat: decide again on the new object
		}
		h.objectHeaders(w, key, ginfo)
		bodyHeaders(w, rng, info.Size, length)
		w.WriteHeader(status)
		h.copyBody(w, r, key, body)
		body.Close()
		return nil
	}
	return errChanged
}

// plan is what to answer for an object, decided from the request and the
// object's info alone, so the store path and the cache path agree.
type plan struct {
	notModified bool
	rng         *store.Range // nil: the whole object
	status      int
	length      int64
}

// decide evaluates the validators and the Range header. A range that
// cannot be satisfied is an error (416) whose Content-Range it sets.
func decide(w http.ResponseWriter, r *http.Request, info store.ObjectInfo) (plan, error) {
	if notModified(r, info) {
		return plan{notModified: true}, nil
	}
	var rng *store.Range
	if ifRangeMatches(r.Header.Get("If-Range"), info) {
		var err error
		rng, err = parseRange(r.Header.Get("Range"), info.Size)
		if errors.Is(err, errNotSatisfiable) {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(info.Size, 10))
			return plan{}, &httpError{status: http.StatusRequestedRangeNotSatisfiable, msg: "range not satisfiable", err: err}
		}
	}
	if rng != nil {
		return plan{rng: rng, status: http.StatusPartialContent, length: rng.Length}, nil
	}
	return plan{status: http.StatusOK, length: info.Size}, nil
}

func (h *Handler) writeNotModified(w http.ResponseWriter, key string, info store.ObjectInfo) {
	h.objectHeaders(w, key, info)
	// A 304 describes the cached representation; it has no body of its
	// own, so no body headers.
	w.Header().Del("Content-Type")
	w.WriteHeader(http.StatusNotModified)
}

func bodyHeaders(w http.ResponseWriter, rng *store.Range, size, length int64) {
	if rng != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rng.Start, rng.Start+rng.Length-1, size))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
}

// copyBody streams the object. Once the status is sent a failure can only
// be logged; the short body tells the client something went wrong.
func (h *Handler) copyBody(w http.ResponseWriter, r *http.Request, key string, body io.Reader) {
	if _, err := io.Copy(w, body); err != nil && r.Context().Err() == nil {
		h.log.Warn("body copy failed", "key", key, "remote", r.RemoteAddr, "err", err)
	}
}

// objectHeaders sets the headers that describe the object.
func (h *Handler) objectHeaders(w http.ResponseWriter, key string, info store.ObjectInfo) {
	hd := w.Header()
	ct := info.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hd.Set("Content-Type", ct)
	// Keys are user-influenced (channel names); never let a browser guess
	// that a segment is HTML.
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", h.cacheControl(key))
	hd.Set("Accept-Ranges", "bytes")
	if info.ETag != "" {
		hd.Set("ETag", info.ETag)
	}
	if !info.ModTime.IsZero() {
		hd.Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	}
}

// cacheControl follows the same classification as the hot cache (kindOf):
// what a CDN may keep for a year, the origin may keep in memory.
func (h *Handler) cacheControl(key string) string {
	switch kindOf(key) {
	case playlist:
		return h.playlistCC
	case immutable:
		return ccImmutable
	}
	return ccOther
}

// writeError is the one place that turns an error into a status: it maps
// store errors, logs what the operator must see and writes a one-line body.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, key string, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, store.ErrInvalidKey):
		he = &httpError{status: http.StatusBadRequest, msg: "invalid path", err: err}
	case errors.Is(err, store.ErrNotFound):
		he = &httpError{status: http.StatusNotFound, msg: "not found", err: err}
	case r.Context().Err() != nil:
		// The client went away; nobody will read an answer.
		h.log.Debug("request canceled", "key", key, "remote", r.RemoteAddr, "err", err)
		return
	case errors.Is(err, errChanged):
		he = &httpError{status: http.StatusServiceUnavailable, msg: "object is being replaced, retry", err: err}
	default:
		// The store (a folder, later S3) failed: the origin itself is fine,
		// its upstream is not.
		he = &httpError{status: http.StatusBadGateway, msg: "object store error", err: err}
	}
	if he.status >= 500 {
		h.log.Error("request failed", "method", r.Method, "key", key, "status", he.status, "remote", r.RemoteAddr, "err", err)
	} else {
		h.log.Debug("request refused", "method", r.Method, "path", r.URL.EscapedPath(), "status", he.status, "err", err)
	}
	hd := w.Header()
	for _, k := range []string{"ETag", "Last-Modified", "Accept-Ranges", "Content-Length"} {
		hd.Del(k)
	}
	if he.status != http.StatusRequestedRangeNotSatisfiable {
		hd.Del("Content-Range")
	}
	switch {
	case he.status == http.StatusNotFound:
		hd.Set("Cache-Control", ccMiss)
	case he.status == http.StatusRequestedRangeNotSatisfiable:
		// The 416 is as cacheable as the object it describes.
		hd.Set("Cache-Control", h.cacheControl(key))
	default:
		hd.Set("Cache-Control", ccError)
	}
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(he.status)
	if r.Method != http.MethodHead {
		io.WriteString(w, he.msg+"\n")
	}
}

// objectKey maps an escaped URL path to an object key.
//
// It works on the escaped path, element by element, so that encoded
// separators ("%2F", "%5C") are seen for what they are instead of being
// silently turned into path structure by an earlier decode. It refuses,
// rather than cleans, anything odd: a well-behaved player never sends
// "..", "//" or "%2F", so such a request is an attack or a bug, and a 400
// says so. Elements starting with "." are refused too: ".", "..", and
// hidden files such as the store's in-progress ".tmp-*" objects. Any ".."
// at all is refused, even inside a name, so no later normalisation by a
// backend can turn the key into a parent reference.
//
// A path ending in "/" names a folder; folders are not objects, so that is
// a 404, not a 400.
func objectKey(escaped string) (string, error) {
	bad := func(why string) error {
		return &httpError{status: http.StatusBadRequest, msg: "bad path: " + why, err: store.ErrInvalidKey}
	}
	if !strings.HasPrefix(escaped, "/") {
		return "", bad("not absolute")
	}
	rest := escaped[1:]
	if rest == "" || strings.HasSuffix(rest, "/") {
		if strings.Contains(rest, "//") || strings.HasPrefix(rest, "/") {
			return "", bad("empty path element")
		}
		return "", &httpError{status: http.StatusNotFound, msg: "not found", err: store.ErrNotFound}
	}
	elems := strings.Split(rest, "/")
	for i, el := range elems {
		if el == "" {
			return "", bad("empty path element")
		}
		dec, err := pathUnescape(el)
		if err != nil {
			return "", bad("malformed escape")
		}
		switch {
		case strings.ContainsAny(dec, "/\\"):
			return "", bad("encoded or back slash")
		case strings.HasPrefix(dec, "."):
			return "", bad("element starts with a dot")
		case strings.Contains(dec, ".."):
			return "", bad("contains ..")
		case strings.ContainsFunc(dec, func(c rune) bool { return c < 0x20 || c == 0x7f }):
			return "", bad("control character")
		case strings.Contains(dec, ":") && i == 0:
			// "C:" or "http:" as a first element looks absolute to
			// someone; no key of ours starts like that.
			return "", bad("absolute-looking path")
		}
		elems[i] = dec
	}
	key := strings.Join(elems, "/")
	// The store re-checks; checking here too turns a would-be 400 from
	// the store into one without a store round trip, and guarantees the
	// contract the fuzz test pins down.
	if _, err := store.CleanKey(key); err != nil {
		return "", bad("invalid key")
	}
	return key, nil
}

// pathUnescape decodes %XX escapes only. It is url.PathUnescape without the
// surprises: '+' stays '+', and invalid UTF-8 is allowed through to
// CleanKey, which does not care.
func pathUnescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("short escape")
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", errors.New("bad escape")
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// notModified evaluates If-None-Match, or, only when that is absent,
// If-Modified-Since (RFC 9110 §13.2.2).
func notModified(r *http.Request, info store.ObjectInfo) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		return etagListMatches(inm, info.ETag)
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || info.ModTime.IsZero() {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	// HTTP dates have whole seconds.
	return !info.ModTime.Truncate(time.Second).After(t)
}

// etagListMatches is the weak comparison If-None-Match uses.
func etagListMatches(list, etag string) bool {
	if etag == "" {
		return false
	}
	if strings.TrimSpace(list) == "*" {
		return true
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(list, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == want {
			return true
		}
	}
	return false
}

// ifRangeMatches says whether a Range may be honoured: with no If-Range,
// always; with an entity tag, on a strong match; with a date, when it is
// exactly the object's modification time.
func ifRangeMatches(ir string, info store.ObjectInfo) bool {
	ir = strings.TrimSpace(ir)
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
		return !strings.HasPrefix(ir, "W/") && !strings.HasPrefix(info.ETag, "W/") && ir == info.ETag
	}
	t, err := http.ParseTime(ir)
	return err == nil && !info.ModTime.IsZero() && info.ModTime.Truncate(time.Second).Equal(t)
}

// parseRange interprets a Range header for an object of size bytes.
//
// It returns nil (serve everything with 200) for no header, for a header
// it does not understand (RFC 9110 lets a server ignore Range) and for
// several ranges: answering those needs multipart/byteranges, which no HLS
// or DASH player asks for, and serving the whole object is a correct
// answer to any Range request. It returns errNotSatisfiable when the one
// range lies wholly outside the object.
func parseRange(hdr string, size int64) (*store.Range, error) {
	spec, ok := strings.CutPrefix(hdr, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return nil, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return nil, nil
	}
	if first == "" { // suffix: the last n bytes
		n, err := parseDigits(last)
		if err != nil {
			return nil, nil
		}
		if n == 0 || size == 0 {
			return nil, errNotSatisfiable
		}
		n = min(n, size)
		return &store.Range{Start: size - n, Length: n}, nil
	}
	start, err := parseDigits(first)
	if err != nil {
		return nil, nil
	}
	end := size - 1
	if last != "" {
		end, err = parseDigits(last)
		if err != nil || end < start {
			return nil, nil
		}
	}
	if start >= size {
		return nil, errNotSatisfiable
	}
	end = min(end, size-1)
	return &store.Range{Start: start, Length: end - start + 1}, nil
}

// parseDigits accepts only ASCII digits (no sign, no spaces).
func parseDigits(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	return strconv.ParseInt(s, 10, 64)
}

// Health answers /healthz: 200 "ok" for as long as the process serves HTTP.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
}

// readyProbeKey is a key that never exists. Stat of it is the cheapest
// question every backend can answer (a List could return every segment of
// every channel): "not found" proves the store is reachable.
const readyProbeKey = "readyz/probe"

// Ready answers /readyz: 200 when the object store answers a Stat within
// timeout (zero means 2s), 503 with a one-line reason otherwise. State
// changes are logged once, not on every probe.
func Ready(objs store.Objects, timeout time.Duration, log *slog.Logger) http.Handler {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	log = log.With("component", "origin")
	var last readyState
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		_, err := objs.Stat(ctx, readyProbeKey)
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
		if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
			err = fmt.Errorf("object store did not answer within %s", timeout)
		}
		last.set(log, err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+oneLine(err.Error())+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// readyState remembers the last readiness answer so only changes are logged.
type readyState struct {
	mu     sync.Mutex
	known  bool
	reason string
}

func (s *readyState) set(log *slog.Logger, err error) {
	reason := ""
	if err != nil {
		reason = oneLine(err.Error())
	}
	s.mu.Lock()
	changed := !s.known || reason != s.reason
	s.known, s.reason = true, reason
	s.mu.Unlock()
	if !changed {
		return
	}
	if err != nil {
		log.Warn("not ready", "reason", reason)
	} else {
		log.Info("ready")
	}
}
