// Package api is streamd's JSON REST API under /api: accounts, sessions,
// MFA, user administration, publishers' channels and stream keys, and the
// content catalog. It speaks HTTP and JSON only; who may do
// what is decided by auth, and error codes become statuses in one place
// (errors.go).
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// Auth is what the API needs of auth.Service.
type Auth interface {
	Register(ctx context.Context, email, username, password string) (store.User, error)
	Login(ctx context.Context, login, password string) (auth.LoginResult, error)
	VerifyMFA(ctx context.Context, mfaToken, code string) (auth.TokenPair, error)
	Refresh(ctx context.Context, refreshToken string) (auth.TokenPair, error)
	Authenticate(ctx context.Context, accessToken string) (auth.Principal, error)
	Logout(ctx context.Context, p auth.Principal) error
	LogoutAll(ctx context.Context, userID string) error
	ChangePassword(ctx context.Context, p auth.Principal, current, next string) error

	EnrollMFA(ctx context.Context, userID string) (auth.Enrollment, error)
	ConfirmMFA(ctx context.Context, userID, code string) ([]string, error)
	DisableMFA(ctx context.Context, userID, code string) error
}

// Users is what the API needs to read and change accounts.
type Users interface {
	GetUser(ctx context.Context, id string) (store.User, error)
	UpdateProfile(ctx context.Context, id string, p auth.ProfileUpdate) (store.User, error)
	ListUsers(ctx context.Context, after string, limit int) ([]store.User, error)
	SetRole(ctx context.Context, id string, role store.Role) (store.User, error)

	SetTier(ctx context.Context, id string, tier store.Tier) (store.User, bool, error)
	BillingWebhook(ctx context.Context, signature string, body []byte) (auth.WebhookResult, error)
	CreateProfile(ctx context.Context, userID, name string, prefs json.RawMessage) (store.Profile, error)
	ListProfiles(ctx context.Context, userID string) ([]store.Profile, error)
	DeleteProfile(ctx context.Context, userID, profileID string) error
	GetProfile(ctx context.Context, userID, profileID string) (store.Profile, error)
	UpdateViewerProfile(ctx context.Context, userID, profileID string, name *string, prefs json.RawMessage) (store.Profile, error)
	FamilyMaxProfiles() int
}

// OIDCLogin is OpenID Connect login (*auth.OIDC).
type OIDCLogin interface {
	Providers() []string
	Start(ctx context.Context, name string) (auth.OIDCStart, error)
	Callback(ctx context.Context, name, state, code, providerError string) (auth.LoginResult, error)
}

// Limiter allows limit hits per window for each key, smoothly (GCRA:
// ratelimit.Memory in process, ratelimit.Redis across processes); when it
// refuses, retryAfter is when the next hit would pass.
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
}

// Limits are per client IP; a zero field takes its default, a negative
// one turns that limit off.
type Limits struct {
	// Auth is for /api/auth/ (login, register, refresh, MFA): default 20
	// a minute, which no person reaches and which slows guessing.
	Auth int
	// API is for everything else: default 600 a minute.
	API int
	// Account is per signed-in account across all its addresses (a
	// token shared by many clients, or one client hopping addresses):
	// default 1200 a minute. Negative turns a limit off.
	Account int
	Window  time.Duration // default 1 min
}

// Deps are what New needs. Auth, Users and Limiter are required
// (*auth.Service is both Auth and Users).
type Deps struct {
	Auth    Auth
	Users   Users
	Limiter Limiter
	Limits  Limits
	// Channels and Content are the metadata store (store.Meta is both).
	// Without them their endpoints answer 503.
	Channels ChannelStore
	Content  ContentStore
	// Playback signs the playback URLs of protected channels and items
	// (GET /api/streaming/{id}); nil: those answer 503.
	Playback PlaybackSigner
	// OIDC is the OpenID Connect login; nil: no provider configured.
	OIDC OIDCLogin
	// OIDCPostLoginURL, when set, makes the OIDC callback redirect there
	// with the tokens in the URL fragment; empty: it answers JSON.
	OIDCPostLoginURL string
	Logger           *slog.Logger
	// ClientIP returns the address rate limits count by (default: the
	// connection's remote address). Behind a reverse proxy, set it to read
	// the proxy's header — only then, since clients can forge headers.
	ClientIP func(*http.Request) string
}

