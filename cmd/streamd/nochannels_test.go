package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamd/streamd/configs"
)

// TestStartsWithoutChannels: a config with `channels: []` (channels come
// from the API, or a VOD-only server) starts, answers /healthz, and the
// banner says how to create a channel.
func TestStartsWithoutChannels(t *testing.T) {
	dir := t.TempDir()
	file := "data_dir: " + filepath.Join(dir, "data") + "\n" +
		"storage:\n  objects:\n    path: " + filepath.Join(dir, "objects") + "\n" +
		"http:\n  addr: \"127.0.0.1:0\"\n" +
		"rtmp:\n  addr: \"127.0.0.1:0\"\n" +
		"rtsp:\n  addr: \"127.0.0.1:0\"\n  udp_rtp_addr: \"\"\n  udp_rtcp_addr: \"\"\n" +
		"channels: []\n"
	cfg, err := configs.Parse([]byte(file), "nochannels.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config without channels refused: %v", err)
	}
	var banner bytes.Buffer
	m := &Main{Config: cfg, Log: slog.New(slog.DiscardHandler), Banner: &banner}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("start without channels: %v", err)
	}
	defer m.Close()
	if len(m.Channels) != 0 {
		t.Fatalf("channels: %+v", m.Channels)
	}
	res, err := http.Get("http://" + m.HTTPAddr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", res.StatusCode)
	}
	for _, want := range []string{"POST http://" + m.HTTPAddr.String() + "/api/publish/channels", "channels: in the config"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}
}
