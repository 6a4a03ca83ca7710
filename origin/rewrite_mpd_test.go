package origin

import (
	"bytes"
	"encoding/xml"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mpdSample is what ffmpeg 5.1's dash muxer writes for two video
// renditions (720p, 480p) and one audio, with the layout streamd uses
// (-init_seg_name 'r$RepresentationID$/init.mp4' -media_seg_name
// 'r$RepresentationID$/seg-$Number%05d$.m4s'), byte for byte.
const mpdSample = `<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
	xmlns="urn:mpeg:dash:schema:mpd:2011"
	xmlns:xlink="http://www.w3.org/1999/xlink"
	xsi:schemaLocation="urn:mpeg:DASH:schema:MPD:2011 http://standards.iso.org/ittf/PubliclyAvailableStandards/MPEG-DASH_schema_files/DASH-MPD.xsd"
	profiles="urn:mpeg:dash:profile:isoff-live:2011"
	type="static"
	mediaPresentationDuration="PT6.0S"
	maxSegmentDuration="PT2.0S"
	minBufferTime="PT12.0S">
	<ProgramInformation>
	</ProgramInformation>
	<ServiceDescription id="0">
	</ServiceDescription>
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="30/1" maxWidth="1280" maxHeight="720" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c01f" bandwidth="7452856" width="1280" height="720" sar="1:1">
				<SegmentTemplate timescale="15360" initialization="r$RepresentationID$/init.mp4" media="r$RepresentationID$/seg-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="92160" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
			<Representation id="1" mimeType="video/mp4" codecs="avc1.42c01f" bandwidth="3345466" width="854" height="480" sar="1280:1281">
				<SegmentTemplate timescale="15360" initialization="r$RepresentationID$/init.mp4" media="r$RepresentationID$/seg-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="92160" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
			<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="69000" audioSamplingRate="44100">
				<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1" />
				<SegmentTemplate timescale="44100" initialization="r$RepresentationID$/init.mp4" media="r$RepresentationID$/seg-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="88064" />
						<S d="89088" />
						<S d="87448" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>
`

// mpdToken looks like a real one: base64url and dots.
const mpdToken = "eyJwIjoiL3ZvZC8ifQ.c2ln-_0"

// mpdWellFormed reads b to its end with encoding/xml.
func mpdWellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// mpdElems returns the start tags named local in b, in order.
func mpdElems(t *testing.T, b []byte, local string) []xml.StartElement {
	t.Helper()
	var out []xml.StartElement
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("output is not well-formed: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == local {
			out = append(out, se.Copy())
		}
	}
}

// mpdIDs lists the id attributes of the elements named local in b.
func mpdIDs(t *testing.T, b []byte, local string) []string {
	t.Helper()
	var ids []string
	for _, se := range mpdElems(t, b, local) {
		v, _ := attrValue(se, "id")
		ids = append(ids, v)
	}
	return ids
}

// mpdWithout returns s without the lines from the one containing first
// through the next one containing last.
func mpdWithout(t *testing.T, s, first, last string) string {
	t.Helper()
	lines := strings.SplitAfter(s, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, first) })
	if i < 0 {
		t.Fatalf("no line with %q", first)
	}
	j := i + slices.IndexFunc(lines[i:], func(l string) bool { return strings.Contains(l, last) })
	if j < i {
		t.Fatalf("no line with %q", last)
	}
	return strings.Join(slices.Delete(lines, i, j+1), "")
}

// mpdTokened is mpdSample as rewriteMPD should sign it with mpdToken.
func mpdTokened(s string) string {
	s = strings.ReplaceAll(s, `/init.mp4"`, `/init.mp4?st=`+mpdToken+`"`)
	return strings.ReplaceAll(s, `.m4s"`, `.m4s?st=`+mpdToken+`"`)
}

