package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/streamd/streamd/store"
)

// UserStore is what Service needs of the metadata store.
type UserStore interface {
	CreateUser(ctx context.Context, u store.User) (store.User, error)
	GetUser(ctx context.Context, id string) (store.User, error)
	UserByLogin(ctx context.Context, login string) (store.User, error)
	RecordLogin(ctx context.Context, id string, at time.Time) error
	store.Users
}

// Config tunes a Service; the zero value (with a key) is a sane default.
type Config struct {
	Tokens TokenConfig
	// RefreshTTL is how long a refresh session lives without being used
	// (default 30 days); each refresh extends it.
	RefreshTTL time.Duration
	// MFAChallengeTTL is how long a login that waits for its second
	// factor stays open (default 5 min); MFAAttempts codes may be tried in
	// it (default 5).
	MFAChallengeTTL time.Duration
	MFAAttempts     int
	// TOTPIssuer names the service in authenticator apps (default "streamd").
	TOTPIssuer string
	Lockout    LockoutConfig
	// TierMaxHeight is the tallest rendition each tier may play (0 or
	// missing: no cap), as the origin applies it: SetTier ends the
	// sessions of a user whose new tier may play less.
	TierMaxHeight map[store.Tier]int
	// FamilyMaxProfiles is how many profiles a family account may hold
	// (default 5).
	FamilyMaxProfiles int
	// BillingWebhookSecret authenticates the billing webhook (HMAC-SHA256
	// of the body); empty turns the webhook off.
	BillingWebhookSecret string
}

// Service is users, passwords, sessions, tokens and MFA. Safe for
// concurrent use; all state is in the UserStore and store.Sessions, so
// several processes may serve the same users.
type Service struct {
	users    UserStore
	sessions store.Sessions
	hasher   *Hasher
	tokens   *Tokens
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
}

// NewService assembles a Service. log may be nil.
func NewService(users UserStore, sessions store.Sessions, hasher *Hasher, tokens *Tokens, cfg Config, log *slog.Logger) *Service {
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 30 * 24 * time.Hour
	}
	if cfg.MFAChallengeTTL <= 0 {
		cfg.MFAChallengeTTL = 5 * time.Minute
	}
	if cfg.MFAAttempts <= 0 {
		cfg.MFAAttempts = 5
	}
	if cfg.TOTPIssuer == "" {
		cfg.TOTPIssuer = "streamd"
	}
	cfg.Lockout.defaults()
	if cfg.FamilyMaxProfiles <= 0 {
		cfg.FamilyMaxProfiles = 5
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := tokens.cfg.Now
	return &Service{users: users, sessions: sessions, hasher: hasher, tokens: tokens, cfg: cfg,
		log: log.With("component", "auth"), now: now}
}

// storeErr maps store errors onto codes: the edge answers 503 for an
// outage and 500 (logged) for anything unexpected.
func (s *Service) storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Code: CodeUnavailable, Message: "storage is unavailable; try again later", Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, store.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: "not found", Err: err}
	case errors.Is(err, store.ErrConflict):
		return &Error{Code: CodeConflict, Message: "already exists", Err: err}
	case errors.Is(err, store.ErrInvalid):
		// Validation in this package comes first; what reaches here is
		// a store limit, whose message names only the field.
		return &Error{Code: CodeInvalidArgument, Message: "a value is not acceptable", Err: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// randomToken returns 256 random bits, URL-safe: refresh tokens, MFA
// challenges.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenKey is how an opaque token is found in the sessions store: by its
// SHA-256, so that a dump of Redis gives nobody a usable token.
func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// NewUser is an account to create.
type NewUser struct {
	Email, Username, Password string
	Role                      store.Role // default viewer
}

// CreateUser checks the policy, hashes the password and stores the user.
// Register (the public sign-up) always creates viewers; this is also what
// a `streamd user add --role admin` command calls.
func (s *Service) CreateUser(ctx context.Context, n NewUser) (store.User, error) {
	if err := errors.Join(CheckEmail(n.Email), CheckUsername(n.Username)); err != nil {
		return store.User{}, firstError(err)
	}
	if err := CheckPassword(n.Password, n.Email, n.Username); err != nil {
		return store.User{}, err
	}
	if n.Role == "" {
		n.Role = store.RoleViewer
	}
	if !n.Role.Valid() {
		return store.User{}, errorf(CodeInvalidArgument, "role: want admin, publisher or viewer")
	}
	h, err := s.hasher.Hash(ctx, n.Password)
	if err != nil {
		return store.User{}, err
	}
	u, err := s.users.CreateUser(ctx, store.User{Email: n.Email, Username: n.Username, PasswordHash: h, Role: n.Role})
	if errors.Is(err, store.ErrConflict) {
		return store.User{}, &Error{Code: CodeConflict, Message: "email or username already taken", Err: err}
	}
	if err != nil {
		return store.User{}, s.storeErr(err)
	}
	s.log.Info("user created", "user", u.ID, "role", u.Role)
	return u, nil
}

// firstError returns the first *Error joined in err.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
}

