package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/streamd/streamd/store"
)

// testChannelOwners is the contract of channel owners and config channels
// (run by TestMeta).
func testChannelOwners(t *testing.T, open func(t *testing.T) store.Meta) {
	ctx := context.Background()
	t.Run("ChannelOwners", func(t *testing.T) {
		m := open(t)
		list, err := m.ChannelsByOwner(ctx, "ann")
		must(t, err, "by owner, empty")
		if list == nil || len(list) != 0 {
			t.Fatalf("by owner on an empty store = %#v, want empty non-nil", list)
		}
		a2, err := m.CreateChannel(ctx, store.Channel{Name: "a2", OwnerID: "ann"}, "key-a2-0123456789")
		must(t, err, "create a2")
		if a2.OwnerID != "ann" || a2.FromConfig {
			t.Fatalf("create a2 = %+v", a2)
		}
		_, err = m.CreateChannel(ctx, store.Channel{Name: "a1", OwnerID: "ann"}, "key-a1-0123456789")
		must(t, err, "create a1")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "b1", OwnerID: "bob"}, "key-b1-0123456789")
		must(t, err, "create b1")
		cfg, err := m.CreateChannel(ctx, store.Channel{Name: "main", FromConfig: true}, "key-main-0123456789")
		must(t, err, "create config channel")
		got, err := m.GetChannel(ctx, "main")
		must(t, err, "get config channel")
		if !got.FromConfig || got.OwnerID != "" || got != cfg {
			t.Fatalf("config channel = %+v, want %+v", got, cfg)
		}
		list, err = m.ChannelsByOwner(ctx, "ann")
		must(t, err, "by owner")
		if len(list) != 2 || list[0].Name != "a1" || list[1].Name != "a2" {
			t.Fatalf("ann's channels = %+v", list)
		}
		for _, owner := range []string{"%", "_", "' OR '1'='1", "ANN"} {
			list, err = m.ChannelsByOwner(ctx, owner)
			must(t, err, "by owner "+owner)
			if len(list) != 0 {
				t.Fatalf("owner %q matched %d channels", owner, len(list))
			}
		}
		list, err = m.ChannelsByOwner(ctx, "")
		must(t, err, "unowned")
		if len(list) != 1 || list[0].Name != "main" {
			t.Fatalf("unowned channels = %+v", list)
		}
		// Ownership and the config flag can change; nil leaves them.
		up, err := m.UpdateChannel(ctx, "a2", store.ChannelUpdate{OwnerID: ptr("bob"), FromConfig: ptr(true)})
		must(t, err, "update owner")
		if up.OwnerID != "bob" || !up.FromConfig || up.Name != "a2" {
			t.Fatalf("after owner update: %+v", up)
		}
		up, err = m.UpdateChannel(ctx, "a2", store.ChannelUpdate{Title: ptr("T")})
		must(t, err, "update title")
		if up.OwnerID != "bob" || !up.FromConfig || up.Title != "T" {
			t.Fatalf("title update changed owner or flag: %+v", up)
		}
		up, err = m.UpdateChannel(ctx, "a2", store.ChannelUpdate{FromConfig: ptr(false)})
		must(t, err, "clear flag")
		if up.FromConfig {
			t.Fatal("flag not cleared")
		}
		rot, err := m.RotateStreamKey(ctx, "a2", "key-a2-rotated-0123456789")
		must(t, err, "rotate")
		if rot.OwnerID != "bob" {
			t.Fatalf("rotation changed the owner: %+v", rot)
		}
		list, _ = m.ChannelsByOwner(ctx, "bob")
		if len(list) != 2 {
			t.Fatalf("bob's channels = %+v", list)
		}
		// Visibility: public unless told, changeable, validated.
		if up.Visibility != store.VisibilityPublic {
			t.Fatalf("default visibility = %q, want public", up.Visibility)
		}
		up, err = m.UpdateChannel(ctx, "a2", store.ChannelUpdate{Visibility: ptr(store.VisibilityProtected)})
		must(t, err, "protect")
		if got, _ := m.GetChannel(ctx, "a2"); up.Visibility != store.VisibilityProtected || got.Visibility != store.VisibilityProtected {
			t.Fatalf("after protect: update %q, get %q", up.Visibility, got.Visibility)
		}
		pc, err := m.CreateChannel(ctx, store.Channel{Name: "p", Visibility: store.VisibilityProtected}, "key-p-0123456789")
		must(t, err, "create protected")
		if got, _ := m.GetChannel(ctx, "p"); pc.Visibility != store.VisibilityProtected || got.Visibility != store.VisibilityProtected {
			t.Fatalf("created protected: %q, stored %q", pc.Visibility, got.Visibility)
		}
		_, err = m.UpdateChannel(ctx, "a2", store.ChannelUpdate{Visibility: ptr(store.Visibility("secret"))})
		mustIs(t, err, store.ErrInvalid, "unknown visibility")
		_, err = m.CreateChannel(ctx, store.Channel{Name: "x", OwnerID: big()}, "key-x-0123456789")
		mustIs(t, err, store.ErrInvalid, "1 MB owner id")
		_, err = m.UpdateChannel(ctx, "a1", store.ChannelUpdate{OwnerID: ptr("nul\x00")})
		mustIs(t, err, store.ErrInvalid, "NUL in owner id")
	})
}