func TestRewriteMPDSample(t *testing.T) {
	out, kept, err := rewriteMPD([]byte(mpdSample), mpdToken, Grant{})
	if err != nil {
		t.Fatal(err)
	}
	if kept != 2 {
		t.Errorf("kept = %d, want 2", kept)
	}
	// Every byte but the URLs' own stays as ffmpeg wrote it.
	if want := mpdTokened(mpdSample); string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	sts := mpdElems(t, out, "SegmentTemplate")
	if len(sts) != 3 {
		t.Fatalf("%d SegmentTemplates, want 3", len(sts))
	}
	for _, st := range sts {
		for _, name := range []string{"media", "initialization"} {
			if v, _ := attrValue(st, name); !strings.HasSuffix(v, "?st="+mpdToken) {
				t.Errorf("%s = %q, want it to end with the token", name, v)
			}
		}
	}
}

// mpdWrap puts body in a Period of an MPD.
func mpdWrap(body string) string {
	return "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:x=\"urn:x\">\n<Period>\n" + body + "\n</Period>\n</MPD>\n"
}

func TestRewriteMPDURLs(t *testing.T) {
	const st = "st=" + mpdToken
	tests := []struct {
		name, in, want string
	}{
		{"segment template",
			`<SegmentTemplate media="r$RepresentationID$/seg-$Number%05d$.m4s" initialization="r$RepresentationID$/init.mp4" index="r$RepresentationID$/idx.sidx" bitstreamSwitching="bs.mp4" startNumber="1"/>`,
			`<SegmentTemplate media="r$RepresentationID$/seg-$Number%05d$.m4s?` + st + `" initialization="r$RepresentationID$/init.mp4?` + st + `" index="r$RepresentationID$/idx.sidx?` + st + `" bitstreamSwitching="bs.mp4?` + st + `" startNumber="1"/>`},
		{"time and bandwidth template",
			`<SegmentTemplate media="$Bandwidth$/$Time$.m4s"/>`,
			`<SegmentTemplate media="$Bandwidth$/$Time$.m4s?` + st + `"/>`},
		{"segment base",
			`<SegmentBase indexRange="0-99"><Initialization sourceURL="init.mp4" range="0-9"/><RepresentationIndex sourceURL="../idx.sidx"/></SegmentBase>`,
			`<SegmentBase indexRange="0-99"><Initialization sourceURL="init.mp4?` + st + `" range="0-9"/><RepresentationIndex sourceURL="../idx.sidx?` + st + `"/></SegmentBase>`},
		{"segment list",
			"<SegmentList>\n<Initialization sourceURL=\"i.mp4\"/>\n<BitstreamSwitching sourceURL=\"b.mp4\"/>\n<SegmentURL media=\"1.m4s\" index=\"1.sidx\" mediaRange=\"0-9\"/>\n<SegmentURL media=\"/abs/2.m4s\"/>\n</SegmentList>",
			"<SegmentList>\n<Initialization sourceURL=\"i.mp4?" + st + "\"/>\n<BitstreamSwitching sourceURL=\"b.mp4?" + st + "\"/>\n<SegmentURL media=\"1.m4s?" + st + "\" index=\"1.sidx?" + st + "\" mediaRange=\"0-9\"/>\n<SegmentURL media=\"/abs/2.m4s?" + st + "\"/>\n</SegmentList>"},
		{"base url text keeps its white space",
			"<BaseURL>\n\t r0/ \n</BaseURL>",
			"<BaseURL>\n\t r0/?" + st + " \n</BaseURL>"},
		{"base url cdata",
			`<BaseURL><![CDATA[a&b/]]></BaseURL>`,
			`<BaseURL>a&amp;b/?` + st + `</BaseURL>`},
		{"empty base url",
			`<BaseURL></BaseURL><BaseURL/>`,
			`<BaseURL></BaseURL><BaseURL/>`},
		{"base url with markup is left alone",
			`<BaseURL>r0/<!-- c --></BaseURL><SegmentTemplate media="m.m4s"/>`,
			`<BaseURL>r0/<!-- c --></BaseURL><SegmentTemplate media="m.m4s"/>`},
		{"absolute urls",
			`<SegmentTemplate media="https://cdn.example/m.m4s" initialization="//cdn.example/i.mp4" index="data:,x"/>`,
			`<SegmentTemplate media="https://cdn.example/m.m4s" initialization="//cdn.example/i.mp4" index="data:,x"/>`},
		{"existing query",
			`<SegmentTemplate media="m.m4s?a=1&amp;b=2" initialization='i.mp4?x=y'/>`,
			`<SegmentTemplate media="m.m4s?a=1&amp;b=2&amp;` + st + `" initialization='i.mp4?x=y&amp;` + st + `'/>`},
		{"existing token replaced",
			`<SegmentTemplate media="m.m4s?st=old" initialization="i.mp4?a=1&amp;st=old&amp;b=2"/><BaseURL>r/?st=old</BaseURL>`,
			`<SegmentTemplate media="m.m4s?` + st + `" initialization="i.mp4?a=1&amp;b=2&amp;` + st + `"/><BaseURL>r/?` + st + `</BaseURL>`},
		{"escaped characters",
			`<SegmentTemplate media="a&quot;b&#39;&lt;.m4s"/>`,
			`<SegmentTemplate media="a&quot;b&apos;&lt;.m4s?` + st + `"/>`},
		{"other attributes and prefixed ones untouched",
			`<SegmentTemplate x:media="m.m4s" timescale="90000" presentationTimeOffset="0"/><Representation id="r" media="x"/>`,
			`<SegmentTemplate x:media="m.m4s" timescale="90000" presentationTimeOffset="0"/><Representation id="r" media="x"/>`},
		{"absolute base url: nothing below it gets the token",
			"<AdaptationSet><BaseURL>https://cdn.example/v/</BaseURL><SegmentTemplate media=\"m.m4s\"/><Representation id=\"0\"><BaseURL>r0/</BaseURL><SegmentURL media=\"s.m4s\"/></Representation></AdaptationSet>\n" +
				"<AdaptationSet><SegmentTemplate media=\"a.m4s\"/></AdaptationSet>",
			"<AdaptationSet><BaseURL>https://cdn.example/v/</BaseURL><SegmentTemplate media=\"m.m4s\"/><Representation id=\"0\"><BaseURL>r0/</BaseURL><SegmentURL media=\"s.m4s\"/></Representation></AdaptationSet>\n" +
				"<AdaptationSet><SegmentTemplate media=\"a.m4s?" + st + "\"/></AdaptationSet>"},
		{"absolute base url after the template still counts",
			`<AdaptationSet><SegmentTemplate media="m.m4s"/><BaseURL>//cdn.example/</BaseURL></AdaptationSet>`,
			`<AdaptationSet><SegmentTemplate media="m.m4s"/><BaseURL>//cdn.example/</BaseURL></AdaptationSet>`},
		{"relative base url chain",
			`<BaseURL>p/</BaseURL><AdaptationSet><BaseURL>v/</BaseURL><SegmentTemplate media="m.m4s"/></AdaptationSet>`,
			`<BaseURL>p/?` + st + `</BaseURL><AdaptationSet><BaseURL>v/?` + st + `</BaseURL><SegmentTemplate media="m.m4s?` + st + `"/></AdaptationSet>`},
		{"fragment stays last",
			`<SegmentTemplate media="m.m4s#t=1"/>`,
			`<SegmentTemplate media="m.m4s?` + st + `#t=1"/>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, want := mpdWrap(tc.in), mpdWrap(tc.want)
			out, _, err := rewriteMPD([]byte(in), mpdToken, Grant{})
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != want {
				t.Errorf("got:\n%s\nwant:\n%s", out, want)
			}
			if err := mpdWellFormed(out); err != nil {
				t.Errorf("output not well-formed: %v", err)
			}
		})
	}
}

func TestRewriteMPDLocation(t *testing.T) {
	in := "<MPD type=\"dynamic\">\n\t<Location>live.mpd</Location>\n\t<Location>https://other.example/live.mpd</Location>\n\t<BaseURL>https://cdn.example/</BaseURL>\n</MPD>"
	want := "<MPD type=\"dynamic\">\n\t<Location>live.mpd?st=T</Location>\n\t<Location>https://other.example/live.mpd</Location>\n\t<BaseURL>https://cdn.example/</BaseURL>\n</MPD>"
	out, _, err := rewriteMPD([]byte(in), "T", Grant{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestRewriteMPDUntouched(t *testing.T) {
	// No URL, odd but valid syntax: CRLF, single quotes, comments, a
	// DOCTYPE, a byte order mark, prefixes, references.
	in := "\ufeff<?xml version='1.0' encoding='UTF-8'?>\r\n<!DOCTYPE MPD>\r\n<!-- by hand -->\r\n" +
		"<dash:MPD xmlns:dash='urn:mpeg:dash:schema:mpd:2011' type = 'static' >\r\n" +
		"  <dash:ProgramInformation><dash:Title>A &amp; B &#x263A;</dash:Title></dash:ProgramInformation>\r\n" +
		"  <dash:Period  id=\"p\"><dash:AdaptationSet contentType=\"video\"><dash:Representation id='0' width='1920' height='1080' /></dash:AdaptationSet></dash:Period>\r\n" +
		"</dash:MPD>\r\n<!-- end -->\r\n"
	for _, tok := range []string{mpdToken, ""} {
		out, kept, err := rewriteMPD([]byte(in), tok, Grant{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, []byte(in)) {
			t.Errorf("token %q: output differs:\n%q\nwant\n%q", tok, out, in)
		}
		if kept != 1 {
			t.Errorf("kept = %d, want 1", kept)
		}
	}
	// Without a token, URLs stay as they are: only removals happen.
	out, kept, err := rewriteMPD([]byte(mpdSample), "", Grant{MaxHeight: 480})
	if err != nil {
		t.Fatal(err)
	}
	if want := mpdWithout(t, mpdSample, `<Representation id="0"`, `</Representation>`); string(out) != want || kept != 1 {
		t.Errorf("empty token: kept %d, output:\n%s", kept, out)
	}
}

func TestRewriteMPDGrants(t *testing.T) {
	tokened := mpdTokened(mpdSample)
	tests := []struct {
		name      string
		g         Grant
		want      string // "" : not checked byte for byte
		kept      int
		reps, ass []string
	}{
		{"no limit", Grant{}, tokened, 2, []string{"0", "1", "2"}, []string{"0", "1"}},
		{"max 720", Grant{MaxHeight: 720}, tokened, 2, []string{"0", "1", "2"}, []string{"0", "1"}},
		{"max 480", Grant{MaxHeight: 480},
			mpdWithout(t, tokened, `<Representation id="0"`, `</Representation>`),
			1, []string{"1", "2"}, []string{"0", "1"}},
		{"max 240", Grant{MaxHeight: 240},
			mpdWithout(t, tokened, `<AdaptationSet id="0"`, `</AdaptationSet>`),
			0, []string{"2"}, []string{"1"}},
		{"renditions r1", Grant{Renditions: []string{"r1"}},
			mpdWithout(t, tokened, `<Representation id="0"`, `</Representation>`),
			1, []string{"1", "2"}, []string{"0", "1"}},
		{"renditions r0 r1", Grant{Renditions: []string{"r0", "r1"}}, tokened, 2, []string{"0", "1", "2"}, []string{"0", "1"}},
		{"renditions by id do not match folders", Grant{Renditions: []string{"0", "1", "2"}}, "", 0, []string{"2"}, []string{"1"}},
		{"empty renditions: audio only", Grant{Renditions: []string{}}, "", 0, []string{"2"}, []string{"1"}},
		{"both limits", Grant{MaxHeight: 720, Renditions: []string{"r0"}},
			mpdWithout(t, tokened, `<Representation id="1"`, `</Representation>`),
			1, []string{"0", "2"}, []string{"0", "1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, kept, err := rewriteMPD([]byte(mpdSample), mpdToken, tc.g)
			if err != nil {
				t.Fatal(err)
			}
			if kept != tc.kept {
				t.Errorf("kept = %d, want %d", kept, tc.kept)
			}
			if tc.want != "" && string(out) != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tc.want)
			}
			if got := mpdIDs(t, out, "Representation"); !slices.Equal(got, tc.reps) {
				t.Errorf("Representations %q, want %q", got, tc.reps)
			}
			if got := mpdIDs(t, out, "AdaptationSet"); !slices.Equal(got, tc.ass) {
				t.Errorf("AdaptationSets %q, want %q", got, tc.ass)
			}
		})
	}
}

func TestRewriteMPDSizes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		g         Grant
		kept      int
		reps, ass []string
	}{
		{"inherited from the adaptation set",
			`<AdaptationSet id="v" mimeType="video/mp4" width="1280" height="720">
	<Representation id="0" bandwidth="3000000"/>
	<Representation id="1" bandwidth="1000000" width="854" height="480"/>
</AdaptationSet>`,
			Grant{MaxHeight: 480}, 1, []string{"1"}, []string{"v"}},
		{"all inherit: the set goes",
			`<AdaptationSet id="v" width="1280" height="720">
	<Representation id="0" bandwidth="3000000"/>
	<Representation id="1" bandwidth="1000000"/>
</AdaptationSet>
<AdaptationSet id="a" mimeType="audio/mp4"><Representation id="2"/></AdaptationSet>`,
			Grant{MaxHeight: 480}, 0, []string{"2"}, []string{"a"}},
		{"portrait: the short side counts",
			`<AdaptationSet id="v" contentType="video">
	<Representation id="0" width="720" height="1280"/>
	<Representation id="1" width="1080" height="1920"/>
</AdaptationSet>`,
			Grant{MaxHeight: 720}, 1, []string{"0"}, []string{"v"}},
		{"video without a size is not removed by height",
			`<AdaptationSet id="v" mimeType="video/mp4"><Representation id="0"/></AdaptationSet>`,
			Grant{MaxHeight: 240}, 1, []string{"0"}, []string{"v"}},
		{"audio with a size anyway is never removed",
			`<AdaptationSet id="a" contentType="audio"><Representation id="0" width="1920" height="1080"/></AdaptationSet>`,
			Grant{MaxHeight: 240, Renditions: []string{}}, 1, []string{"0"}, []string{"a"}},
		{"audio by mime type",
			`<AdaptationSet id="a"><Representation id="0" mimeType="audio/mp4"/><Representation id="1" mimeType="audio/mp4"/></AdaptationSet>`,
			Grant{Renditions: []string{"none"}}, 2, []string{"0", "1"}, []string{"a"}},
		{"thumbnails are not video",
			`<AdaptationSet id="v" contentType="video"><Representation id="0" width="1920" height="1080"/></AdaptationSet>
<AdaptationSet id="i" contentType="image" mimeType="image/jpeg"><Representation id="t" width="1920" height="1080"/></AdaptationSet>`,
			Grant{MaxHeight: 240}, 0, []string{"t"}, []string{"i"}},
		{"size alone says video",
			`<AdaptationSet id="v"><Representation id="0" width="1920" height="1080"/><Representation id="1" width="640" height="360"/></AdaptationSet>`,
			Grant{MaxHeight: 360}, 1, []string{"1"}, []string{"v"}},
		{"self-closing and same-line representations",
			`<AdaptationSet id="v" contentType="video"><Representation id="0" width="1920" height="1080"/><Representation id="1" width="640" height="360"></Representation><Representation id="2" width="1280" height="720" /></AdaptationSet>`,
			Grant{MaxHeight: 360}, 1, []string{"1"}, []string{"v"}},
		{"bad sizes are no sizes",
			`<AdaptationSet id="v" contentType="video"><Representation id="0" width="-1920" height="1080"/><Representation id="1" width="x" height="720"/></AdaptationSet>`,
			Grant{MaxHeight: 360}, 2, []string{"0", "1"}, []string{"v"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, kept, err := rewriteMPD([]byte(mpdWrap(tc.body)), mpdToken, tc.g)
			if err != nil {
				t.Fatal(err)
			}
			if kept != tc.kept {
				t.Errorf("kept = %d, want %d", kept, tc.kept)
			}
			if got := mpdIDs(t, out, "Representation"); !slices.Equal(got, tc.reps) {
				t.Errorf("Representations %q, want %q\n%s", got, tc.reps, out)
			}
			if got := mpdIDs(t, out, "AdaptationSet"); !slices.Equal(got, tc.ass) {
				t.Errorf("AdaptationSets %q, want %q\n%s", got, tc.ass, out)
			}
		})
	}
}

func TestRewriteMPDTidy(t *testing.T) {
	// Removed elements that fill their lines take the lines along, CRLF
	// ones included; others leave their line's white space.
	in := "<MPD>\r\n  <Period>\r\n" +
		"    <AdaptationSet contentType=\"video\">\r\n" +
		"      <Representation id=\"0\" width=\"1920\" height=\"1080\"/>  \r\n" +
		"      <Representation id=\"1\" width=\"640\" height=\"360\"/>\r\n" +
		"      <Representation id=\"2\" width=\"1920\" height=\"1080\"/><Representation id=\"3\" width=\"640\" height=\"360\"/>\r\n" +
		"    </AdaptationSet>\r\n" +
		"    <AdaptationSet contentType=\"video\">\r\n" +
		"      <Representation id=\"4\" width=\"1920\" height=\"1080\">\r\n      </Representation>\r\n" +
		"    </AdaptationSet>\r\n" +
		"  </Period>\r\n</MPD>"
	want := "<MPD>\r\n  <Period>\r\n" +
		"    <AdaptationSet contentType=\"video\">\r\n" +
		"      <Representation id=\"1\" width=\"640\" height=\"360\"/>\r\n" +
		"      <Representation id=\"3\" width=\"640\" height=\"360\"/>\r\n" +
		"    </AdaptationSet>\r\n" +
		"  </Period>\r\n</MPD>"
	out, kept, err := rewriteMPD([]byte(in), mpdToken, Grant{MaxHeight: 720})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want || kept != 2 {
		t.Errorf("kept %d, output:\n%q\nwant\n%q", kept, out, want)
	}
}

func TestRewriteMPDRenditionNames(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // the Representations' names, in order
	}{
		{"ffmpeg layout",
			`<AdaptationSet><Representation id="0"><SegmentTemplate media="r$RepresentationID$/seg-$Number%05d$.m4s"/></Representation></AdaptationSet>`,
			[]string{"r0"}},
		{"adaptation set template",
			`<AdaptationSet><SegmentTemplate media="$RepresentationID$/$Number$.m4s"/><Representation id="720p"/><Representation id="480p"/></AdaptationSet>`,
			[]string{"720p", "480p"}},
		{"period template, deeper folder",
			`<SegmentTemplate media="video/v$RepresentationID$/x/$Number$.m4s?a=b/c"/><AdaptationSet><Representation id="1"/></AdaptationSet>`,
			[]string{"v1"}},
		{"representation template wins",
			`<AdaptationSet><SegmentTemplate media="a$RepresentationID$/s.m4s"/><Representation id="1"><SegmentTemplate media="b$RepresentationID$/s.m4s"/></Representation><Representation id="2"/></AdaptationSet>`,
			[]string{"b1", "a2"}},
		{"a template without media does not hide the outer one",
			`<AdaptationSet><SegmentTemplate media="a$RepresentationID$/s.m4s"/><Representation id="1"><SegmentTemplate timescale="1"/></Representation></AdaptationSet>`,
			[]string{"a1"}},
		{"no folder: the id",
			`<AdaptationSet><SegmentTemplate media="seg-$RepresentationID$-$Number$.m4s"/><Representation id="5"/></AdaptationSet>`,
			[]string{"5"}},
		{"folder without the id: the id",
			`<AdaptationSet><SegmentTemplate media="video/seg-$RepresentationID$-$Number$.m4s"/><Representation id="5"/></AdaptationSet>`,
			[]string{"5"}},
		{"no template: the id",
			`<AdaptationSet><Representation id="hd"><BaseURL>hd/</BaseURL></Representation></AdaptationSet>`,
			[]string{"hd"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := parseMPD([]byte(mpdWrap(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range doc.nodes {
				if n.kind == mpdRepresentation {
					got = append(got, n.renditionName())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRewriteMPDNoVideo(t *testing.T) {
	in := mpdWrap(`<AdaptationSet contentType="audio"><Representation id="a"/><Representation id="b"/></AdaptationSet>
<AdaptationSet contentType="text"><Representation id="s"/></AdaptationSet>`)
	for _, g := range []Grant{{}, {MaxHeight: 1}, {Renditions: []string{}}} {
		_, kept, err := rewriteMPD([]byte(in), mpdToken, g)
		if err != nil {
			t.Fatal(err)
		}
		if kept != 3 {
			t.Errorf("%+v: kept = %d, want 3", g, kept)
		}
	}
	if _, kept, err := rewriteMPD([]byte("<MPD/>"), mpdToken, Grant{}); err != nil || kept != 0 {
		t.Errorf("empty MPD: kept %d, err %v", kept, err)
	}
}

func TestRewriteMPDMalformed(t *testing.T) {
	tests := map[string]string{
		"empty":               "",
		"white space":         " \n",
		"not xml":             "#EXTM3U\n#EXT-X-VERSION:3\n",
		"json":                `{"MPD": {}}`,
		"truncated":           mpdSample[:len(mpdSample)/2],
		"truncated tag":       `<MPD><Period id="0`,
		"unclosed root":       "<MPD>",
		"other root":          `<?xml version="1.0"?><SmoothStreamingMedia/>`,
		"no element":          `<?xml version="1.0"?><!-- MPD -->`,
		"two roots":           "<MPD></MPD><MPD></MPD>",
		"text after root":     "<MPD/>junk",
		"text before root":    "junk<MPD/>",
		"mismatched":          "<MPD><Period></AdaptationSet></MPD>",
		"unknown entity":      "<MPD>&nbsp;</MPD>",
		"unquoted attribute":  "<MPD a=1/>",
		"duplicate quote":     `<MPD a="1""/>`,
		"invalid utf-8":       "<MPD>\xff</MPD>",
		"bad encoding":        `<?xml version="1.0" encoding="ISO-8859-1"?><MPD/>`,
		"bom in the middle":   "<MPD/>\ufeff",
		"control character":   "<MPD>\x01</MPD>",
		"end before start":    "</MPD>",
		"attribute no value":  "<MPD><Representation width/></MPD>",
		"lt in attribute":     `<MPD><SegmentTemplate media="a<b"/></MPD>`,
		"unterminated cdata":  "<MPD><BaseURL><![CDATA[x</BaseURL></MPD>",
		"unterminated commnt": "<MPD><!-- </MPD>",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			out, kept, err := rewriteMPD([]byte(in), mpdToken, Grant{MaxHeight: 480})
			if err == nil {
				t.Errorf("no error; kept %d, output %q", kept, out)
			}
		})
	}
}

