package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/streamd/streamd/configs"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, configs.DefaultFile(), 0o644)
	if code, out, _ := runCLI("config", "check", good); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("good file: %d %s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("http:\n  adr: x\nlive:\n  segment_duration: nope\n"), 0o644)
	code, out, _ := runCLI("config", "check", bad)
	if code != 1 || !strings.Contains(out, "line 2: http.adr: unknown key") {
		t.Fatalf("bad file: %d %q", code, out)
	}
	if code, _, errOut := runCLI("config", "check", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file: %d %q", code, errOut)
	}
}

func TestConfigPrintAppliesEnv(t *testing.T) {
	t.Setenv("STREAMD_HTTP_ADDR", "127.0.0.1:9999")
	code, out, _ := runCLI("config", "print")
	if code != 0 || !strings.Contains(out, `addr: 127.0.0.1:9999`) {
		t.Fatalf("%d %s", code, out)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "streamd ") {
		t.Fatalf("%d %q", code, out)
	}
	if code, _, errOut := runCLI("frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("%d %q", code, errOut)
	}
}

// TestMainOnEphemeralPorts runs the whole server in-process, as the
// end-to-end tests do with the binary, and checks the start-up banner.
func TestMainOnEphemeralPorts(t *testing.T) {
	cfg := configs.Defaults()
	dir := t.TempDir()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Storage.Meta.URL = filepath.Join(dir, "data", "streamd.db")
	cfg.Storage.Objects.Path = filepath.Join(dir, "objects")
	cfg.HTTP.Addr, cfg.RTMP.Addr, cfg.RTSP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "", ""
	var logs, banner bytes.Buffer
	m := &Main{Config: cfg, Log: slog.New(slog.NewTextHandler(&logs, nil)), Banner: &banner}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	key := m.Channels[0].StreamKey
	if len(key) < 16 {
		t.Fatalf("no generated key: %q", key)
	}
	for _, want := range []string{
		"rtmp://" + m.RTMPAddr.String() + "/live/" + key,
		"rtsp://" + m.RTSPAddr.String() + "/live/" + key,
		"http://" + m.HTTPAddr.String() + "/live/main/index.m3u8",
	} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %s:\n%s", want, banner.String())
		}
	}
	if strings.Contains(logs.String(), key) {
		t.Error("generated key logged")
	}
	m.Close()

	// A second start keeps the key, and does not print it (not a terminal).
	banner.Reset()
	m2 := &Main{Config: cfg, Log: slog.New(slog.DiscardHandler), Banner: &banner}
	if err := m2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Channels[0].StreamKey != key {
		t.Error("key changed across restarts")
	}
	if strings.Contains(banner.String(), key) || !strings.Contains(banner.String(), "stream_keys") {
		t.Errorf("second banner:\n%s", banner.String())
	}
}

func TestBusyPortIsOneClearError(t *testing.T) {
	cfg := configs.Defaults()
	dir := t.TempDir()
	cfg.DataDir, cfg.Storage.Objects.Path, cfg.Storage.Meta.URL = dir, dir, filepath.Join(dir, "m.db")
	cfg.HTTP.Addr, cfg.RTMP.Addr, cfg.RTSP.Addr = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "", ""
	m := &Main{Config: cfg}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg.HTTP.Addr = m.HTTPAddr.String()
	m2 := &Main{Config: cfg}
	err := m2.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http.addr") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("want a clear http.addr error, got %v", err)
	}
}