// testCatalog is the contract of ListContent (run by TestMeta).
func testCatalog(t *testing.T, open func(t *testing.T) store.Meta) {
	ctx := context.Background()

	ids := func(cs []store.Content) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.ID
		}
		return out
	}

	t.Run("UpdateContent", func(t *testing.T) {
		m := open(t)
		c, err := m.CreateContent(ctx, store.Content{Title: "Film", Genre: "drama", OwnerID: "pub"})
		must(t, err, "create")
		up, err := m.UpdateContent(ctx, c.ID, store.ContentUpdate{Visibility: ptr(store.VisibilityProtected), Title: ptr("Film 2 'quoted'; --")})
		must(t, err, "update")
		got, err := m.GetContent(ctx, c.ID)
		must(t, err, "get")
		for _, x := range []store.Content{up, got} {
			if x.Visibility != store.VisibilityProtected || x.Title != "Film 2 'quoted'; --" || x.Genre != "drama" || x.OwnerID != "pub" {
				t.Fatalf("after update: %+v", x)
			}
		}
		_, err = m.UpdateContent(ctx, c.ID, store.ContentUpdate{Visibility: ptr(store.Visibility("secret"))})
		mustIs(t, err, store.ErrInvalid, "unknown visibility")
		_, err = m.UpdateContent(ctx, c.ID, store.ContentUpdate{Description: ptr("nul\x00")})
		mustIs(t, err, store.ErrInvalid, "NUL in description")
		_, err = m.UpdateContent(ctx, "nope", store.ContentUpdate{Title: ptr("x")})
		mustIs(t, err, store.ErrNotFound, "unknown item")
	})

	t.Run("ListContent", func(t *testing.T) {
		m := open(t)
		list, err := m.ListContent(ctx, store.ContentQuery{})
		must(t, err, "list empty")
		if list == nil || len(list) != 0 {
			t.Fatalf("list on an empty store = %#v, want empty non-nil", list)
		}
		mk := func(id, title, desc, genre string, vis store.Visibility) store.Content {
			c, err := m.CreateContent(ctx, store.Content{ID: id, Title: title, Description: desc, Genre: genre, Visibility: vis, OwnerID: "pub"})
			must(t, err, "create "+id)
			return c
		}
		var all []store.Content // in creation order
		all = append(all,
			mk("c01", "Evening News", "the day in review", "news", ""),
			mk("c02", "Morning news", "wake up", "news", store.VisibilityProtected),
			mk("c03", "Cooking 100%", "recipes_and_more", "food", ""),
			mk("c04", "Cooking 100 percent", "recipes and more", "food", ""),
			mk("c05", "Match of the day", "FOOTBALL highlights", "sport", ""),
			mk("c06", "Quiet film", "about NEWS people", "drama", ""),
			mk("c07", metachars, metachars, "%_", ""),
		)
		got, err := m.GetContent(ctx, "c01")
		must(t, err, "get")
		if got.OwnerID != "pub" || got != all[0] {
			t.Fatalf("get = %+v, want %+v", got, all[0])
		}

		everything, err := m.ListContent(ctx, store.ContentQuery{IncludeProtected: true})
		must(t, err, "list all")
		if len(everything) != len(all) {
			t.Fatalf("listed %d, want %d", len(everything), len(all))
		}
		for i := 1; i < len(everything); i++ {
			a, b := everything[i-1], everything[i]
			if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID) {
				t.Fatalf("not newest first at %d: %s %v, %s %v", i, a.ID, a.CreatedAt, b.ID, b.CreatedAt)
			}
		}
		for _, c := range everything {
			want := all[slices.IndexFunc(all, func(x store.Content) bool { return x.ID == c.ID })]
			if c != want {
				t.Fatalf("listed %+v, want %+v", c, want)
			}
		}

		public, err := m.ListContent(ctx, store.ContentQuery{})
		must(t, err, "list public")
		if slices.Contains(ids(public), "c02") || len(public) != len(all)-1 {
			t.Fatalf("public list = %v", ids(public))
		}

		for _, tc := range []struct {
			q    store.ContentQuery
			want []string
		}{
			{store.ContentQuery{Genre: "news", IncludeProtected: true}, []string{"c01", "c02"}},
			{store.ContentQuery{Genre: "news"}, []string{"c01"}},
			{store.ContentQuery{Genre: "NEWS"}, nil},
			{store.ContentQuery{Genre: "%"}, nil},
			{store.ContentQuery{Genre: "%_"}, []string{"c07"}},
			{store.ContentQuery{Text: "news", IncludeProtected: true}, []string{"c01", "c02", "c06"}},
			{store.ContentQuery{Text: "NeWs"}, []string{"c01", "c06"}},
			{store.ContentQuery{Text: "football"}, []string{"c05"}},
			{store.ContentQuery{Text: "100%"}, []string{"c03"}},
			{store.ContentQuery{Text: "%"}, []string{"c03", "c07"}},
			{store.ContentQuery{Text: "_"}, []string{"c03", "c07"}},
			{store.ContentQuery{Text: "recipes_"}, []string{"c03"}},
			{store.ContentQuery{Text: "' OR '1'='1"}, nil},
			{store.ContentQuery{Text: "DROP TABLE"}, []string{"c07"}},
			{store.ContentQuery{Text: "字 🎥"}, []string{"c07"}},
			{store.ContentQuery{Text: "cooking", Genre: "food"}, []string{"c03", "c04"}},
			{store.ContentQuery{Text: "cooking", Genre: "news"}, nil},
		} {
			list, err := m.ListContent(ctx, tc.q)
			must(t, err, fmt.Sprintf("list %+v", tc.q))
			got := ids(list)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("list %+v = %v, want %v", tc.q, got, tc.want)
			}
		}

		// Keyset paging visits every item once, in the same order.
		var paged []string
		after := ""
		for range 10 {
			page, err := m.ListContent(ctx, store.ContentQuery{IncludeProtected: true, After: after, Limit: 3})
			must(t, err, "page")
			if len(page) > 3 {
				t.Fatalf("page of %d, limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			after = page[len(page)-1].ID
		}
		if !slices.Equal(paged, ids(everything)) {
			t.Fatalf("paged %v, want %v", paged, ids(everything))
		}
		// Paging with a filter; an item added meanwhile (newest) does not
		// shift the later pages.
		first, err := m.ListContent(ctx, store.ContentQuery{Genre: "food", Limit: 1})
		must(t, err, "food page 1")
		mk("c08", "Cooking again", "", "food", "")
		second, err := m.ListContent(ctx, store.ContentQuery{Genre: "food", Limit: 1, After: first[0].ID})
		must(t, err, "food page 2")
		if len(first) != 1 || len(second) != 1 || first[0].ID == second[0].ID || first[0].Genre != "food" || second[0].Genre != "food" {
			t.Fatalf("food pages %v then %v", ids(first), ids(second))
		}

		_, err = m.ListContent(ctx, store.ContentQuery{After: "no-such-id"})
		mustIs(t, err, store.ErrInvalid, "after an unknown id")
		_, err = m.ListContent(ctx, store.ContentQuery{After: "' OR '1'='1"})
		mustIs(t, err, store.ErrInvalid, "after a metachar id")
		for name, q := range map[string]store.ContentQuery{
			"limit 1001":   {Limit: 1001},
			"limit -1":     {Limit: -1},
			"1 MB text":    {Text: big()},
			"1 MB genre":   {Genre: big()},
			"NUL in text":  {Text: "a\x00"},
			"bad UTF-8":    {Genre: "\xff"},
			"1 MB after":   {After: big()},
			"NUL in after": {After: "\x00"},
		} {
			_, err := m.ListContent(ctx, q)
			mustIs(t, err, store.ErrInvalid, name)
		}
		_, err = m.CreateContent(ctx, store.Content{Genre: strings.Repeat("g", 257)})
		mustIs(t, err, store.ErrInvalid, "genre over 256 bytes")
		_, err = m.CreateContent(ctx, store.Content{OwnerID: "\x00"})
		mustIs(t, err, store.ErrInvalid, "NUL in owner")
		large := big()
		c, err := m.CreateContent(ctx, store.Content{Title: large, Description: large})
		must(t, err, "1 MB title and description")
		list, err = m.ListContent(ctx, store.ContentQuery{Text: large[:1000]})
		must(t, err, "search in 1 MB")
		if len(list) != 1 || list[0].ID != c.ID || list[0].Title != large {
			t.Fatalf("search in 1 MB text = %v", ids(list))
		}
	})
}
