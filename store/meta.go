package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrConflict is returned (wrapped) when a write would break a uniqueness
// rule: a channel name, a stream key, a user's email or username taken.
var ErrConflict = errors.New("already exists")

// ErrInvalid is returned (wrapped) for values the schema refuses: an
// unknown role or tier, an empty name, preferences that are not JSON.
var ErrInvalid = errors.New("invalid value")

// ErrLimit is returned (wrapped) when a write would exceed a count limit
// the caller gave (a family account's profiles).
var ErrLimit = errors.New("limit reached")

// ErrUnavailable is returned (wrapped, together with the backend's own
// error) when the backend cannot be reached or does not answer: connection
// refused or reset, server shutting down, timeout, disk errors. Callers on
// the HTTP edge answer 503 for it; it is worth retrying later.
var ErrUnavailable = errors.New("storage backend unavailable")

// Channel is a live channel and the fingerprint of its stream key.
//
// The plain stream key is never stored: only its SHA-256 (for lookups) and
// a short prefix (so an operator can tell keys apart in a list). A leaked
// database or backup then gives nobody publish rights. Keys are random and
// long, so an unsalted hash cannot be brute-forced and can be looked up by
// an index. The one place that needs the plain key — printing it for OBS —
// gets it from whoever generated it (auth's 0600 key file, or the result of
// CreateChannel/RotateStreamKey's caller), not from the database.
type Channel struct {
	Name        string // unique; the {channel} of /live/{channel}/
	Title       string
	Description string
	// KeyPrefix is the first characters of the stream key (at most 4, and
	// at most a quarter of the key): not enough to guess it.
	KeyPrefix string
	// OwnerID is the id of the user who manages the channel; empty for
	// channels nobody owns (those from the config file): admins manage
	// them.
	OwnerID string
	// FromConfig marks a channel synced from the config file: the file
	// is the source of truth for its existence and its key.
	FromConfig bool
	// Visibility: protected channels play only through signed URLs
	// (GET /api/streaming/{name}); empty means public.
	Visibility   Visibility
	KeyRotatedAt time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// ChannelUpdate changes a channel's editable fields; nil leaves one as is.
type ChannelUpdate struct {
	Title       *string
	Description *string
	OwnerID     *string
	FromConfig  *bool
	Visibility  *Visibility
}

// Role says what a user may do.
type Role string

// Roles.
const (
	RoleAdmin     Role = "admin"
	RolePublisher Role = "publisher"
	RoleViewer    Role = "viewer"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RolePublisher || r == RoleViewer }

// Tier is a user's subscription level.
type Tier string

// Tiers.
const (
	TierFree    Tier = "free"
	TierPremium Tier = "premium"
	TierFamily  Tier = "family"
)

// Valid reports whether t is a known tier.
func (t Tier) Valid() bool { return t == TierFree || t == TierPremium || t == TierFamily }

// User is an account. Email and username are unique, compared without
// regard to ASCII case.
type User struct {
	ID           string // set by CreateUser when empty
	Email        string
	Username     string
	PasswordHash string // an encoded hash (e.g. argon2id/bcrypt string); never a password
	Role         Role
	Tier         Tier
	Preferences  json.RawMessage // a JSON object; empty means {}
	CreatedAt    time.Time       // set by CreateUser
	LastLoginAt  time.Time       // zero: never logged in
}

// Visibility says who may watch a content item or a channel.
type Visibility string

// Visibilities.
const (
	VisibilityPublic    Visibility = "public"
	VisibilityProtected Visibility = "protected" // signed URL or a logged-in user
)

// Valid reports whether v is a known visibility.
func (v Visibility) Valid() bool { return v == VisibilityPublic || v == VisibilityProtected }

// EncodingStatus is where a content item is in the VOD pipeline.
type EncodingStatus string

// Encoding statuses. An uploaded master goes uploaded → queued →
// processing (with a percent) → ready or failed (with a reason). Pending
// is an item created without a master (metadata only); running is the
// older name of processing, still accepted.
const (
	EncodingPending    EncodingStatus = "pending"
	EncodingUploaded   EncodingStatus = "uploaded"
	EncodingQueued     EncodingStatus = "queued"
	EncodingProcessing EncodingStatus = "processing"
	EncodingRunning    EncodingStatus = "running"
	EncodingReady      EncodingStatus = "ready"
	EncodingFailed     EncodingStatus = "failed"
)

// Valid reports whether s is a known status.
func (s EncodingStatus) Valid() bool {
	switch s {
	case EncodingPending, EncodingUploaded, EncodingQueued, EncodingProcessing, EncodingRunning, EncodingReady, EncodingFailed:
		return true
	}
	return false
}

// Encoding is a content item's place in the VOD pipeline, as
// UpdateEncoding writes it.
type Encoding struct {
	Status EncodingStatus
	// Progress is the percent done (0–100) while processing; 100 when
	// ready.
	Progress float64
	// Reason is the one line saying why it failed; empty otherwise.
	Reason string
}

// MaxEncodingReason bounds Encoding.Reason (longer ones are cut).
const MaxEncodingReason = 1024

// Content is a VOD asset (the {asset} of /vod/{asset}/).
type Content struct {
	ID             string // set by CreateContent when empty
	Title          string
	Description    string
	Genre          string
	Visibility     Visibility     // empty means public
	EncodingStatus EncodingStatus // empty means pending
	OwnerID        string         // the user who created it; may be empty
	CreatedAt      time.Time      // set by CreateContent
	// EncodingProgress is the percent done (0–100) while processing.
	EncodingProgress float64
	// EncodingReason is the one-line reason of a failed encoding.
	EncodingReason string
	// MasterKey is the object key of the uploaded master
	// (masters/{upload}/{filename}); empty for items without one.
	MasterKey string
}

// ContentUpdate changes a content item's editable fields; nil leaves one
// as is.
type ContentUpdate struct {
	Title       *string
	Description *string
	Genre       *string
	Visibility  *Visibility
}

// ContentQuery selects a page of the catalog, newest first (created_at,
// then id, both descending).
type ContentQuery struct {
	// Genre keeps items of exactly this genre; empty keeps all.
	Genre string
	// Text keeps items whose title or description contains it, ignoring
	// case (ASCII case in every backend; PostgreSQL also folds other
	// letters as its locale says). Matched literally: % and _ are not
	// wildcards. Empty keeps all.
	Text string
	// IncludeProtected also returns protected items; otherwise public only.
	IncludeProtected bool
	// After is the id of the last item of the previous page (keyset
	// paging: stable while items are added); empty starts at the newest.
	// An id that does not exist is ErrInvalid.
	After string
	// Limit is 1..1000; 0 means 100.
	Limit int
}

// Meta is the metadata store: channels and stream keys, users, content.
// Methods return errors wrapping ErrNotFound, ErrConflict, ErrInvalid or
// ErrUnavailable where those apply. Times are returned in UTC, truncated
// to microseconds (what both SQL backends keep).
type Meta interface {
	// CreateChannel stores a new channel with the given stream key (only
	// its hash and prefix are kept). Name or key in use: ErrConflict.
	CreateChannel(ctx context.Context, ch Channel, streamKey string) (Channel, error)
	GetChannel(ctx context.Context, name string) (Channel, error)
	// ListChannels returns every channel, sorted by name.
	ListChannels(ctx context.Context) ([]Channel, error)
	UpdateChannel(ctx context.Context, name string, u ChannelUpdate) (Channel, error)
	// RotateStreamKey replaces the channel's key; the old one stops working.
	RotateStreamKey(ctx context.Context, name, newKey string) (Channel, error)
	DeleteChannel(ctx context.Context, name string) error
	// ChannelByStreamKey finds the channel a publisher's key opens.
	ChannelByStreamKey(ctx context.Context, streamKey string) (Channel, error)
	// ChannelsByOwner returns the channels whose OwnerID is ownerID,
	// sorted by name (empty non-nil when none).
	ChannelsByOwner(ctx context.Context, ownerID string) ([]Channel, error)

	CreateUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, id string) (User, error)
	// UserByLogin finds a user by email or username (ASCII case ignored).
	UserByLogin(ctx context.Context, login string) (User, error)
	// RecordLogin sets the user's LastLoginAt.
	RecordLogin(ctx context.Context, id string, at time.Time) error

	CreateContent(ctx context.Context, c Content) (Content, error)
	GetContent(ctx context.Context, id string) (Content, error)
	// UpdateContent changes an item's editable fields (nil: unchanged)
	// and returns the item as stored.
	UpdateContent(ctx context.Context, id string, u ContentUpdate) (Content, error)
	SetEncodingStatus(ctx context.Context, id string, s EncodingStatus) error
	// UpdateEncoding sets the item's status, progress and reason at once
	// (SetEncodingStatus resets progress and reason). Progress outside
	// 0–100 is ErrInvalid; a reason is cut to MaxEncodingReason bytes.
	UpdateEncoding(ctx context.Context, id string, e Encoding) error
	// ListContent returns one page of the catalog (see ContentQuery).
	ListContent(ctx context.Context, q ContentQuery) ([]Content, error)

	Users

	// Ping checks that the backend answers (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// HashStreamKey returns the hex SHA-256 of a stream key: what the metadata
// backends store and look keys up by.
func HashStreamKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// StreamKeyPrefix returns the non-secret prefix kept next to the hash: at
// most 4 characters and at most a quarter of the key, so short keys (which
// should not exist) give away little.
func StreamKeyPrefix(key string) string {
	runes := []rune(key)
	return string(runes[:min(4, len(runes)/4)])
}

// ValidText reports whether s can be stored by every backend: valid UTF-8
// without NUL bytes (PostgreSQL's text refuses both). Backends return
// ErrInvalid for other strings, so that they all behave alike.
func ValidText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// NewID returns a random 128-bit identifier in hex: unguessable, so content
// and user ids can appear in URLs without making them enumerable.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// UserUpdate changes a user's editable fields; nil leaves one as is.
type UserUpdate struct {
	Email        *string
	Username     *string
	PasswordHash *string
	Role         *Role
	Tier         *Tier
	Preferences  *json.RawMessage // a JSON object
}

// Limits of the indexed user columns, the same as CreateUser's: a B-tree
// entry must fit in a page (PostgreSQL refuses index rows over ~8 kB).
const (
	maxUserEmail = 320 // RFC 5321's 64 + 1 + 255
	maxUserName  = 256
)

// Validate is what both SQL backends check before UpdateUser writes, so
// that they refuse the same values with the same errors (ErrInvalid).
func (u UserUpdate) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("user update: "+format+": %w", append(args, ErrInvalid)...)
	}
	for _, f := range []struct {
		name  string
		v     *string
		limit int
	}{{"email", u.Email, maxUserEmail}, {"username", u.Username, maxUserName}, {"password hash", u.PasswordHash, 0}} {
		switch {
		case f.v == nil:
		case f.limit > 0 && *f.v == "":
			return bad("%s is empty", f.name)
		case f.limit > 0 && len(*f.v) > f.limit:
			return bad("%s: %d bytes, at most %d", f.name, len(*f.v), f.limit)
		case !ValidText(*f.v):
			return bad("%s: not valid UTF-8 or contains NUL", f.name)
		}
	}
	if u.Role != nil && !u.Role.Valid() {
		return bad("role %q (want admin, publisher or viewer)", *u.Role)
	}
	if u.Tier != nil && !u.Tier.Valid() {
		return bad("tier %q (want free, premium or family)", *u.Tier)
	}
	if u.Preferences != nil {
		p := bytes.TrimSpace(*u.Preferences)
		if !json.Valid(p) || len(p) == 0 || p[0] != '{' {
			return bad("preferences are not a JSON object")
		}
		if !ValidText(string(p)) {
			return bad("preferences: not valid UTF-8 or contains NUL")
		}
		if jsonStringHasNUL(p) {
			return bad("preferences: a string contains NUL (\\u0000)")
		}
	}
	return nil
}

