package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// Protected playback.
//
// With Config.Guard set, every key the guard calls protected needs a
// playback token in the query parameter st=: without one the answer is
// 401, with one the guard refuses (bad signature, expired, another path or
// client) 403, both with Cache-Control: no-store. Public keys are served
// exactly as without a guard. OPTIONS (CORS preflight) needs no token.
//
// A token whose user's playback URLs were revoked after it was issued
// (TokenGuard.WithRevocations, auth.PlaybackRevocations) is refused like
// a bad one.
//
// A valid token opens:
//   - HLS playlists (.m3u8), rewritten per response so that every relative
//     URI in them carries the same token (see rewrite.go) and, in a master,
//     without the variants the grant does not allow. The hot cache keeps
//     the original; the rewritten body gets an ETag derived from the
//     original's and the token, and Cache-Control: private, so no shared
//     cache hands one viewer's playlist to another. Range is ignored (200
//     with the whole body): offsets in the stored object mean nothing in
//     the rewritten one, no player ranges a playlist, and RFC 9110 lets a
//     server ignore Range.
//   - DASH manifests (.mpd), rewritten the same way (rewrite_mpd.go): the
//     token on every relative URL (SegmentTemplate media/initialization,
//     BaseURL, ...), Representations the grant does not allow removed.
//   - everything else under the prefix (segments, init segments, keys),
//     served as usual but with a
//     Cache-Control whose lifetime ends when the token does: the bytes are
//     the same for every viewer, and a shared cache keys them by the full
//     URL, token included, so it can serve them only to holders of the
//     same token, and only until it expires. A token bound to a client IP
//     makes it "private".
//
// Rendition limits: a grant with MaxHeight or Renditions refuses (403) any
// key inside a rendition its master playlist does not allow. The origin
// finds "its master" by looking, for each folder F above the key, at
// F/index.m3u8 (the name the packager and the VOD pipeline give masters):
// a key under a variant's folder (live/main/1080p/...) is judged by the
// variants that master lists (live/main/index.m3u8). Parsed masters are
// remembered for masterMemoTTL, so a rendition added to a master is
// judged by the new master at most that much later.

// Guard decides which keys need a playback token and checks tokens.
type Guard interface {
	// Protected reports whether key (an object key: no leading slash)
	// needs a token. An error (the metadata that decides it is
	// unreachable) makes the origin answer 503: it fails closed.
	Protected(ctx context.Context, key string) (bool, error)
	// Verify checks token for a request of the absolute path "/"+key
	// from clientIP and returns what it grants. Any error is a 403.
	Verify(ctx context.Context, token, path, clientIP string) (Grant, error)
}

// Grant is what a valid token allows, as far as the origin cares.
type Grant struct {
	// MaxHeight, when > 0, removes the variants whose RESOLUTION's short
	// side (min of width and height: the "1080" of 1920x1080 and of a
	// portrait 1080x1920, as the ladders name rungs) exceeds it, and
	// refuses their playlists and segments. A variant without RESOLUTION
	// (audio only) is never removed by height.
	MaxHeight int
	// Renditions, when not nil, keeps only the variants whose rendition
	// name (its folder's name: "720p", "r2") is listed.
	Renditions []string
	// Expires is when the token stops working; zero: unknown (then
	// protected objects get the usual lifetimes).
	Expires time.Time
	// Private marks a token bound to one client: nothing it opens may be
	// kept by a shared cache.
	Private bool
}

// tokenParam is the query parameter that carries the token.
const tokenParam = "st"

// maxSignedPlaylist bounds a playlist read whole to be rewritten (a 10 h
// VOD media playlist of 2 s segments is about 1 MB).
const maxSignedPlaylist = 16 << 20

// masterMemoTTL is how long a parsed master (or the absence of one) is
// trusted by the rendition check.
const masterMemoTTL = time.Second

// masterName is the name of every master playlist.
const masterName = "index.m3u8"

// TokenGuard is the Guard of signed playback URLs (auth.URLSigner).
type TokenGuard struct {
	signer    *auth.URLSigner
	protected func(ctx context.Context, key string) (bool, error)
	revoked   func(ctx context.Context, subject string, issued time.Time) bool
	now       func() time.Time
}

// errRevoked refuses a token whose user's playback URLs were revoked.
var errRevoked = errors.New("playback URL revoked")

