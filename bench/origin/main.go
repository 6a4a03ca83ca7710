// Command origin measures the HTTP origin against nginx serving the same
// files from disk, in the same run, with wrk on loopback:
//
//   - a ~1.25 MB live segment from streamd's hot cache vs nginx;
//   - a live playlist from streamd vs nginx;
//   - the same segment from MinIO with the cache off (when
//     STREAMD_TEST_S3_ENDPOINT points at a MinIO; scripts/testenv.sh starts one).
//
// The ratio to nginx's requests per second is the figure.
//
// Usage: bash scripts/testenv.sh go run ./bench/origin [-d 10s] [-c 64]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	segKey      = "live/bench/source/mwz00000-1.m4s"
	playlistKey = "live/bench/source/index.m3u8"
)

func main() {
	dur := flag.Duration("d", 10*time.Second, "wrk duration per target")
	conns := flag.Int("c", 64, "wrk connections")
	threads := flag.Int("t", 2, "wrk threads")
	bin := flag.String("bin", "bin/streamd", "streamd binary")
	flag.Parse()
	if err := run(*bin, *dur, *conns, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "bench/origin:", err)
		os.Exit(1)
	}
}

func run(bin string, dur time.Duration, conns, threads int) error {
	for _, p := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found: run `bash scripts/deps.sh bench`", p)
		}
	}
	dir, err := os.MkdirTemp("", "streamd-origin-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// nginx's workers drop to an unprivileged user: they must be able to
	// read the files (MkdirTemp makes the folder 0700).
	os.Chmod(dir, 0o755)
	root := filepath.Join(dir, "objects")
	seg := make([]byte, 1_250_000)
	rand.Read(seg)
	pl := []byte(playlistText())
	for k, b := range map[string][]byte{segKey: seg, playlistKey: pl} {
		p := filepath.Join(root, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}

	ngx, err := startNginx(dir, root)
	if err != nil {
		return err
	}
	defer ngx.stop()
	sd, err := startStreamd(bin, dir, "cache", []string{"STREAMD_STORAGE_OBJECTS_PATH=" + root})
	if err != nil {
		return err
	}
	defer sd.stop()

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("origin benchmark — %s, wrk -t%d -c%d -d%s, load %s\n", time.Now().UTC().Format(time.RFC3339), threads, conns, dur, strings.Fields(string(load))[0])
	fmt.Printf("%-44s %12s %12s %8s %s\n", "target", "streamd", "nginx", "ratio", "goal")
	row := func(name string, ours, theirs float64, goal float64) {
		mark := ""
		if ours/theirs < goal {
			mark = fmt.Sprintf("  MISSED by %.0f %%", (goal-ours/theirs)/goal*100)
		}
		fmt.Printf("%-44s %10.0f/s %10.0f/s %7.2fx ≥%.1fx%s\n", name, ours, theirs, ours/theirs, goal, mark)
	}
	wrk := func(url string) (float64, error) { return runWrk(url, dur, conns, threads) }

	// Warm streamd's cache, then measure each side.
	http.Get(sd.url(segKey))
	nSeg, err := wrk(ngx.url(segKey))
	if err != nil {
		return err
	}
	sSeg, err := wrk(sd.url(segKey))
	if err != nil {
		return err
	}
	row("1.25 MB segment, hot cache", sSeg, nSeg, 1.0)
	nPl, err := wrk(ngx.url(playlistKey))
	if err != nil {
		return err
	}
	sPl, err := wrk(sd.url(playlistKey))
	if err != nil {
		return err
	}
	row("live playlist", sPl, nPl, 0.8)
	// The ceiling of Go's HTTP server here: a handler that writes the same
	// playlist bytes from memory and nothing else.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Write(pl)
	})}
	go bare.Serve(ln)
	gPl, err := wrk("http://" + ln.Addr().String() + "/" + playlistKey)
	bare.Close()
	if err != nil {
		return err
	}
	row("  (bare Go net/http, same bytes: the ceiling)", gPl, nPl, 0)
	fmt.Printf("  streamd's playlist path reaches %.0f %% of bare net/http\n", sPl/gPl*100)

	if ep := os.Getenv("STREAMD_TEST_S3_ENDPOINT"); ep != "" {
		access, secret := os.Getenv("STREAMD_TEST_S3_ACCESS_KEY"), os.Getenv("STREAMD_TEST_S3_SECRET_KEY")
		bucket := fmt.Sprintf("streamd-bench-%d", time.Now().UnixNano())
		if err := upload(ep, access, secret, bucket, map[string][]byte{segKey: seg, playlistKey: pl}); err != nil {
			return err
		}
		defer removeBucket(ep, access, secret, bucket)
		env := []string{"STREAMD_STORAGE_OBJECTS_DRIVER=s3", "STREAMD_STORAGE_OBJECTS_ENDPOINT=" + ep,
			"STREAMD_STORAGE_OBJECTS_BUCKET=" + bucket, "STREAMD_STORAGE_OBJECTS_ACCESS_KEY=" + access,
			"STREAMD_STORAGE_OBJECTS_SECRET_KEY=" + secret}
		for _, mode := range []struct {
			name  string
			cache string
		}{{"1.25 MB segment, MinIO behind the hot cache", "256"}, {"1.25 MB segment, from MinIO, cache off", "0"}} {
			s3, err := startStreamd(bin, dir, "s3-"+mode.cache, append(env, "STREAMD_HTTP_CACHE_MB="+mode.cache))
			if err != nil {
				return err
			}
			http.Get(s3.url(segKey))
			v, err := wrk(s3.url(segKey))
			s3.stop()
			if err != nil {
				return err
			}
			goal := 1.0
			if mode.cache == "0" {
				goal = 0 // no goal: the figure shows what the cache saves
			}
			row(mode.name, v, nSeg, goal)
		}
	} else {
		fmt.Println("(MinIO rows skipped: STREAMD_TEST_S3_ENDPOINT not set — run under scripts/testenv.sh)")
	}
	fmt.Println("\nnginx: sendfile on, open_file_cache, access_log off; streamd: make build, default config but the ports.")
	return nil
}

