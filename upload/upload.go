// Package upload receives masters: tus resumable uploads (tusd's handler
// over a local folder), finished uploads moved or copied into the object
// store under masters/{id}/{filename}, and, when the object store is S3,
// presigned multipart uploads that go straight to the bucket.
//
// Routes, under Config.BasePath (say /api/uploads/):
//
//	OPTIONS {base}                       tus discovery / CORS preflight (no token)
//	POST    {base}                       tus creation (Upload-Length, Upload-Metadata: filename, filetype, visibility)
//	HEAD    {base}{id}                   tus offset (resume)
//	PATCH   {base}{id}                   tus append (Upload-Offset)
//	DELETE  {base}{id}                   tus termination
//	POST    {base}multipart              presigned multipart start (S3 only)
//	POST    {base}multipart/{id}/complete
//	DELETE  {base}multipart/{id}         abort
//
// Every request but OPTIONS needs "Authorization: Bearer <access token>" of
// a publisher or an admin: none or a bad one is 401, another role 403. An
// upload is visible only to the user who created it (and admins): others
// get 404.
package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	expslog "golang.org/x/exp/slog"

	"github.com/streamd/streamd/store"
)

// Identity is who an access token names.
type Identity struct {
	UserID string
	// Role is "admin", "publisher" or "viewer"; only the first two may
	// upload.
	Role string
}

// Authenticator checks an access token. An error wrapping
// store.ErrUnavailable answers 503 (the auth backend is down); any other
// error answers 401.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, token string) (Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (Identity, error) {
	return f(ctx, token)
}

// Upload is a finished, stored master.
type Upload struct {
	ID string `json:"id"`
	// Key is the master's object key: masters/{id}/{filename}.
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	UserID      string `json:"user_id"`
	// Visibility is the catalog item's: "public", "protected", or ""
	// (public). Given at creation (tus metadata "visibility", or the
	// multipart start's field), so a protected item is never public, not
	// even for a moment after it is encoded.
	Visibility string `json:"visibility,omitempty"`
}

// validVisibility reports whether v is one an upload may ask for.
func validVisibility(v string) bool { return v == "" || v == "public" || v == "protected" }

const errVisibility = "visibility: want public or protected"

// Config configures New. Objects, TempDir and Auth are required.
type Config struct {
	// BasePath is the URL path the handler is mounted under
	// ("/api/uploads/"); a trailing slash is added when missing. It may
	// be an absolute URL ("https://example.com/api/uploads/") when
	// streamd runs behind a proxy that rewrites hosts: the Location of new
	// uploads is built from it.
	BasePath string
	// MaxSize is the largest upload in bytes (config upload.max_size);
	// 0 means no limit. Larger uploads are refused with 413.
	MaxSize int64
	// Objects is where finished masters go.
	Objects store.Objects
	// TempDir holds uploads in progress (config upload.temp_dir): as much
	// free space as the uploads in flight. On the folder object store,
	// put it on the same file system so finished masters are renamed into
	// place instead of copied.
	TempDir string
	Auth    Authenticator
	// OnComplete is called once per stored master (at least once: a
	// failure answers 500 to the client, whose retry calls it again).
	// Optional.
	OnComplete func(ctx context.Context, u Upload) error
	// S3, when set, enables presigned multipart uploads straight into the
	// bucket. It must name the same bucket and prefix as Objects.
	S3 *S3Config
	// PresignExpiry is how long presigned part URLs stay valid (default
	// 6 hours: a 40 GB master on a slow line).
	PresignExpiry time.Duration
	// FinishTimeout bounds storing a finished upload (default 2 hours);
	// storing continues when the client goes away meanwhile.
	FinishTimeout time.Duration
	// ExpireAfter is how long an incomplete upload may go without a
	// single byte arriving before RunSweeper removes it, from TempDir
	// and, for presigned multipart uploads, from the bucket (config
	// upload.expire_after; default 24 hours). Keep it above
	// PresignExpiry, or clients lose uploads their URLs still allow.
	ExpireAfter time.Duration
	// AllowedOrigins for CORS (config http.allowed_origins); empty means
	// any origin (requests carry a bearer token, never cookies).
	AllowedOrigins []string
	Log            *slog.Logger
}

// MasterPrefix is where finished masters are stored.
const MasterPrefix = "masters/"

// Handler serves the upload routes.
type Handler struct {
	cfg  Config
	base string // path part of BasePath, ending in "/"
	tus  *tusd.Handler
	data *dataStore
	mp   *multipart // nil without S3
	log  *slog.Logger
	// now is the sweeper's clock: tests move it forward instead of
	// waiting a day.
	now func() time.Time
}

var _ http.Handler = (*Handler)(nil)

