package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamd/streamd/auth"
	"github.com/streamd/streamd/configs"
	"github.com/streamd/streamd/ingest/rtmp"
	"github.com/streamd/streamd/ingest/rtsp"
	"github.com/streamd/streamd/jobs"
	"github.com/streamd/streamd/live"
	"github.com/streamd/streamd/origin"
	"github.com/streamd/streamd/packager"
	"github.com/streamd/streamd/playback"
	"github.com/streamd/streamd/store"
	"github.com/streamd/streamd/transcode"
	"github.com/streamd/streamd/web"
)

// Main is the whole server: tests start it on ":0" ports with Run and stop
// it with Close.
type Main struct {
	Config configs.Config
	Log    *slog.Logger
	// Banner receives the human-readable start-up text (publish and play
	// URLs). Nil discards it.
	Banner io.Writer
	// BannerShowsKeys prints generated stream keys in full even when they
	// were not created by this start (set when the banner goes to a terminal).
	BannerShowsKeys bool

	// Set by Run: the addresses actually bound.
	HTTPAddr, RTMPAddr, RTSPAddr net.Addr
	// MetricsAddr is /metrics' own listener (metrics.addr); nil: on HTTPAddr.
	MetricsAddr net.Addr
	// Channels as resolved at start, keys included.
	Channels []live.Channel

	Hub      *live.Hub
	Registry *prometheus.Registry
	// Backends opened by Run.
	Objects  store.Objects
	Meta     store.Meta
	Sessions store.Sessions
	// VODJob is the job spec (vod.ParseJob's JSON) for uploaded masters;
	// nil means vod.DefaultJob.
	VODJob []byte
	// Jobs is the VOD job queue, started by Run.
	Jobs *jobs.Queue

	backends *backends
	packager *packager.Packager
	pool     *transcode.Pool
	rtmp     *rtmp.Server
	rtsp     *rtsp.Server
	http     *http.Server
	httpLn   net.Listener
	httpDone chan error
	// metrics is /metrics' own server when metrics.addr is set.
	metrics     *http.Server
	metricsDone chan error
}