// WithRevocations makes the guard refuse tokens that revoked says were
// revoked (auth.PlaybackRevocations.Revoked) and returns it.
func (tg *TokenGuard) WithRevocations(revoked func(ctx context.Context, subject string, issued time.Time) bool) *TokenGuard {
	tg.revoked = revoked
	return tg
}

// NewPolicyGuard checks tokens with signer for the keys protected says
// are protected (streamd's: channels and catalog items whose visibility
// is "protected", looked up in the metadata store). now is the clock
// (nil: time.Now).
func NewPolicyGuard(signer *auth.URLSigner, protected func(ctx context.Context, key string) (bool, error), now func() time.Time) (*TokenGuard, error) {
	if signer == nil || protected == nil {
		return nil, errors.New("origin: token guard without a URL signer or a policy")
	}
	if now == nil {
		now = time.Now
	}
	return &TokenGuard{signer: signer, protected: protected, now: now}, nil
}

// NewTokenGuard protects the keys under each of prefixes (absolute paths
// matched on whole elements: "/live/main/" protects live/main/... and not
// live/mainly/...) with tokens checked by signer. now is the clock (nil:
// time.Now).
func NewTokenGuard(signer *auth.URLSigner, prefixes []string, now func() time.Time) (*TokenGuard, error) {
	if signer == nil {
		return nil, errors.New("origin: token guard without a URL signer")
	}
	for _, p := range prefixes {
		// An unclean prefix would silently protect nothing.
		if !auth.PathWithin(p, p) {
			return nil, fmt.Errorf("origin: protected prefix %q: want a clean absolute path such as /live/main/", p)
		}
	}
	prefixes = append([]string(nil), prefixes...)
	return NewPolicyGuard(signer, func(_ context.Context, key string) (bool, error) {
		for _, p := range prefixes {
			if auth.PathWithin("/"+key, p) {
				return true, nil
			}
		}
		return false, nil
	}, now)
}

// Protected implements Guard.
func (tg *TokenGuard) Protected(ctx context.Context, key string) (bool, error) {
	return tg.protected(ctx, key)
}

// Verify implements Guard.
func (tg *TokenGuard) Verify(ctx context.Context, token, path, clientIP string) (Grant, error) {
	g, err := tg.signer.Verify(token, path, clientIP, tg.now())
	if err != nil {
		return Grant{}, err
	}
	if tg.revoked != nil && tg.revoked(ctx, g.Subject, g.IssuedAt) {
		return Grant{}, errRevoked
	}
	return Grant{MaxHeight: g.MaxHeight, Renditions: g.Renditions, Expires: g.Expires, Private: g.ClientIP != ""}, nil
}

// RemoteAddrIP is the default Config.ClientIP: the host of the TCP peer.
// Behind a reverse proxy or a CDN that is the proxy, so a deployment there
// must pass a resolver that trusts its proxy's X-Forwarded-For (and only
// its proxy's), or IP-bound tokens will all fail (or all match the proxy).
func RemoteAddrIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// guardState is the Handler's part for protected playback.
type guardState struct {
	guard    Guard
	clientIP func(*http.Request) string
	masters  *otter.Cache[string, *masterInfo]
	flights  flightGroup[*masterInfo]
}

func (h *Handler) initGuard(cfg Config) {
	if cfg.Guard == nil {
		return
	}
	h.gs = &guardState{guard: cfg.Guard, clientIP: cfg.ClientIP}
	if h.gs.clientIP == nil {
		h.gs.clientIP = RemoteAddrIP
	}
	h.gs.masters = otter.Must(&otter.Options[string, *masterInfo]{
		MaximumSize:      10000,
		ExpiryCalculator: otter.ExpiryWriting[string, *masterInfo](masterMemoTTL),
	})
}

// protected says whether the guard wants a token for key. When the guard
// cannot tell, the answer is a 503: serving a protected object to anyone
// because its metadata was unreachable would be the worse failure.
func (h *Handler) protected(ctx context.Context, key string) (bool, error) {
	if h.gs == nil {
		return false, nil
	}
	ok, err := h.gs.guard.Protected(ctx, key)
	if err != nil {
		return false, &httpError{status: http.StatusServiceUnavailable, msg: "cannot check playback rights now; try again", err: err}
	}
	return ok, nil
}

