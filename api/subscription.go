package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// subscriptionJSON is a user after a tier change, and whether the change
// ended their sessions (a lower tier: log in again) or the next refresh
// carries it.
type subscriptionJSON struct {
	userJSON
	SessionsEnded bool `json:"sessions_ended"`
}

func (a *API) setTier(w http.ResponseWriter, r *http.Request, id string) {
	var in struct {
		Tier store.Tier `json:"tier"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	u, ended, err := a.d.Users.SetTier(r.Context(), id, in.Tier)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, subscriptionJSON{userJSON: toJSON(u), SessionsEnded: ended})
}

// postMySubscription: only admins change a tier by hand; a viewer's tier
// comes from the billing system (the webhook).
func (a *API) postMySubscription(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p.Role != store.RoleAdmin {
		a.writeError(w, r, apiError(auth.CodePermissionDenied, "subscriptions change through billing, or an admin"))
		return
	}
	a.setTier(w, r, p.UserID)
}

func (a *API) postSubscription(w http.ResponseWriter, r *http.Request) {
	a.setTier(w, r, r.PathValue("id"))
}

// billingWebhook reads the exact body (the signature covers its bytes) and
// leaves every check to auth.Service.BillingWebhook.
func (a *API) billingWebhook(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		a.writeError(w, r, apiError(codeUnsupportedMedia, "Content-Type must be application/json"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, auth.MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.writeError(w, r, apiError(codeTooLarge, "request body over 64 KiB"))
			return
		}
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "could not read the request body"))
		return
	}
	res, err := a.d.Users.BillingWebhook(r.Context(), r.Header.Get(auth.WebhookSignatureHeader), body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": res.User.ID, "tier": res.User.Tier, "sessions_ended": res.SessionsEnded})
}

// profileJSON is a profile as the API shows it; preferences are always an
// object.
type profileJSON struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Preferences json.RawMessage `json:"preferences"`
	CreatedAt   time.Time       `json:"created_at"`
}

func toProfileJSON(p store.Profile) profileJSON {
	j := profileJSON{ID: p.ID, Name: p.Name, Preferences: p.Preferences, CreatedAt: p.CreatedAt}
	if len(j.Preferences) == 0 {
		j.Preferences = json.RawMessage("{}")
	}
	return j
}

func (a *API) listProfiles(w http.ResponseWriter, r *http.Request) {
	ps, err := a.d.Users.ListProfiles(r.Context(), principal(r).UserID)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := struct {
		Profiles []profileJSON `json:"profiles"`
		Max      int           `json:"max"`
	}{Profiles: make([]profileJSON, len(ps)), Max: a.d.Users.FamilyMaxProfiles()}
	for i, p := range ps {
		out.Profiles[i] = toProfileJSON(p)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) createProfile(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string           `json:"name"`
		Preferences *json.RawMessage `json:"preferences"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	p, err := a.d.Users.CreateProfile(r.Context(), principal(r).UserID, in.Name, rawOrNil(in.Preferences))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/users/me/profiles/"+url.PathEscape(p.ID))
	writeJSON(w, http.StatusCreated, toProfileJSON(p))
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	p, err := a.d.Users.GetProfile(r.Context(), principal(r).UserID, r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toProfileJSON(p))
}

// putProfile renames a profile or replaces its preferences; an absent or
// null field stays as it is.
func (a *API) putProfile(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        *string          `json:"name"`
		Preferences *json.RawMessage `json:"preferences"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	p, err := a.d.Users.UpdateViewerProfile(r.Context(), principal(r).UserID, r.PathValue("id"), in.Name, rawOrNil(in.Preferences))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toProfileJSON(p))
}

// rawOrNil is the document a *json.RawMessage field holds; nil when the
// field was absent or null.
func rawOrNil(p *json.RawMessage) json.RawMessage {
	if p == nil {
		return nil
	}
	return *p
}

func (a *API) deleteProfile(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Users.DeleteProfile(r.Context(), principal(r).UserID, r.PathValue("id")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
