package origin

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// DASH manifests for signed playback.
//
// The problem is the one of HLS playlists (rewrite.go): dash.js, Shaka and
// ExoPlayer resolve an MPD's relative URLs against the MPD's URL without
// its query, so the token that opened manifest.mpd?st=T would not reach
// the segments. rewriteMPD therefore adds st=T to every relative URL of
// the manifest (SegmentTemplate media/initialization/index/
// bitstreamSwitching, the sourceURL of Initialization, RepresentationIndex
// and BitstreamSwitching, SegmentURL media/index, and the text of BaseURL,
// Location and PatchLocation), and removes the Representations (and the
// AdaptationSets left empty) the grant does not allow.
//
// The manifest is edited as bytes, not re-marshalled: encoding/xml's
// encoder renames namespace prefixes and would hand players a document
// that differs from the packager's in more than the URLs. encoding/xml's
// decoder only checks the document and says where each element lies.
//
// A URL that resolves against an absolute BaseURL ends up on another host,
// so it gets no token, like an absolute URL in HLS: the token must not
// leak. With several BaseURLs at one level (alternatives), one absolute
// is enough to withhold it.

// mpdErr prefixes every error of rewriteMPD.
const mpdErr = "DASH manifest cannot be signed"

// repIDVar is the template identifier the Representation's id replaces.
const repIDVar = "$RepresentationID$"

// mpdKind is the role of an element that matters for removal or for the
// resolution of URLs.
type mpdKind uint8

const (
	mpdOther mpdKind = iota
	mpdRoot
	mpdPeriod
	mpdAdaptationSet
	mpdRepresentation
)

func mpdKindOf(local string) mpdKind {
	switch local {
	case "MPD":
		return mpdRoot
	case "Period":
		return mpdPeriod
	case "AdaptationSet":
		return mpdAdaptationSet
	case "Representation":
		return mpdRepresentation
	}
	return mpdOther
}

// hasURLAttrs says whether element local has attributes isURLAttr knows.
func hasURLAttrs(local string) bool {
	switch local {
	case "SegmentTemplate", "Initialization", "RepresentationIndex", "BitstreamSwitching", "SegmentURL":
		return true
	}
	return false
}

// isURLAttr says whether attribute attr of element local holds a URL (or
// a URL template).
func isURLAttr(local, attr string) bool {
	switch local {
	case "SegmentTemplate":
		return attr == "media" || attr == "initialization" || attr == "index" || attr == "bitstreamSwitching"
	case "Initialization", "RepresentationIndex", "BitstreamSwitching":
		return attr == "sourceURL"
	case "SegmentURL":
		return attr == "media" || attr == "index"
	}
	return false
}

// mpdURLText says whether element local's text is a URL. BaseURL is the
// one that matters; Location and PatchLocation are where a dynamic
// manifest's next version is fetched, which must carry the token too.
func mpdURLText(local string) bool {
	return local == "BaseURL" || local == "Location" || local == "PatchLocation"
}

// mpdNode is an MPD, Period, AdaptationSet or Representation.
type mpdNode struct {
	kind       mpdKind
	parent     *mpdNode // the nearest enclosing node (nil for the root)
	as, period *mpdNode // the nearest enclosing AdaptationSet and Period
	start, end int      // the element's bytes, end tag included

	id, width, height, mimeType, contentType string

	media    string // media of a SegmentTemplate child
	hasMedia bool
	absBase  bool // a BaseURL child is absolute (or has markup in it)
	offsite  bool // URLs resolved here go to another host (absBase here or above)

	reps, keptReps int  // (AdaptationSet) its Representations, and those g allows
	video          bool // (Representation) counts for kept
	drop           bool // g removes it
	gone           bool // it or an enclosing node is removed
}

// mpdURL is one URL in the manifest: an attribute value, or the text of a
// BaseURL-like element.
type mpdURL struct {
	start, end int    // the raw bytes that hold it
	value      string // decoded
	owner      *mpdNode
	// text: the URL of a BaseURL-like element, which resolves against the
	// base of owner's parent rather than owner's own.
	text bool
}

// mpdDoc is what rewriteMPD needs of a manifest.
type mpdDoc struct {
	nodes []*mpdNode // in document order: parents before children
	urls  []mpdURL
}

// rewriteMPD returns the DASH manifest body rewritten for token: every
// relative URL in it carries st=token, and the Representations g does not
// allow are removed. kept is the number of video Representations left (a
// manifest with no video at all: the number of Representations left). An
// empty token rewrites no URL. Rendition names come from the manifest's
// own templates, which are relative to it, so its key is not needed.
func rewriteMPD(body []byte, token string, g Grant) (out []byte, kept int, err error) {
	doc, err := parseMPD(body)
	if err != nil {
		return nil, 0, err
	}
	kept = doc.judge(g)
	return applyEdits(body, doc.edits(body, token)), kept, nil
}

