package rtmp

import (
	"errors"
	"strings"
)

// App is the only RTMP application streamd accepts publications on.
const App = "live"

// Errors of streamKeyFromPath. Their text never includes any part of the
// input: the input carries the stream key, which must stay out of logs.
var (
	errWrongApp = errors.New(`the RTMP application is not "` + App + `"`)
	errNoKey    = errors.New("the publish request carries no stream key")
	errBadKey   = errors.New("the stream name is not a single path element")
)

// streamKeyFromPath extracts the stream key from the path of the publish
// URL as gortmplib reconstructs it (tcUrl path + "/" + stream name), e.g.
// "/live/KEY". Both common client conventions end up in this shape:
// ffmpeg with rtmp://host/live/KEY sends app "live" and stream name KEY;
// OBS sends the server URL rtmp://host/live as tcUrl and the stream key
// field as the stream name. A query on the stream name ("KEY?foo=bar", which
// some tools append) is already split off into the URL's query by the
// library, and is cut here too in case it reaches the path.
func streamKeyFromPath(p string) (string, error) {
	p = strings.TrimLeft(p, "/")
	app, rest, _ := strings.Cut(p, "/")
	if app != App {
		return "", errWrongApp
	}
	key, _, _ := strings.Cut(rest, "?")
	// Users often type the server URL with a trailing slash
	// ("rtmp://host/live/"), which yields "live//KEY": forgive empty
	// segments around the key. This cannot turn a wrong key into a right
	// one, since keys with slashes are refused below anyway.
	key = strings.Trim(key, "/")
	if key == "" {
		return "", errNoKey
	}
	// Nested names ("live/a/b") are refused rather than guessed at: a key
	// that is accepted must be exactly what the operator configured.
	if strings.ContainsAny(key, "/\x00") {
		return "", errBadKey
	}
	return key, nil
}

// redact removes every occurrence of key from s. Library errors may quote
// protocol fields; once the key is known, it is scrubbed from anything
// that could reach a log line. The loop and the fallbacks cover the
// pathological cases (a key that is part of the marker, or occurrences
// formed anew by the replacement) so that the result never contains key.
func redact(s, key string) string {
	if key == "" {
		return s
	}
	marker := "[stream key]"
	if strings.Contains(marker, key) {
		marker = ""
	}
	for i := 0; i < 4 && strings.Contains(s, key); i++ {
		s = strings.ReplaceAll(s, key, marker)
	}
	if strings.Contains(s, key) {
		if withheld := "(withheld)"; !strings.Contains(withheld, key) {
			return withheld
		}
		return ""
	}
	return s
}
