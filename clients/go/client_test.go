package opentoken

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []Options{
		{},
		{Socket: "/x.sock", URL: "https://127.0.0.1:8443"},
		{URL: "http://127.0.0.1:8443"},
		{URL: "https://127.0.0.1:8443/prefix"},
		{URL: "https://user:pw@127.0.0.1:8443"},
		{URL: "https://127.0.0.1:8443", CACertFile: filepath.Join(dir, "missing.pem")},
		{URL: "https://127.0.0.1:8443", CACertFile: notPEM},
	}
	for _, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	c, err := New(Options{URL: "https://127.0.0.1:8443/"})
	if err != nil || c.Host() != "127.0.0.1:8443" {
		t.Fatalf("%v %v", c, err)
	}
}

func TestTransportErrorsDoNotQuoteSecretPaths(t *testing.T) {
	c, err := New(Options{Socket: filepath.Join(t.TempDir(), "no-daemon.sock")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Confirm(context.Background(), "https://h/registration/REGID/confirm/SECRETCODE")
	if err == nil || StatusOf(err) != 0 {
		t.Fatalf("want a transport error, got %v", err)
	}
	if strings.Contains(err.Error(), "SECRETCODE") || strings.Contains(err.Error(), "REGID") {
		t.Fatalf("the error quotes the confirmation link: %v", err)
	}
	// Malformed ids are refused before anything is sent.
	v := c.WithAccessCode("acct", "code", "secret")
	for _, id := range []string{"", "../x", "a/b", "a?b", "a b"} {
		if _, err := v.Detokenize(context.Background(), id); err == nil ||
			!strings.Contains(err.Error(), "malformed") {
			t.Errorf("id %q: %v", id, err)
		}
	}
	if _, err := c.Confirm(context.Background(), "/registration/x/other/y"); err == nil ||
		!strings.Contains(err.Error(), "not a confirmation link") {
		t.Errorf("bad link: %v", err)
	}
}