// Run starts every server and returns once they listen. On error,
// whatever had started is stopped again.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	if m.Banner == nil {
		m.Banner = io.Discard
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.Config.Resolve() // a Config built by hand may leave data_dir's defaults empty
	cfg := m.Config
	if ps := checkTranscode(cfg); len(ps) > 0 {
		return &configs.Error{Source: "config", Problems: ps}
	}
	ladderSet, _ := ladders(cfg)
	encoder, _ := transcode.EncoderByName(cfg.Transcode.Encoder, cfg.Transcode.HWDevice)

	keys := auth.KeyStore{Dir: cfg.DataDir}
	var generated []string
	fresh := map[string]bool{}
	for _, c := range cfg.Channels {
		ch := live.Channel{Name: c.Name, StreamKey: c.StreamKey}
		if ch.StreamKey == "" {
			k, created, err := keys.LoadOrCreate(c.Name)
			if err != nil {
				return err
			}
			ch.StreamKey = k
			generated = append(generated, c.Name)
			fresh[c.Name] = created
			if created {
				m.Log.Info("generated a stream key", "channel", c.Name, "file", keys.Path(c.Name))
			}
		}
		m.Channels = append(m.Channels, ch)
	}

	m.backends, err = openBackends(ctx, cfg, m.Log)
	if err != nil {
		return err
	}
	objs := m.backends.objects
	m.Objects, m.Meta, m.Sessions = objs, m.backends.meta, m.backends.sessions

	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	protected := map[string]bool{}
	for _, c := range cfg.Channels {
		protected[c.Name] = c.Protected
	}
	if err := syncChannels(ctx, m.Meta, m.Channels, protected, m.Log); err != nil {
		return fmt.Errorf("storage.meta: syncing channels: %w", err)
	}
	m.Hub = live.NewHub(m.Log, m.Channels)
	// Stream keys are checked in the metadata store (channels made through
	// the API too); the configured ones are the fallback when it is down.
	m.Hub.SetKeyResolver(storeKeys{meta: m.Meta})
	seg := time.Duration(cfg.Live.SegmentDuration)
	m.packager = packager.New(packager.Config{
		SegmentDuration:  seg,
		PlaylistSegments: cfg.Live.PlaylistSegments,
		EndGrace:         time.Duration(cfg.Live.EndGrace),
		Prefix:           "live",
	}, objs, m.Log, m.Registry)
	channelLadder := map[string]string{}
	for _, c := range cfg.Channels {
		channelLadder[c.Name] = c.Ladder
	}
	ffmpeg, _ := transcode.FindFFmpeg(cfg.Transcode.FFmpegPath) // required (and checked) only for ladders
	m.pool = transcode.NewPool(transcode.PoolConfig{
		FFmpegPath:         ffmpeg,
		Encoder:            encoder,
		Ladders:            ladderSet,
		ChannelLadder:      channelLadder,
		MaxWorkers:         maxLiveWorkers(cfg.Transcode.MaxLiveWorkers),
		RefuseOverCapacity: cfg.Transcode.OverCapacity == "refuse",
		SegmentDuration:    seg,
		Sinks:              packagerSinks{m.packager},
		Source:             m.packager,
		Log:                m.Log,
		Registerer:         m.Registry,
	})
	// The pool is the hub's one listener: it packages the source
	// rendition itself (through the packager) or starts a ladder.
	m.Hub.AddListener(m.pool)

	// HTTP first: an operator's health checks should answer as soon as
	// anything can publish.
	mux := http.NewServeMux()
	cacheBytes := int64(cfg.HTTP.CacheMB) << 20
	if cacheBytes == 0 {
		cacheBytes = -1 // origin.Config: negative disables
	}
	signer, err := urlSigner(cfg, m.Log)
	if err != nil {
		return err
	}
	ocfg := origin.Config{AllowedOrigins: cfg.HTTP.AllowedOrigins, PlaylistMaxAge: seg / 2, CacheBytes: cacheBytes}
	// Which channels and catalog items are protected is read from the
	// metadata store (channels made protected through the API too).
	// Tokens of users whose playback was revoked (log out everywhere, a
	// lower tier...) are refused: the revocations are in the sessions store.
	// A channel or item the store does not know is a 404 (Gate), never
	// public: a deleted channel's objects must not play.
	policy := playback.NewPolicy(m.Meta, 0, m.Log)
	guard, err := origin.NewPolicyGuard(signer, policy.Protected, nil)
	if err != nil {
		return err
	}
	ocfg.Guard = guard.WithRevocations(auth.NewPlaybackRevocations(m.Sessions, m.Log).Revoked)
	og := origin.New(ocfg, objs, m.Log)
	mux.Handle("/live/", policy.Gate(og))
	mux.Handle("/vod/", policy.Gate(og)) // catalog items' trees under vod/{id}/ (the layout streamd transcode writes)
	mux.Handle("/healthz", origin.Health())
	mux.Handle("/readyz", origin.Ready(objs, 0, m.Log))
	if err := m.startMetrics(cfg, mux); err != nil {
		return err
	}
	mux.Handle("GET /api/transcode", jsonHandler(func() any { return m.pool.Status() }))
	svc, err := newAuthService(cfg, m.Meta, m.Sessions, m.Log)
	if err != nil {
		return err
	}
	webUI := web.New(m.Hub, m.Log)
	chans := apiChannels{Meta: m.Meta, objects: &playback.ChannelObjects{Objects: objs, Policy: policy,
		OnAir: onAir(m.Hub, m.packager), Log: m.Log}}
	mux.Handle("/api/", newAPI(cfg, svc, chans, m.Sessions, issuer(cfg, signer), m.Log))
	if m.Jobs, err = openJobs(ctx, cfg, objs, m.Meta, m.Log); err != nil {
		return err
	}
	up, err := newUploads(ctx, cfg, objs, svc, enqueueUpload(m.Meta, m.Jobs, m.VODJob, m.Log), m.Log)
	if err != nil {
		return err
	}
	mux.Handle(uploadBase, up)
	mux.Handle("DELETE /api/content/{id}/job", cancelJobHandler(m.Meta, m.Jobs, svc))
	mux.Handle("/api/channels", webUI) // the page's own endpoint
	mux.Handle("/", webUI)

	m.httpLn, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http.addr %s: %w", cfg.HTTP.Addr, unwrapListen(err))
	}
	m.HTTPAddr = m.httpLn.Addr()
	m.http = &http.Server{
		Handler:           serverHandler(cfg, mux, m.Log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Log.With("component", "http").Handler(), slog.LevelWarn),
	}
	m.httpDone = make(chan error, 1)
	go func() { m.httpDone <- m.http.Serve(m.httpLn) }()

	if cfg.RTMP.Addr != "" {
		m.rtmp = &rtmp.Server{Addr: cfg.RTMP.Addr, Hub: m.Hub, Log: m.Log}
		if err := m.rtmp.Start(); err != nil {
			m.rtmp = nil
			return err
		}
		m.RTMPAddr = m.rtmp.ListenAddr()
	}
	if cfg.RTSP.Addr != "" {
		m.rtsp = &rtsp.Server{Addr: cfg.RTSP.Addr, UDPRTPAddr: cfg.RTSP.UDPRTPAddr, UDPRTCPAddr: cfg.RTSP.UDPRTCPAddr, Hub: m.Hub, Log: m.Log}
		if err := m.rtsp.Start(); err != nil {
			m.rtsp = nil
			return err
		}
		m.RTSPAddr = m.rtsp.ListenAddr()
	}

	m.Log.Info("streamd started", "http", m.HTTPAddr.String(), "rtmp", addrString(m.RTMPAddr), "rtsp", addrString(m.RTSPAddr),
		"objects", m.backends.where, "meta", cfg.Storage.Meta.Driver, "sessions", cfg.Storage.Sessions.Driver,
		"channels", len(m.Channels))
	m.printBanner(generated, fresh, keys)
	return nil
}