// New checks cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Objects == nil:
		return nil, errors.New("upload: Objects is required")
	case cfg.Auth == nil:
		return nil, errors.New("upload: Auth is required")
	case cfg.TempDir == "":
		return nil, errors.New("upload.temp_dir: required (a folder for uploads in progress)")
	case cfg.MaxSize < 0:
		return nil, fmt.Errorf("upload.max_size: must not be negative, not %d", cfg.MaxSize)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PresignExpiry <= 0 {
		cfg.PresignExpiry = 6 * time.Hour
	}
	if cfg.PresignExpiry > 7*24*time.Hour {
		return nil, fmt.Errorf("upload.presign_expiry: at most 7 days (S3's limit), not %s", cfg.PresignExpiry)
	}
	if cfg.ExpireAfter < 0 {
		return nil, fmt.Errorf("upload.expire_after: must not be negative, not %s", cfg.ExpireAfter)
	}
	if cfg.ExpireAfter == 0 {
		cfg.ExpireAfter = defaultExpireAfter
	}
	if cfg.FinishTimeout <= 0 {
		cfg.FinishTimeout = 2 * time.Hour
	}
	if err := os.MkdirAll(cfg.TempDir, 0o750); err != nil {
		return nil, fmt.Errorf("upload.temp_dir %q: %w", cfg.TempDir, err)
	}
	if cfg.BasePath == "" {
		cfg.BasePath = "/uploads/"
	}
	if !strings.HasSuffix(cfg.BasePath, "/") {
		cfg.BasePath += "/"
	}
	u, err := url.Parse(cfg.BasePath)
	if err != nil || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("upload: base path %q: want /path/ or an absolute URL", cfg.BasePath)
	}
	log := cfg.Log.With("component", "upload")
	h := &Handler{cfg: cfg, base: u.Path, log: log, now: time.Now}

	h.data = &dataStore{fs: filestore.New(cfg.TempDir), h: h, locker: memorylocker.New()}
	composer := tusd.NewStoreComposer()
	composer.UseCore(h.data)
	composer.UseTerminater(h.data)
	h.data.locker.UseIn(composer)

	cors := tusd.DefaultCorsConfig
	if len(cfg.AllowedOrigins) > 0 {
		alts := make([]string, len(cfg.AllowedOrigins))
		for i, o := range cfg.AllowedOrigins {
			alts[i] = regexp.QuoteMeta(o)
			if o == "*" {
				alts[i] = ".*"
			}
		}
		cors.AllowOrigin = regexp.MustCompile("^(" + strings.Join(alts, "|") + ")$")
	}
	t, err := tusd.NewHandler(tusd.Config{
		StoreComposer:           composer,
		MaxSize:                 cfg.MaxSize,
		BasePath:                cfg.BasePath,
		DisableDownload:         true,
		DisableConcatenation:    true,
		Cors:                    &cors,
		Logger:                  expslog.New(tusLog{log.Handler()}),
		PreUploadCreateCallback: h.preCreate,
	})
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	h.tus = t
	if cfg.S3 != nil {
		if h.mp, err = newMultipart(h, *cfg.S3); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// tusLog passes tusd's warnings and errors (it logs with x/exp/slog) to
// our logger, and drops its per-request info lines.
type tusLog struct{ h slog.Handler }

func (t tusLog) Enabled(ctx context.Context, l expslog.Level) bool {
	return l >= expslog.LevelWarn && t.h.Enabled(ctx, slog.Level(l))
}

func (t tusLog) Handle(ctx context.Context, r expslog.Record) error {
	rec := slog.NewRecord(r.Time, slog.Level(r.Level), "tusd: "+r.Message, r.PC)
	r.Attrs(func(a expslog.Attr) bool {
		rec.AddAttrs(slog.Any(a.Key, a.Value.Any()))
		return true
	})
	return t.h.Handle(ctx, rec)
}

func (t tusLog) WithAttrs(as []expslog.Attr) expslog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Any(a.Key, a.Value.Any())
	}
	return tusLog{t.h.WithAttrs(out)}
}

func (t tusLog) WithGroup(n string) expslog.Handler { return tusLog{t.h.WithGroup(n)} }

type identityKey struct{}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// mayAccess reports whether the request's user may see an upload of owner.
func mayAccess(ctx context.Context, owner string) bool {
	id, ok := identityFrom(ctx)
	return ok && (id.Role == "admin" || id.UserID == owner)
}

