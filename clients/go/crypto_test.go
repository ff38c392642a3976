package opentoken

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func jsonUnmarshal(s string, v interface{}) error { return json.Unmarshal([]byte(s), v) }

func TestPBKDF2SHA512KnownAnswers(t *testing.T) {
	cases := []struct {
		password, salt string
		iterations     int
		keyLen         int
		want           string
	}{
		{"password", "salt", 1, 64, "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252" +
			"c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"},
		{"password", "salt", 2, 64, "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c" +
			"f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e"},
		{"passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 64,
			"8c0511f4c6e597c6ac6315d8f0362e225f3c501495ba23b868c005174dc4ee71" +
				"115b59f9e60cd9532fa33e0f75aefe30225c583a186cd82bd4daea9724a3d3b8"},
		// Two blocks, the second cut short.
		{"pw", "NaCl", 3, 100, "86ee4cd5f81d78d6b4c689bd102106c199dfc8057a814967e195f505b46ad4d2" +
			"ee7865bc0f15160c5dfa97a04229ba035ca465f4f189672bfdcf3aea19388734" +
			"977246ab918cb189d65cfeedfc03e4cce92c9d9f7f9a23af5818300967c4a96aed4c54f9"},
	}
	for _, c := range cases {
		raw := PBKDF2SHA512([]byte(c.password), []byte(c.salt), c.iterations, c.keyLen)
		got := hex.EncodeToString(raw)
		if got != c.want {
			t.Errorf("PBKDF2(%q, %q, %d, %d)\n got %s\nwant %s", c.password, c.salt, c.iterations,
				c.keyLen, got, c.want)
		}
	}
}

// The parameters a real daemon announced (100,000 rounds, 48 bytes, a 128-character salt).
var serverConfig = PasswordHashConfig{Type: "pbkdf2", Algorithm: "sha512", DerivedLength: 48,
	Encoding: "base64", Iterations: 100000,
	Salt: "Fufmx0cf_Ldh3UsAoYgWxCae7yVQEAlM8XCr-9m9HyB2obupewf9zhdmRBSHGPha-WJDoreYHhXtQWLmXcRc6zs" +
		"iHKWxtk4Qw3BWdNbTC9J-qja6VZNHxKijMXlp2Qur"}

func TestPasswordAndChallengeHashKnownAnswers(t *testing.T) {
	pw, err := PasswordHash(serverConfig, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if want := "yheXSEDjl82u3dURW003KxBuBTa5GQWDtlN+WFR6bYEbeIsPIJ96qvcO/hdDEBN4"; pw != want {
		t.Fatalf("password hash %s, want %s", pw, want)
	}
	ch, err := ChallengeHash(pw, ChallengeHashConfig{Algorithm: "sha512", Encoding: "hex",
		Salt: "W0AowEpUPFimX7s5jMjNo7QphX3bqKpKUuvbOUK3QmSaJwHOI1wsv32Mjy2EuAF7"})
	if err != nil {
		t.Fatal(err)
	}
	want := "8fb1a1180c84eaa458517a382703e8a578e04e21c154a2f7cc2db15b1aaeefbe" +
		"30be065a0e10667b5c4d7ec8929be53c592795bd3b271289d751b7dd48b72972"
	if ch != want {
		t.Fatalf("challenge hash %s, want %s", ch, want)
	}
	// What the server does not announce is refused rather than hashed differently.
	for _, bad := range []PasswordHashConfig{
		{Type: "scrypt", Algorithm: "sha512", Encoding: "base64", Iterations: 1, DerivedLength: 1},
		{Type: "pbkdf2", Algorithm: "sha256", Encoding: "base64", Iterations: 1, DerivedLength: 1},
		{Type: "pbkdf2", Algorithm: "sha512", Encoding: "hex", Iterations: 1, DerivedLength: 1},
		{Type: "pbkdf2", Algorithm: "sha512", Encoding: "base64", Iterations: 0, DerivedLength: 1},
	} {
		if _, err := PasswordHash(bad, "x"); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	md5 := ChallengeHashConfig{Algorithm: "md5", Encoding: "hex"}
	if _, err := ChallengeHash(pw, md5); err == nil {
		t.Error("md5 challenge accepted")
	}
}

func TestTOTPKnownAnswers(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 (8 digits), and the 6-digit codes the daemon uses.
	key := []byte("12345678901234567890")
	cases := []struct {
		unix  int64
		eight string
	}{
		{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
	}
	for _, c := range cases {
		at := time.Unix(c.unix, 0)
		if got := TOTPWith(key, at, 30*time.Second, 8); got != c.eight {
			t.Errorf("TOTP8(%d) = %s, want %s", c.unix, got, c.eight)
		}
		if got := TOTP(key, at); got != c.eight[2:] {
			t.Errorf("TOTP(%d) = %s, want %s", c.unix, got, c.eight[2:])
		}
	}
	// Leading zeros are kept.
	if got := TOTP(key, time.Unix(1111111109, 0)); got != "081804" {
		t.Errorf("got %s", got)
	}
}

func TestErrorShapes(t *testing.T) {
	cases := []struct {
		body, shape, code, message, logref string
	}{
		{`{"code":"not-found","logref":"RaRnuy57cT64","message":"no such token"}`,
			"vnd.error", "not-found", "no such token", "RaRnuy57cT64"},
		{`{"message":"invalid or missing credentials","type":"Unauthorized"}`,
			"losant", "Unauthorized", "invalid or missing credentials", ""},
		{`{"data":{"id":"error_access_tokens_invalid","type":"errors","attributes":{"message":"bad"}}}`,
			"pkmnapi", "error_access_tokens_invalid", "bad", ""},
		{`not json`, "", "", "", ""},
	}
	for _, c := range cases {
		h := http.Header{}
		h.Set("Retry-After", "7")
		e := newError(&Response{Status: 418, Header: h, Body: []byte(c.body)})
		if e.Shape != c.shape || e.Code != c.code || e.Message != c.message || e.Logref != c.logref ||
			e.Status != 418 || e.RetryAfter != "7" || string(e.Body) != c.body {
			t.Errorf("%s -> %+v", c.body, e)
		}
		if StatusOf(e) != 418 || IsNotFound(e) {
			t.Errorf("status of %v", e)
		}
	}
}

func TestLinkParsing(t *testing.T) {
	links := parseLinks([]string{
		`</account/{accountId}/token{?public}>; rel="service"; profile="/schema/x.json"; ` +
			`templated="true"; title="account-token-create"`,
		`</registration/abc>; rel="edit"; title="registration-secure", </x>; rel="self"`,
	})
	if len(links) != 3 || links[0].Href != "/account/{accountId}/token{?public}" ||
		links[0].Params["title"] != "account-token-create" || links[0].Params["templated"] != "true" ||
		links[1].Params["rel"] != "edit" || links[2].Href != "/x" {
		t.Fatalf("%+v", links)
	}
}