// MFA is a user's TOTP second factor.
type MFA struct {
	// Secret is the TOTP shared secret (base32). It has to be readable to
	// check codes, so it is stored as given: whoever can read the database
	// can compute codes (the password hash still stands in their way).
	Secret string
	// ConfirmedAt is when the user proved to hold the secret; zero while
	// enrollment is pending (MFA is then not required at login).
	ConfirmedAt time.Time
	// RecoveryCodes are the hashes of the single-use recovery codes left.
	// Codes are random and long, so a fast unsalted hash is enough.
	RecoveryCodes []string
	CreatedAt     time.Time // set by SetMFA
}

// Users is the part of Meta that manages accounts beyond creating and
// finding them: profile changes, the admin listing and MFA state.
type Users interface {
	// UpdateUser changes the user's fields and returns the user as now
	// stored. Email or username taken: ErrConflict.
	UpdateUser(ctx context.Context, id string, u UserUpdate) (User, error)
	// ListUsers returns at most limit users (1..1000; 0 means 100) whose id
	// is greater than after, sorted by id: keyset paging, stable while
	// users are added.
	ListUsers(ctx context.Context, after string, limit int) ([]User, error)

	// SetMFA replaces the user's MFA state (secret, confirmation and the
	// full set of recovery code hashes).
	SetMFA(ctx context.Context, userID string, m MFA) error
	// GetMFA returns the user's MFA state; ErrNotFound when none.
	GetMFA(ctx context.Context, userID string) (MFA, error)
	// ConfirmMFA sets ConfirmedAt; ErrNotFound when no MFA is enrolled.
	ConfirmMFA(ctx context.Context, userID string, at time.Time) error
	// UseRecoveryCode removes one recovery code hash, atomically: of two
	// concurrent uses of one code, one succeeds and the other gets
	// ErrNotFound (as does an unknown code).
	UseRecoveryCode(ctx context.Context, userID, codeHash string) error
	// DeleteMFA removes the user's MFA state (missing is not an error).
	DeleteMFA(ctx context.Context, userID string) error

	// LinkIdentity links an account at an OpenID Connect provider to a
	// user. The pair (issuer, subject) already linked: ErrConflict; no
	// such user: ErrNotFound.
	LinkIdentity(ctx context.Context, id Identity) (Identity, error)
	// UserByIdentity finds the user linked to (issuer, subject), compared
	// exactly (OIDC subjects are case-sensitive).
	UserByIdentity(ctx context.Context, issuer, subject string) (User, error)

	// CreateProfile adds a profile to the account p.UserID unless it holds
	// max profiles already (ErrLimit), atomically: concurrent creations
	// never exceed max. A name the account uses already (ASCII case
	// ignored): ErrConflict; no such user: ErrNotFound.
	CreateProfile(ctx context.Context, p Profile, max int) (Profile, error)
	// ListProfiles returns the account's profiles, oldest first (empty
	// non-nil when none).
	ListProfiles(ctx context.Context, userID string) ([]Profile, error)
	// DeleteProfile removes one of the account's profiles; ErrNotFound
	// when the account has no profile with that id.
	DeleteProfile(ctx context.Context, userID, profileID string) error
	// GetProfile returns one of the account's profiles; ErrNotFound when
	// the account has no profile with that id (another account's profile
	// included).
	GetProfile(ctx context.Context, userID, profileID string) (Profile, error)
	// UpdateViewerProfile changes one of the account's profiles (nil
	// fields: unchanged) and returns it as now stored. A name another
	// profile of the account uses (ASCII case ignored): ErrConflict; no
	// such profile in the account: ErrNotFound.
	UpdateViewerProfile(ctx context.Context, userID, profileID string, u ViewerProfileUpdate) (Profile, error)
}