// reUploadID is what tusd's filestore generates (and what multipart uses):
// 32 hex digits. Anything else never names an upload, and never reaches the
// file system.
var reUploadID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ServeHTTP authenticates and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.base)
	if !ok && r.URL.Path+"/" == h.base {
		rest, ok = "", true
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such upload route")
		return
	}
	if r.Method == http.MethodOptions {
		h.serveTus(w, r, rest)
		return
	}
	id, err := h.authenticate(r)
	if err != nil {
		var e *httpError
		errors.As(err, &e)
		if e.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamd"`)
		}
		if e.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		writeError(w, e.status, e.code, e.msg)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))

	if rest == "multipart" || strings.HasPrefix(rest, "multipart/") {
		if h.mp == nil {
			writeError(w, http.StatusNotFound, "not_found", "presigned multipart uploads need an S3 object store; use the tus protocol on "+h.base)
			return
		}
		h.mp.serve(w, r, strings.TrimPrefix(strings.TrimPrefix(rest, "multipart"), "/"))
		return
	}
	if rest == "" {
		if r.Method == http.MethodPost && h.cfg.MaxSize > 0 {
			// tusd answers 413 too, tersely; say what the limit is.
			if n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64); err == nil && n > h.cfg.MaxSize {
				w.Header().Set("Tus-Resumable", "1.0.0")
				w.Header().Set("Tus-Max-Size", strconv.FormatInt(h.cfg.MaxSize, 10))
				writeError(w, http.StatusRequestEntityTooLarge, "too_large", tooLarge(n, h.cfg.MaxSize))
				return
			}
		}
	} else if !reUploadID.MatchString(rest) {
		writeError(w, http.StatusNotFound, "not_found", "no such upload")
		return
	}
	h.serveTus(w, r, rest)
}

func tooLarge(n, max int64) string {
	return fmt.Sprintf("upload of %d bytes is larger than this server's limit of %d bytes (upload.max_size)", n, max)
}

// serveTus hands the request to tusd with the base path stripped.
func (h *Handler) serveTus(w http.ResponseWriter, r *http.Request, rest string) {
	r2 := new(http.Request)
	*r2 = *r
	r2.URL = new(url.URL)
	*r2.URL = *r.URL
	r2.URL.Path = "/" + rest
	r2.URL.RawPath = ""
	h.tus.ServeHTTP(w, r2)
}

func (h *Handler) authenticate(r *http.Request) (Identity, error) {
	tok, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return Identity{}, &httpError{http.StatusUnauthorized, "unauthenticated", "an access token is required (Authorization: Bearer <token>)"}
	}
	id, err := h.cfg.Auth.Authenticate(r.Context(), tok)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		h.log.WarnContext(r.Context(), "authentication backend unavailable", "err", err)
		return Identity{}, &httpError{http.StatusServiceUnavailable, "unavailable", "authentication is unavailable; try again later"}
	case err != nil:
		return Identity{}, &httpError{http.StatusUnauthorized, "unauthenticated", "invalid or expired access token"}
	case id.Role != "publisher" && id.Role != "admin":
		return Identity{}, &httpError{http.StatusForbidden, "permission_denied", "uploading needs the publisher or admin role"}
	}
	return id, nil
}

// bearerToken extracts the token of "Authorization: Bearer <token>".
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > 4096 || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

type httpError struct {
	status    int
	code, msg string
}

func (e *httpError) Error() string { return e.code + ": " + e.msg }

// writeError answers in the REST API's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// preCreate keeps only the metadata streamd uses and records the owner.
func (h *Handler) preCreate(ev tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	id, ok := identityFrom(ev.Context)
	if !ok {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_UNAUTHENTICATED", "no identity", http.StatusUnauthorized)
	}
	if ev.Upload.SizeIsDeferred {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.ErrInvalidUploadLength
	}
	in := ev.Upload.MetaData
	name := in["filename"]
	if name == "" {
		name = in["name"]
	}
	ctype := in["filetype"]
	if ctype == "" {
		ctype = in["content_type"]
	}
	meta := tusd.MetaData{"filename": cleanFilename(name), "user_id": id.UserID}
	if v := in["visibility"]; !validVisibility(v) {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_INVALID_METADATA", errVisibility, http.StatusBadRequest)
	} else if v != "" {
		meta["visibility"] = v
	}
	if _, _, err := mime.ParseMediaType(ctype); err == nil && len(ctype) < 200 {
		meta["filetype"] = ctype
	}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{MetaData: meta}, nil
}

// cleanFilename makes a client's file name safe as the last element of an
// object key: no folders, no control or odd characters, at most 150 bytes.
func cleanFilename(s string) string {
	s = path.Base(strings.ReplaceAll(s, `\`, "/"))
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '-' || r == '_':
			b.WriteRune(r)
		case r == utf8RuneError:
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 150 {
			break
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if out == "" {
		return "master"
	}
	return out
}

const utf8RuneError = '\uFFFD'

func contentType(u Upload) string {
	if u.ContentType != "" {
		return u.ContentType
	}
	if t := mime.TypeByExtension(path.Ext(u.Filename)); t != "" {
		return t
	}
	return "application/octet-stream"
}
