package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/streamd/streamd/store"
)

// SetTier changes a user's subscription tier. When the new tier may play
// less than the old one (Config.TierMaxHeight), the user's sessions end at
// once, so that no access token — and no signed playback URL issued from
// one from now on — carries the old tier. Otherwise (an upgrade, or a tier
// with the same cap) the sessions stay and the user's next refresh, at most
// one access-token lifetime away, carries the new tier. ended reports
// which happened.
func (s *Service) SetTier(ctx context.Context, id string, tier store.Tier) (u store.User, ended bool, err error) {
	if !tier.Valid() {
		return store.User{}, false, errorf(CodeInvalidArgument, "tier: want free, premium or family")
	}
	old, err := s.users.GetUser(ctx, id)
	if err != nil {
		return store.User{}, false, s.storeErr(err)
	}
	if old.Tier == tier {
		return old, false, nil
	}
	u, err = s.users.UpdateUser(ctx, id, store.UserUpdate{Tier: &tier})
	if err != nil {
		return store.User{}, false, s.storeErr(err)
	}
	ended = s.lowers(old.Tier, tier)
	s.log.Info("tier changed", "user", id, "from", old.Tier, "to", tier, "sessions_ended", ended)
	if ended {
		return u, true, s.LogoutAll(ctx, id)
	}
	return u, false, nil
}

// lowers reports whether moving from tier a to tier b lowers the tallest
// rendition the user may play (0: no cap).
func (s *Service) lowers(a, b store.Tier) bool {
	ha, hb := s.cfg.TierMaxHeight[a], s.cfg.TierMaxHeight[b]
	return hb != 0 && (ha == 0 || hb < ha)
}

// Billing webhook: a billing system tells streamd a user's tier. The
// request body is JSON,
//
//	{"user_id": "…" | "email": "…", "tier": "premium", "timestamp": 1767225600}
//
// signed with the shared secret (Config.BillingWebhookSecret) in the header
// X-Streamd-Signature: sha256=<hex HMAC-SHA256 of the exact body>. The
// timestamp (Unix seconds) must be within WebhookMaxSkew of now, and one
// signed body is applied once: a captured request cannot be replayed later
// to undo a newer change.
const (
	WebhookSignatureHeader = "X-Streamd-Signature"
	WebhookMaxSkew         = 5 * time.Minute
	// MaxWebhookBody bounds what is read (and hashed) of a webhook request.
	MaxWebhookBody = 64 << 10
)

// WebhookResult is what a billing webhook changed.
type WebhookResult struct {
	User          store.User
	SessionsEnded bool
}

func errBadSignature() *Error {
	return errorf(CodeUnauthenticated, "missing or wrong "+WebhookSignatureHeader+" (want sha256=<hex HMAC-SHA256 of the body>)")
}

