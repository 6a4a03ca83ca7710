package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "STREAMD_"

// Load reads the file at path (or the embedded default when path is ""),
// applies environment overrides from lookupEnv (nil: os.LookupEnv; a
// variable set to "" overrides too, e.g. to turn RTSP off) and validates.
// The error, if any, is an *Error listing every problem.
func Load(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	data, source := DefaultFile(), "embedded default config"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		data, source = b, path
	}
	return Parse(data, source, lookupEnv)
}

// Parse is Load on bytes; source names them in messages.
func Parse(data []byte, source string, lookupEnv func(string) (string, bool)) (Config, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	cfg := Defaults()
	lines := map[string]int{}
	var problems []Problem

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, &Error{Source: source, Problems: []Problem{{Key: "(file)", Line: yamlErrLine(err), Message: yamlErrText(err)}}}
	}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode && !(doc.Kind == yaml.ScalarNode && doc.Tag == "!!null") {
			return Config{}, &Error{Source: source, Problems: []Problem{{Key: "(file)", Line: doc.Line, Message: "the top level must be a mapping of keys (http:, rtmp:, ...)"}}}
		}
		problems = append(problems, walk(doc, reflect.TypeOf(cfg), "", lines)...)
		if len(problems) == 0 {
			// Channels come as a whole list: a file that names channels
			// replaces the default one rather than merging by index.
			if hasKey(doc, "channels") {
				cfg.Channels = nil
			}
			if err := doc.Decode(&cfg); err != nil {
				problems = append(problems, typeProblems(err, lines)...)
			}
		}
	}
	if len(problems) == 0 {
		problems = append(problems, applyEnv(reflect.ValueOf(&cfg).Elem(), "", lookupEnv)...)
		cfg.Resolve()
	}
	if len(problems) == 0 {
		for _, p := range cfg.Validate() {
			p.Line = lines[p.Key]
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return Config{}, &Error{Source: source, Problems: problems}
	}
	return cfg, nil
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// yamlKey returns the YAML key of a struct field.
func yamlKey(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if i := strings.IndexByte(tag, ','); i >= 0 {
		tag = tag[:i]
	}
	return tag
}

// walk checks a YAML node against the struct type t, reporting unknown
// keys with their full path and line, and records the line of every key.
func walk(n *yaml.Node, t reflect.Type, path string, lines map[string]int) []Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var ps []Problem
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(Duration(0)) {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return []Problem{{Key: orRoot(path), Line: n.Line, Message: "expected a mapping of keys"}}
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			fields[yamlKey(t.Field(i))] = t.Field(i)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			lines[p] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				ps = append(ps, Problem{Key: p, Line: k.Line, Message: "unknown key" + suggest(k.Value, fields)})
				continue
			}
			ps = append(ps, walk(v, f.Type, p, lines)...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return []Problem{{Key: orRoot(path), Line: n.Line, Message: "expected a mapping"}}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			lines[p] = n.Content[i].Line
			ps = append(ps, walk(n.Content[i+1], t.Elem(), p, lines)...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Tag == "!!null" {
				return nil
			}
			return []Problem{{Key: orRoot(path), Line: n.Line, Message: "expected a list"}}
		}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = item.Line
			ps = append(ps, walk(item, t.Elem(), p, lines)...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return []Problem{{Key: orRoot(path), Line: n.Line, Message: "expected a single value, not a list or mapping"}}
		}
	}
	return ps
}

func orRoot(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest proposes the known key closest to a misspelt one.
func suggest(bad string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for k := range fields {
		if d := distance(bad, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return " (known keys here: " + strings.Join(keys, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// typeProblems turns yaml.v3's type errors ("line 7: cannot unmarshal
// !!str `x` into int") into problems that name the key on that line.
func typeProblems(err error, lines map[string]int) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{{Key: "(file)", Line: yamlErrLine(err), Message: yamlErrText(err)}}
	}
	byLine := map[int]string{}
	for k, l := range lines {
		if cur, ok := byLine[l]; !ok || len(k) > len(cur) {
			byLine[l] = k
		}
	}
	var ps []Problem
	for _, msg := range te.Errors {
		p := Problem{Key: "(file)", Message: msg}
		if m := lineRE.FindStringSubmatch(msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Message = m[2]
			if k, ok := byLine[p.Line]; ok {
				p.Key = k
			}
		}
		ps = append(ps, p)
	}
	return ps
}

func yamlErrLine(err error) int {
	if m := regexp.MustCompile(`line (\d+)`).FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func yamlErrText(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// EnvName is the environment variable that overrides a key path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv overrides fields from STREAMD_<PATH> variables. Strings are
// taken verbatim; everything else (numbers, durations, lists) is parsed as
// YAML, so lists are written in flow syntax: '[a, b]'.
func applyEnv(v reflect.Value, path string, lookupEnv func(string) (string, bool)) []Problem {
	var ps []Problem
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p := join(path, yamlKey(f))
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration(0)) {
			ps = append(ps, applyEnv(fv, p, lookupEnv)...)
			continue
		}
		name := EnvName(p)
		raw, ok := lookupEnv(name)
		if !ok {
			continue
		}
		if f.Type.Kind() == reflect.String {
			fv.SetString(raw)
			continue
		}
		nv := reflect.New(f.Type)
		if err := yaml.Unmarshal([]byte(raw), nv.Interface()); err != nil {
			ps = append(ps, Problem{Key: p, Message: fmt.Sprintf("environment %s: %s", name, yamlErrText(err))})
			continue
		}
		fv.Set(nv.Elem())
	}
	return ps
}

// Marshal renders a configuration as YAML (for `streamd config print`).
// Stream keys, the S3 secret, signing keys, OIDC client secrets, the
// billing webhook secret, the metrics token and passwords in URLs are
// redacted unless showSecrets.
func Marshal(c Config, showSecrets bool) ([]byte, error) {
	if !showSecrets {
		redact := func(v *string) {
			if *v != "" {
				*v = "<redacted>"
			}
		}
		redact(&c.Storage.Objects.SecretKey)
		redact(&c.Auth.URLSigningKey)
		redact(&c.Auth.BillingWebhookSecret)
		redact(&c.Metrics.Token)
		c.Auth.OIDC = append(c.Auth.OIDC[:0:0], c.Auth.OIDC...)
		for i := range c.Auth.OIDC {
			redact(&c.Auth.OIDC[i].ClientSecret)
		}
		c.Storage.Meta.URL = RedactURL(c.Storage.Meta.URL)
		c.Storage.Sessions.URL = RedactURL(c.Storage.Sessions.URL)
		c.Channels = append([]Channel(nil), c.Channels...)
		for i := range c.Channels {
			if c.Channels[i].StreamKey != "" {
				c.Channels[i].StreamKey = "<redacted>"
			}
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RedactURL hides the password of a URL ("postgres://u:pw@h/db" →
// "postgres://u:<redacted>@h/db"); other strings come back unchanged.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "REDACTED")
	return strings.Replace(u.String(), "REDACTED", "<redacted>", 1)
}
