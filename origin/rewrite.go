package origin

import (
	"bytes"
	"errors"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// HLS playlists for signed playback.
//
// Players (hls.js, Safari, ExoPlayer) resolve a playlist's relative URIs
// against the playlist's URL but drop its query, so a token that opened
// index.m3u8?st=T would not reach the media playlists and segments. The
// origin therefore rewrites every relative URI of a protected playlist —
// variant lines, URI="..." attributes (EXT-X-MEDIA, EXT-X-MAP,
// EXT-X-I-FRAME-STREAM-INF, EXT-X-KEY, EXT-X-PART, ...) and segment lines —
// to carry ?st=T itself. Absolute URLs (with a scheme, or "//host") are
// left alone: the token must not leak to another host.
//
// In a multivariant (master) playlist, variants the grant does not allow
// are removed: EXT-X-STREAM-INF with its URI line, and
// EXT-X-I-FRAME-STREAM-INF.

// variant is one entry of a master playlist that a grant can remove.
type variant struct {
	key    string // the object key its URI names ("" : not on this origin)
	folder string // path.Dir(key)
	name   string // the rendition's name: its folder's name, or the playlist's base name when it shares the master's folder
	short  int    // the short side of RESOLUTION (0: none given)
}

// masterInfo is what the guard needs to know about a master playlist.
type masterInfo struct {
	dir      string
	variants []variant
	// others are the folders of the other URIs the master names
	// (EXT-X-MEDIA renditions such as the shared audio, subtitles): a
	// removed variant's folder is refused only if nothing kept lives in it.
	others []string
}

// allows says whether g lets the viewer play v.
func (g Grant) allows(v variant) bool {
	if g.MaxHeight > 0 && v.short > g.MaxHeight {
		return false
	}
	if g.Renditions != nil && !slices.Contains(g.Renditions, v.name) {
		return false
	}
	return true
}

func (g Grant) limited() bool { return g.MaxHeight > 0 || g.Renditions != nil }

// refuses says whether key lies in a rendition of this master that g does
// not allow: under the removed variant's folder, or, when that folder is
// shared with something g does allow (or is the master's own), exactly the
// variant's playlist.
func (mi *masterInfo) refuses(key string, g Grant) bool {
	for _, v := range mi.variants {
		if v.key == "" || g.allows(v) {
			continue
		}
		if key == v.key {
			return true
		}
		if v.folder == mi.dir || !within(key, v.folder) {
			continue
		}
		shared := false
		for _, o := range mi.variants {
			if o.key != "" && g.allows(o) && within(o.folder, v.folder) {
				shared = true
			}
		}
		for _, f := range mi.others {
			if within(f, v.folder) {
				shared = true
			}
		}
		if !shared {
			return true
		}
	}
	return false
}

// within: key is folder or lies under it ("" is the root).
func within(key, folder string) bool {
	return folder == "" || key == folder || strings.HasPrefix(key, folder+"/")
}

// parseMaster reads the variants of the playlist at key; a media playlist
// gives none.
func parseMaster(key string, body []byte) (*masterInfo, error) {
	mi := &masterInfo{dir: path.Dir(key)}
	if mi.dir == "." {
		mi.dir = ""
	}
	_, err := walkPlaylist(body, "", func(l line) (keep bool, err error) {
		switch {
		case l.variantTag != "":
			if v, ok := mi.variant(l); ok {
				mi.variants = append(mi.variants, v)
			}
		case l.uri != "" && l.tag != "":
			if k := resolveURI(mi.dir, l.uri); k != "" {
				mi.others = append(mi.others, path.Dir(k))
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return mi, nil
}

func (mi *masterInfo) variant(l line) (variant, bool) {
	v := variant{}
	if w, h, ok := parseResolution(l.attrs["RESOLUTION"]); ok {
		v.short = min(w, h)
	}
	v.key = resolveURI(mi.dir, l.uri)
	if v.key == "" {
		return v, true
	}
	v.folder = path.Dir(v.key)
	if v.folder == "." {
		v.folder = ""
	}
	if v.folder == mi.dir {
		b := path.Base(v.key)
		v.name = strings.TrimSuffix(b, path.Ext(b))
	} else {
		v.name = path.Base(v.folder)
	}
	return v, true
}

func parseResolution(s string) (w, h int, ok bool) {
	ws, hs, ok := strings.Cut(s, "x")
	if !ok {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	return w, h, err1 == nil && err2 == nil && w > 0 && h > 0
}

// rewritePlaylist returns body with st=token on every relative URI and
// without the variants g does not allow; kept counts the EXT-X-STREAM-INF
// variants left (I-frame playlists do not count: they alone play nothing). key is the playlist's own key.
func rewritePlaylist(body []byte, key, token string, g Grant) (out []byte, kept int, isMaster bool, err error) {
	mi := &masterInfo{dir: path.Dir(key)}
	if mi.dir == "." {
		mi.dir = ""
	}
	out, err = walkPlaylist(body, token, func(l line) (bool, error) {
		if l.variantTag != "" {
			full := l.variantTag == "#EXT-X-STREAM-INF"
			isMaster = isMaster || full
			if v, _ := mi.variant(l); !g.allows(v) {
				return false, nil
			}
			if full {
				kept++
			}
		}
		return true, nil
	})
	return out, kept, isMaster, err
}

// line is one logical entry of a playlist: a tag line, or for
// EXT-X-STREAM-INF the tag together with its URI line (and any comments
// between them), or a bare URI line.
type line struct {
	tag        string            // tag name ("#EXT-X-MAP"), "" for a URI line
	variantTag string            // "#EXT-X-STREAM-INF" or "#EXT-X-I-FRAME-STREAM-INF"
	attrs      map[string]string // tag attributes, when it has an attribute list
	uri        string            // the URI this entry names ("" if none)
}

var errBadPlaylist = errors.New("playlist cannot be signed: unparsable attribute list")

// walkPlaylist calls fn on each entry; when token is not empty, it also
// returns the playlist rebuilt from the entries fn keeps, with the token
// added to their relative URIs. Line ends become "\n".
func walkPlaylist(body []byte, token string, fn func(line) (bool, error)) ([]byte, error) {
	var out bytes.Buffer
	rewrite := token != ""
	if rewrite {
		out.Grow(len(body) + len(body)/4)
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		raw := strings.TrimSuffix(lines[i], "\r")
		text := strings.TrimSpace(raw)
		var entry []string // the output lines of this entry
		var l line
		switch {
		case text == "" || (strings.HasPrefix(text, "#") && !strings.HasPrefix(text, "#EXT")):
			// Blank lines and comments pass through.
			if rewrite {
				out.WriteString(raw + "\n")
			}
			continue
		case strings.HasPrefix(text, "#EXT"):
			name, list, _ := strings.Cut(text, ":")
			l.tag = name
			if name == "#EXT-X-STREAM-INF" || name == "#EXT-X-I-FRAME-STREAM-INF" || strings.Contains(list, "URI=") {
				attrs, uriSpan, ok := parseAttrs(list)
				if !ok {
					return nil, errBadPlaylist
				}
				l.attrs = attrs
				if name == "#EXT-X-STREAM-INF" || name == "#EXT-X-I-FRAME-STREAM-INF" {
					l.variantTag = name
				}
				if uriSpan[1] > 0 {
					l.uri = list[uriSpan[0]:uriSpan[1]]
					if rewrite {
						list = list[:uriSpan[0]] + withToken(l.uri, token) + list[uriSpan[1]:]
					}
				}
			}
			if rewrite {
				if list != "" || strings.Contains(text, ":") {
					entry = append(entry, name+":"+list)
				} else {
					entry = append(entry, name)
				}
			}
			if name == "#EXT-X-STREAM-INF" {
				// The URI is the next line that is neither blank nor
				// a comment.
				for i+1 < len(lines) {
					i++
					next := strings.TrimSpace(strings.TrimSuffix(lines[i], "\r"))
					if next == "" || (strings.HasPrefix(next, "#") && !strings.HasPrefix(next, "#EXT")) {
						entry = append(entry, next)
						continue
					}
					if strings.HasPrefix(next, "#") {
						i-- // a tag: the variant has no URI line
						break
					}
					l.uri = next
					if rewrite {
						next = withToken(next, token)
					}
					entry = append(entry, next)
					break
				}
			}
		default:
			l.uri = text
			if rewrite {
				entry = append(entry, withToken(text, token))
			}
		}
		keep, err := fn(l)
		if err != nil {
			return nil, err
		}
		if keep && rewrite {
			for _, e := range entry {
				out.WriteString(e + "\n")
			}
		}
	}
	return out.Bytes(), nil
}

// parseAttrs parses an HLS attribute list (RFC 8216 4.2): NAME=VALUE
// pairs separated by commas, VALUE a quoted string (which may hold
// commas) or a run of non-comma characters. uri is the span of the URI
// attribute's value inside the quotes ([0,0] when there is none).
func parseAttrs(s string) (attrs map[string]string, uri [2]int, ok bool) {
	attrs = map[string]string{}
	i := 0
	for i < len(s) {
		eq := strings.IndexByte(s[i:], '=')
		if eq <= 0 {
			return nil, uri, false
		}
		name := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		var val string
		var start, end int
		if i < len(s) && s[i] == '"' {
			closing := strings.IndexByte(s[i+1:], '"')
			if closing < 0 {
				return nil, uri, false
			}
			start, end = i+1, i+1+closing
			val = s[start:end]
			i = end + 1
		} else {
			comma := strings.IndexByte(s[i:], ',')
			if comma < 0 {
				comma = len(s) - i
			}
			val = strings.TrimSpace(s[i : i+comma])
			i += comma
		}
		if name == "URI" {
			if end == 0 {
				return nil, uri, false // URI must be a quoted string
			}
			uri = [2]int{start, end}
		}
		attrs[name] = val
		if i < len(s) {
			if s[i] != ',' {
				return nil, uri, false
			}
			i++
		}
	}
	return attrs, uri, true
}

// isAbsoluteURL: a scheme ("https:", "data:", "skd:") or a network-path
// reference ("//host/..."): not this origin's, so it gets no token.
func isAbsoluteURL(u string) bool {
	if strings.HasPrefix(u, "//") {
		return true
	}
	colon := strings.IndexByte(u, ':')
	if colon <= 0 {
		return false
	}
	for i, c := range u[:colon] {
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false // a colon later in a path ("a/b:c") is no scheme
		}
	}
	return true
}

// withToken adds st=token to a relative URI's query, replacing any st
// it has, before a fragment if there is one.
func withToken(u, token string) string {
	if u == "" || isAbsoluteURL(u) {
		return u
	}
	frag := ""
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u, frag = u[:i], u[i:]
	}
	base, q, _ := strings.Cut(u, "?")
	var params []string
	for p := range strings.SplitSeq(q, "&") {
		if name, _, _ := strings.Cut(p, "="); p != "" && name != tokenParam {
			params = append(params, p)
		}
	}
	params = append(params, tokenParam+"="+url.QueryEscape(token))
	return base + "?" + strings.Join(params, "&") + frag
}

// resolveURI maps a URI in the playlist at folder dir to the object key
// it names on this origin, "" for other hosts and for anything odd.
func resolveURI(dir, u string) string {
	if isAbsoluteURL(u) {
		return ""
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	u, err := pathUnescape(u)
	if err != nil || u == "" {
		return ""
	}
	var p string
	if strings.HasPrefix(u, "/") {
		p = path.Clean(u)[1:]
	} else {
		p = path.Join(dir, u)
	}
	if p == "" || p == "." || p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") {
		return ""
	}
	return p
}