// TestRewriteMPDLarge: a long SegmentList (the worst case of URL count)
// and hostile nesting rewrite in linear time.
func TestRewriteMPDLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large input")
	}
	var b strings.Builder
	b.WriteString(`<MPD><Period><AdaptationSet contentType="video"><Representation id="0" width="1920" height="1080"><SegmentList>` + "\n")
	const n = 200000
	for i := range n {
		b.WriteString(`<SegmentURL media="s` + strconv.Itoa(i) + `.m4s"/>` + "\n")
	}
	b.WriteString("</SegmentList></Representation></AdaptationSet></Period></MPD>\n")
	t0 := time.Now()
	out, kept, err := rewriteMPD([]byte(b.String()), mpdToken, Grant{})
	if err != nil || kept != 1 {
		t.Fatalf("kept %d, err %v", kept, err)
	}
	if got := bytes.Count(out, []byte("?st="+mpdToken+`"`)); got != n {
		t.Errorf("%d tokens, want %d", got, n)
	}
	t.Logf("%d bytes in %v", b.Len(), time.Since(t0))

	// Deeply nested Representations and AdaptationSets: no walk up the
	// tree per node.
	b.Reset()
	const depth = 20000
	b.WriteString("<MPD><Period>")
	for i := range depth {
		if i%2 == 0 {
			b.WriteString(`<AdaptationSet contentType="video">`)
		} else {
			b.WriteString(`<Representation width="1920" height="1080"><SegmentTemplate media="r$RepresentationID$/m.m4s"/>`)
		}
	}
	for i := depth - 1; i >= 0; i-- {
		if i%2 == 0 {
			b.WriteString("</AdaptationSet>")
		} else {
			b.WriteString("</Representation>")
		}
	}
	b.WriteString("</Period></MPD>")
	out, kept, err = rewriteMPD([]byte(b.String()), mpdToken, Grant{MaxHeight: 720})
	if err != nil || kept != 0 {
		t.Fatalf("nested: kept %d, err %v", kept, err)
	}
	if want := "<MPD><Period></Period></MPD>"; string(out) != want {
		t.Errorf("nested: output %.200q, want %q", out, want)
	}
}