// serveGuarded answers GET or HEAD for a protected key.
func (h *Handler) serveGuarded(w http.ResponseWriter, r *http.Request, key string) error {
	tok := r.URL.Query().Get(tokenParam)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Signed-URL realm="streamd", param="`+tokenParam+`"`)
		return &httpError{status: http.StatusUnauthorized, msg: "playback token required"}
	}
	g, err := h.gs.guard.Verify(r.Context(), tok, "/"+key, h.gs.clientIP(r))
	if err != nil {
		return &httpError{status: http.StatusForbidden, msg: "invalid or expired playback token", err: err}
	}
	if g.limited() {
		if err := h.checkRendition(r.Context(), key, g); err != nil {
			return err
		}
	}
	switch ext := path.Ext(key); {
	case strings.EqualFold(ext, ".m3u8"):
		return h.serveSignedManifest(w, r, key, tok, g, rewriteHLS)
	case strings.EqualFold(ext, ".mpd"):
		return h.serveSignedManifest(w, r, key, tok, g, rewriteDASH)
	}
	return h.serveObject(&ccWriter{ResponseWriter: w, cc: h.protectedCC(key, g)}, r, key)
}

var errRendition = &httpError{status: http.StatusForbidden, msg: "rendition not allowed for this playback token"}

// checkRendition refuses key if a master above it lists it in a variant g
// does not allow.
func (h *Handler) checkRendition(ctx context.Context, key string, g Grant) error {
	for dir := path.Dir(key); ; dir = path.Dir(dir) {
		if dir == "." {
			dir = ""
		}
		mk := path.Join(dir, masterName)
		if mk != key {
			mi, err := h.masterInfo(ctx, mk)
			if err != nil {
				return err
			}
			if mi.refuses(key, g) {
				return errRendition
			}
		}
		if dir == "" {
			return nil
		}
	}
}

// masterInfo returns the parsed playlist at key, from the memo or read
// now; a missing one has no variants.
func (h *Handler) masterInfo(ctx context.Context, key string) (*masterInfo, error) {
	if mi, ok := h.gs.masters.GetIfPresent(key); ok {
		return mi, nil
	}
	// One read and parse for all the requests that miss at once (every
	// viewer's next segment request, each time the memo expires).
	return h.gs.flights.do(ctx, key, func(ctx context.Context) (*masterInfo, error) {
		if mi, ok := h.gs.masters.GetIfPresent(key); ok {
			return mi, nil
		}
		_, body, err := h.readPlaylist(ctx, key)
		var mi *masterInfo
		switch {
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalidKey):
			mi = &masterInfo{}
		case err != nil:
			return nil, err
		case !bytes.Contains(body, []byte("STREAM-INF:")):
			// A media playlist (possibly a long VOD one): no variants,
			// nothing to parse.
			mi = &masterInfo{}
		default:
			if mi, err = parseMaster(key, body); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
		h.gs.masters.Set(key, mi)
		return mi, nil
	})
}

// readPlaylist returns a whole playlist: from the hot cache (loading it
// there, coalesced, on a miss), or from the store when the cache is off or
// the playlist is too big for it.
func (h *Handler) readPlaylist(ctx context.Context, key string) (store.ObjectInfo, []byte, error) {
	if h.cache != nil {
		e, err := h.cache.lookup(ctx, key, true)
		if err != nil {
			return store.ObjectInfo{}, nil, err
		}
		if e != nil && !e.big {
			return e.info, e.body, nil
		}
	}
	body, info, err := h.objs.Get(ctx, key, nil)
	if err != nil {
		return store.ObjectInfo{}, nil, err
	}
	defer body.Close()
	if info.Size > maxSignedPlaylist {
		return store.ObjectInfo{}, nil, fmt.Errorf("%s: %d bytes, too big to sign (limit %d)", key, info.Size, maxSignedPlaylist)
	}
	b, err := io.ReadAll(io.LimitReader(body, maxSignedPlaylist+1))
	if err != nil {
		return store.ObjectInfo{}, nil, fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) > maxSignedPlaylist {
		return store.ObjectInfo{}, nil, fmt.Errorf("%s: too big to sign (limit %d)", key, maxSignedPlaylist)
	}
	return info, b, nil
}

// rewriter rewrites a manifest for a token; limits says whether kept
// counts renditions (a master playlist, an MPD) rather than nothing (a
// media playlist).
type rewriter func(body []byte, key, token string, g Grant) (out []byte, kept int, limits bool, err error)

func rewriteHLS(body []byte, key, token string, g Grant) ([]byte, int, bool, error) {
	return rewritePlaylist(body, key, token, g)
}

// rewriteDASH: rewriteMPD's kept counts the video Representations left
// (in an audio-only manifest, all of them).
func rewriteDASH(body []byte, _, token string, g Grant) ([]byte, int, bool, error) {
	out, kept, err := rewriteMPD(body, token, g)
	return out, kept, true, err
}

// serveSignedManifest answers with the HLS playlist or DASH manifest
// rewritten for tok: the token in every relative URL, and the renditions
// g does not allow removed.
func (h *Handler) serveSignedManifest(w http.ResponseWriter, r *http.Request, key, tok string, g Grant, rewrite rewriter) error {
	info, body, err := h.readPlaylist(r.Context(), key)
	if err != nil {
		return err
	}
	out, kept, limits, err := rewrite(body, key, tok, g)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if limits && kept == 0 {
		return &httpError{status: http.StatusForbidden, msg: "no rendition allowed for this playback token"}
	}
	vi := info
	vi.ETag = tokenETag(info.ETag, tok)
	hd := w.Header()
	ct := info.ContentType
	if ct == "" {
		ct = "application/vnd.apple.mpegurl"
		if strings.EqualFold(path.Ext(key), ".mpd") {
			ct = "application/dash+xml"
		}
	}
	hd.Set("Content-Type", ct)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, "+strings.TrimPrefix(h.playlistCC, "public, "))
	if vi.ETag != "" {
		hd.Set("ETag", vi.ETag)
	}
	if !vi.ModTime.IsZero() {
		hd.Set("Last-Modified", vi.ModTime.UTC().Format(http.TimeFormat))
	}
	if notModified(r, vi) {
		hd.Del("Content-Type") // as writeNotModified: a 304 has no body
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hd.Set("Accept-Ranges", "none")
	hd.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		if _, err := w.Write(out); err != nil && r.Context().Err() == nil {
			h.log.Warn("body write failed", "key", key, "remote", r.RemoteAddr, "err", err)
		}
	}
	return nil
}

// tokenETag derives the rewritten playlist's entity tag from the stored
// object's and the token, so each token's rewritten body has its own
// validator. The hash of the token reveals nothing the URL does not.
func tokenETag(etag, tok string) string {
	if etag == "" {
		return ""
	}
	weak := ""
	if strings.HasPrefix(etag, "W/") {
		weak, etag = "W/", etag[2:]
	}
	sum := sha256.Sum256([]byte(tok))
	return weak + `"` + strings.Trim(etag, `"`) + "-st" + hex.EncodeToString(sum[:8]) + `"`
}

