package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamd/streamd/store"
)

// testUsers is the contract of store.Users (run by TestMeta).
func testUsers(t *testing.T, open func(t *testing.T) store.Meta) {
	ctx := context.Background()

	t.Run("UpdateUser", func(t *testing.T) {
		m := open(t)
		u, err := m.CreateUser(ctx, store.User{Email: "ann@example.com", Username: "ann", PasswordHash: "h1"})
		must(t, err, "create")
		_, err = m.CreateUser(ctx, store.User{Email: "bob@example.com", Username: "bob"})
		must(t, err, "create bob")

		// Nothing set: nothing changes.
		got, err := m.UpdateUser(ctx, u.ID, store.UserUpdate{})
		must(t, err, "empty update")
		got.Preferences = u.Preferences
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("empty update changed the user: %+v", got)
		}
		large := big()
		prefs := json.RawMessage(`{"q": ` + mustJSON(metachars) + `, "n": 1}`)
		got, err = m.UpdateUser(ctx, u.ID, store.UserUpdate{Email: ptr("Ann2@example.com"), Username: ptr(metachars),
			PasswordHash: ptr(large), Role: ptr(store.RoleAdmin), Tier: ptr(store.TierPremium), Preferences: &prefs})
		must(t, err, "update")
		if got.Email != "Ann2@example.com" || got.Username != metachars || got.PasswordHash != large ||
			got.Role != store.RoleAdmin || got.Tier != store.TierPremium || !jsonEqual(got.Preferences, prefs) ||
			!got.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("after update: %+v", got)
		}
		again, err := m.GetUser(ctx, u.ID)
		must(t, err, "get")
		if again.Username != metachars || again.PasswordHash != large || !jsonEqual(again.Preferences, prefs) {
			t.Fatal("update not stored verbatim")
		}
		_, err = m.UpdateUser(ctx, u.ID, store.UserUpdate{Email: ptr("BOB@example.com")})
		mustIs(t, err, store.ErrConflict, "email of another user")
		_, err = m.UpdateUser(ctx, u.ID, store.UserUpdate{Username: ptr("Bob")})
		mustIs(t, err, store.ErrConflict, "username of another user")
		_, err = m.UpdateUser(ctx, "nobody", store.UserUpdate{Tier: ptr(store.TierFamily)})
		mustIs(t, err, store.ErrNotFound, "update of nobody")
		badPrefs, arr := json.RawMessage(`{"a":`), json.RawMessage(`[1]`)
		for name, bad := range map[string]store.UserUpdate{
			"role":           {Role: ptr(store.Role("root"))},
			"tier":           {Tier: ptr(store.Tier("gold"))},
			"prefs":          {Preferences: &badPrefs},
			"prefs array":    {Preferences: &arr},
			"empty email":    {Email: ptr("")},
			"empty username": {Username: ptr("")},
			"long username":  {Username: ptr(large)},
			"NUL":            {Username: ptr("a\x00b")},
			"not UTF-8":      {Email: ptr("\xff@x")},
		} {
			_, err = m.UpdateUser(ctx, u.ID, bad)
			mustIs(t, err, store.ErrInvalid, name)
		}
	})

	t.Run("ListUsers", func(t *testing.T) {
		m := open(t)
		list, err := m.ListUsers(ctx, "", 0)
		must(t, err, "list empty")
		if list == nil || len(list) != 0 {
			t.Fatalf("empty list = %#v, want an empty slice", list)
		}
		var ids []string
		for i := range 7 {
			u, err := m.CreateUser(ctx, store.User{Email: fmt.Sprintf("u%d@x", i), Username: fmt.Sprintf("u%d", i)})
			must(t, err, "create")
			ids = append(ids, u.ID)
		}
		// Ids that sort differently under a linguistic collation.
		for _, id := range []string{"B-1", "a-1", "_1"} {
			_, err := m.CreateUser(ctx, store.User{ID: id, Email: id + "@x", Username: "n" + id})
			must(t, err, "create "+id)
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var seen []string
		after := ""
		for {
			page, err := m.ListUsers(ctx, after, 3)
			must(t, err, "list")
			if len(page) > 3 {
				t.Fatalf("page of %d, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, u := range page {
				seen = append(seen, u.ID)
			}
			after = page[len(page)-1].ID
		}
		if !slices.Equal(seen, ids) {
			t.Fatalf("paged ids = %v, want %v", seen, ids)
		}
		for _, bad := range []int{-1, 1001} {
			_, err := m.ListUsers(ctx, "", bad)
			mustIs(t, err, store.ErrInvalid, fmt.Sprint("limit ", bad))
		}
	})

	t.Run("MFA", func(t *testing.T) {
		m := open(t)
		u, err := m.CreateUser(ctx, store.User{Email: "ann@example.com", Username: "ann"})
		must(t, err, "create")
		_, err = m.GetMFA(ctx, u.ID)
		mustIs(t, err, store.ErrNotFound, "get before enroll")
		mustIs(t, m.ConfirmMFA(ctx, u.ID, time.Now()), store.ErrNotFound, "confirm before enroll")
		mustIs(t, m.SetMFA(ctx, "nobody", store.MFA{Secret: "S"}), store.ErrNotFound, "set for nobody")
		mustIs(t, m.SetMFA(ctx, u.ID, store.MFA{}), store.ErrInvalid, "empty secret")

		codes := []string{"h3", "h1", "h2"}
		must(t, m.SetMFA(ctx, u.ID, store.MFA{Secret: "JBSWY3DPEHPK3PXP", RecoveryCodes: codes}), "set")
		got, err := m.GetMFA(ctx, u.ID)
		must(t, err, "get")
		if got.Secret != "JBSWY3DPEHPK3PXP" || !got.ConfirmedAt.IsZero() || !slices.Equal(got.RecoveryCodes, []string{"h1", "h2", "h3"}) {
			t.Fatalf("get = %+v", got)
		}
		recent(t, "mfa created_at", got.CreatedAt)
		at := time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.UTC)
		must(t, m.ConfirmMFA(ctx, u.ID, at), "confirm")
		got, _ = m.GetMFA(ctx, u.ID)
		if !got.ConfirmedAt.Equal(at.Truncate(time.Microsecond)) {
			t.Fatalf("confirmed at %v", got.ConfirmedAt)
		}

		// A code works once, even when raced.
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				switch err := m.UseRecoveryCode(ctx, u.ID, "h2"); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrNotFound):
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if wins.Load() != 1 {
			t.Fatalf("recovery code used %d times, want 1", wins.Load())
		}
		mustIs(t, m.UseRecoveryCode(ctx, u.ID, "nope"), store.ErrNotFound, "unknown code")
		got, _ = m.GetMFA(ctx, u.ID)
		if !slices.Equal(got.RecoveryCodes, []string{"h1", "h3"}) {
			t.Fatalf("codes left = %v", got.RecoveryCodes)
		}

		// Re-enrolling replaces everything.
		must(t, m.SetMFA(ctx, u.ID, store.MFA{Secret: "OTHER"}), "re-enroll")
		got, _ = m.GetMFA(ctx, u.ID)
		if got.Secret != "OTHER" || !got.ConfirmedAt.IsZero() || len(got.RecoveryCodes) != 0 || got.RecoveryCodes == nil {
			t.Fatalf("after re-enroll: %+v", got)
		}
		must(t, m.DeleteMFA(ctx, u.ID), "delete")
		must(t, m.DeleteMFA(ctx, u.ID), "delete again")
		_, err = m.GetMFA(ctx, u.ID)
		mustIs(t, err, store.ErrNotFound, "get after delete")
	})

	t.Run("Identities", func(t *testing.T) {
		m := open(t)
		u, err := m.CreateUser(ctx, store.User{Email: "ann@example.com", Username: "ann"})
		must(t, err, "create")
		v, err := m.CreateUser(ctx, store.User{Email: "bob@example.com", Username: "bob"})
		must(t, err, "create bob")
		const iss = "https://issuer.example"
		_, err = m.UserByIdentity(ctx, iss, "sub-1")
		mustIs(t, err, store.ErrNotFound, "before link")
		id, err := m.LinkIdentity(ctx, store.Identity{Issuer: iss, Subject: "sub-1", UserID: u.ID})
		must(t, err, "link")
		recent(t, "identity created_at", id.CreatedAt)
		got, err := m.UserByIdentity(ctx, iss, "sub-1")
		must(t, err, "by identity")
		if got.ID != u.ID || got.Email != u.Email {
			t.Fatalf("by identity = %+v", got)
		}
		// Subjects are case-sensitive; issuers differ per provider.
		_, err = m.UserByIdentity(ctx, iss, "SUB-1")
		mustIs(t, err, store.ErrNotFound, "other case")
		_, err = m.UserByIdentity(ctx, iss+"/", "sub-1")
		mustIs(t, err, store.ErrNotFound, "other issuer")
		_, err = m.LinkIdentity(ctx, store.Identity{Issuer: iss, Subject: "sub-1", UserID: v.ID})
		mustIs(t, err, store.ErrConflict, "same pair for another user")
		// A user may have several identities (providers, or accounts).
		_, err = m.LinkIdentity(ctx, store.Identity{Issuer: "https://other.example", Subject: "sub-1", UserID: u.ID})
		must(t, err, "second provider")
		_, err = m.LinkIdentity(ctx, store.Identity{Issuer: iss, Subject: metachars, UserID: v.ID})
		must(t, err, "metachar subject")
		if got, err := m.UserByIdentity(ctx, iss, metachars); err != nil || got.ID != v.ID {
			t.Fatalf("metachar subject: %+v %v", got, err)
		}
		_, err = m.LinkIdentity(ctx, store.Identity{Issuer: iss, Subject: "sub-2", UserID: "nobody"})
		mustIs(t, err, store.ErrNotFound, "link to nobody")
		for name, bad := range map[string]store.Identity{
			"empty subject": {Issuer: iss, UserID: u.ID},
			"empty issuer":  {Subject: "s", UserID: u.ID},
			"long subject":  {Issuer: iss, Subject: big(), UserID: u.ID},
			"NUL":           {Issuer: iss, Subject: "a\x00b", UserID: u.ID},
		} {
			_, err := m.LinkIdentity(ctx, bad)
			mustIs(t, err, store.ErrInvalid, name)
		}
	})

	t.Run("Profiles", func(t *testing.T) {
		m := open(t)
		u, err := m.CreateUser(ctx, store.User{Email: "ann@example.com", Username: "ann"})
		must(t, err, "create")
		v, err := m.CreateUser(ctx, store.User{Email: "bob@example.com", Username: "bob"})
		must(t, err, "create bob")
		list, err := m.ListProfiles(ctx, u.ID)
		must(t, err, "list empty")
		if list == nil || len(list) != 0 {
			t.Fatalf("empty list = %#v", list)
		}
		p1, err := m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "Kids"}, 3)
		must(t, err, "create")
		recent(t, "profile created_at", p1.CreatedAt)
		if p1.ID == "" || p1.UserID != u.ID || p1.Name != "Kids" {
			t.Fatalf("create = %+v", p1)
		}
		_, err = m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "kids"}, 3)
		mustIs(t, err, store.ErrConflict, "same name, other case")
		_, err = m.CreateProfile(ctx, store.Profile{UserID: v.ID, Name: "Kids"}, 3)
		must(t, err, "same name in another account")
		p2, err := m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: metachars}, 3)
		must(t, err, "metachar name")
		_, err = m.CreateProfile(ctx, store.Profile{UserID: "nobody", Name: "x"}, 3)
		mustIs(t, err, store.ErrNotFound, "profile of nobody")
		_, err = m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: big()}, 3)
		mustIs(t, err, store.ErrInvalid, "1 MB name")
		_, err = m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: ""}, 3)
		mustIs(t, err, store.ErrInvalid, "empty name")

		// The limit holds under concurrent creations.
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Go(func() {
				switch _, err := m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: fmt.Sprint("p", i)}, 3); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrLimit) && !errors.Is(err, store.ErrUnavailable):
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		list, err = m.ListProfiles(ctx, u.ID)
		must(t, err, "list")
		if wins.Load() != 1 || len(list) != 3 || list[0].ID != p1.ID || list[1].ID != p2.ID || list[1].Name != metachars {
			t.Fatalf("%d concurrent wins, list = %+v", wins.Load(), list)
		}
		mustIs(t, m.DeleteProfile(ctx, v.ID, p1.ID), store.ErrNotFound, "delete another account's profile")
		must(t, m.DeleteProfile(ctx, u.ID, p1.ID), "delete")
		mustIs(t, m.DeleteProfile(ctx, u.ID, p1.ID), store.ErrNotFound, "delete again")
		_, err = m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "Kids"}, 3)
		must(t, err, "room again after delete")
	})

	t.Run("ProfilePreferences", func(t *testing.T) {
		m := open(t)
		u, err := m.CreateUser(ctx, store.User{Email: "ann@example.com", Username: "ann"})
		must(t, err, "create")
		v, err := m.CreateUser(ctx, store.User{Email: "bob@example.com", Username: "bob"})
		must(t, err, "create bob")
		// SQL metacharacters, quotes, backslashes, control characters and
		// unicode inside JSON strings and keys, and 1 MB of them.
		prefs := json.RawMessage(`{"q": ` + mustJSON(metachars) + `, ` + mustJSON(metachars) + `: [1, 2.5, true, null],
			"u": "\u00e9 ünï 字 🎥", "nested": {"a": {"b": ""}}}`)
		large := json.RawMessage(`{"big": ` + mustJSON(big()) + `}`)
		p1, err := m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "Kids", Preferences: prefs}, 5)
		must(t, err, "create with preferences")
		if !jsonEqual(p1.Preferences, prefs) {
			t.Fatalf("create returned preferences %s", p1.Preferences)
		}
		p2, err := m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "Grown-ups"}, 5)
		must(t, err, "create without preferences")
		if !jsonEqual(p2.Preferences, json.RawMessage(`{}`)) {
			t.Fatalf("default preferences %s, want {}", p2.Preferences)
		}
		vp, err := m.CreateProfile(ctx, store.Profile{UserID: v.ID, Name: "Kids"}, 5)
		must(t, err, "bob's profile")

		got, err := m.GetProfile(ctx, u.ID, p1.ID)
		must(t, err, "get")
		if got.ID != p1.ID || got.UserID != u.ID || got.Name != "Kids" || !got.CreatedAt.Equal(p1.CreatedAt) ||
			!jsonEqual(got.Preferences, prefs) {
			t.Fatalf("get = %+v, want %+v", got, p1)
		}
		recent(t, "get profile created_at", got.CreatedAt)
		if got, err := m.GetProfile(ctx, u.ID, p2.ID); err != nil || !jsonEqual(got.Preferences, json.RawMessage(`{}`)) {
			t.Fatalf("get without preferences: %+v %v", got, err)
		}
		list, err := m.ListProfiles(ctx, u.ID)
		must(t, err, "list")
		if len(list) != 2 || !jsonEqual(list[0].Preferences, prefs) || !jsonEqual(list[1].Preferences, json.RawMessage(`{}`)) {
			t.Fatalf("list = %+v", list)
		}
		// Another account's profile, or no profile: not found.
		for name, ids := range map[string][2]string{
			"another account's": {v.ID, p1.ID},
			"through another":   {u.ID, vp.ID},
			"unknown id":        {u.ID, "nope"},
			"unknown user":      {"nobody", p1.ID},
			"metachar id":       {u.ID, metachars},
			"NUL id":            {u.ID, "a\x00b"},
			"not UTF-8 id":      {u.ID, "\xff"},
			"NUL user":          {"a\x00b", p1.ID},
		} {
			_, err := m.GetProfile(ctx, ids[0], ids[1])
			mustIs(t, err, store.ErrNotFound, "get "+name)
			_, err = m.UpdateViewerProfile(ctx, ids[0], ids[1], store.ViewerProfileUpdate{Name: ptr("x")})
			mustIs(t, err, store.ErrNotFound, "update "+name)
		}

		// Nothing set: nothing changes.
		same, err := m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{})
		must(t, err, "empty update")
		if same.Name != "Kids" || !jsonEqual(same.Preferences, prefs) || !same.CreatedAt.Equal(p1.CreatedAt) {
			t.Fatalf("empty update changed the profile: %+v", same)
		}
		// The name alone: the preferences stay.
		got, err = m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{Name: ptr(metachars)})
		must(t, err, "rename")
		if got.ID != p1.ID || got.UserID != u.ID || got.Name != metachars || !jsonEqual(got.Preferences, prefs) ||
			!got.CreatedAt.Equal(p1.CreatedAt) {
			t.Fatalf("after rename: %+v", got)
		}
		// The preferences alone: the name stays; other profiles keep theirs.
		got, err = m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{Preferences: large})
		must(t, err, "1 MB preferences")
		if got.Name != metachars || !jsonEqual(got.Preferences, large) {
			t.Fatalf("after preferences update: name %q", got.Name)
		}
		got, err = m.GetProfile(ctx, u.ID, p1.ID)
		must(t, err, "get after update")
		if got.Name != metachars || !jsonEqual(got.Preferences, large) {
			t.Fatal("update not stored verbatim")
		}
		for _, p := range []store.Profile{p2, vp} {
			other, err := m.GetProfile(ctx, p.UserID, p.ID)
			must(t, err, "get other")
			if !jsonEqual(other.Preferences, json.RawMessage(`{}`)) || other.Name != p.Name {
				t.Fatalf("another profile changed: %+v", other)
			}
		}
		// Both at once, back to small preferences.
		two := json.RawMessage(`{"subtitles": "fr", "q": ` + mustJSON(metachars) + `}`)
		got, err = m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{Name: ptr("Kids"), Preferences: two})
		must(t, err, "update both")
		if got.Name != "Kids" || !jsonEqual(got.Preferences, two) {
			t.Fatalf("update both: %+v", got)
		}
		var decoded map[string]any
		must(t, json.Unmarshal(got.Preferences, &decoded), "decode preferences")
		if decoded["q"] != metachars {
			t.Fatalf("string inside preferences = %q, want %q", decoded["q"], metachars)
		}

		// Names: unique per account, ASCII case ignored; the profile's own
		// name in another case is no conflict.
		_, err = m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{Name: ptr("GROWN-UPS")})
		mustIs(t, err, store.ErrConflict, "rename to another profile's name")
		_, err = m.UpdateViewerProfile(ctx, u.ID, p1.ID, store.ViewerProfileUpdate{Name: ptr("KIDS")})
		must(t, err, "rename to own name in another case")
		_, err = m.UpdateViewerProfile(ctx, v.ID, vp.ID, store.ViewerProfileUpdate{Name: ptr("Grown-ups")})
		must(t, err, "a name another account uses")
		if got, _ := m.GetProfile(ctx, u.ID, p2.ID); got.Name != "Grown-ups" {
			t.Fatalf("a conflicting rename changed the other profile: %+v", got)
		}

		badJSON, arr, str, null, empty := json.RawMessage(`{"a":`), json.RawMessage(`[1]`), json.RawMessage(`"x"`),
			json.RawMessage(`null`), json.RawMessage{}
		nul, notUTF8 := json.RawMessage("{\"a\": \"\x00\"}"), json.RawMessage("{\"a\": \"\xff\"}")
		nulEscape, nulKey := json.RawMessage(`{"a": ["x\u0000y"]}`), json.RawMessage(`{"\u0000": 1}`)
		for name, bad := range map[string]store.ViewerProfileUpdate{
			"empty name":     {Name: ptr("")},
			"1 MB name":      {Name: ptr(big())},
			"NUL name":       {Name: ptr("a\x00b")},
			"not UTF-8 name": {Name: ptr("\xff")},
			"invalid JSON":   {Preferences: badJSON},
			"array":          {Preferences: arr},
			"string":         {Preferences: str},
			"null":           {Preferences: null},
			"empty":          {Preferences: empty},
			"NUL in prefs":   {Preferences: nul},
			"not UTF-8":      {Preferences: notUTF8},
			"\\u0000 value":  {Preferences: nulEscape},
			"\\u0000 key":    {Preferences: nulKey},
		} {
			_, err := m.UpdateViewerProfile(ctx, u.ID, p1.ID, bad)
			mustIs(t, err, store.ErrInvalid, "update with "+name)
			if len(bad.Preferences) > 0 {
				_, err = m.CreateProfile(ctx, store.Profile{UserID: u.ID, Name: "New", Preferences: bad.Preferences}, 5)
				mustIs(t, err, store.ErrInvalid, "create with "+name)
			}
		}
		if got, _ := m.GetProfile(ctx, u.ID, p1.ID); got.Name != "KIDS" || !jsonEqual(got.Preferences, two) {
			t.Fatalf("a refused update changed the profile: %+v", got)
		}
		// A backslash, then "u0000": text, not NUL.
		slash := json.RawMessage(`{"path": "C:\\u0000"}`)
		got, err = m.UpdateViewerProfile(ctx, u.ID, p2.ID, store.ViewerProfileUpdate{Preferences: slash})
		must(t, err, "escaped backslash")
		var path struct{ Path string }
		if err := json.Unmarshal(got.Preferences, &path); err != nil || path.Path != `C:\u0000` {
			t.Fatalf("escaped backslash: %s %v", got.Preferences, err)
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