// mpdCountVideo is an independent count of what rewriteMPD calls video
// Representations (and of all of them), for the fuzz test.
func mpdCountVideo(body []byte) (video, all int) {
	type attrs struct{ mime, ct, w, h string }
	get := func(se xml.StartElement) attrs {
		var a attrs
		for _, at := range se.Attr {
			if at.Name.Space != "" {
				continue
			}
			switch at.Name.Local {
			case "mimeType":
				a.mime = at.Value
			case "contentType":
				a.ct = at.Value
			case "width":
				a.w = at.Value
			case "height":
				a.h = at.Value
			}
		}
		return a
	}
	sized := func(w, h string) bool {
		wi, err1 := strconv.Atoi(w)
		hi, err2 := strconv.Atoi(h)
		return err1 == nil && err2 == nil && wi > 0 && hi > 0
	}
	var sets []attrs // the enclosing AdaptationSets' attributes, innermost last
	var kinds []string
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return video, all
		}
		switch t := tok.(type) {
		case xml.StartElement:
			kinds = append(kinds, t.Name.Local)
			switch t.Name.Local {
			case "AdaptationSet":
				sets = append(sets, get(t))
			case "Representation":
				all++
				r, as := get(t), attrs{}
				if len(sets) > 0 {
					as = sets[len(sets)-1]
				}
				mime := strings.ToLower(cmpOr(r.mime, as.mime))
				ct := strings.ToLower(as.ct)
				w, h := cmpOr(r.w, as.w), cmpOr(r.h, as.h)
				switch {
				case ct == "audio" || strings.HasPrefix(mime, "audio/"):
				case ct == "video" || strings.HasPrefix(mime, "video/") || ct == "" && mime == "" && sized(w, h):
					video++
				}
			}
		case xml.EndElement:
			if kinds[len(kinds)-1] == "AdaptationSet" {
				sets = sets[:len(sets)-1]
			}
			kinds = kinds[:len(kinds)-1]
		}
	}
}

