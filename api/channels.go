package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// ChannelStore is what the channel endpoints need of the metadata store.
type ChannelStore interface {
	CreateChannel(ctx context.Context, ch store.Channel, streamKey string) (store.Channel, error)
	GetChannel(ctx context.Context, name string) (store.Channel, error)
	ListChannels(ctx context.Context) ([]store.Channel, error)
	ChannelsByOwner(ctx context.Context, ownerID string) ([]store.Channel, error)
	UpdateChannel(ctx context.Context, name string, u store.ChannelUpdate) (store.Channel, error)
	RotateStreamKey(ctx context.Context, name, newKey string) (store.Channel, error)
	DeleteChannel(ctx context.Context, name string) error
}

// channelName is the config's rule for channel names (configs): the name
// is a URL path element (/live/{name}/) and an object-store prefix.
var channelName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Limits of the free-text fields: enough for any real title or blurb, and
// a bound on what every listing carries.
const (
	maxTitle       = 1 << 10
	maxDescription = 64 << 10
)

// textField checks a free-text field: valid UTF-8 without NUL, at most
// limit bytes. Anything else is stored verbatim.
func textField(name, v string, limit int) error {
	if len(v) > limit {
		return apiError(auth.CodeInvalidArgument, name+": too long (at most "+strconv.Itoa(limit)+" bytes)")
	}
	if !store.ValidText(v) {
		return apiError(auth.CodeInvalidArgument, name+": must be UTF-8 text without NUL characters")
	}
	return nil
}

// text is one free-text field for textFields; a nil v (an optional field
// left out) passes.
type text struct {
	name  string
	v     *string
	limit int
}

// textFields checks each field with textField; the first problem is the
// error.
func textFields(fs ...text) error {
	for _, f := range fs {
		if f.v == nil {
			continue
		}
		if err := textField(f.name, *f.v, f.limit); err != nil {
			return err
		}
	}
	return nil
}

// checkVisibility refuses an unknown visibility; nil (left out) passes.
func checkVisibility(v *store.Visibility) error {
	if v != nil && !v.Valid() {
		return errVisibility
	}
	return nil
}

// orPublic is v, or public when left empty.
func orPublic(v store.Visibility) store.Visibility {
	if v == "" {
		return store.VisibilityPublic
	}
	return v
}

// channelJSON is a channel as its managers see it: never the key, only
// its first characters.
type channelJSON struct {
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	OwnerID     string `json:"owner_id,omitempty"`
	ManagedBy   string `json:"managed_by"` // "config" or "api"
	// Visibility: "protected" channels play only through the signed URLs
	// of GET /api/streaming/{name}.
	Visibility   store.Visibility `json:"visibility"`
	KeyPrefix    string           `json:"key_prefix"`
	KeyRotatedAt time.Time        `json:"key_rotated_at"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
	PlayURL      string           `json:"play_url"` // path of the HLS master playlist
}

// channelWithKey is the one answer that shows a stream key: create and
// rotate. The key is not stored and cannot be read again.
type channelWithKey struct {
	channelJSON
	StreamKey string `json:"stream_key"`
}

func toChannelJSON(c store.Channel) channelJSON {
	j := channelJSON{Name: c.Name, Title: c.Title, Description: c.Description, OwnerID: c.OwnerID,
		ManagedBy: "api", Visibility: c.Visibility, KeyPrefix: c.KeyPrefix, KeyRotatedAt: c.KeyRotatedAt, CreatedAt: c.CreatedAt,
		UpdatedAt: c.UpdatedAt, PlayURL: "/live/" + url.PathEscape(c.Name) + "/index.m3u8"}
	if c.FromConfig {
		j.ManagedBy = "config"
	}
	j.Visibility = orPublic(j.Visibility)
	return j
}

// storeError turns a metadata store error into an API error; what is not
// the client's doing (outage, bug) goes to writeError as is.
func storeError(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apiError(auth.CodeNotFound, "no such "+what)
	case errors.Is(err, store.ErrConflict):
		return apiError(auth.CodeConflict, "a "+what+" of that name already exists")
	case errors.Is(err, store.ErrInvalid):
		return apiError(auth.CodeInvalidArgument, "a value is not acceptable for a "+what)
	}
	return err
}

func (a *API) channels(w http.ResponseWriter, r *http.Request) (ChannelStore, bool) {
	if a.d.Channels == nil {
		a.writeError(w, r, apiError(auth.CodeUnavailable, "channels are not available on this server"))
		return nil, false
	}
	return a.d.Channels, true
}

// ownedChannel returns the channel named in the path when the caller may
// manage it: admins any, publishers their own. Another publisher's channel
// is a 404, as if it did not exist: names are not secret (the public list
// shows them), but nothing about it is the caller's business.
func (a *API) ownedChannel(w http.ResponseWriter, r *http.Request) (ChannelStore, store.Channel, bool) {
	cs, ok := a.channels(w, r)
	if !ok {
		return nil, store.Channel{}, false
	}
	p := principal(r)
	ch, err := cs.GetChannel(r.Context(), r.PathValue("name"))
	if err == nil && p.Role != store.RoleAdmin && (ch.OwnerID == "" || ch.OwnerID != p.UserID) {
		err = store.ErrNotFound
	}
	if err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return nil, store.Channel{}, false
	}
	return cs, ch, true
}

func (a *API) listChannels(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.channels(w, r)
	if !ok {
		return
	}
	p := principal(r)
	var list []store.Channel
	var err error
	if p.Role == store.RoleAdmin && r.URL.Query().Get("owner") != "me" {
		list, err = cs.ListChannels(r.Context())
	} else {
		list, err = cs.ChannelsByOwner(r.Context(), p.UserID)
	}
	if err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return
	}
	out := struct {
		Channels []channelJSON `json:"channels"`
	}{Channels: make([]channelJSON, len(list))}
	for i, c := range list {
		out.Channels[i] = toChannelJSON(c)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createChannel(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.channels(w, r)
	if !ok {
		return
	}
	var in struct {
		Name        string           `json:"name"`
		Title       string           `json:"title"`
		Description string           `json:"description"`
		Visibility  store.Visibility `json:"visibility"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	in.Visibility = orPublic(in.Visibility)
	if err := checkVisibility(&in.Visibility); err != nil {
		a.writeError(w, r, err)
		return
	}
	if !channelName.MatchString(in.Name) {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument,
			"name: 1 to 64 characters of a-z, 0-9, - and _, starting with a letter or digit"))
		return
	}
	if err := textFields(text{"title", &in.Title, maxTitle}, text{"description", &in.Description, maxDescription}); err != nil {
		a.writeError(w, r, err)
		return
	}
	key := auth.NewStreamKey()
	ch, err := cs.CreateChannel(r.Context(), store.Channel{Name: in.Name, Title: in.Title, Description: in.Description,
		OwnerID: principal(r).UserID, Visibility: in.Visibility}, key)
	if err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return
	}
	a.log.InfoContext(r.Context(), "channel created", "channel", ch.Name, "user", principal(r).UserID)
	w.Header().Set("Location", "/api/publish/channels/"+url.PathEscape(ch.Name))
	writeJSON(w, http.StatusCreated, channelWithKey{toChannelJSON(ch), key})
}