// Identity links a user to an account at an OpenID Connect provider.
type Identity struct {
	Issuer    string // the provider's issuer URL, as in its ID tokens
	Subject   string // the provider's stable id of the account (sub)
	UserID    string
	CreatedAt time.Time // set by LinkIdentity
}

// Limits of the identity columns (both indexed): OIDC says a subject is
// at most 255 ASCII characters; issuers are URLs.
const (
	maxIssuer  = 1024
	maxSubject = 255
)

// Validate is what both SQL backends check before LinkIdentity writes.
func (i Identity) Validate() error {
	for _, f := range []struct {
		name, v string
		limit   int
	}{{"issuer", i.Issuer, maxIssuer}, {"subject", i.Subject, maxSubject}, {"user id", i.UserID, maxUserName}} {
		switch {
		case f.v == "":
			return fmt.Errorf("identity: %s is empty: %w", f.name, ErrInvalid)
		case len(f.v) > f.limit:
			return fmt.Errorf("identity: %s: %d bytes, at most %d: %w", f.name, len(f.v), f.limit, ErrInvalid)
		case !ValidText(f.v):
			return fmt.Errorf("identity: %s: not valid UTF-8 or contains NUL: %w", f.name, ErrInvalid)
		}
	}
	return nil
}

// Profile is a viewer profile under an account (the family tier): its
// own name and its own preferences.
type Profile struct {
	ID          string          // set by CreateProfile when empty
	UserID      string          // the account
	Name        string          // unique within the account, ASCII case ignored
	Preferences json.RawMessage // a JSON object; empty means {}
	CreatedAt   time.Time
}