// Register creates a viewer account (public sign-up).
func (s *Service) Register(ctx context.Context, email, username, password string) (store.User, error) {
	return s.CreateUser(ctx, NewUser{Email: email, Username: username, Password: password, Role: store.RoleViewer})
}

// TokenPair is what a successful login or refresh returns.
type TokenPair struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    time.Duration // of the access token
}

// LoginResult is either tokens or, for an account with MFA, a challenge
// to answer with VerifyMFA.
type LoginResult struct {
	Tokens       *TokenPair
	MFAToken     string
	MFAExpiresIn time.Duration
}

// Login checks a password. An account is locked (CodeRateLimited with
// RetryAfter) after Lockout.MaxFailures wrong passwords or MFA codes; a
// locked account does not even have its password checked, so guessing
// stops.
func (s *Service) Login(ctx context.Context, login, password string) (LoginResult, error) {
	if login == "" || password == "" || len(login) > 320 || len(password) > MaxPasswordLen {
		return LoginResult{}, errBadLogin()
	}
	u, err := s.users.UserByLogin(ctx, login)
	known := err == nil
	if err != nil && !isNotFound(err) {
		return LoginResult{}, s.storeErr(err)
	}
	// Unknown logins are locked out too (by a hash of the login), so the
	// lockout does not reveal which accounts exist.
	lockKey := "login:" + tokenKey(strings.ToLower(login))
	if known {
		lockKey = userLockKey(u.ID)
	}
	if left, err := s.locked(ctx, lockKey); err != nil {
		return LoginResult{}, err
	} else if left > 0 {
		return LoginResult{}, &Error{Code: CodeRateLimited, Message: "too many failed logins; try again later", RetryAfter: left}
	}
	// Accounts created by an OIDC login have no password: they are
	// checked against the dummy hash too, so they take as long to refuse.
	hasPassword := known && u.PasswordHash != ""
	hash := s.hasher.dummyHash()
	if hasPassword {
		hash = u.PasswordHash
	}
	ok, rehash, err := s.hasher.Verify(ctx, hash, password)
	if err != nil && !errors.Is(err, ErrBadHash) {
		return LoginResult{}, err
	}
	if errors.Is(err, ErrBadHash) && hasPassword {
		s.log.Error("stored password hash is unreadable", "user", u.ID)
	}
	if !ok || !hasPassword {
		if err := s.failed(ctx, lockKey); err != nil {
			return LoginResult{}, err
		}
		s.log.Info("login failed", "user", u.ID, "known", known)
		return LoginResult{}, errBadLogin()
	}
	if rehash {
		if h, err := s.hasher.Hash(ctx, password); err == nil {
			if _, err := s.users.UpdateUser(ctx, u.ID, store.UserUpdate{PasswordHash: &h}); err != nil {
				s.log.Warn("could not store the rehashed password", "user", u.ID, "err", err)
			}
		}
	}
	res, err := s.finishLogin(ctx, u)
	if err != nil {
		return LoginResult{}, err
	}
	// Failures are forgiven once the whole login succeeded: for an account
	// with MFA that is VerifyMFA's success, else knowing the password
	// would reset the count of wrong codes at every new challenge.
	if res.Tokens != nil {
		if err := s.sessions.Delete(ctx, "auth:fail:"+lockKey); err != nil {
			return LoginResult{}, s.storeErr(err)
		}
	}
	return res, nil
}