// mpdFrame is one open element during parsing.
type mpdFrame struct {
	local string
	node  *mpdNode // the node this element is, nil if none
	owner *mpdNode // the nearest node at or above it
	text  *mpdText // collecting the text of a BaseURL-like element
}

// mpdText collects the text of a BaseURL-like element.
type mpdText struct {
	start int // just after the start tag
	value []byte
	mixed bool // it has something besides text: left alone
}

// parseMPD checks body (one MPD root, well-formed) and finds its nodes
// and URLs.
func parseMPD(body []byte) (*mpdDoc, error) {
	doc := &mpdDoc{}
	d := xml.NewDecoder(bytes.NewReader(body))
	var stack []mpdFrame
	rooted := false
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mpdErr, err)
		}
		end := int(d.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				if rooted {
					return nil, errors.New(mpdErr + ": more than one root element")
				}
				if t.Name.Local != "MPD" {
					return nil, fmt.Errorf("%s: root element is %q, not MPD", mpdErr, t.Name.Local)
				}
				rooted = true
			}
			f, err := doc.open(body, stack, t, start, end)
			if err != nil {
				return nil, err
			}
			stack = append(stack, f)
		case xml.EndElement:
			if len(stack) == 0 { // the decoder matches end tags: cannot happen
				return nil, errors.New(mpdErr + ": unexpected end tag")
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			doc.close(body, f, start, end)
		case xml.CharData:
			if len(stack) == 0 {
				// Only the first bytes may hold a byte order mark.
				if start == 0 {
					t = bytes.TrimPrefix(t, []byte("\ufeff"))
				}
				if len(bytes.Trim(t, xmlSpace)) > 0 {
					return nil, errors.New(mpdErr + ": text outside the MPD element")
				}
			} else if tx := stack[len(stack)-1].text; tx != nil {
				tx.value = append(tx.value, t...)
			}
		default: // comments, processing instructions, directives
			if len(stack) > 0 && stack[len(stack)-1].text != nil {
				stack[len(stack)-1].text.mixed = true
			}
		}
	}
	if !rooted {
		return nil, errors.New(mpdErr + ": no MPD element")
	}
	for _, n := range doc.nodes { // parents first
		n.offsite = n.absBase || (n.parent != nil && n.parent.offsite)
	}
	return doc, nil
}

// xmlSpace is XML's white space.
const xmlSpace = " \t\r\n"

// open handles the start tag t at body[start:end] below stack.
func (doc *mpdDoc) open(body []byte, stack []mpdFrame, t xml.StartElement, start, end int) (mpdFrame, error) {
	f := mpdFrame{local: t.Name.Local}
	var parent *mpdFrame
	if len(stack) > 0 {
		parent = &stack[len(stack)-1]
		f.owner = parent.owner
		if parent.text != nil {
			parent.text.mixed = true
		}
	}
	if kind := mpdKindOf(f.local); kind != mpdOther {
		n := newMPDNode(kind, f.owner, t, start)
		doc.nodes = append(doc.nodes, n)
		f.node, f.owner = n, n
	}
	if f.local == "SegmentTemplate" && parent != nil && parent.node != nil {
		if v, ok := attrValue(t, "media"); ok {
			parent.node.media, parent.node.hasMedia = v, true
		}
	}
	if hasURLAttrs(f.local) && f.owner != nil {
		if err := doc.addAttrURLs(body, t, f.owner, start, end); err != nil {
			return f, err
		}
	}
	if mpdURLText(f.local) && f.owner != nil {
		f.text = &mpdText{start: end}
	}
	return f, nil
}

// close handles the end of the element of f, whose end tag is
// body[start:end] (empty for a self-closing one).
func (doc *mpdDoc) close(body []byte, f mpdFrame, start, end int) {
	if f.node != nil {
		f.node.end = end
	}
	if f.text == nil {
		return
	}
	value := strings.Trim(string(f.text.value), xmlSpace)
	if f.local == "BaseURL" && (f.text.mixed || isAbsoluteURL(value)) {
		// What resolves against it goes to another host (or to who
		// knows where: a BaseURL with markup in it is none we write).
		f.owner.absBase = true
	}
	if f.text.mixed || value == "" {
		return
	}
	// Replace the text between its white space, which stays as it was.
	raw := body[f.text.start:start]
	lead := len(raw) - len(bytes.TrimLeft(raw, xmlSpace))
	trail := len(raw) - len(bytes.TrimRight(raw, xmlSpace))
	doc.urls = append(doc.urls, mpdURL{
		start: f.text.start + lead, end: start - trail,
		value: value, owner: f.owner, text: true,
	})
}

