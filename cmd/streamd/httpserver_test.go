package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trickleBody sends head and then one space of body every interval, and
// reads the answer until the server closes the connection: how long that
// took, and the status line ("" if none). It gives up after 10 s.
func trickleBody(t *testing.T, addr, head string, every time.Duration) (time.Duration, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if _, err := io.Copy(io.Discard, br); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("connection still open after 10 s (status %q)", status)
		}
	}
	return time.Since(start), strings.TrimSpace(status)
}

type pacedBody struct {
	left, chunk int
	every       time.Duration
}

func (p *pacedBody) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.every)
	n := min(len(b), p.chunk, p.left)
	for i := range n {
		b[i] = 'm'
	}
	p.left -= n
	return n, nil
}

// TestSlowRequestBodiesAreCut: with http.body_timeout and the body rate
// floor, a client trickling a JSON body or an upload loses its connection
// within the bound, while an upload at a decent rate runs past the
// deadline of ordinary bodies and succeeds.
func TestSlowRequestBodiesAreCut(t *testing.T) {
	m := inProcess(t, map[string]string{"STREAMD_HTTP_BODY_TIMEOUT": "1s", "STREAMD_HTTP_BODY_RATE_WINDOW": "1s",
		"STREAMD_HTTP_MIN_BODY_RATE_KIB": "8"}, nil, [2]string{"pub", "publisher"})
	addr := m.HTTPAddr.String()
	base := "http://" + addr
	const bound = 2500 * time.Millisecond // 1 s limits, 1.5 s for a loaded machine

	took, status := trickleBody(t, addr, "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300\r\n\r\n{", 200*time.Millisecond)
	if took > bound || status != "HTTP/1.1 408 Request Timeout" {
		t.Errorf("trickled login: %q after %s, want 408 within %s", status, took, bound)
	}

	resp, err := http.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"username":"pub","password":"`+testPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	const size = 100 << 10
	create := func() string {
		req, _ := http.NewRequest("POST", base+"/api/uploads/", nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", strconv.Itoa(size))
		req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("master.mp4")))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("create upload: %v %v", err, resp)
		}
		resp.Body.Close()
		loc, _ := resp.Location()
		return loc.Path
	}

	took, _ = trickleBody(t, addr, "PATCH "+create()+" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nAuthorization: Bearer "+tok.AccessToken+"\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n",
		200*time.Millisecond)
	if took > bound {
		t.Errorf("trickled upload: connection held %s, want at most %s", took, bound)
	}

	// 40 KiB/s, 2.5 s: over the 1 s body_timeout, above the 8 KiB/s floor.
	req, _ := http.NewRequest("PATCH", base+create(), &pacedBody{left: size, chunk: 4 << 10, every: 100 * time.Millisecond})
	req.ContentLength = size
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	start := time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("paced upload: %v %v", err, resp)
	}
	resp.Body.Close()
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("the paced upload took %s: it does not cross body_timeout", took)
	}
	infos, err := m.Objects.List(context.Background(), "masters/")
	if err != nil || len(infos) != 1 || infos[0].Size != size {
		t.Fatalf("stored masters: %+v %v", infos, err)
	}
}