// API is the /api handler.
type API struct {
	d   Deps
	log *slog.Logger
	mux *http.ServeMux
}

// route is one endpoint; the list is also what the OpenAPI test checks
// the document against.
type route struct {
	method, path string
	h            func(a *API, w http.ResponseWriter, r *http.Request)
	// who may call it: "" anyone, "user" any logged-in user, "publisher"
	// publishers and admins, "admin"; "optional" is anyone, with the
	// caller's identity when a token comes along (a bad token is a 401).
	who string
}

var routes = []route{
	{"GET", "/api/openapi.json", (*API).openAPI, ""},
	{"POST", "/api/auth/register", (*API).register, ""},
	{"POST", "/api/auth/login", (*API).login, ""},
	{"POST", "/api/auth/refresh", (*API).refresh, ""},
	{"POST", "/api/auth/logout", (*API).logout, "user"},
	{"POST", "/api/auth/logout-all", (*API).logoutAll, "user"},
	{"POST", "/api/auth/mfa/enroll", (*API).mfaEnroll, "user"},
	{"POST", "/api/auth/mfa/confirm", (*API).mfaConfirm, "user"},
	{"POST", "/api/auth/mfa/disable", (*API).mfaDisable, "user"},
	{"POST", "/api/auth/mfa/verify", (*API).mfaVerify, ""},
	{"GET", "/api/auth/oidc", (*API).oidcProviders, ""},
	{"GET", "/api/auth/oidc/{name}/start", (*API).oidcStart, ""},
	{"GET", "/api/auth/oidc/{name}/callback", (*API).oidcCallback, ""},
	{"GET", "/api/users/me", (*API).getMe, "user"},
	{"PUT", "/api/users/me", (*API).putMe, "user"},
	{"PUT", "/api/users/me/password", (*API).putPassword, "user"},
	{"GET", "/api/users", (*API).listUsers, "admin"},
	{"GET", "/api/users/{id}", (*API).getUser, "admin"},
	{"PUT", "/api/users/{id}/role", (*API).putRole, "admin"},

	// Subscriptions: admins set anyone's tier (their own through /me too);
	// a billing system uses the signed webhook. Viewers cannot.
	{"POST", "/api/users/me/subscription", (*API).postMySubscription, "user"},
	{"POST", "/api/users/{id}/subscription", (*API).postSubscription, "admin"},
	{"POST", "/api/billing/subscription", (*API).billingWebhook, ""},
	{"GET", "/api/users/me/profiles", (*API).listProfiles, "user"},
	{"POST", "/api/users/me/profiles", (*API).createProfile, "user"},
	{"GET", "/api/users/me/profiles/{id}", (*API).getProfile, "user"},
	{"PUT", "/api/users/me/profiles/{id}", (*API).putProfile, "user"},
	{"DELETE", "/api/users/me/profiles/{id}", (*API).deleteProfile, "user"},

	// A publisher's own channels (admins: all). Not under /api/channels,
	// which is the web page's public list of live channels.
	{"GET", "/api/publish/channels", (*API).listChannels, "publisher"},
	{"POST", "/api/publish/channels", (*API).createChannel, "publisher"},
	{"GET", "/api/publish/channels/{name}", (*API).getChannel, "publisher"},
	{"PUT", "/api/publish/channels/{name}", (*API).putChannel, "publisher"},
	{"DELETE", "/api/publish/channels/{name}", (*API).deleteChannel, "publisher"},
	{"POST", "/api/publish/channels/{name}/rotate-key", (*API).rotateKey, "publisher"},

	{"GET", "/api/content", (*API).listContent, "optional"},
	{"POST", "/api/content", (*API).createContent, "publisher"},
	{"GET", "/api/content/{id}", (*API).getContent, "optional"},
	{"PUT", "/api/content/{id}", (*API).putContent, "publisher"},

	// Playback URLs: a catalog item's id or a channel's name.
	{"GET", "/api/streaming/{id}", (*API).streaming, "optional"},
}

