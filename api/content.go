package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// ContentStore is what the catalog endpoints need of the metadata store.
type ContentStore interface {
	CreateContent(ctx context.Context, c store.Content) (store.Content, error)
	GetContent(ctx context.Context, id string) (store.Content, error)
	ListContent(ctx context.Context, q store.ContentQuery) ([]store.Content, error)
	UpdateContent(ctx context.Context, id string, u store.ContentUpdate) (store.Content, error)
}

// Limits of the catalog's query parameters and the genre field.
const (
	maxGenre = 256
	maxQuery = 256
)

// contentJSON is a catalog item. Its owner's id is not shown: the catalog
// is public.
type contentJSON struct {
	ID             string               `json:"id"`
	Title          string               `json:"title"`
	Description    string               `json:"description"`
	Genre          string               `json:"genre"`
	Visibility     store.Visibility     `json:"visibility"`
	EncodingStatus store.EncodingStatus `json:"encoding_status"`
	// EncodingProgress is the percent done while processing.
	EncodingProgress *float64 `json:"encoding_progress,omitempty"`
	// EncodingReason says why it failed (or, while queued, why an
	// attempt is being retried).
	EncodingReason string    `json:"encoding_reason,omitempty"`
	Play           *playJSON `json:"play,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// playJSON are the play URLs of a ready item (the origin's /vod/ tree).
type playJSON struct {
	HLS  string `json:"hls"`
	DASH string `json:"dash"`
}

func toContentJSON(c store.Content) contentJSON {
	j := contentJSON{ID: c.ID, Title: c.Title, Description: c.Description, Genre: c.Genre,
		Visibility: c.Visibility, EncodingStatus: c.EncodingStatus, EncodingReason: c.EncodingReason, CreatedAt: c.CreatedAt}
	switch c.EncodingStatus {
	case store.EncodingProcessing, store.EncodingRunning:
		p := c.EncodingProgress
		j.EncodingProgress = &p
	case store.EncodingReady:
		base := "/vod/" + url.PathEscape(c.ID) + "/"
		j.Play = &playJSON{HLS: base + "index.m3u8", DASH: base + "manifest.mpd"}
	}
	return j
}

func (a *API) content(w http.ResponseWriter, r *http.Request) (ContentStore, bool) {
	if a.d.Content == nil {
		a.writeError(w, r, apiError(auth.CodeUnavailable, "the catalog is not available on this server"))
		return nil, false
	}
	return a.d.Content, true
}

// loggedIn reports whether an "optional" route's caller sent a valid token.
func loggedIn(r *http.Request) bool { return principal(r).UserID != "" }

// listContent is the catalog, newest first: public items for anyone,
// protected ones too for logged-in users (who may then ask for a signed
// playback URL).
func (a *API) listContent(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.content(w, r)
	if !ok {
		return
	}
	// ParseQuery, not URL.Query: a malformed pair (a raw ';', a bad %
	// escape) is a 400 rather than a filter silently dropped.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "query string: malformed (escape ; & = % in values)"))
		return
	}
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			a.writeError(w, r, apiError(auth.CodeInvalidArgument, "limit: want 1..100"))
			return
		}
		limit = n
	}
	query := store.ContentQuery{Genre: q.Get("genre"), Text: q.Get("q"), After: q.Get("after"),
		Limit: limit, IncludeProtected: loggedIn(r)}
	if err := textFields(text{"genre", &query.Genre, maxGenre}, text{"q", &query.Text, maxQuery}, text{"after", &query.After, maxGenre}); err != nil {
		a.writeError(w, r, err)
		return
	}
	list, err := cs.ListContent(r.Context(), query)
	if errors.Is(err, store.ErrInvalid) && query.After != "" {
		err = apiError(auth.CodeInvalidArgument, "after: no such item (pass the next_after of the previous page)")
	}
	if err != nil {
		a.writeError(w, r, storeError(err, "content item"))
		return
	}
	out := struct {
		Items []contentJSON `json:"items"`
		Next  string        `json:"next_after,omitempty"`
	}{Items: make([]contentJSON, len(list))}
	for i, c := range list {
		out.Items[i] = toContentJSON(c)
	}
	if len(list) == limit {
		out.Next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// getContent answers a protected item to an anonymous caller with 401 (log
// in, then ask again) rather than 404: ids are random 128-bit values, so
// the answer tells nothing to someone without the id, and a player that
// has the id learns what to do.
func (a *API) getContent(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.content(w, r)
	if !ok {
		return
	}
	c, err := cs.GetContent(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, storeError(err, "content item"))
		return
	}
	if c.Visibility != store.VisibilityPublic && !loggedIn(r) {
		a.writeError(w, r, apiError(auth.CodeUnauthenticated, "log in to see this item"))
		return
	}
	writeJSON(w, http.StatusOK, toContentJSON(c))
}

// createContent adds a catalog item's metadata (encoding comes later: the
// item starts as pending).
func (a *API) createContent(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.content(w, r)
	if !ok {
		return
	}
	var in struct {
		Title       string           `json:"title"`
		Description string           `json:"description"`
		Genre       string           `json:"genre"`
		Visibility  store.Visibility `json:"visibility"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if in.Title == "" {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "title: required"))
		return
	}
	if err := textFields(text{"title", &in.Title, maxTitle}, text{"description", &in.Description, maxDescription},
		text{"genre", &in.Genre, maxGenre}); err != nil {
		a.writeError(w, r, err)
		return
	}
	in.Visibility = orPublic(in.Visibility)
	if err := checkVisibility(&in.Visibility); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := cs.CreateContent(r.Context(), store.Content{Title: in.Title, Description: in.Description,
		Genre: in.Genre, Visibility: in.Visibility, OwnerID: principal(r).UserID})
	if err != nil {
		a.writeError(w, r, storeError(err, "content item"))
		return
	}
	a.log.InfoContext(r.Context(), "content created", "content", c.ID, "user", principal(r).UserID)
	w.Header().Set("Location", "/api/content/"+url.PathEscape(c.ID))
	writeJSON(w, http.StatusCreated, toContentJSON(c))
}