func newMPDNode(kind mpdKind, parent *mpdNode, t xml.StartElement, start int) *mpdNode {
	n := &mpdNode{kind: kind, parent: parent, start: start}
	if parent != nil {
		// Kept as pointers so that no lookup walks up a (possibly very
		// deep, hostile) tree.
		n.as, n.period = parent.as, parent.period
		switch parent.kind {
		case mpdAdaptationSet:
			n.as = parent
		case mpdPeriod:
			n.period = parent
		}
	}
	for _, a := range t.Attr {
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "id":
			n.id = a.Value
		case "width":
			n.width = a.Value
		case "height":
			n.height = a.Value
		case "mimeType":
			n.mimeType = a.Value
		case "contentType":
			n.contentType = a.Value
		}
	}
	return n
}

// attrValue returns t's unprefixed attribute name (the last one, as
// newMPDNode reads them).
func attrValue(t xml.StartElement, name string) (string, bool) {
	for i := len(t.Attr) - 1; i >= 0; i-- {
		if a := t.Attr[i]; a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// addAttrURLs records the URL attributes of the start tag t at
// body[start:end].
func (doc *mpdDoc) addAttrURLs(body []byte, t xml.StartElement, owner *mpdNode, start, end int) error {
	spans, ok := attrSpans(body[start:end])
	// The decoder reports the attributes in the order of the source, so
	// the i-th span holds the i-th value.
	if !ok || len(spans) != len(t.Attr) {
		return errors.New(mpdErr + ": cannot locate the attributes of " + t.Name.Local)
	}
	for i, a := range t.Attr {
		sp := spans[i]
		if string(sp.name) != a.Name.Local || a.Name.Space != "" || !isURLAttr(t.Name.Local, a.Name.Local) {
			continue // a prefixed attribute is someone else's
		}
		doc.urls = append(doc.urls, mpdURL{start: start + sp.start, end: start + sp.end, value: a.Value, owner: owner})
	}
	return nil
}

// attrSpan is where an attribute's value lies in a start tag, quotes
// excluded.
type attrSpan struct {
	name       []byte // as written, prefix included
	start, end int
}

// attrSpans lists the attributes of the start tag tag ("<Name a='1' ...>"
// or ".../>"), which the decoder has already found well-formed.
func attrSpans(tag []byte) ([]attrSpan, bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	var spans []attrSpan
	for {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) {
			return nil, false
		}
		if tag[i] == '/' || tag[i] == '>' {
			return spans, true
		}
		ns := i
		for i < len(tag) && !isSpace(tag[i]) && tag[i] != '=' {
			i++
		}
		name := tag[ns:i]
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			return nil, false
		}
		i++
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || (tag[i] != '"' && tag[i] != '\'') {
			return nil, false
		}
		q := tag[i]
		closing := bytes.IndexByte(tag[i+1:], q)
		if closing < 0 {
			return nil, false
		}
		spans = append(spans, attrSpan{name: name, start: i + 1, end: i + 1 + closing})
		i += closing + 2
	}
}

// judge marks what g removes and returns kept (see rewriteMPD).
func (doc *mpdDoc) judge(g Grant) (kept int) {
	for _, n := range doc.nodes {
		if n.kind != mpdRepresentation {
			continue
		}
		n.video = n.isVideo()
		if n.video && !g.allows(variant{name: n.renditionName(), short: n.shortSide()}) {
			n.drop = true
		}
		if n.as != nil {
			n.as.reps++
			if !n.drop {
				n.as.keptReps++
			}
		}
	}
	videos, keptVideos, keptAll := 0, 0, 0
	for _, n := range doc.nodes {
		if n.kind == mpdAdaptationSet && n.reps > 0 && n.keptReps == 0 {
			n.drop = true
		}
		n.gone = n.drop || (n.parent != nil && n.parent.gone)
		if n.kind != mpdRepresentation {
			continue
		}
		if n.video {
			videos++
		}
		if !n.gone {
			keptAll++
			if n.video {
				keptVideos++
			}
		}
	}
	if videos == 0 {
		return keptAll
	}
	return keptVideos
}

