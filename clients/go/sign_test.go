package opentoken

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The hex dump of doc/api/signed-requests.md, exactly as documented (offset, 16 bytes, text).
const documentedDump = `
00000000  50 4f 53 54 0a 2f 61 63  63 6f 75 6e 74 2f 57 32  |POST./account/W2|
00000010  6c 36 48 30 76 45 68 64  75 72 72 68 53 44 4e 34  |l6H0vEhdurrhSDN4|
00000020  56 6a 56 32 42 6c 67 53  49 43 70 76 45 48 2f 74  |VjV2BlgSICpvEH/t|
00000030  6f 6b 65 6e 0a 0a 68 6f  73 74 3a 61 70 69 2e 6f  |oken..host:api.o|
00000040  70 65 6e 74 6f 6b 65 6e  2e 69 6f 0a 63 6f 6e 74  |pentoken.io.cont|
00000050  65 6e 74 2d 74 79 70 65  3a 74 65 78 74 2f 70 6c  |ent-type:text/pl|
00000060  61 69 6e 0a 78 2d 6f 70  65 6e 74 6f 6b 65 6e 2d  |ain.x-opentoken-|
00000070  64 61 74 65 3a 32 30 31  36 2d 31 31 2d 31 37 54  |date:2016-11-17T|
00000080  32 30 3a 30 31 3a 30 30  5a 0a 0a 54 68 69 73 20  |20:01:00Z..This |
00000090  69 73 20 61 20 74 65 73  74 2e 0a                 |is a test..|
0000009b
`

const (
	docSecret    = "GR6ytMoj1IGxAoBUmYKbVM9z5fZBduUi"
	docCode      = "LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8"
	docSignature = "fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e"
	docTarget    = "/account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token"
)