func playlistText() string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-MAP:URI=\"init-mwz00000.mp4\"\n")
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:%02d.000Z\n#EXTINF:2.000,\nmwz00000-%d.m4s\n", i*2, 100+i)
	}
	return b.String()
}

var rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func runWrk(url string, d time.Duration, c, t int) (float64, error) {
	out, err := exec.Command("wrk", "-t"+strconv.Itoa(t), "-c"+strconv.Itoa(c), "-d"+d.String(), url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk %s: %v\n%s", url, err, out)
	}
	if strings.Contains(string(out), "Non-2xx") {
		return 0, fmt.Errorf("wrk %s got errors:\n%s", url, out)
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk output without Requests/sec:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

type server struct {
	cmd  *exec.Cmd
	addr string
}

func (s *server) url(key string) string { return "http://" + s.addr + "/" + key }

func (s *server) stop() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startNginx(dir, root string) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.MkdirAll(filepath.Join(dir, "nginx-tmp"), 0o755)
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 100000;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 1s;
  client_body_temp_path %[1]s/nginx-tmp; proxy_temp_path %[1]s/nginx-tmp; fastcgi_temp_path %[1]s/nginx-tmp;
  uwsgi_temp_path %[1]s/nginx-tmp; scgi_temp_path %[1]s/nginx-tmp;
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
  server { listen %[2]s; root %[3]s; location /live/ { add_header Cache-Control "public, max-age=1"; } }
}
`, dir, addr, root)), 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("nginx", "-c", conf, "-p", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr}
	if err := waitHTTP(s.url(playlistKey)); err != nil {
		s.stop()
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return s, nil
}

func startStreamd(bin, dir, name string, env []string) (*server, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s missing: run `make build`", bin)
	}
	cmd := exec.Command(bin, "serve")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "STREAMD_HTTP_ADDR=127.0.0.1:0", "STREAMD_RTMP_ADDR=127.0.0.1:0", "STREAMD_RTSP_ADDR=",
		"STREAMD_RTSP_UDP_RTP_ADDR=", "STREAMD_RTSP_UDP_RTCP_ADDR=", "STREAMD_LOG_FORMAT=json", "STREAMD_LOG_LEVEL=warn",
		"STREAMD_DATA_DIR="+filepath.Join(dir, "data-"+name), "STREAMD_STORAGE_META_URL="+filepath.Join(dir, "data-"+name, "m.db"),
		"STREAMD_CHANNELS=[{name: bench, stream_key: benchkey0001}]")
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, "STREAMD_LOG_LEVEL=info") // the start line carries the address
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "streamd started" {
				a, _ := m["http"].(string)
				addr <- a
			}
		}
	}()
	select {
	case s.addr = <-addr:
		return s, nil
	case <-time.After(20 * time.Second):
		s.stop()
		return nil, errors.New("streamd did not start")
	}
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not answering")
}

func upload(ep, access, secret, bucket string, objs map[string][]byte) error {
	ctx := context.Background()
	c, err := minio.New(ep, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return err
	}
	for k, b := range objs {
		if _, err := c.PutObject(ctx, bucket, k, strings.NewReader(string(b)), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func removeBucket(ep, access, secret, bucket string) {
	ctx := context.Background()
	c, err := minio.New(ep, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		return
	}
	for range c.RemoveObjects(ctx, bucket, c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}), minio.RemoveObjectsOptions{}) {
	}
	c.RemoveBucket(ctx, bucket)
}