// TestFirstAdminThenAPI: the documented way in — create the first admin
// from the shell, start the server on the same data, log in over the API.
func TestFirstAdminThenAPI(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"STREAMD_DATA_DIR": filepath.Join(dir, "data"), "STREAMD_STORAGE_OBJECTS_PATH": filepath.Join(dir, "objects"),
		"STREAMD_STORAGE_META_URL": filepath.Join(dir, "data", "streamd.db"),
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"user", "add", "--email", "boss@example.com", "--username", "boss", "--role", "admin"},
		strings.NewReader("correct horse battery staple\n"), &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "created user boss") {
		t.Fatalf("user add: %d %s %s", code, out.String(), errb.String())
	}
	// The same email again is a clear conflict.
	code = run(context.Background(), []string{"user", "add", "--email", "boss@example.com", "--username", "boss2"},
		strings.NewReader("another long password\n"), &out, &errb)
	if code != 1 {
		t.Fatalf("duplicate user: %d %s", code, errb.String())
	}

	cfg, err := configs.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Addr, cfg.RTMP.Addr, cfg.RTSP.Addr = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.RTSP.UDPRTPAddr, cfg.RTSP.UDPRTCPAddr = "", ""
	var logs bytes.Buffer
	m := &Main{Config: cfg, Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.HTTPAddr.String()
	resp, err := http.Post(base+"/api/auth/login", "application/json",
		strings.NewReader(`{"username":"boss","password":"correct horse battery staple"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("login: %d %+v", resp.StatusCode, tok)
	}
	req, _ := http.NewRequest("GET", base+"/api/users", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin listing: %v %d", err, resp.StatusCode)
	}
	resp.Body.Close()
	// The page's own endpoint still answers next to the API.
	resp, err = http.Get(base + "/api/channels")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/channels: %v %d", err, resp.StatusCode)
	}
	resp.Body.Close()
	if strings.Contains(logs.String(), "correct horse") || strings.Contains(logs.String(), tok.AccessToken) {
		t.Error("a password or token reached the log")
	}
}

// TestUploadThroughTheBinary: a publisher uploads a master with tus and it
// lands in the object store; a viewer may not.
func TestUploadThroughTheBinary(t *testing.T) {
	m := inProcess(t, nil, nil, [2]string{"pub", "publisher"}, [2]string{"watcher", "viewer"})
	base := "http://" + m.HTTPAddr.String()
	login := func(user string) string {
		resp, err := http.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"username":"`+user+`","password":"`+testPassword+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		return tok.AccessToken
	}
	data := bytes.Repeat([]byte("streamd master bytes "), 5000)
	create := func(token string) *http.Response {
		req, _ := http.NewRequest("POST", base+"/api/uploads/", nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
		req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("master.mp4")))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := create(login("watcher")); resp.StatusCode != 403 {
		t.Errorf("viewer upload: %d", resp.StatusCode)
	}
	resp := create(login("pub"))
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	loc, _ := resp.Location()
	req, _ := http.NewRequest("PATCH", loc.String(), bytes.NewReader(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Authorization", "Bearer "+login("pub"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("patch: %v %v", err, resp)
	}
	resp.Body.Close()
	infos, err := m.Objects.List(context.Background(), "masters/")
	if err != nil || len(infos) != 1 || infos[0].Size != int64(len(data)) || !strings.HasSuffix(infos[0].Key, "/master.mp4") {
		t.Fatalf("stored masters: %+v %v", infos, err)
	}
}

// testPassword is the password of the accounts inProcess creates.
const testPassword = "a long enough passphrase"

// inProcess runs the whole server in this process on the default config,
// its state in a temporary folder, after creating the accounts (name and
// role; email name@example.com, password testPassword) with `streamd
// user add`, as an operator would. env overrides further keys; job is
// the VOD job spec for uploads (nil: the default).
func inProcess(t *testing.T, env map[string]string, job []byte, users ...[2]string) *Main {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"STREAMD_DATA_DIR": filepath.Join(dir, "data"), "STREAMD_STORAGE_OBJECTS_PATH": filepath.Join(dir, "objects"),
		"STREAMD_STORAGE_META_URL": filepath.Join(dir, "data", "streamd.db"), "STREAMD_UPLOAD_TEMP_DIR": filepath.Join(dir, "uploads"),
	}
	maps.Copy(all, env)
	for k, v := range all {
		t.Setenv(k, v)
	}
	for _, u := range users {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"user", "add", "--email", u[0] + "@example.com", "--username", u[0], "--role", u[1]},
			strings.NewReader(testPassword+"\n"), &out, &errb); code != 0 {
			t.Fatalf("user add %s: %s", u[0], errb.String())
		}
	}
	cfg, err := configs.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Addr, cfg.RTMP.Addr, cfg.RTSP.Addr = "127.0.0.1:0", "", ""
	m := &Main{Config: cfg, VODJob: job}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
