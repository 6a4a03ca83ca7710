// Package web serves the built-in page at "/": a list of the channels and a
// player for the live ones. Everything it needs, hls.js included, is
// embedded in the binary; the page loads nothing from the internet.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"time"

	"github.com/streamd/streamd/live"
)

//go:embed static/index.html static/app.js static/style.css static/hls.min.js static/hls.js.LICENSE.txt
var files embed.FS

// Channels is what the page needs from the live hub.
type Channels interface {
	Status() []live.ChannelStatus
}

// Cache policy: the page itself is revalidated on every load (its ETag
// makes that a cheap 304) so a new binary's page shows up at once; the
// assets it references keep their names across versions, so their max-age
// is short rather than immutable; the channel list is live state.
const (
	ccPage   = "no-cache"
	ccStatic = "public, max-age=300"
	ccAPI    = "no-store"
)

// csp allows only same-origin resources. media-src and worker-src need
// blob: because hls.js feeds the video element through a MediaSource blob
// URL and runs its transmuxer in a worker built from a blob.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type asset struct {
	name  string
	data  []byte
	ctype string
	etag  string
}

type handler struct {
	ch     Channels
	log    *slog.Logger
	index  asset
	static map[string]asset // by file name under /static/
	mux    *http.ServeMux
}

// New returns the handler for "/", "/static/..." and "GET /api/channels".
// Mount it at "/"; the origin is mounted separately at "/live/".
func New(ch Channels, log *slog.Logger) http.Handler {
	h := &handler{
		ch:     ch,
		log:    log.With("component", "web"),
		static: map[string]asset{},
	}
	h.index = load("index.html")
	for _, name := range []string{"app.js", "style.css", "hls.min.js", "hls.js.LICENSE.txt"} {
		h.static[name] = load(name)
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /{$}", h.serveIndex)
	h.mux.HandleFunc("GET /static/{name}", h.serveStatic)
	h.mux.HandleFunc("GET /api/channels", h.serveChannels)
	h.mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// load reads an embedded file; a missing one is a build mistake, caught by
// the tests, so it panics.
func load(name string) asset {
	data, err := files.ReadFile("static/" + name)
	if err != nil {
		panic("web: embedded file missing: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return asset{name: name, data: data, ctype: contentType(name), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// contentType is fixed per extension rather than taken from the system's
// mime tables, which differ between machines.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

func serveAsset(w http.ResponseWriter, r *http.Request, a asset, cc string) {
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", cc)
	hd.Set("ETag", a.etag)
	// ServeContent answers If-None-Match, Range and HEAD from the ETag.
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Referrer-Policy", "no-referrer")
	serveAsset(w, r, h.index, ccPage)
}

func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := h.static[r.PathValue("name")]
	if !ok {
		notFound(w)
		return
	}
	serveAsset(w, r, a, ccStatic)
}

// Channel is one entry of GET /api/channels: the hub's status plus the
// path the page (or any player) plays it from.
type Channel struct {
	live.ChannelStatus
	URL string `json:"url"`
}

// PlayURL is the path of a channel's live playlist, as the origin serves it.
func PlayURL(name string) string {
	return "/live/" + url.PathEscape(name) + "/index.m3u8"
}

func (h *handler) serveChannels(w http.ResponseWriter, r *http.Request) {
	st := h.ch.Status()
	out := make([]Channel, 0, len(st)) // "[]", never "null"
	for _, s := range st {
		out = append(out, Channel{ChannelStatus: s, URL: PlayURL(s.Name)})
	}
	body, err := json.Marshal(out)
	if err != nil {
		h.log.Error("encode channel list", "err", err)
		w.Header().Set("Cache-Control", ccAPI)
		http.Error(w, "cannot encode channel list", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", ccAPI)
	w.Write(append(body, '\n'))
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, "not found\n")
}
