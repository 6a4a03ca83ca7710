// Package configs holds streamd's configuration: the YAML schema, the
// embedded default file, environment overrides and validation.
package configs

import (
	_ "embed"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed streamd.yaml
var defaultFile []byte

// DefaultFile returns the embedded default configuration file.
func DefaultFile() []byte { return append([]byte(nil), defaultFile...) }

// Config is the whole configuration. Field tags name the YAML keys.
type Config struct {
	Log       Log       `yaml:"log"`
	DataDir   string    `yaml:"data_dir"`
	HTTP      HTTP      `yaml:"http"`
	Metrics   Metrics   `yaml:"metrics"`
	RTMP      RTMP      `yaml:"rtmp"`
	RTSP      RTSP      `yaml:"rtsp"`
	Storage   Storage   `yaml:"storage"`
	Live      Live      `yaml:"live"`
	Auth      Auth      `yaml:"auth"`
	Upload    Upload    `yaml:"upload"`
	Transcode Transcode `yaml:"transcode"`
	Jobs      Jobs      `yaml:"jobs"`
	Ladders   []Ladder  `yaml:"ladders"`
	// Channels may be empty: publishers create channels through
	// POST /api/publish/channels, and a VOD-only server needs none.
	Channels []Channel `yaml:"channels"`
}

// Auth configures accounts and the API's tokens.
type Auth struct {
	// JWTKeyFile is an Ed25519 private key (PKCS #8 PEM) that signs access
	// tokens; empty: generated once into data_dir/auth/. Every streamd
	// process of one deployment must use the same key.
	JWTKeyFile string   `yaml:"jwt_key_file"`
	AccessTTL  Duration `yaml:"access_ttl"`
	RefreshTTL Duration `yaml:"refresh_ttl"`
	// Lockout: this many failed logins (wrong passwords and MFA codes
	// together) within lockout_window lock the account for
	// lockout_duration.
	LockoutFailures int      `yaml:"lockout_failures"`
	LockoutWindow   Duration `yaml:"lockout_window"`
	LockoutDuration Duration `yaml:"lockout_duration"`
	// Requests per minute and client IP: auth endpoints, and the rest.
	AuthRatePerMinute int `yaml:"auth_rate_per_minute"`
	APIRatePerMinute  int `yaml:"api_rate_per_minute"`
	// AccountRatePerMinute limits each signed-in account across all its
	// addresses.
	AccountRatePerMinute int `yaml:"account_rate_per_minute"`
	// URLSigningKey (base64, 32+ bytes) signs playback URLs of protected
	// channels; empty: generated once into data_dir/auth/. Every streamd
	// process of a deployment must share it.
	URLSigningKey string   `yaml:"url_signing_key"`
	URLTokenTTL   Duration `yaml:"url_token_ttl"`
	// URLTokenBindIP ties a playback URL to the viewer's address.
	URLTokenBindIP bool `yaml:"url_token_bind_ip"`
	// TierMaxHeight caps the renditions a subscription tier may play (the
	// short side, e.g. 1080); 0: no cap.
	TierMaxHeight map[string]int `yaml:"tier_max_height"`
	// AdFreeTiers are the subscription tiers whose viewers see no ads:
	// GET /api/streaming tells the player ("ads": false).
	AdFreeTiers []string `yaml:"ad_free_tiers"`
	// OIDC lists the OpenID Connect login providers (Google, Microsoft,
	// Keycloak, …); empty: password login only.
	OIDC []OIDCProvider `yaml:"oidc"`
	// OIDCPostLoginURL, when set, is where the OIDC callback sends the
	// browser with the tokens in the URL fragment; empty: the callback
	// answers the tokens as JSON.
	OIDCPostLoginURL string `yaml:"oidc_post_login_url"`
	// BillingWebhookSecret authenticates POST /api/billing/subscription
	// (HMAC-SHA256 of the body); empty: the webhook is off.
	BillingWebhookSecret string `yaml:"billing_webhook_secret"`
	// FamilyMaxProfiles is how many profiles a family account may hold.
	FamilyMaxProfiles int `yaml:"family_max_profiles"`
}

// OIDCProvider is one OpenID Connect login provider.
type OIDCProvider struct {
	// Name is the {name} of /api/auth/oidc/{name}/start.
	Name   string `yaml:"name"`
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret are what the provider issued for streamd.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// RedirectURL is https://HOST/api/auth/oidc/{name}/callback, as
	// registered at the provider.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes asked for besides openid (empty: email, profile).
	Scopes []string `yaml:"scopes"`
}

// Upload configures the resumable (tus) upload of masters.
type Upload struct {
	// MaxSizeMB is the largest master accepted, in MiB; 0: no limit.
	MaxSizeMB int64 `yaml:"max_size_mb"`
	// TempDir holds uploads in progress; on the same disk as
	// storage.objects.path, finished masters are renamed, not copied.
	TempDir string `yaml:"temp_dir"`
	// PresignExpiry is how long presigned S3 part URLs stay valid.
	PresignExpiry Duration `yaml:"presign_expiry"`
	// ExpireAfter is how long an incomplete upload may receive nothing
	// before it is removed (temp folder, S3 multipart parts).
	ExpireAfter Duration `yaml:"expire_after"`
}

// Transcode configures the ffmpeg workers.
type Transcode struct {
	// FFmpegPath is the ffmpeg binary; empty: ffmpeg on PATH.
	FFmpegPath string `yaml:"ffmpeg_path"`
	// Encoder is libx264, h264_nvenc, h264_vaapi or h264_qsv.
	Encoder string `yaml:"encoder"`
	// HWDevice is the GPU index (nvenc) or device node (vaapi, qsv).
	HWDevice string `yaml:"hw_device"`
	// MaxLiveWorkers bounds concurrent live transcodes; 0: half the cores
	// (at least 1).
	MaxLiveWorkers int `yaml:"max_live_workers"`
	// MaxVODWorkers bounds concurrent VOD transcode jobs on this node (the
	// job queue's MaxWorkers); at least 1.
	MaxVODWorkers int `yaml:"max_vod_workers"`
	// OverCapacity says what a publish beyond MaxLiveWorkers gets:
	// passthrough (the source rendition only) or refuse.
	OverCapacity string `yaml:"over_capacity"`
}

// Jobs configures the VOD job queue.
type Jobs struct {
	// RescueAfter: a running job's worker proves it is alive every
	// RescueAfter/4; a job whose worker stopped proving it (its process
	// crashed or lost the database) is run again this long after, by any
	// node sharing the queue. Long encodes on a live node are never
	// rescued.
	RescueAfter Duration `yaml:"rescue_after"`
}

// Ladder is a named set of renditions (see transcode.Ladder, which has
// the same shape and the encoding rules).
type Ladder struct {
	Name  string      `yaml:"name"`
	Rungs []Rung      `yaml:"rungs"`
	Audio LadderAudio `yaml:"audio"`
}

// Rung is one rendition; Source passes the published stream through.
type Rung struct {
	Name         string  `yaml:"name"`
	Width        int     `yaml:"width"`
	Height       int     `yaml:"height"`
	VideoBitrate string  `yaml:"video_bitrate"`
	MaxBitrate   string  `yaml:"max_bitrate"`
	Framerate    float64 `yaml:"framerate"`
	Profile      string  `yaml:"profile"`
	Preset       string  `yaml:"preset"`
	Source       bool    `yaml:"source"`
}

// LadderAudio is the one AAC encode every rendition of a ladder carries.
type LadderAudio struct {
	Bitrate    string `yaml:"bitrate"`
	SampleRate int    `yaml:"sample_rate"`
	Channels   int    `yaml:"channels"`
}

type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type HTTP struct {
	Addr           string   `yaml:"addr"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	// CacheMB is the origin's in-memory hot cache for segments and
	// playlists, in MiB; 0 turns it off.
	CacheMB int `yaml:"cache_mb"`
	// Request bodies (see api.LimitBodies): BodyTimeout is the longest an
	// ordinary body may take to arrive; every body, uploads included,
	// must average MinBodyRateKiB KiB/s over each BodyRateWindow.
	BodyTimeout    Duration `yaml:"body_timeout"`
	MinBodyRateKiB int      `yaml:"min_body_rate_kib"`
	BodyRateWindow Duration `yaml:"body_rate_window"`
}

type RTMP struct {
	Addr string `yaml:"addr"`
}

type RTSP struct {
	Addr        string `yaml:"addr"`
	UDPRTPAddr  string `yaml:"udp_rtp_addr"`
	UDPRTCPAddr string `yaml:"udp_rtcp_addr"`
}

type Storage struct {
	Objects  Objects  `yaml:"objects"`
	Meta     Meta     `yaml:"meta"`
	Sessions Sessions `yaml:"sessions"`
}

// Objects selects the object store: a local folder (fs) or S3/MinIO (s3).
type Objects struct {
	Driver string `yaml:"driver"`
	// fs
	Path string `yaml:"path"`
	// s3
	Endpoint  string `yaml:"endpoint"`
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	UseSSL    bool   `yaml:"use_ssl"`
	Prefix    string `yaml:"prefix"`
	// LiveExpireDays asks the bucket to delete live segments this many days
	// after they were written (a safety net behind the packager's own
	// deletes); 0 sets no rule. Masters are never expired.
	LiveExpireDays int `yaml:"live_expire_days"`
}

// Meta selects the metadata database.
type Meta struct {
	Driver string `yaml:"driver"` // sqlite | postgres
	URL    string `yaml:"url"`    // SQLite file path, or a postgres:// URL
}

// Sessions selects the session store.
type Sessions struct {
	Driver string `yaml:"driver"` // memory | redis
	URL    string `yaml:"url"`    // redis://host:port/db
}

type Live struct {
	SegmentDuration  Duration `yaml:"segment_duration"`
	PlaylistSegments int      `yaml:"playlist_segments"`
	EndGrace         Duration `yaml:"end_grace"`
}

type Channel struct {
	Name      string `yaml:"name"`
	StreamKey string `yaml:"stream_key"`
	// Ladder names an entry of ladders; empty: the published stream only.
	Ladder string `yaml:"ladder"`
	// Protected channels play only through signed URLs from
	// /api/streaming/{channel} (a logged-in viewer, within their tier).
	Protected bool `yaml:"protected"`
}

// Defaults returns the configuration the embedded file describes. A test
// keeps the two equal.
func Defaults() Config {
	c := Config{
		Log:     Log{Level: "info", Format: "text"},
		DataDir: "./data",
		HTTP:    HTTP{Addr: ":8080", AllowedOrigins: []string{"*"}, CacheMB: 256, BodyTimeout: Duration(30 * time.Second), MinBodyRateKiB: 16, BodyRateWindow: Duration(30 * time.Second)},
		RTMP:    RTMP{Addr: ":1935"},
		RTSP:    RTSP{Addr: ":8554", UDPRTPAddr: ":8000", UDPRTCPAddr: ":8001"},
		Storage: Storage{
			Objects:  Objects{Driver: "fs", Path: "./data"},
			Meta:     Meta{Driver: "sqlite"},
			Sessions: Sessions{Driver: "memory"},
		},
		Live: Live{
			SegmentDuration:  Duration(2 * time.Second),
			PlaylistSegments: 6,
			EndGrace:         Duration(5 * time.Second),
		},
		Auth: Auth{
			AccessTTL:            Duration(15 * time.Minute),
			RefreshTTL:           Duration(30 * 24 * time.Hour),
			LockoutFailures:      5,
			LockoutWindow:        Duration(15 * time.Minute),
			LockoutDuration:      Duration(15 * time.Minute),
			AuthRatePerMinute:    20,
			APIRatePerMinute:     600,
			AccountRatePerMinute: 1200,
			URLTokenTTL:          Duration(6 * time.Hour),
			TierMaxHeight:        map[string]int{"free": 1080, "premium": 0, "family": 0},
			AdFreeTiers:          []string{"premium", "family"},
			OIDC:                 []OIDCProvider{},
			FamilyMaxProfiles:    5,
		},
		Upload:    Upload{MaxSizeMB: 51200, PresignExpiry: Duration(6 * time.Hour), ExpireAfter: Duration(24 * time.Hour)},
		Transcode: Transcode{Encoder: "libx264", OverCapacity: "passthrough", MaxVODWorkers: 1},
		Jobs:      Jobs{RescueAfter: Duration(time.Minute)},
		Ladders:   []Ladder{defaultLadder()},
		Channels:  []Channel{{Name: "main"}},
	}
	return c
}

// Resolve fills the keys whose default lives in data_dir: the SQLite
// file and the upload folder follow data_dir when left empty, so moving
// data_dir moves all the state streamd keeps. Load does it; a program
// that builds a Config by hand (from Defaults) calls it after setting
// data_dir.
func (c *Config) Resolve() {
	if c.Storage.Meta.Driver == "sqlite" && c.Storage.Meta.URL == "" {
		c.Storage.Meta.URL = filepath.Join(c.DataDir, "streamd.db")
	}
	if c.Upload.TempDir == "" {
		c.Upload.TempDir = filepath.Join(c.DataDir, "uploads")
	}
}

// defaultLadder is the shipped `default` ladder; a test in cmd/streamd
// keeps it equal to transcode.DefaultLadder.
func defaultLadder() Ladder {
	rung := func(name string, w, h int, br, peak string) Rung {
		return Rung{Name: name, Width: w, Height: h, VideoBitrate: br, MaxBitrate: peak, Profile: "high", Preset: "veryfast"}
	}
	return Ladder{
		Name: "default",
		Rungs: []Rung{
			rung("1080p", 1920, 1080, "5000k", "5350k"),
			rung("720p", 1280, 720, "3000k", "3210k"),
			rung("480p", 854, 480, "1200k", "1284k"),
			rung("360p", 640, 360, "800k", "856k"),
		},
		Audio: LadderAudio{Bitrate: "128k", SampleRate: 48000, Channels: 2},
	}
}

// Duration is a time.Duration written as "2s", "500ms" in YAML.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses "2s"-style durations. A bad value is reported as a
// type error so the decoder goes on and every problem is listed at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (use e.g. 2s, 500ms)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// Problem is one thing wrong with a configuration, located by key and
// (when it came from a file) line.
type Problem struct {
	Key     string
	Line    int // 0 when unknown (defaults, environment)
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Key, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Message)
}

// Error lists every problem found in a configuration.
type Error struct {
	Source   string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s)", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

var channelName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate checks values; each problem names its key and the fix.
func (c *Config) Validate() []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.DataDir == "" {
		add("data_dir", "must not be empty")
	}
	checkAddr := func(key, v string, required bool) {
		if v == "" {
			if required {
				add(key, "must not be empty (use host:port, e.g. \":8080\")")
			}
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			add(key, "%q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", v)
		}
	}
	checkAddr("http.addr", c.HTTP.Addr, true)
	if c.HTTP.CacheMB < 0 {
		add("http.cache_mb", "%d must be 0 (no cache) or more", c.HTTP.CacheMB)
	}
	ps = append(ps, validateServer(c)...)
	checkAddr("rtmp.addr", c.RTMP.Addr, false)
	checkAddr("rtsp.addr", c.RTSP.Addr, false)
	checkAddr("rtsp.udp_rtp_addr", c.RTSP.UDPRTPAddr, false)
	checkAddr("rtsp.udp_rtcp_addr", c.RTSP.UDPRTCPAddr, false)
	if (c.RTSP.UDPRTPAddr == "") != (c.RTSP.UDPRTCPAddr == "") {
		add("rtsp.udp_rtcp_addr", "set both rtsp.udp_rtp_addr and rtsp.udp_rtcp_addr, or neither (TCP only)")
	}
	if c.RTMP.Addr == "" && c.RTSP.Addr == "" {
		add("rtmp.addr", "rtmp.addr and rtsp.addr are both empty: nothing could publish")
	}
	for i, o := range c.HTTP.AllowedOrigins {
		if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			add(fmt.Sprintf("http.allowed_origins[%d]", i), "%q must be \"*\" or an origin like https://example.com", o)
		}
	}
	o := c.Storage.Objects
	switch o.Driver {
	case "fs":
		if o.Path == "" {
			add("storage.objects.path", "must name a folder when storage.objects.driver is fs")
		}
	case "s3":
		if o.Endpoint == "" {
			add("storage.objects.endpoint", "must be host:port of the S3/MinIO server when storage.objects.driver is s3")
		} else if strings.Contains(o.Endpoint, "://") {
			add("storage.objects.endpoint", "%q must be host:port without a scheme (set storage.objects.use_ssl for https)", o.Endpoint)
		}
		if o.Bucket == "" {
			add("storage.objects.bucket", "must name a bucket when storage.objects.driver is s3")
		}
		if o.AccessKey == "" || o.SecretKey == "" {
			add("storage.objects.access_key", "set storage.objects.access_key and secret_key (e.g. from STREAMD_STORAGE_OBJECTS_SECRET_KEY)")
		}
	default:
		add("storage.objects.driver", "%q is not a known driver (fs, s3)", o.Driver)
	}
	if o.LiveExpireDays < 0 {
		add("storage.objects.live_expire_days", "%d must be 0 (no rule) or more", o.LiveExpireDays)
	}
	switch c.Storage.Meta.Driver {
	case "sqlite":
		if c.Storage.Meta.URL == "" {
			add("storage.meta.url", "must name the SQLite file when storage.meta.driver is sqlite")
		}
	case "postgres":
		if !strings.HasPrefix(c.Storage.Meta.URL, "postgres://") && !strings.HasPrefix(c.Storage.Meta.URL, "postgresql://") {
			add("storage.meta.url", "must be a postgres:// URL when storage.meta.driver is postgres")
		}
	default:
		add("storage.meta.driver", "%q is not a known driver (sqlite, postgres)", c.Storage.Meta.Driver)
	}
	switch c.Storage.Sessions.Driver {
	case "memory":
	case "redis":
		if !strings.HasPrefix(c.Storage.Sessions.URL, "redis://") && !strings.HasPrefix(c.Storage.Sessions.URL, "rediss://") {
			add("storage.sessions.url", "must be a redis:// URL when storage.sessions.driver is redis")
		}
	default:
		add("storage.sessions.driver", "%q is not a known driver (memory, redis)", c.Storage.Sessions.Driver)
	}
	sd := time.Duration(c.Live.SegmentDuration)
	if sd < 500*time.Millisecond || sd > 30*time.Second {
		add("live.segment_duration", "%s is outside 500ms..30s", sd)
	}
	if c.Live.PlaylistSegments < 2 || c.Live.PlaylistSegments > 1000 {
		add("live.playlist_segments", "%d is outside 2..1000", c.Live.PlaylistSegments)
	}
	if g := time.Duration(c.Live.EndGrace); g < 0 || g > 10*time.Minute {
		add("live.end_grace", "%s is outside 0s..10m", g)
	}
	a := c.Auth
	if d := time.Duration(a.AccessTTL); d < time.Minute || d > 24*time.Hour {
		add("auth.access_ttl", "%s is outside 1m..24h", d)
	}
	if d := time.Duration(a.RefreshTTL); d < time.Hour {
		add("auth.refresh_ttl", "%s is shorter than 1h", d)
	}
	if a.LockoutFailures < 1 {
		add("auth.lockout_failures", "%d must be at least 1", a.LockoutFailures)
	}
	if a.LockoutWindow <= 0 || a.LockoutDuration <= 0 {
		add("auth.lockout_window", "auth.lockout_window and auth.lockout_duration must be positive")
	}
	if d := time.Duration(a.URLTokenTTL); d < time.Minute || d > 7*24*time.Hour {
		add("auth.url_token_ttl", "%s is outside 1m..168h", d)
	}
	for tier, h := range a.TierMaxHeight {
		if tier != "free" && tier != "premium" && tier != "family" {
			add("auth.tier_max_height."+tier, "%q is not a tier (free, premium, family)", tier)
		}
		if h < 0 {
			add("auth.tier_max_height."+tier, "%d must be 0 (no cap) or a height such as 1080", h)
		}
	}
	for i, tier := range a.AdFreeTiers {
		if tier != "free" && tier != "premium" && tier != "family" {
			add(fmt.Sprintf("auth.ad_free_tiers[%d]", i), "%q is not a tier (free, premium, family)", tier)
		}
	}
	ps = append(ps, validateOIDC(a)...)
	if s := a.BillingWebhookSecret; s != "" && len(s) < 32 {
		// The secret is never echoed.
		add("auth.billing_webhook_secret", "must be at least 32 characters (e.g. `openssl rand -hex 32`), or empty to turn the webhook off")
	}
	if a.FamilyMaxProfiles < 1 || a.FamilyMaxProfiles > 100 {
		add("auth.family_max_profiles", "%d is outside 1..100", a.FamilyMaxProfiles)
	}
	if a.AccountRatePerMinute < 1 {
		add("auth.account_rate_per_minute", "%d must be at least 1", a.AccountRatePerMinute)
	}
	if a.AuthRatePerMinute < 1 || a.APIRatePerMinute < 1 {
		add("auth.auth_rate_per_minute", "auth.auth_rate_per_minute and auth.api_rate_per_minute must be at least 1")
	}
	if c.Upload.MaxSizeMB < 0 {
		add("upload.max_size_mb", "%d must be 0 (no limit) or more", c.Upload.MaxSizeMB)
	}
	if c.Upload.TempDir == "" {
		add("upload.temp_dir", "must name a folder for uploads in progress")
	}
	if d := time.Duration(c.Upload.PresignExpiry); d < time.Minute || d > 7*24*time.Hour {
		add("upload.presign_expiry", "%s is outside 1m..168h (S3's limit)", d)
	}
	// Below presign_expiry, an upload could be removed while its part
	// URLs still let the client send parts.
	if d := time.Duration(c.Upload.ExpireAfter); d < time.Hour || d < time.Duration(c.Upload.PresignExpiry) {
		add("upload.expire_after", "%s must be at least 1h and at least upload.presign_expiry (%s)", d, time.Duration(c.Upload.PresignExpiry))
	}
	switch c.Transcode.Encoder {
	case "libx264", "h264_nvenc", "h264_vaapi", "h264_qsv":
	default:
		add("transcode.encoder", "%q is not one of libx264, h264_nvenc, h264_vaapi, h264_qsv", c.Transcode.Encoder)
	}
	switch c.Transcode.OverCapacity {
	case "passthrough", "refuse":
	default:
		add("transcode.over_capacity", "%q is not one of passthrough, refuse", c.Transcode.OverCapacity)
	}
	if c.Transcode.MaxVODWorkers < 1 {
		add("transcode.max_vod_workers", "%d must be 1 or more", c.Transcode.MaxVODWorkers)
	}
	if c.Transcode.MaxLiveWorkers < 0 {
		add("transcode.max_live_workers", "%d must be 0 (half the cores) or more", c.Transcode.MaxLiveWorkers)
	}
	if d := time.Duration(c.Jobs.RescueAfter); d < 10*time.Second || d > time.Hour {
		// Below 10 s a database hiccup would rerun healthy jobs; above an
		// hour a crashed node's uploads wait too long.
		add("jobs.rescue_after", "%s is outside 10s..1h", d)
	}
	ladders := map[string]bool{}
	for i, l := range c.Ladders {
		if ladders[l.Name] {
			add(fmt.Sprintf("ladders[%d].name", i), "%q is used by another ladder", l.Name)
		}
		ladders[l.Name] = true
	}
	names := map[string]bool{}
	keys := map[string]int{}
	for i, ch := range c.Channels {
		k := fmt.Sprintf("channels[%d]", i)
		if !channelName.MatchString(ch.Name) {
			add(k+".name", "%q must be 1-64 characters of a-z, 0-9, - and _, starting with a letter or digit", ch.Name)
		}
		if names[ch.Name] {
			add(k+".name", "%q is used by another channel", ch.Name)
		}
		names[ch.Name] = true
		if ch.Ladder != "" && !ladders[ch.Ladder] {
			add(k+".ladder", "%q is not the name of an entry of ladders", ch.Ladder)
		}
		if ch.StreamKey != "" {
			if len(ch.StreamKey) < 8 || strings.ContainsAny(ch.StreamKey, "/?#&% \t") {
				// The key is a secret: never echo it back.
				add(k+".stream_key", "must be at least 8 characters without / ? # & %% or spaces (or empty to generate one)")
			}
			if j, dup := keys[ch.StreamKey]; dup {
				add(k+".stream_key", "is the same as channels[%d].stream_key; every channel needs its own key", j)
			}
			keys[ch.StreamKey] = i
		}
	}
	return ps
}

var oidcName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// absURL reports whether s is an absolute http(s) URL without a fragment.
func absURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return nil, false
	}
	return u, true
}

func isLocalhost(u *url.URL) bool {
	h := u.Hostname()
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

func validateOIDC(a Auth) []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	names := map[string]bool{}
	for i, p := range a.OIDC {
		k := fmt.Sprintf("auth.oidc[%d]", i)
		if !oidcName.MatchString(p.Name) {
			add(k+".name", "%q must be 1-32 characters of a-z, 0-9, - and _, starting with a letter or digit", p.Name)
		} else if names[p.Name] {
			add(k+".name", "%q is used by another provider", p.Name)
		}
		names[p.Name] = true
		if u, ok := absURL(p.Issuer); !ok || (u.Scheme != "https" && !isLocalhost(u)) {
			add(k+".issuer", "%q must be the provider's https:// issuer URL (e.g. https://accounts.google.com)", p.Issuer)
		}
		if p.ClientID == "" {
			add(k+".client_id", "must be the client id the provider issued for streamd")
		}
		want := "/api/auth/oidc/" + p.Name + "/callback"
		if u, ok := absURL(p.RedirectURL); !ok || u.Path != want || u.RawQuery != "" {
			add(k+".redirect_url", "%q must be this server's absolute URL of %s (e.g. https://streamd.example.com%s)", p.RedirectURL, want, want)
		}
	}
	if a.OIDCPostLoginURL != "" {
		if _, ok := absURL(a.OIDCPostLoginURL); !ok {
			add("auth.oidc_post_login_url", "%q must be an absolute http(s) URL without a fragment, or empty", a.OIDCPostLoginURL)
		}
	}
	return ps
}