// finishLogin is the end of every login whose first factor succeeded
// (password, or an OIDC provider): a second-factor challenge when the
// account has MFA on, tokens otherwise.
func (s *Service) finishLogin(ctx context.Context, u store.User) (LoginResult, error) {
	m, err := s.users.GetMFA(ctx, u.ID)
	if err != nil && !isNotFound(err) {
		return LoginResult{}, s.storeErr(err)
	}
	if err == nil && !m.ConfirmedAt.IsZero() {
		tok := randomToken()
		if err := s.sessions.Set(ctx, "auth:mfa_challenge:"+tokenKey(tok), []byte(u.ID), s.cfg.MFAChallengeTTL); err != nil {
			return LoginResult{}, s.storeErr(err)
		}
		s.log.Info("login waits for second factor", "user", u.ID)
		return LoginResult{MFAToken: tok, MFAExpiresIn: s.cfg.MFAChallengeTTL}, nil
	}
	pair, err := s.startSession(ctx, u)
	if err != nil {
		return LoginResult{}, err
	}
	return LoginResult{Tokens: &pair}, nil
}

// session is the value of auth:session:{sid}: the refresh family.
type session struct {
	UserID  string    `json:"uid"`
	Created time.Time `json:"created"`
}

// refresh is the value of auth:refresh:{hash}: which family a refresh
// token belongs to. Rotated tokens keep theirs until they expire, so that
// their reuse is recognised.
type refresh struct {
	UserID    string `json:"uid"`
	SessionID string `json:"sid"`
}

func userSessionsKey(uid string) string { return "auth:user_sessions:" + uid }

// startSession opens a refresh family for u and issues its first tokens.
func (s *Service) startSession(ctx context.Context, u store.User) (TokenPair, error) {
	sid := store.NewID()
	b, _ := json.Marshal(session{UserID: u.ID, Created: s.now().UTC()})
	if err := s.sessions.Set(ctx, "auth:session:"+sid, b, s.cfg.RefreshTTL); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.sessions.SAdd(ctx, userSessionsKey(u.ID), sid); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.sessions.Expire(ctx, userSessionsKey(u.ID), s.cfg.RefreshTTL); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.users.RecordLogin(ctx, u.ID, s.now()); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	s.log.Info("logged in", "user", u.ID, "session", sid)
	return s.issue(ctx, u, sid)
}