// putContent changes an item's title, description, genre or visibility:
// its owner or an admin. Another publisher's item is a 404. Making an
// item protected takes effect at the origin within a few seconds
// (playback.DefaultMemoTTL); signed URLs already given out keep working
// until they expire.
func (a *API) putContent(w http.ResponseWriter, r *http.Request) {
	cs, ok := a.content(w, r)
	if !ok {
		return
	}
	var in struct {
		Title       *string           `json:"title"`
		Description *string           `json:"description"`
		Genre       *string           `json:"genre"`
		Visibility  *store.Visibility `json:"visibility"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if in.Title != nil && *in.Title == "" {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "title: must not be empty"))
		return
	}
	if err := textFields(text{"title", in.Title, maxTitle}, text{"description", in.Description, maxDescription},
		text{"genre", in.Genre, maxGenre}); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := checkVisibility(in.Visibility); err != nil {
		a.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	c, err := cs.GetContent(r.Context(), id)
	p := principal(r)
	if err == nil && c.OwnerID != p.UserID && p.Role != store.RoleAdmin {
		err = store.ErrNotFound // not the caller's business
	}
	if err != nil {
		a.writeError(w, r, storeError(err, "content item"))
		return
	}
	c, err = cs.UpdateContent(r.Context(), id, store.ContentUpdate{Title: in.Title, Description: in.Description,
		Genre: in.Genre, Visibility: in.Visibility})
	if err != nil {
		a.writeError(w, r, storeError(err, "content item"))
		return
	}
	a.log.InfoContext(r.Context(), "content updated", "content", c.ID, "user", p.UserID, "visibility", c.Visibility)
	writeJSON(w, http.StatusOK, toContentJSON(c))
}
