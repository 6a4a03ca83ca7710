package api

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/store"
)

// tokenResponse is RFC 6749 §5.1's shape, so OAuth2 clients read it.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

func tokens(p auth.TokenPair) tokenResponse {
	return tokenResponse{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, TokenType: "Bearer",
		ExpiresIn: int(math.Round(p.ExpiresIn.Seconds()))}
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	u, err := a.d.Auth.Register(r.Context(), in.Email, in.Username, in.Password)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/users/me")
	writeJSON(w, http.StatusCreated, toJSON(u))
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	login := in.Email
	if login == "" {
		login = in.Username
	} else if in.Username != "" {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "give email or username, not both"))
		return
	}
	res, err := a.d.Auth.Login(r.Context(), login, in.Password)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeLogin(w, res)
}

func (a *API) refresh(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	p, err := a.d.Auth.Refresh(r.Context(), in.RefreshToken)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tokens(p))
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Auth.Logout(r.Context(), principal(r)); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) logoutAll(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Auth.LogoutAll(r.Context(), principal(r).UserID); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putPassword changes the caller's password (or sets a first one on an
// account made by an OIDC login, from a fresh login); the caller's other
// sessions end.
func (a *API) putPassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.d.Auth.ChangePassword(r.Context(), principal(r), in.Current, in.New); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type codeBody struct {
	Code string `json:"code"`
}

func (a *API) mfaEnroll(w http.ResponseWriter, r *http.Request) {
	e, err := a.d.Auth.EnrollMFA(r.Context(), principal(r).UserID)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "otpauth_url": e.URL,
		"qr_png": "data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG)})
}

func (a *API) mfaConfirm(w http.ResponseWriter, r *http.Request) {
	var in codeBody
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	codes, err := a.d.Auth.ConfirmMFA(r.Context(), principal(r).UserID, in.Code)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

func (a *API) mfaDisable(w http.ResponseWriter, r *http.Request) {
	var in codeBody
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.d.Auth.DisableMFA(r.Context(), principal(r).UserID, in.Code); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) mfaVerify(w http.ResponseWriter, r *http.Request) {
	var in struct {
		MFAToken string `json:"mfa_token"`
		Code     string `json:"code"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	p, err := a.d.Auth.VerifyMFA(r.Context(), in.MFAToken, in.Code)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tokens(p))
}

func (a *API) getMe(w http.ResponseWriter, r *http.Request) {
	u, err := a.d.Users.GetUser(r.Context(), principal(r).UserID)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(u))
}

func (a *API) putMe(w http.ResponseWriter, r *http.Request) {
	// Role and tier are not fields here: unknown fields are refused, so
	// {"role":"admin"} is a 400, not a silent no-op.
	var in struct {
		Email       *string          `json:"email"`
		Username    *string          `json:"username"`
		Preferences *json.RawMessage `json:"preferences"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	u, err := a.d.Users.UpdateProfile(r.Context(), principal(r).UserID,
		auth.ProfileUpdate{Email: in.Email, Username: in.Username, Preferences: in.Preferences})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(u))
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			a.writeError(w, r, apiError(auth.CodeInvalidArgument, "limit: want 1..1000"))
			return
		}
		limit = n
	}
	us, err := a.d.Users.ListUsers(r.Context(), q.Get("after"), limit)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := struct {
		Users []userJSON `json:"users"`
		Next  string     `json:"next_after,omitempty"`
	}{Users: make([]userJSON, len(us))}
	for i, u := range us {
		out.Users[i] = toJSON(u)
	}
	if len(us) == limit {
		out.Next = us[len(us)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := a.d.Users.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(u))
}

func (a *API) putRole(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Role store.Role `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		a.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if id == principal(r).UserID {
		// An admin demoting themselves could leave nobody to undo it.
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "you cannot change your own role"))
		return
	}
	u, err := a.d.Users.SetRole(r.Context(), id, in.Role)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(u))
}
