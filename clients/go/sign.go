// Package opentoken is a client for opentokend, the OpenToken tokenization vault.
//
// It covers the whole surface an integrator needs: the OT1 request signature (Sign, Canonical),
// the account helpers (PBKDF2-SHA512 password hash, TOTP, challenge hash), registration,
// confirmation and login, access code pairs, tokenize/detokenize/delete, and the access tokens
// of /access-tokens and /v1/access_tokens. It talks to a daemon over its Unix socket or over
// HTTPS with a CA file, and uses the standard library only.
//
// Secrets (passwords, access-code secrets, TOTP keys, session cookies) are never put in URLs,
// logged, or included in error messages.
package opentoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Scheme is the only OT1 signature method.
const Scheme = "OT1-HMAC-SHA256-HEX"

// DateHeader is the header that carries the signature date.
const DateHeader = "X-OpenToken-Date"

// DateLayout is the form of X-OpenToken-Date: UTC, second precision (yyyy-mm-ddThh:mm:ssZ).
const DateLayout = "2006-01-02T15:04:05Z"

// DefaultSignedHeaders are the three headers every OT1 signature must cover, in the order used.
var DefaultSignedHeaders = []string{"host", "content-type", "x-opentoken-date"}

// FormatDate returns t in UTC at second precision, the X-OpenToken-Date form. Fractions of a
// second are dropped (not rounded), so the date is never in the future of t.
func FormatDate(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(DateLayout)
}

// ParseTime parses any RFC 3339 date the server produces or accepts: "2026-12-06T08:14:38Z",
// "2026-12-06T08:14:38.000Z", "2026-12-06T09:14:38+01:00".
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("opentoken: not an RFC 3339 date: %q", s)
	}
	return t, nil
}

// Canonical builds the OT1 canonical string (the signed content): method, path, query, one
// "name:value" line per signed header (names lower-case, values trimmed, the host lower-case),
// a blank line, then the body verbatim. target is the request target as sent ("/path?query").
// headers must hold every header named in signed (http.Header lookup is case-insensitive; the
// Host goes in headers["Host"]).
func Canonical(method, target string, headers http.Header, signed []string,
	body []byte) ([]byte, error) {
	path, query := target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
	}
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, name := range signed {
		name = strings.ToLower(strings.TrimSpace(name))
		values := headers.Values(name)
		if len(values) != 1 {
			return nil, fmt.Errorf("opentoken: signed header %q must be set exactly once", name)
		}
		value := strings.TrimSpace(values[0])
		if name == "host" {
			value = strings.ToLower(value)
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(value)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	out := make([]byte, 0, b.Len()+len(body))
	out = append(out, b.String()...)
	return append(out, body...), nil
}

// Signature returns the lower-case hex HMAC-SHA256 of the canonical string under secret.
func Signature(canonical []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(canonical)
	return hex.EncodeToString(mac.Sum(nil))
}

// Sign returns a copy of headers with X-OpenToken-Date (set from date, or time.Now() when date
// is zero, unless headers already has one: then that exact value is signed) and the
// Authorization header of an OT1 signature over host, content-type and x-opentoken-date.
// headers must contain Host and Content-Type as they will be sent: a GET signs a Content-Type
// too (send it, even without a body), and over TLS the Host is "127.0.0.1:PORT" when the URL is.
func Sign(method, target string, headers http.Header, body []byte, accessCode, secret string,
	date time.Time) (http.Header, error) {
	return SignHeaders(method, target, headers, body, accessCode, secret, date, nil)
}

// SignHeaders is Sign with more signed headers: extra names (lower-cased) are signed after the
// three mandatory ones, and must then be sent with exactly the values in headers.
func SignHeaders(method, target string, headers http.Header, body []byte, accessCode,
	secret string, date time.Time, extra []string) (http.Header, error) {
	if accessCode == "" || secret == "" {
		return nil, errors.New("opentoken: an access code and its secret are needed to sign")
	}
	if strings.ContainsAny(accessCode, " ;\r\n") {
		return nil, errors.New("opentoken: malformed access code")
	}
	h := headers.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get(DateHeader) == "" {
		if date.IsZero() {
			date = time.Now()
		}
		h.Set(DateHeader, FormatDate(date))
	}
	signed := append([]string{}, DefaultSignedHeaders...)
	for _, name := range extra {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" || strings.ContainsAny(name, " ;:") {
			return nil, fmt.Errorf("opentoken: bad header name to sign: %q", name)
		}
		signed = append(signed, name)
	}
	canonical, err := Canonical(method, target, h, signed, body)
	if err != nil {
		return nil, err
	}
	h.Set("Authorization", fmt.Sprintf("%s; access-code=%s; signed-headers=%s; signature=%s",
		Scheme, accessCode, strings.Join(signed, " "), Signature(canonical, secret)))
	return h, nil
}