// protectedCC is the Cache-Control of a protected object other than an
// HLS playlist: the usual one, its lifetime capped at the token's expiry,
// and private for a client-bound token.
func (h *Handler) protectedCC(key string, g Grant) string {
	scope := "public"
	if g.Private {
		scope = "private"
	}
	capAge := func(secs int64) int64 {
		if !g.Expires.IsZero() {
			secs = min(secs, int64(time.Until(g.Expires)/time.Second))
		}
		return max(secs, 0)
	}
	switch kindOf(key) {
	case immutable:
		return scope + ", max-age=" + strconv.FormatInt(capAge(31536000), 10) + ", immutable"
	case playlist:
		secs, _ := strconv.ParseInt(strings.TrimPrefix(h.playlistCC, "public, max-age="), 10, 64)
		return scope + ", max-age=" + strconv.FormatInt(capAge(secs), 10)
	}
	return scope + ", no-cache"
}

// ccWriter replaces the Cache-Control of successful answers (2xx, 304);
// errors keep the one writeError chose.
type ccWriter struct {
	http.ResponseWriter
	cc    string
	wrote bool
}

func (c *ccWriter) WriteHeader(status int) {
	if !c.wrote && status < 400 {
		c.Header().Set("Cache-Control", c.cc)
	}
	c.wrote = true
	c.ResponseWriter.WriteHeader(status)
}

func (c *ccWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's sendfile path for io.Copy.
func (c *ccWriter) ReadFrom(src io.Reader) (int64, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return io.Copy(c.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the connection.
func (c *ccWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
