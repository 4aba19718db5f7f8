// loadgen: a lean open-loop HTTP/1.1 load generator for the benchmarks' "latency at half load"
// figures. vegeta (net/http, result encoding) costs ~73 µs of CPU per request here, so at the
// proxy's half load (~10,000 requests/s) the generator alone took ~0.8 of the machine's 2 cores
// and the latency measured was mostly queueing behind it. This one writes pre-built requests on
// kept-alive connections and reads the answers with a minimal parser: no HTTP client, no
// per-request allocation beyond a goroutine.
//
// Input: the same JSON-lines targets as `vegeta attack -format=json` (method, url, header, body
// in base64), one per request index, reused in a cycle. Requests are due at a fixed rate from
// the start; each one is sent when due on a free connection (a new one while fewer than
// -max-connections are open, else it waits for one: that wait counts in "from the schedule").
// -preconnect N opens N connections before the first request is due.
// Output: CSV, one row per request: index, status (0 for a transport error), nanoseconds from
// the send to the end of the answer, nanoseconds from when it was due to the end of the answer.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

type target struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

type result struct {
	status   int
	fromSend time.Duration
	fromDue  time.Duration
}

type conn struct {
	c net.Conn
	r *bufio.Reader
}

func main() {
	targetsPath := flag.String("targets", "", "JSON-lines targets file (vegeta's format)")
	rate := flag.Float64("rate", 100, "requests per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	maxConns := flag.Int("max-connections", 256, "connections open at most")
	preconnect := flag.Int("preconnect", 0, "connections opened before the first request is due (at most -max-connections)")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request deadline")
	output := flag.String("output", "", "CSV results file")
	flag.Parse()
	if *targetsPath == "" || *output == "" || *rate <= 0 {
		fail(errors.New("usage: loadgen -targets FILE -rate N -duration D -output FILE"))
	}

	raw, host, err := readTargets(*targetsPath)
	if err != nil {
		fail(err)
	}
	n := int(*rate * duration.Seconds())
	if n < 1 {
		n = 1
	}
	results := make([]result, n)
	idle := make(chan *conn, *maxConns)
	slots := make(chan struct{}, *maxConns)
	interval := time.Duration(float64(time.Second) / *rate)

	acquire := func() (*conn, error) {
		select {
		case c := <-idle:
			return c, nil
		default:
		}
		select {
		case c := <-idle:
			return c, nil
		case slots <- struct{}{}:
			nc, err := net.DialTimeout("tcp", host, *timeout)
			if err != nil {
				<-slots
				return nil, err
			}
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			return &conn{c: nc, r: bufio.NewReaderSize(nc, 64*1024)}, nil
		}
	}
	discard := func(c *conn) {
		_ = c.c.Close()
		<-slots
	}

	// Connections opened up front, as wrk and h2load do: a dial made when a request is due
	// holds up the schedule, and the requests due meanwhile go out in one burst, which measures
	// the generator's start rather than the server's steady state.
	for i := 0; i < *preconnect && i < *maxConns; i++ {
		slots <- struct{}{}
		nc, err := net.DialTimeout("tcp", host, *timeout)
		if err != nil {
			fail(err)
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		idle <- &conn{c: nc, r: bufio.NewReaderSize(nc, 64*1024)}
	}

	var wg sync.WaitGroup
	start := time.Now().Add(5 * time.Millisecond)
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		c, err := acquire()
		if err != nil {
			results[i] = result{status: 0, fromSend: 0, fromDue: time.Since(due)}
			continue
		}
		wg.Add(1)
		go func(i int, c *conn, due time.Time) {
			defer wg.Done()
			sent := time.Now()
			_ = c.c.SetDeadline(sent.Add(*timeout))
			status, keep, err := roundTrip(c, raw[i%len(raw)])
			end := time.Now()
			if err != nil {
				status = 0
				keep = false
			}
			results[i] = result{status: status, fromSend: end.Sub(sent), fromDue: end.Sub(due)}
			if keep {
				idle <- c
			} else {
				discard(c)
			}
		}(i, c, due)
	}
	wg.Wait()

	f, err := os.Create(*output)
	if err != nil {
		fail(err)
	}
	w := bufio.NewWriter(f)
	for i, r := range results {
		fmt.Fprintf(w, "%d,%d,%d,%d\n", i, r.status, r.fromSend.Nanoseconds(), r.fromDue.Nanoseconds())
	}
	if err := w.Flush(); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

// readTargets builds each target's request bytes once; every target must name the same host.
func readTargets(file string) ([][]byte, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	var out [][]byte
	host := ""
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var t target
		if err := json.Unmarshal(line, &t); err != nil {
			return nil, "", fmt.Errorf("target %d: %w", len(out), err)
		}
		u, err := url.Parse(t.URL)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, "", fmt.Errorf("target %d: an http:// URL is needed, got %q", len(out), t.URL)
		}
		if host == "" {
			host = u.Host
		} else if host != u.Host {
			return nil, "", fmt.Errorf("target %d: another host (%s) than the first (%s)", len(out), u.Host, host)
		}
		body, err := base64.StdEncoding.DecodeString(t.Body)
		if err != nil {
			return nil, "", fmt.Errorf("target %d: body: %w", len(out), err)
		}
		method := t.Method
		if method == "" {
			method = "GET"
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), u.Host)
		for k, vs := range t.Header {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
		}
		if len(body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
		}
		b.WriteString("\r\n")
		b.Write(body)
		out = append(out, b.Bytes())
	}
	if err := sc.Err(); err != nil {
		return nil, "", err
	}
	if len(out) == 0 {
		return nil, "", errors.New("no targets")
	}
	return out, host, nil
}

// roundTrip writes one request and reads its answer to the end: the status, and whether the
// connection can carry the next request.
func roundTrip(c *conn, req []byte) (int, bool, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length := int64(-1)
	chunked := false
	keep := line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon < 0 {
			continue
		}
		name := bytes.ToLower(bytes.TrimSpace(h[:colon]))
		value := bytes.TrimSpace(h[colon+1:])
		switch string(name) {
		case "content-length":
			length, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("bad content-length %q", value)
			}
		case "transfer-encoding":
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case "connection":
			v := bytes.ToLower(value)
			if bytes.Contains(v, []byte("close")) {
				keep = false
			} else if bytes.Contains(v, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	switch {
	case status == 204 || status == 304 || status < 200:
	case chunked:
		if err := readChunked(c.r); err != nil {
			return 0, false, err
		}
	case length >= 0:
		if _, err := c.r.Discard(int(length)); err != nil {
			return 0, false, err
		}
	default:
		// No length: the body runs to the end of the connection.
		if _, err := io.Copy(io.Discard, c.r); err != nil {
			return 0, false, err
		}
		keep = false
	}
	return status, keep, nil
}

func readChunked(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// Trailers, then the blank line.
			for {
				t, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := r.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}