// FuzzRewriteMPD: no input panics the rewriter; what it accepts it
// returns well-formed, rewriting its own output changes nothing, and with
// no limit every video Representation is kept.
func FuzzRewriteMPD(f *testing.F) {
	f.Add([]byte(mpdSample), 0, "", false, mpdToken)
	f.Add([]byte(mpdSample), 480, "r1", true, mpdToken)
	f.Add([]byte(mpdSample), 240, "", false, "")
	f.Add([]byte(mpdWrap(`<AdaptationSet width="1280" height="720"><BaseURL>https://x/</BaseURL><Representation id="0"><SegmentList><SegmentURL media="a?b=1&amp;st=2"/></SegmentList></Representation></AdaptationSet>`)), 360, "0", false, "t")
	f.Add([]byte("<MPD><BaseURL><![CDATA[a]]></BaseURL><Location>x</Location></MPD>"), 0, "", false, "a&b")
	f.Fuzz(func(t *testing.T, body []byte, maxHeight int, renditions string, limitRenditions bool, token string) {
		g := Grant{MaxHeight: maxHeight}
		if limitRenditions {
			g.Renditions = strings.Split(renditions, ",")
		}
		out, kept, err := rewriteMPD(body, token, g)
		if err != nil {
			return
		}
		if err := mpdWellFormed(out); err != nil {
			t.Fatalf("output not well-formed: %v\ninput %q\noutput %q", err, body, out)
		}
		video, all := mpdCountVideo(body)
		if kept < 0 || kept > max(video, all) {
			t.Fatalf("kept %d of %d video, %d in all", kept, video, all)
		}
		again, _, err := rewriteMPD(out, token, g)
		if err != nil {
			t.Fatalf("own output refused: %v\ninput %q\noutput %q", err, body, out)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\ninput %q\nonce  %q\ntwice %q", body, out, again)
		}
		_, kept, err = rewriteMPD(body, token, Grant{})
		want := video
		if video == 0 {
			want = all
		}
		if err != nil || kept != want {
			t.Fatalf("zero grant: kept %d, want %d (err %v)\ninput %q", kept, want, err, body)
		}
	})
}