// isVideo says whether a Representation is video, which grants limit.
// Audio is never removed (as HLS EXT-X-MEDIA audio), nor is anything
// else that is not video (subtitles, thumbnails).
func (n *mpdNode) isVideo() bool {
	mime, ct := strings.ToLower(n.mimeType), ""
	if n.as != nil {
		if mime == "" {
			mime = strings.ToLower(n.as.mimeType)
		}
		ct = strings.ToLower(n.as.contentType)
	}
	switch {
	case ct == "audio" || strings.HasPrefix(mime, "audio/"):
		return false
	case ct == "video" || strings.HasPrefix(mime, "video/"):
		return true
	}
	// Nothing says what it is: a picture size says video.
	return ct == "" && mime == "" && n.shortSide() > 0
}

// shortSide is min(width, height) of a Representation, either inherited
// from its AdaptationSet; 0 when it has no valid size.
func (n *mpdNode) shortSide() int {
	ws, hs := n.width, n.height
	if n.as != nil {
		ws = cmpOr(ws, n.as.width)
		hs = cmpOr(hs, n.as.height)
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0
	}
	return min(w, h)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// renditionName is a Representation's name for Grant.Renditions: the
// folder its segments are in, as for HLS, taken from the effective
// SegmentTemplate media ("r$RepresentationID$/seg-$Number%05d$.m4s" with
// id "2": "r2"), and the id when the template has no folder of its own.
func (n *mpdNode) renditionName() string {
	var media string
	switch {
	case n.hasMedia:
		media = n.media
	case n.as != nil && n.as.hasMedia:
		media = n.as.media
	case n.period != nil && n.period.hasMedia:
		media = n.period.media
	}
	if i := strings.IndexAny(media, "?#"); i >= 0 {
		media = media[:i]
	}
	// Folders only: the last element is the file.
	for {
		elem, rest, ok := strings.Cut(media, "/")
		if !ok {
			return n.id
		}
		if strings.Contains(elem, repIDVar) {
			return strings.ReplaceAll(elem, repIDVar, n.id)
		}
		media = rest
	}
}

// mpdEdit replaces body[start:end] with repl.
type mpdEdit struct {
	start, end int
	repl       string
}

// edits lists the changes to body: removed elements and URLs with the
// token.
func (doc *mpdDoc) edits(body []byte, token string) []mpdEdit {
	var eds []mpdEdit
	for _, n := range doc.nodes {
		if n.drop && (n.parent == nil || !n.parent.gone) {
			s, e := wholeLines(body, n.start, n.end)
			eds = append(eds, mpdEdit{start: s, end: e})
		}
	}
	if token == "" {
		return eds
	}
	for _, u := range doc.urls {
		if u.owner.gone {
			continue
		}
		base := u.owner
		if u.text {
			base = base.parent
		}
		if base != nil && base.offsite {
			continue
		}
		if v := withToken(u.value, token); v != u.value {
			eds = append(eds, mpdEdit{start: u.start, end: u.end, repl: xmlEscape(v)})
		}
	}
	return eds
}

// wholeLines widens body[s:e] to the whole lines it spans when nothing but
// white space shares them, so that a removed element leaves no blank line.
func wholeLines(body []byte, s, e int) (int, int) {
	ls := s
	for ls > 0 && (body[ls-1] == ' ' || body[ls-1] == '\t') {
		ls--
	}
	if ls > 0 && body[ls-1] != '\n' {
		return s, e
	}
	le := e
	for le < len(body) && (body[le] == ' ' || body[le] == '\t' || body[le] == '\r') {
		le++
	}
	if le < len(body) {
		if body[le] != '\n' {
			return s, e
		}
		le++
	}
	return ls, le
}

// applyEdits returns a copy of body with eds applied. An edit inside a
// removed range is dropped with it.
func applyEdits(body []byte, eds []mpdEdit) []byte {
	slices.SortFunc(eds, func(a, b mpdEdit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end // the enclosing one first
	})
	grow := 0
	for _, ed := range eds {
		grow += len(ed.repl)
	}
	out := make([]byte, 0, len(body)+grow)
	pos := 0
	for _, ed := range eds {
		if ed.start < pos {
			continue
		}
		out = append(out, body[pos:ed.start]...)
		out = append(out, ed.repl...)
		pos = ed.end
	}
	return append(out, body[pos:]...)
}

// xmlEscape makes s safe as an attribute value (either quote) or as text.
// Tabs and line ends are written as references so that attribute-value
// normalization cannot turn them into spaces.
func xmlEscape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		case '\t':
			b.WriteString("&#9;")
		case '\n':
			b.WriteString("&#10;")
		case '\r':
			b.WriteString("&#13;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