// parseDump reads a hexdump -C listing (the hex columns only) and checks the final offset.
func parseDump(t *testing.T, dump string) []byte {
	t.Helper()
	var out []byte
	var end string
	for _, line := range strings.Split(strings.TrimSpace(dump), "\n") {
		if !strings.Contains(line, "|") {
			end = strings.TrimSpace(line)
			continue
		}
		hexPart := line[10:strings.Index(line, "|")]
		b, err := hex.DecodeString(strings.Join(strings.Fields(hexPart), ""))
		if err != nil {
			t.Fatalf("dump line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	if want := len(out); end != "0000009b" || want != 0x9b {
		t.Fatalf("dump is %d bytes, ends at %s", want, end)
	}
	return out
}

func docHeaders() http.Header {
	h := http.Header{}
	h.Set("Host", "api.opentoken.io")
	h.Set("Content-Type", "text/plain")
	return h
}

func TestDocumentedVectorByteForByte(t *testing.T) {
	want := parseDump(t, documentedDump)
	h := docHeaders()
	h.Set(DateHeader, "2016-11-17T20:01:00Z")
	got, err := Canonical("POST", docTarget, h, DefaultSignedHeaders, []byte("This is a test.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical string differs from the documented dump:\n got %q\nwant %q", got, want)
	}
	if sig := Signature(got, docSecret); sig != docSignature {
		t.Fatalf("signature %s, documented %s", sig, docSignature)
	}
}

func TestSignProducesTheDocumentedAuthorization(t *testing.T) {
	date := time.Date(2016, 11, 17, 20, 1, 0, 0, time.UTC)
	body := []byte("This is a test.\n")
	h, err := Sign("POST", docTarget, docHeaders(), body, docCode, docSecret, date)
	if err != nil {
		t.Fatal(err)
	}
	want := "OT1-HMAC-SHA256-HEX; access-code=" + docCode +
		"; signed-headers=host content-type x-opentoken-date; signature=" + docSignature
	if got := h.Get("Authorization"); got != want {
		t.Fatalf("Authorization\n got %s\nwant %s", got, want)
	}
	if got := h.Get(DateHeader); got != "2016-11-17T20:01:00Z" {
		t.Fatalf("date %q", got)
	}
	// The same date in another zone and with a fraction signs the same.
	zone := time.FixedZone("x", -5*3600)
	h2, err := Sign("POST", docTarget, docHeaders(), []byte("This is a test.\n"), docCode, docSecret,
		date.In(zone).Add(999*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if h2.Get("Authorization") != want {
		t.Fatalf("zone/fraction changed the signature: %s", h2.Get("Authorization"))
	}
	// The caller's headers are not modified.
	if docHeaders().Get("Authorization") != "" {
		t.Fatal("unexpected")
	}
}

func TestCanonicalDetails(t *testing.T) {
	h := http.Header{}
	h.Set("Host", "  API.OpenToken.IO:8443 ")
	h.Set("Content-Type", " Text/Plain ")
	h.Set(DateHeader, "2016-10-11T22:30:55Z")
	h.Set("X-Extra", "Value")
	got, err := Canonical("get", "/account/x/token?public=true&expires=2030-01-01T00:00:00Z", h,
		append(append([]string{}, DefaultSignedHeaders...), "X-Extra"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "GET\n/account/x/token\npublic=true&expires=2030-01-01T00:00:00Z\n" +
		"host:api.opentoken.io:8443\ncontent-type:Text/Plain\n" +
		"x-opentoken-date:2016-10-11T22:30:55Z\nx-extra:Value\n\n"
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// A GET without a body ends with exactly two line feeds (request-signatures.md).
	if !strings.HasSuffix(string(got), "Z\nx-extra:Value\n\n") {
		t.Fatal("no blank line")
	}
	// A missing or repeated signed header is an error, not a silently different signature.
	h.Del("Content-Type")
	if _, err := Canonical("GET", "/", h, DefaultSignedHeaders, nil); err == nil {
		t.Fatal("missing content-type accepted")
	}
	h.Add("Content-Type", "a")
	h.Add("Content-Type", "b")
	if _, err := Canonical("GET", "/", h, DefaultSignedHeaders, nil); err == nil {
		t.Fatal("repeated content-type accepted")
	}
	if _, err := Sign("GET", "/", docHeaders(), nil, "", docSecret, time.Time{}); err == nil {
		t.Fatal("empty access code accepted")
	}
	if _, err := Sign("GET", "/", docHeaders(), nil, "a;b", docSecret, time.Time{}); err == nil {
		t.Fatal("malformed access code accepted")
	}
}

func TestSignHeadersSignsTheExtraHeadersInOrder(t *testing.T) {
	h := docHeaders()
	h.Set("If-None-Match", `"abc"`)
	s, err := SignHeaders("GET", "/a", h, nil, docCode, docSecret,
		time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), []string{"If-None-Match"})
	if err != nil {
		t.Fatal(err)
	}
	auth := s.Get("Authorization")
	if !strings.Contains(auth, "signed-headers=host content-type x-opentoken-date if-none-match;") {
		t.Fatal(auth)
	}
	canonical := "GET\n/a\n\nhost:api.opentoken.io\ncontent-type:text/plain\n" +
		"x-opentoken-date:2020-01-02T03:04:05Z\nif-none-match:\"abc\"\n\n"
	if !strings.HasSuffix(auth, "signature="+Signature([]byte(canonical), docSecret)) {
		t.Fatal(auth)
	}
}

func TestDateFormats(t *testing.T) {
	zone := time.FixedZone("CET", 3600)
	cases := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2016, 11, 17, 20, 1, 0, 0, time.UTC), "2016-11-17T20:01:00Z"},
		{time.Date(2016, 11, 17, 21, 1, 0, 999_999_999, zone), "2016-11-17T20:01:00Z"},
		{time.Date(1999, 12, 31, 23, 59, 59, 500_000_000, time.UTC), "1999-12-31T23:59:59Z"},
		{time.Date(2026, 1, 2, 0, 30, 0, 0, zone), "2026-01-01T23:30:00Z"},
	}
	for _, c := range cases {
		if got := FormatDate(c.in); got != c.want {
			t.Errorf("FormatDate(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	want := time.Date(2027, 6, 7, 8, 14, 38, 0, time.UTC)
	for _, s := range []string{"2027-06-07T08:14:38Z", "2027-06-07T08:14:38.000Z",
		"2027-06-07T09:14:38+01:00", "2027-06-07T08:14:38.000000000Z", "2027-06-07T04:14:38.0-04:00"} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%s) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"2027-06-07 08:14:38Z", "2027-06-07T08:14:38", "20270607T081438Z", ""} {
		if _, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q) accepted", s)
		}
	}
	// The server's own form (access codes' "expires") decodes as a time.Time in JSON too.
	var p AccessCodePair
	err := jsonUnmarshal(`{"code":"c","secret":"s","expires":"2027-06-07T08:14:38.000Z"}`, &p)
	if err != nil ||
		!p.Expires.Equal(want) {
		t.Errorf("expires: %v %v", p.Expires, err)
	}
}