func (a *API) getChannel(w http.ResponseWriter, r *http.Request) {
	if _, ch, ok := a.ownedChannel(w, r); ok {
		writeJSON(w, http.StatusOK, toChannelJSON(ch))
	}
}

func (a *API) putChannel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Title       *string           `json:"title"`
		Description *string           `json:"description"`
		Visibility  *store.Visibility `json:"visibility"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := checkVisibility(in.Visibility); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := textFields(text{"title", in.Title, maxTitle}, text{"description", in.Description, maxDescription}); err != nil {
		a.writeError(w, r, err)
		return
	}
	cs, ch, ok := a.ownedChannel(w, r)
	if !ok {
		return
	}
	if in.Visibility != nil && ch.FromConfig && *in.Visibility != ch.Visibility {
		a.writeError(w, r, errConfigManaged("sets its visibility (protected: true|false)"))
		return
	}
	ch, err := cs.UpdateChannel(r.Context(), ch.Name, store.ChannelUpdate{Title: in.Title, Description: in.Description,
		Visibility: in.Visibility})
	if err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return
	}
	writeJSON(w, http.StatusOK, toChannelJSON(ch))
}

var errVisibility = apiError(auth.CodeInvalidArgument, "visibility: want public or protected")

// errConfigManaged refuses a change the config file would undo at the
// next start.
func errConfigManaged(what string) error {
	return apiError(auth.CodeConflict, "this channel comes from the config file, which "+what+
		" (edit the channels list, or delete the channel's key file for a new generated key, and restart)")
}

// ChannelObjects is an optional part of a ChannelStore: what a channel
// leaves in the object store (its live/{name}/ playlists and segments,
// see playback.ChannelObjects).
type ChannelObjects interface {
	// RemoveChannelObjects deletes them all and returns once none is
	// left; an *auth.Error (conflict) says why it cannot now.
	RemoveChannelObjects(ctx context.Context, name string) error
}

// deleteChannel removes a channel with its live objects. They go first:
// until they are gone the channel stays, so its name cannot be taken by
// another publisher whose channel would serve them under its own
// visibility (a protected recording made public). A sweep after the row
// is gone catches a segment written meanwhile. A store without
// ChannelObjects deletes the row only.
func (a *API) deleteChannel(w http.ResponseWriter, r *http.Request) {
	cs, ch, ok := a.ownedChannel(w, r)
	if !ok {
		return
	}
	if ch.FromConfig {
		a.writeError(w, r, errConfigManaged("decides which channels exist"))
		return
	}
	objs, _ := cs.(ChannelObjects)
	if objs != nil {
		if err := objs.RemoveChannelObjects(r.Context(), ch.Name); err != nil {
			var ae *auth.Error
			if !errors.As(err, &ae) {
				err = &auth.Error{Code: auth.CodeUnavailable, Message: "the channel's recordings cannot be removed now; try again", Err: err}
			}
			a.writeError(w, r, err)
			return
		}
	}
	if err := cs.DeleteChannel(r.Context(), ch.Name); err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return
	}
	if objs != nil {
		if err := objs.RemoveChannelObjects(context.WithoutCancel(r.Context()), ch.Name); err != nil {
			a.log.WarnContext(r.Context(), "objects of a deleted channel left behind", "channel", ch.Name, "err", err)
		}
	}
	a.log.InfoContext(r.Context(), "channel deleted", "channel", ch.Name, "user", principal(r).UserID)
	w.WriteHeader(http.StatusNoContent)
}

// rotateKey gives the channel a new random key. The old key stops opening
// the channel for new publications at once (ingest asks the store at each
// publish); a publication already running goes on until it stops.
func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) {
	cs, ch, ok := a.ownedChannel(w, r)
	if !ok {
		return
	}
	if ch.FromConfig {
		a.writeError(w, r, errConfigManaged("sets its stream key"))
		return
	}
	key := auth.NewStreamKey()
	ch, err := cs.RotateStreamKey(r.Context(), ch.Name, key)
	if err != nil {
		a.writeError(w, r, storeError(err, "channel"))
		return
	}
	a.log.InfoContext(r.Context(), "stream key rotated", "channel", ch.Name, "user", principal(r).UserID)
	writeJSON(w, http.StatusOK, channelWithKey{toChannelJSON(ch), key})
}
