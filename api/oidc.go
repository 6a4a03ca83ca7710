package api

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"

	"github.com/streamd/streamd/auth"
)

// oidcCookie carries the login state in the browser that started an OIDC
// login (scoped to that provider's /api/auth/oidc/{name}/ paths): the
// callback must come back to that browser, so a callback URL planted by
// someone else (login CSRF) is refused.
const oidcCookie = "streamd_oidc_state"

func (a *API) noOIDC(w http.ResponseWriter, r *http.Request) bool {
	if a.d.OIDC == nil {
		a.writeError(w, r, apiError(auth.CodeNotFound, "no such login provider"))
		return true
	}
	return false
}

func (a *API) oidcProviders(w http.ResponseWriter, r *http.Request) {
	type provider struct {
		Name     string `json:"name"`
		StartURL string `json:"start_url"`
	}
	out := struct {
		Providers []provider `json:"providers"`
	}{Providers: []provider{}}
	if a.d.OIDC != nil {
		for _, n := range a.d.OIDC.Providers() {
			out.Providers = append(out.Providers, provider{Name: n, StartURL: "/api/auth/oidc/" + n + "/start"})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func cookiePath(name string) string { return "/api/auth/oidc/" + name + "/" }

func (a *API) oidcStart(w http.ResponseWriter, r *http.Request) {
	if a.noOIDC(w, r) {
		return
	}
	name := r.PathValue("name")
	st, err := a.d.OIDC.Start(r.Context(), name)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: st.State, Path: cookiePath(name),
		MaxAge: int(st.TTL.Seconds()), HttpOnly: true, Secure: st.Secure || r.TLS != nil,
		// Lax: sent on the provider's top-level redirect back to us.
		SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, st.URL, http.StatusFound)
}

func (a *API) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if a.noOIDC(w, r) {
		return
	}
	name := r.PathValue("name")
	q := r.URL.Query()
	state := q.Get("state")
	c, cerr := r.Cookie(oidcCookie)
	// The cookie has done its job whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: cookiePath(name), MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	if cerr != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		a.writeError(w, r, apiError(auth.CodeInvalidArgument, "this login was not started in this browser, or it expired; start it again"))
		return
	}
	res, err := a.d.OIDC.Callback(r.Context(), name, state, q.Get("code"), q.Get("error"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if a.d.OIDCPostLoginURL == "" {
		a.writeLogin(w, res)
		return
	}
	// The fragment never reaches a server (nor Referer headers or logs).
	f := url.Values{}
	if res.Tokens == nil {
		f.Set("mfa_required", "true")
		f.Set("mfa_token", res.MFAToken)
		f.Set("expires_in", strconv.Itoa(int(res.MFAExpiresIn.Seconds())))
	} else {
		t := tokens(*res.Tokens)
		f.Set("access_token", t.AccessToken)
		f.Set("refresh_token", t.RefreshToken)
		f.Set("token_type", t.TokenType)
		f.Set("expires_in", strconv.Itoa(t.ExpiresIn))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, a.d.OIDCPostLoginURL+"#"+f.Encode(), http.StatusFound)
}

// writeLogin answers a login: tokens, or an MFA challenge.
func (a *API) writeLogin(w http.ResponseWriter, res auth.LoginResult) {
	if res.Tokens == nil {
		writeJSON(w, http.StatusOK, map[string]any{
			"mfa_required": true, "mfa_token": res.MFAToken, "expires_in": int(res.MFAExpiresIn.Seconds())})
		return
	}
	writeJSON(w, http.StatusOK, tokens(*res.Tokens))
}