// SignWebhook returns the X-Streamd-Signature value for body (for billing
// integrations and tests).
func SignWebhook(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// BillingWebhook checks a webhook request's signature before anything
// else, then applies the tier change it names. The secret is never logged
// or echoed; neither is the signature.
func (s *Service) BillingWebhook(ctx context.Context, signature string, body []byte) (WebhookResult, error) {
	if s.cfg.BillingWebhookSecret == "" {
		return WebhookResult{}, errorf(CodeNotFound, "the billing webhook is off (set auth.billing_webhook_secret)")
	}
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(signature), "sha256=")
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil || len(got) != sha256.Size {
		return WebhookResult{}, errBadSignature()
	}
	m := hmac.New(sha256.New, []byte(s.cfg.BillingWebhookSecret))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) { // constant time
		s.log.Warn("billing webhook with a wrong signature refused")
		return WebhookResult{}, errBadSignature()
	}
	var in struct {
		UserID    string     `json:"user_id"`
		Email     string     `json:"email"`
		Tier      store.Tier `json:"tier"`
		Timestamp int64      `json:"timestamp"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return WebhookResult{}, errorf(CodeInvalidArgument, "invalid JSON: want {user_id or email, tier, timestamp}")
	}
	if (in.UserID == "") == (in.Email == "") {
		return WebhookResult{}, errorf(CodeInvalidArgument, "give user_id or email, one of them")
	}
	if !in.Tier.Valid() {
		return WebhookResult{}, errorf(CodeInvalidArgument, "tier: want free, premium or family")
	}
	if d := s.now().Sub(time.Unix(in.Timestamp, 0)); d > WebhookMaxSkew || d < -WebhookMaxSkew {
		return WebhookResult{}, errorf(CodeInvalidArgument, "timestamp: not within %s of the server's clock", WebhookMaxSkew)
	}
	// One signed body, one change: INCR is atomic in both backends. The key
	// outlives the timestamp window, after which the body is refused anyway.
	n, err := s.sessions.Incr(ctx, "auth:billing_seen:"+hex.EncodeToString(got), 2*WebhookMaxSkew+time.Minute)
	if err != nil {
		return WebhookResult{}, s.storeErr(err)
	}
	if n > 1 {
		return WebhookResult{}, errorf(CodeConflict, "this webhook request was already applied")
	}
	id := in.UserID
	if in.Email != "" {
		u, err := s.users.UserByLogin(ctx, in.Email)
		if err != nil || !strings.EqualFold(u.Email, in.Email) {
			if err == nil || isNotFound(err) {
				return WebhookResult{}, errorf(CodeNotFound, "no user with that email")
			}
			return WebhookResult{}, s.storeErr(err)
		}
		id = u.ID
	}
	u, ended, err := s.SetTier(ctx, id, in.Tier)
	if err != nil {
		if ErrorCode(err) == CodeNotFound {
			return WebhookResult{}, errorf(CodeNotFound, "no such user")
		}
		return WebhookResult{}, err
	}
	s.log.Info("billing webhook applied", "user", u.ID, "tier", u.Tier)
	return WebhookResult{User: u, SessionsEnded: ended}, nil
}

// MaxProfileName is the longest profile name, in characters.
const MaxProfileName = 64

// CheckProfileName accepts 1–64 characters of any script, without control
// characters and not blank.
func CheckProfileName(name string) error {
	bad := !utf8.ValidString(name) || strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > MaxProfileName
	for _, r := range name {
		if unicode.IsControl(r) {
			bad = true
		}
	}
	if bad {
		return errorf(CodeInvalidArgument, "name: 1 to %d characters, no control characters", MaxProfileName)
	}
	return nil
}

// CheckPreferences is the rule of a preferences document, a user's or a
// profile's: a JSON object of at most MaxPreferences bytes, valid UTF-8
// without NUL.
func CheckPreferences(prefs json.RawMessage) error {
	if len(prefs) > MaxPreferences {
		return errorf(CodeInvalidArgument, "preferences: at most %d bytes", MaxPreferences)
	}
	var obj map[string]any
	if json.Unmarshal(prefs, &obj) != nil || obj == nil || !store.ValidText(string(prefs)) {
		return errorf(CodeInvalidArgument, "preferences: must be a JSON object")
	}
	return nil
}

// CreateProfile adds a viewer profile to a family account (the tier as
// stored now, not as the caller's token says). At most
// Config.FamilyMaxProfiles; names are unique within the account. prefs are
// the profile's own preferences (nil: {}).
func (s *Service) CreateProfile(ctx context.Context, userID, name string, prefs json.RawMessage) (store.Profile, error) {
	if err := CheckProfileName(name); err != nil {
		return store.Profile{}, err
	}
	if prefs != nil {
		if err := CheckPreferences(prefs); err != nil {
			return store.Profile{}, err
		}
	}
	u, err := s.users.GetUser(ctx, userID)
	if err != nil {
		return store.Profile{}, s.storeErr(err)
	}
	if u.Tier != store.TierFamily {
		return store.Profile{}, errorf(CodePermissionDenied, "profiles come with the family tier")
	}
	p, err := s.users.CreateProfile(ctx, store.Profile{UserID: userID, Name: name, Preferences: prefs}, s.cfg.FamilyMaxProfiles)
	switch {
	case errors.Is(err, store.ErrLimit):
		return store.Profile{}, &Error{Code: CodeConflict, Message: "the account has the most profiles the family tier allows", Err: err}
	case errors.Is(err, store.ErrConflict):
		return store.Profile{}, errProfileName(err)
	case err != nil:
		return store.Profile{}, s.storeErr(err)
	}
	s.log.Info("profile created", "user", userID, "profile", p.ID)
	return p, nil
}

func errProfileName(err error) *Error {
	return &Error{Code: CodeConflict, Message: "the account has a profile of that name", Err: err}
}

// ListProfiles returns the account's profiles (kept, and listed, after a
// change away from the family tier; only new ones need the tier).
func (s *Service) ListProfiles(ctx context.Context, userID string) ([]store.Profile, error) {
	ps, err := s.users.ListProfiles(ctx, userID)
	return ps, s.storeErr(err)
}

// GetProfile returns one of the account's profiles; another account's
// profile is not found.
func (s *Service) GetProfile(ctx context.Context, userID, profileID string) (store.Profile, error) {
	p, err := s.users.GetProfile(ctx, userID, profileID)
	return p, s.storeErr(err)
}

// UpdateViewerProfile renames one of the account's profiles or replaces
// its preferences (nil: unchanged), with the rules of CreateProfile. Like
// listing and removing, it works after the account leaves the family tier.
func (s *Service) UpdateViewerProfile(ctx context.Context, userID, profileID string, name *string, prefs json.RawMessage) (store.Profile, error) {
	if name != nil {
		if err := CheckProfileName(*name); err != nil {
			return store.Profile{}, err
		}
	}
	if prefs != nil {
		if err := CheckPreferences(prefs); err != nil {
			return store.Profile{}, err
		}
	}
	p, err := s.users.UpdateViewerProfile(ctx, userID, profileID, store.ViewerProfileUpdate{Name: name, Preferences: prefs})
	if errors.Is(err, store.ErrConflict) {
		return store.Profile{}, errProfileName(err)
	}
	if err != nil {
		return store.Profile{}, s.storeErr(err)
	}
	s.log.Info("profile updated", "user", userID, "profile", p.ID)
	return p, nil
}

// DeleteProfile removes one of the account's profiles.
func (s *Service) DeleteProfile(ctx context.Context, userID, profileID string) error {
	return s.storeErr(s.users.DeleteProfile(ctx, userID, profileID))
}

// FamilyMaxProfiles is the configured limit.
func (s *Service) FamilyMaxProfiles() int { return s.cfg.FamilyMaxProfiles }