func (s *Service) issue(ctx context.Context, u store.User, sid string) (TokenPair, error) {
	access, err := s.tokens.Issue(Principal{UserID: u.ID, SessionID: sid, Role: u.Role, Tier: u.Tier})
	if err != nil {
		return TokenPair{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	rt := randomToken()
	b, _ := json.Marshal(refresh{UserID: u.ID, SessionID: sid})
	if err := s.sessions.Set(ctx, "auth:refresh:"+tokenKey(rt), b, s.cfg.RefreshTTL); err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	return TokenPair{AccessToken: access, RefreshToken: rt, ExpiresIn: s.tokens.TTL()}, nil
}

func errBadRefresh() *Error {
	return errorf(CodeUnauthenticated, "invalid, expired or revoked refresh token")
}

// Refresh trades a refresh token for a new pair. The old token stops
// working; presenting it again (a stolen copy, or the thief's copy after
// the user refreshed) revokes the whole session, so both parties must log
// in again — the legitimate one can, the thief cannot.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (TokenPair, error) {
	if refreshToken == "" || len(refreshToken) > 256 {
		return TokenPair{}, errBadRefresh()
	}
	h := tokenKey(refreshToken)
	b, err := s.sessions.Get(ctx, "auth:refresh:"+h)
	if isNotFound(err) {
		return TokenPair{}, errBadRefresh()
	}
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	var r refresh
	if err := json.Unmarshal(b, &r); err != nil {
		return TokenPair{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if _, err := s.liveSession(ctx, r.SessionID, r.UserID); err != nil {
		return TokenPair{}, err
	}
	// INCR is atomic in both backends: of two uses of one token, exactly
	// one sees 1.
	n, err := s.sessions.Incr(ctx, "auth:refresh_used:"+h, s.cfg.RefreshTTL)
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if n > 1 {
		s.log.Warn("rotated refresh token used again: session revoked", "user", r.UserID, "session", r.SessionID)
		if err := s.revoke(ctx, r.UserID, r.SessionID); err != nil {
			return TokenPair{}, err
		}
		return TokenPair{}, errBadRefresh()
	}
	u, err := s.users.GetUser(ctx, r.UserID)
	if isNotFound(err) {
		return TokenPair{}, errBadRefresh()
	}
	if err != nil {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.sessions.Expire(ctx, "auth:session:"+r.SessionID, s.cfg.RefreshTTL); err != nil && !isNotFound(err) {
		return TokenPair{}, s.storeErr(err)
	}
	if err := s.sessions.Expire(ctx, userSessionsKey(u.ID), s.cfg.RefreshTTL); err != nil && !isNotFound(err) {
		return TokenPair{}, s.storeErr(err)
	}
	return s.issue(ctx, u, r.SessionID)
}

// liveSession checks that the refresh family sid of uid is not revoked.
func (s *Service) liveSession(ctx context.Context, sid, uid string) (session, error) {
	b, err := s.sessions.Get(ctx, "auth:session:"+sid)
	if isNotFound(err) {
		return session{}, errorf(CodeUnauthenticated, "session ended; log in again")
	}
	if err != nil {
		return session{}, s.storeErr(err)
	}
	var ss session
	if err := json.Unmarshal(b, &ss); err != nil || ss.UserID != uid {
		return session{}, errorf(CodeUnauthenticated, "session ended; log in again")
	}
	return ss, nil
}

func (s *Service) revoke(ctx context.Context, uid string, sids ...string) error {
	keys := make([]string, len(sids))
	for i, sid := range sids {
		keys[i] = "auth:session:" + sid
	}
	if err := s.sessions.Delete(ctx, keys...); err != nil {
		return s.storeErr(err)
	}
	return s.storeErr(s.sessions.SRem(ctx, userSessionsKey(uid), sids...))
}

// Authenticate checks an access token and that its session is still open,
// so that logout takes effect at once rather than when the token expires
// (one sessions-store read per request).
func (s *Service) Authenticate(ctx context.Context, accessToken string) (Principal, error) {
	p, err := s.tokens.Verify(accessToken)
	if err != nil {
		return Principal{}, err
	}
	if _, err := s.liveSession(ctx, p.SessionID, p.UserID); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// Logout ends the session p acts in.
func (s *Service) Logout(ctx context.Context, p Principal) error {
	s.log.Info("logged out", "user", p.UserID, "session", p.SessionID)
	return s.revoke(ctx, p.UserID, p.SessionID)
}

// LogoutAll ends every session of the user and revokes the playback URLs
// issued to them.
func (s *Service) LogoutAll(ctx context.Context, userID string) error {
	sids, err := s.sessions.SMembers(ctx, userSessionsKey(userID))
	if err != nil {
		return s.storeErr(err)
	}
	keys := []string{userSessionsKey(userID)}
	for _, sid := range sids {
		keys = append(keys, "auth:session:"+sid)
	}
	s.log.Info("logged out everywhere", "user", userID, "sessions", len(sids))
	if err := s.sessions.Delete(ctx, keys...); err != nil {
		return s.storeErr(err)
	}
	// Everywhere includes the players: their signed URLs stop too.
	return s.revokePlayback(ctx, userID)
}

// GetUser returns a user.
func (s *Service) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := s.users.GetUser(ctx, id)
	return u, s.storeErr(err)
}

// ProfileUpdate is what users may change about themselves.
type ProfileUpdate struct {
	Email       *string
	Username    *string
	Preferences *json.RawMessage
}

// MaxPreferences bounds the preferences document: it travels with every
// profile read.
const MaxPreferences = 64 << 10

// UpdateProfile changes the user's own email, username or preferences.
func (s *Service) UpdateProfile(ctx context.Context, id string, p ProfileUpdate) (store.User, error) {
	if p.Email != nil {
		if err := CheckEmail(*p.Email); err != nil {
			return store.User{}, err
		}
	}
	if p.Username != nil {
		if err := CheckUsername(*p.Username); err != nil {
			return store.User{}, err
		}
	}
	if p.Preferences != nil {
		if err := CheckPreferences(*p.Preferences); err != nil {
			return store.User{}, err
		}
	}
	u, err := s.users.UpdateUser(ctx, id, store.UserUpdate{Email: p.Email, Username: p.Username, Preferences: p.Preferences})
	if errors.Is(err, store.ErrConflict) {
		return store.User{}, &Error{Code: CodeConflict, Message: "email or username already taken", Err: err}
	}
	return u, s.storeErr(err)
}

// ListUsers pages through users by id.
func (s *Service) ListUsers(ctx context.Context, after string, limit int) ([]store.User, error) {
	if limit < 0 || limit > 1000 {
		return nil, errorf(CodeInvalidArgument, "limit: want 1..1000")
	}
	us, err := s.users.ListUsers(ctx, after, limit)
	return us, s.storeErr(err)
}

// SetRole changes a user's role and ends the user's sessions, so that no
// token with the old role outlives the change.
func (s *Service) SetRole(ctx context.Context, id string, role store.Role) (store.User, error) {
	if !role.Valid() {
		return store.User{}, errorf(CodeInvalidArgument, "role: want admin, publisher or viewer")
	}
	u, err := s.users.UpdateUser(ctx, id, store.UserUpdate{Role: &role})
	if err != nil {
		return store.User{}, s.storeErr(err)
	}
	s.log.Info("role changed", "user", id, "role", role)
	return u, s.LogoutAll(ctx, id)
}

// RecentLogin is how fresh a session must be to set a first password on
// an account that has none (one created by an OIDC login): a stolen
// access token must not be enough to give the account a password the
// thief knows.
const RecentLogin = 15 * time.Minute

// ChangePassword sets p's user's password. An account with a password
// must give it (current); a wrong one counts towards the login lockout.
// An account without one (OIDC only) may set one from a session opened
// within RecentLogin. Every other session of the user ends, so a thief
// holding an old refresh token is out; the caller's own session stays.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, next string) error {
	u, err := s.users.GetUser(ctx, p.UserID)
	if err != nil {
		return s.storeErr(err)
	}
	if err := CheckPassword(next, u.Email, u.Username); err != nil {
		return err
	}
	lockKey := userLockKey(u.ID)
	if u.PasswordHash != "" {
		if left, err := s.locked(ctx, lockKey); err != nil {
			return err
		} else if left > 0 {
			return &Error{Code: CodeRateLimited, Message: "too many wrong passwords; try again later", RetryAfter: left}
		}
		if current == "" || len(current) > MaxPasswordLen {
			return errorf(CodeInvalidArgument, "current_password: required to change the password")
		}
		ok, _, err := s.hasher.Verify(ctx, u.PasswordHash, current)
		if err != nil && !errors.Is(err, ErrBadHash) {
			return err
		}
		if !ok {
			if err := s.failed(ctx, lockKey); err != nil {
				return err
			}
			s.log.Info("password change refused: wrong current password", "user", u.ID)
			return errorf(CodePermissionDenied, "current password is wrong")
		}
	} else {
		ss, err := s.liveSession(ctx, p.SessionID, p.UserID)
		if err != nil {
			return err
		}
		if s.now().Sub(ss.Created) > RecentLogin {
			return errorf(CodePermissionDenied, "log in again (through your provider), then set a password within 15 minutes")
		}
	}
	h, err := s.hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	if _, err := s.users.UpdateUser(ctx, u.ID, store.UserUpdate{PasswordHash: &h}); err != nil {
		return s.storeErr(err)
	}
	sids, err := s.sessions.SMembers(ctx, userSessionsKey(u.ID))
	if err != nil {
		return s.storeErr(err)
	}
	others := slices.DeleteFunc(sids, func(sid string) bool { return sid == p.SessionID })
	if len(others) > 0 {
		if err := s.revoke(ctx, u.ID, others...); err != nil {
			return err
		}
	}
	// Whoever knew the old password may hold playback URLs too.
	if err := s.revokePlayback(ctx, u.ID); err != nil {
		return err
	}
	s.log.Info("password changed", "user", u.ID, "first_password", u.PasswordHash == "", "other_sessions_ended", len(others))
	return nil
}