// jsonHandler serves a value as JSON, never cached.
func jsonHandler(v func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(v())
	})
}

// refuseDotSegments answers 400 to any request path with "." or ".."
// elements. ServeMux would otherwise clean them and redirect, which is safe
// but turns probing into a 307 instead of a plain refusal.
func refuseDotSegments(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, el := range strings.Split(r.URL.Path, "/") {
			if el == "." || el == ".." {
				http.Error(w, "invalid path: . and .. elements are not allowed", http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// printBanner tells a newcomer what to paste into OBS and a player. The
// key goes to the banner (stdout), never to the log.
func (m *Main) printBanner(generated []string, fresh map[string]bool, keys auth.KeyStore) {
	isGen := map[string]bool{}
	for _, g := range generated {
		isGen[g] = true
	}
	w := m.Banner
	fmt.Fprintf(w, "\nstreamd is running. Web page: http://%s/\n", hostPort(m.HTTPAddr))
	if len(m.Channels) == 0 {
		// Not an error: channels made through the API live in the
		// metadata store, and a VOD-only server needs none.
		fmt.Fprintf(w, "\nno channel in the config. Create one with POST http://%s/api/publish/channels\n"+
			"  (a publisher's or admin's token; the answer holds its stream key),\n"+
			"  or add one to channels: in the config file and restart.\n", hostPort(m.HTTPAddr))
	}
	for _, ch := range m.Channels {
		fmt.Fprintf(w, "\nchannel %q\n", ch.Name)
		key := ch.StreamKey
		if !isGen[ch.Name] {
			key = "<stream_key from your config>"
		} else if !fresh[ch.Name] && !m.BannerShowsKeys {
			key = "<key in " + keys.Path(ch.Name) + ">"
		}
		if m.RTMPAddr != nil {
			fmt.Fprintf(w, "  publish (RTMP): rtmp://%s/live/%s\n", hostPort(m.RTMPAddr), key)
			fmt.Fprintf(w, "     OBS: server rtmp://%s/live  stream key %s\n", hostPort(m.RTMPAddr), key)
		}
		if m.RTSPAddr != nil {
			fmt.Fprintf(w, "  publish (RTSP): rtsp://%s/live/%s\n", hostPort(m.RTSPAddr), key)
		}
		fmt.Fprintf(w, "  play (HLS):     http://%s/live/%s/index.m3u8\n", hostPort(m.HTTPAddr), ch.Name)
	}
	fmt.Fprintln(w)
}

// hostPort turns a listen address into something a user can paste:
// wildcard hosts become localhost.
func hostPort(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func unwrapListen(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err
		}
		return op.Err
	}
	return err
}

// Close stops ingest first (no new media), then finishes the packager so
// every playlist ends cleanly, then the HTTP server.
func (m *Main) Close() error {
	if m.rtmp != nil {
		m.rtmp.Close()
	}
	if m.rtsp != nil {
		m.rtsp.Close()
	}
	if m.pool != nil {
		m.pool.Close() // ffmpeg process groups gone before the playlists end
	}
	if m.packager != nil {
		m.packager.Close()
	}
	var err error
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = m.http.Shutdown(ctx)
		if e := <-m.httpDone; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
		m.http = nil
	} else if m.httpLn != nil {
		m.httpLn.Close()
	}
	if e := m.closeMetrics(); e != nil && err == nil {
		err = e
	}
	if m.Jobs != nil {
		// Running encodes get a moment to finish, then are cancelled:
		// River runs them again at the next start.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.Jobs.Stop(ctx)
		cancel()
		m.Jobs = nil
	}
	if m.backends != nil {
		m.backends.Close()
		m.backends = nil
	}
	return err
}

// newLogger builds the process logger from the log.* keys.
func newLogger(w io.Writer, c configs.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by configs
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
