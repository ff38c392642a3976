package opentoken

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Options say where the daemon is. Set exactly one of Socket and URL.
type Options struct {
	// Socket is the path of the daemon's Unix socket (e.g. /run/opentokend/opentokend.sock).
	// Requests carry "Host: localhost".
	Socket string
	// URL is the daemon's HTTPS base URL, e.g. https://127.0.0.1:8443. The signed Host is the
	// URL's host as written (with the port).
	URL string
	// CACertFile is a PEM file of the CA (or self-signed certificate) to trust for URL; when
	// empty, the system roots are used.
	CACertFile string
	// Timeout bounds each request (default 30 s); a context deadline applies as well.
	Timeout time.Duration
	// Now replaces time.Now for signature dates and TOTP codes (tests).
	Now func() time.Time
}

// Client talks to one daemon. It is safe for concurrent use.
type Client struct {
	base string // scheme://host, no trailing slash
	host string // the Host header sent and signed
	http *http.Client
	now  func() time.Time
}

// New returns a Client for the daemon described by opts.
func New(opts Options) (*Client, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c := &Client{now: now}
	switch {
	case opts.Socket != "" && opts.URL != "":
		return nil, errors.New("opentoken: set Socket or URL, not both")
	case opts.Socket != "":
		path := opts.Socket
		dialer := &net.Dialer{}
		c.base, c.host = "http://localhost", "localhost"
		c.http = &http.Client{Timeout: timeout, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", path)
			},
			MaxIdleConns:    4,
			IdleConnTimeout: 30 * time.Second,
		}}
	case opts.URL != "":
		u, err := url.Parse(opts.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") ||
			u.RawQuery != "" || u.User != nil {
			return nil, errors.New("opentoken: URL must be https://HOST[:PORT]")
		}
		tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CACertFile != "" {
			pem, err := os.ReadFile(opts.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("opentoken: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("opentoken: no PEM certificate in %s", opts.CACertFile)
			}
			tlsConfig.RootCAs = pool
		}
		c.base, c.host = "https://"+u.Host, u.Host
		c.http = &http.Client{Timeout: timeout, Transport: &http.Transport{
			TLSClientConfig:   tlsConfig,
			ForceAttemptHTTP2: false,
			MaxIdleConns:      4,
			IdleConnTimeout:   30 * time.Second,
		}}
	default:
		return nil, errors.New("opentoken: set Socket or URL")
	}
	// Never follow redirects: a Location is information here (e.g. after logout), and a
	// redirect would carry credentials elsewhere.
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}
	return c, nil
}

// Host returns the Host header this client sends and signs.
func (c *Client) Host() string { return c.host }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Response is a raw reply of the daemon.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Links returns the reply's Link headers (RFC 8288) as parsed links.
func (r *Response) Links() []Link { return parseLinks(r.Header.Values("Link")) }

// Link is one Link header value: the target and its parameters (rel, title, profile, ...).
type Link struct {
	Href   string
	Params map[string]string
}

var linkRE = regexp.MustCompile(`<([^>]*)>((?:\s*;\s*[a-zA-Z-]+="[^"]*")*)`)
var paramRE = regexp.MustCompile(`;\s*([a-zA-Z-]+)="([^"]*)"`)

func parseLinks(values []string) []Link {
	var out []Link
	for _, v := range values {
		for _, m := range linkRE.FindAllStringSubmatch(v, -1) {
			l := Link{Href: m[1], Params: map[string]string{}}
			for _, p := range paramRE.FindAllStringSubmatch(m[2], -1) {
				l.Params[strings.ToLower(p[1])] = p[2]
			}
			out = append(out, l)
		}
	}
	return out
}

// findLink returns the href of the first link with that rel (if not empty) and title.
func (r *Response) findLink(rel, title string) (string, bool) {
	for _, l := range r.Links() {
		if (rel == "" || l.Params["rel"] == rel) && (title == "" || l.Params["title"] == title) {
			return l.Href, true
		}
	}
	return "", false
}