// ViewerProfileUpdate changes a profile's editable fields; nil leaves one
// as is.
type ViewerProfileUpdate struct {
	Name        *string
	Preferences json.RawMessage // a JSON object; nil: unchanged
}

// maxProfileName bounds the indexed name column.
const maxProfileName = 256

// Validate is what both SQL backends check before CreateProfile writes
// (after filling an empty Preferences with {}).
func (p Profile) Validate(max int) error {
	switch {
	case max < 1:
		return fmt.Errorf("profile: limit %d: %w", max, ErrLimit)
	case p.Name == "" || p.UserID == "":
		return fmt.Errorf("profile: name or user id is empty: %w", ErrInvalid)
	case len(p.Name) > maxProfileName || len(p.ID) > maxUserName || len(p.UserID) > maxUserName:
		return fmt.Errorf("profile: name or id over %d bytes: %w", maxProfileName, ErrInvalid)
	case !ValidText(p.Name) || !ValidText(p.ID) || !ValidText(p.UserID):
		return fmt.Errorf("profile: not valid UTF-8 or contains NUL: %w", ErrInvalid)
	}
	if len(bytes.TrimSpace(p.Preferences)) > 0 {
		return profilePrefs(p.Preferences)
	}
	return nil
}

// Validate is what both SQL backends check before UpdateViewerProfile
// writes: the same rules as CreateProfile's.
func (u ViewerProfileUpdate) Validate() error {
	if u.Name != nil {
		switch n := *u.Name; {
		case n == "":
			return fmt.Errorf("profile update: name is empty: %w", ErrInvalid)
		case len(n) > maxProfileName:
			return fmt.Errorf("profile update: name over %d bytes: %w", maxProfileName, ErrInvalid)
		case !ValidText(n):
			return fmt.Errorf("profile update: name: not valid UTF-8 or contains NUL: %w", ErrInvalid)
		}
	}
	if u.Preferences != nil {
		return profilePrefs(u.Preferences)
	}
	return nil
}

// profilePrefs applies the rule of a user's preferences (UserUpdate's)
// to a profile's.
func profilePrefs(p json.RawMessage) error {
	if err := (UserUpdate{Preferences: &p}).Validate(); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}

// jsonStringHasNUL reports whether a valid JSON document has a string
// holding NUL (written \u0000): PostgreSQL's jsonb refuses it where
// SQLite would store it, so both backends refuse it.
func jsonStringHasNUL(p []byte) bool {
	if !bytes.Contains(p, []byte(`\u0000`)) {
		return false // the common case: no need to decode
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false // io.EOF: the document is valid (checked before)
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return true
		}
	}
}