// New returns the handler for /api/... (mount it at "/api/").
func New(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = logDiscard
	}
	if d.ClientIP == nil {
		d.ClientIP = remoteIP
	}
	if d.Limits.Auth == 0 {
		d.Limits.Auth = 20
	}
	if d.Limits.API == 0 {
		d.Limits.API = 600
	}
	if d.Limits.Account == 0 {
		d.Limits.Account = 1200
	}
	if d.Limits.Window <= 0 {
		d.Limits.Window = time.Minute
	}
	a := &API{d: d, log: d.Logger.With("component", "api"), mux: http.NewServeMux()}
	known := map[string][]string{}
	for _, rt := range routes {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rt.h(a, w, r) })
		switch rt.who {
		case "user":
			h = a.authenticated(h, false, nil)
		case "publisher":
			h = a.authenticated(h, false, []store.Role{store.RolePublisher, store.RoleAdmin})
		case "admin":
			h = a.authenticated(h, false, []store.Role{store.RoleAdmin})
		case "optional":
			h = a.authenticated(h, true, nil)
		}
		a.mux.Handle(rt.method+" "+rt.path, h)
		known[rt.path] = append(known[rt.path], rt.method)
	}
	// Everything else under /api/ gets the JSON error shape, not
	// ServeMux's plain-text 404/405: a second mux of the paths alone tells
	// a wrong method (405) from a wrong path (404).
	paths := http.NewServeMux()
	for path, methods := range known {
		paths.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", joinComma(methods))
			a.writeError(w, r, apiError(codeMethodNotAllowed, "method not allowed here"))
		})
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			paths.ServeHTTP(w, r)
			return
		}
		a.writeError(w, r, apiError(auth.CodeNotFound, "no such endpoint"))
	})
	return a
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ServeHTTP sets the security headers and applies the per-IP limit,
// then routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header()) // also when mounted without SecureHeaders
	limit, bucket := a.d.Limits.API, "api"
	if len(r.URL.Path) >= len("/api/auth/") && r.URL.Path[:len("/api/auth/")] == "/api/auth/" {
		limit, bucket = a.d.Limits.Auth, "auth"
	}
	if limit > 0 {
		ok, retry, err := a.d.Limiter.Allow(r.Context(), bucket+":ip:"+a.d.ClientIP(r), limit, a.d.Limits.Window)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if !ok {
			a.writeError(w, r, &auth.Error{Code: auth.CodeRateLimited, Message: "too many requests; slow down", RetryAfter: retry})
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

type principalKey struct{}

func principal(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// authenticated requires a valid access token (and one of roles, when
// given) before h runs. With optional, a request without an Authorization
// header runs h anonymously (a zero principal); one with a header must
// carry a valid token.
func (a *API) authenticated(h http.HandlerFunc, optional bool, roles []store.Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if optional && r.Header.Get("Authorization") == "" {
			h(w, r)
			return
		}
		tok, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			a.writeError(w, r, apiError(auth.CodeUnauthenticated, "missing or malformed Authorization: Bearer header"))
			return
		}
		p, err := a.d.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if a.d.Limits.Account > 0 {
			ok, retry, err := a.d.Limiter.Allow(r.Context(), "api:user:"+p.UserID, a.d.Limits.Account, a.d.Limits.Window)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			if !ok {
				a.writeError(w, r, &auth.Error{Code: auth.CodeRateLimited, Message: "too many requests for this account; slow down", RetryAfter: retry})
				return
			}
		}
		if roles != nil && !slices.Contains(roles, p.Role) {
			msg := "admins only"
			if len(roles) > 1 {
				msg = "publishers and admins only"
			}
			a.writeError(w, r, apiError(auth.CodePermissionDenied, msg))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// userJSON is a user as the API shows it: never the password hash.
type userJSON struct {
	ID          string          `json:"id"`
	Email       string          `json:"email"`
	Username    string          `json:"username"`
	Role        store.Role      `json:"role"`
	Tier        store.Tier      `json:"tier"`
	Preferences json.RawMessage `json:"preferences"`
	CreatedAt   time.Time       `json:"created_at"`
	LastLoginAt *time.Time      `json:"last_login_at,omitempty"`
}

func toJSON(u store.User) userJSON {
	j := userJSON{ID: u.ID, Email: u.Email, Username: u.Username, Role: u.Role, Tier: u.Tier,
		Preferences: u.Preferences, CreatedAt: u.CreatedAt}
	if len(j.Preferences) == 0 {
		j.Preferences = json.RawMessage("{}")
	}
	if !u.LastLoginAt.IsZero() {
		t := u.LastLoginAt
		j.LastLoginAt = &t
	}
	return j
}