// Error is a non-2xx reply (or a reply the client could not use). It carries the HTTP status
// and the server's error body in whichever of the three shapes the route uses.
type Error struct {
	Status int
	// Shape is "vnd.error" (OpenToken routes: code, message, logref), "losant" (/access-tokens:
	// type, message), "pkmnapi" (/v1: data.id, data.attributes.message) or "" (no JSON body).
	Shape string
	// Code is the error's code: vnd.error "code", Losant "type", or pkmnapi "data.id".
	Code    string
	Message string
	// Logref is the server's request reference (vnd.error), to quote to an operator.
	Logref string
	// RetryAfter is the Retry-After header of a 429/503, as sent.
	RetryAfter string
	Body       []byte
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("opentoken: HTTP %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Logref != "" {
		msg += " (logref " + e.Logref + ")"
	}
	return msg
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound says whether err is a 404 of the daemon.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

func newError(r *Response) *Error {
	e := &Error{Status: r.Status, Body: r.Body, RetryAfter: r.Header.Get("Retry-After")}
	var doc map[string]json.RawMessage
	if json.Unmarshal(r.Body, &doc) != nil {
		return e
	}
	str := func(raw json.RawMessage) string {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	if data, ok := doc["data"]; ok {
		var p struct {
			ID         string `json:"id"`
			Attributes struct {
				Message string `json:"message"`
			} `json:"attributes"`
		}
		if json.Unmarshal(data, &p) == nil {
			e.Shape, e.Code, e.Message = "pkmnapi", p.ID, p.Attributes.Message
		}
		return e
	}
	if _, ok := doc["type"]; ok {
		e.Shape, e.Code, e.Message = "losant", str(doc["type"]), str(doc["message"])
		return e
	}
	e.Shape, e.Code, e.Message, e.Logref = "vnd.error", str(doc["code"]), str(doc["message"]),
		str(doc["logref"])
	return e
}

// request is one HTTP exchange. target is "/path[?query]"; headers are sent as given (Host is
// set by the client).
func (c *Client) do(ctx context.Context, method, target string, headers http.Header,
	body []byte) (*Response, error) {
	if !strings.HasPrefix(target, "/") {
		return nil, fmt.Errorf("opentoken: target must start with /: %q", target)
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+target, rd)
	if err != nil {
		return nil, fmt.Errorf("opentoken: %w", err)
	}
	if got := requestTarget(req); got != target {
		// Go would send another target than the one signed (e.g. escaping).
		return nil, fmt.Errorf("opentoken: target %q would be sent as %q", target, got)
	}
	req.Host = c.host
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			continue
		}
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// A *url.Error quotes the whole URL, which may hold a confirmation code: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("opentoken: %s %s: %w", method, redactTarget(target), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("opentoken: reading the reply: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func requestTarget(req *http.Request) string {
	t := req.URL.EscapedPath()
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		t += "?" + req.URL.RawQuery
	}
	return t
}

// redactTarget keeps a path's shape out of error strings without its ids (registration
// confirmation codes are secrets that travel in paths).
func redactTarget(target string) string {
	if strings.HasPrefix(target, "/registration/") {
		return "/registration/..."
	}
	return target
}

// Request sends an unsigned request (JSON or raw) and returns the raw reply, whatever its
// status: the escape hatch for routes this package has no method for.
func (c *Client) Request(ctx context.Context, method, target string, headers http.Header,
	body []byte) (*Response, error) {
	return c.do(ctx, method, target, headers, body)
}

// jsonCall sends a JSON body (nil: none) and decodes a 2xx JSON reply into out (nil: ignore).
// A reply with a status other than want is an *Error.
func (c *Client) jsonCall(ctx context.Context, method, target string, auth http.Header,
	in interface{}, want int, out interface{}) (*Response, error) {
	h := http.Header{}
	for k, v := range auth {
		h[k] = v
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("opentoken: %w", err)
		}
		h.Set("Content-Type", "application/json")
	}
	r, err := c.do(ctx, method, target, h, body)
	if err != nil {
		return nil, err
	}
	if r.Status != want {
		return r, newError(r)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			return r, fmt.Errorf("opentoken: unexpected reply to %s %s: %w", method,
				redactTarget(target), err)
		}
	}
	return r, nil
}
