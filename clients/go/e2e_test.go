package opentoken

// The end-to-end journey against a real daemon, over the Unix socket and over TLS. It runs
// when OPENTOKEN_TEST_SOCKET is set (tests/support/with_daemon.py sets it, with
// OPENTOKEN_TEST_URL, OPENTOKEN_TEST_CACERT and OPENTOKEN_TEST_MAIL_DIR; the ctest entry
// client_go always runs it that way) and is skipped otherwise.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const e2ePassword = "correct horse battery staple (go)"

type e2eEnv struct {
	socket, url, cacert, mailDir string
}

func e2e(t *testing.T) e2eEnv {
	t.Helper()
	env := e2eEnv{
		socket:  os.Getenv("OPENTOKEN_TEST_SOCKET"),
		url:     os.Getenv("OPENTOKEN_TEST_URL"),
		cacert:  os.Getenv("OPENTOKEN_TEST_CACERT"),
		mailDir: os.Getenv("OPENTOKEN_TEST_MAIL_DIR"),
	}
	if env.socket == "" {
		t.Skip("OPENTOKEN_TEST_SOCKET is not set (run through tests/support/with_daemon.py)")
	}
	if env.url == "" || env.cacert == "" || env.mailDir == "" {
		t.Fatal("OPENTOKEN_TEST_URL, OPENTOKEN_TEST_CACERT and OPENTOKEN_TEST_MAIL_DIR must be set")
	}
	return env
}

type spooledMail struct {
	to, subject, text string
}

// readMails parses every *.eml of the spool: the To, the decoded Subject and the text/plain
// body (multipart/alternative with quoted-printable parts, as the daemon writes them).
func readMails(t *testing.T, dir string) []spooledMail {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	sort.Strings(paths)
	var out []spooledMail
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		out = append(out, spooledMail{to: msg.Header.Get("To"), subject: subject,
			text: plainText(t, msg.Header, msg.Body)})
	}
	return out
}

func plainText(t *testing.T, h mail.Header, body io.Reader) string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		t.Fatalf("mail content type: %v", err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart() // decodes quoted-printable itself
			if err != nil {
				t.Fatalf("no text/plain part: %v", err)
			}
			if strings.HasPrefix(part.Header.Get("Content-Type"), "text/plain") {
				b, _ := io.ReadAll(part)
				return string(b)
			}
		}
	}
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, _ := io.ReadAll(body)
	return string(b)
}

// waitMail returns the text of the n-th mail (1-based) to address whose subject contains word.
func waitMail(t *testing.T, dir, address, word string, n int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var texts []string
		for _, m := range readMails(t, dir) {
			if strings.EqualFold(m.to, address) && strings.Contains(m.subject, word) {
				texts = append(texts, m.text)
			}
		}
		if len(texts) >= n {
			return texts[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mail %d to %s about %q", n, address, word)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantStatus(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: want HTTP %d, got %v", what, status, err)
	}
	if e.Status != status || (code != "" && e.Code != code) {
		t.Fatalf("%s: want HTTP %d %s, got %v (body %s)", what, status, code, e, e.Body)
	}
}

// afterMail runs use until it does not fail with status, at most tries times. The daemon spools
// a mail before it commits what the mail carries (a mailed access token or deletion code:
// service/access_tokens.cc, "the mail first"), so a client that reads the spool within
// milliseconds can be faster than the commit; a person reading mail never is.
func afterMail(t *testing.T, tries int, status int, use func() error) error {
	t.Helper()
	var err error
	for i := 0; i < tries; i++ {
		if err = use(); StatusOf(err) != status {
			return err
		}
		time.Sleep(time.Duration(100*(i+1)) * time.Millisecond)
	}
	return err
}

var (
	confirmLinkRE = regexp.MustCompile(
		`https?://\S+/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+`)
	mailedTokenRE = regexp.MustCompile(`otk_[A-Za-z0-9_-]{43}`)
	deleteCodeRE  = regexp.MustCompile(`\n([A-Za-z0-9_-]{32})\r?\n`)
)

func TestEndToEndUnixSocket(t *testing.T) {
	env := e2e(t)
	c, err := New(Options{Socket: env.socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Host() != "localhost" {
		t.Fatalf("host %s", c.Host())
	}
	journey(t, env, c, "go-unix@example.com")
}

func TestEndToEndTLS(t *testing.T) {
	env := e2e(t)
	c, err := New(Options{URL: env.url, CACertFile: env.cacert})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Host(), "127.0.0.1:") {
		t.Fatalf("host %s", c.Host())
	}
	journey(t, env, c, "go-tls@example.com")

	// Without the CA the daemon's certificate is not trusted: no request goes through.
	untrusting, err := New(Options{URL: env.url})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Request(context.Background(), "GET", "/", nil, nil); err == nil ||
		StatusOf(err) != 0 {
		t.Fatalf("an untrusted certificate was accepted: %v", err)
	}
}

func journey(t *testing.T, env e2eEnv, c *Client, address string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Register, confirm with the mailed link, log in.
	reg, err := c.Register(ctx, address, e2ePassword)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if len(reg.TOTPKey) != 20 || !strings.HasPrefix(reg.TOTPKeyURI, "otpauth://totp/") ||
		reg.TOTPKeyBase32 == "" || reg.ID == "" {
		t.Fatalf("registration %+v", reg)
	}
	link := confirmLinkRE.FindString(waitMail(t, env.mailDir, address, "", 1))
	if link == "" {
		t.Fatal("no confirmation link in the mail")
	}
	conf, err := c.Confirm(ctx, link) // Register returned after the secure step's commit
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	_, err = c.Confirm(ctx, link)
	wantStatus(t, "second confirmation", err, 404, "")
	s, err := c.LoginWithKey(ctx, conf.AccountID, e2ePassword, reg.TOTPKey)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	_, err = c.Login(ctx, conf.AccountID, "wrong password", TOTP(reg.TOTPKey, time.Now()))
	wantStatus(t, "login with a wrong password", err, 401, "unauthorized")
	me, err := s.Whoami(ctx)
	if err != nil || me.Email != address || me.ID != conf.AccountID {
		t.Fatalf("whoami: %+v %v", me, err)
	}

	// Access codes: created with a secret shown once, listed without it.
	pair, err := s.CreateAccessCode(ctx, "go client test")
	if err != nil {
		t.Fatalf("access code: %v", err)
	}
	if len(pair.Code) != 32 || len(pair.Secret) != 32 || pair.Expires.Before(time.Now()) ||
		pair.Href != "/account/"+conf.AccountID+"/accessCode/"+pair.Code {
		t.Fatalf("pair %+v", pair)
	}
	codes, err := s.ListAccessCodes(ctx)
	if err != nil || len(codes) != 1 || codes[0].Code != pair.Code ||
		codes[0].Description != "go client test" || codes[0].Href != pair.Href {
		t.Fatalf("list: %+v %v", codes, err)
	}
	if one, err := s.GetAccessCode(ctx, pair.Code); err != nil || one.Code != pair.Code ||
		one.Description != "go client test" || !one.Expires.Equal(pair.Expires) {
		t.Fatalf("get access code: %+v %v", one, err)
	}

	// Tokenize / detokenize: exact bytes and content type back.
	v := c.WithAccessCode(conf.AccountID, pair.Code, pair.Secret)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := make([]byte, 512*1024)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	payloads := []struct {
		data  []byte
		ctype string
	}{
		{[]byte("This is a test.\n"), "text/plain"},
		{binary, "application/octet-stream"},
		{[]byte(`{"pan":"4111111111111111"}`), "application/json"},
		{[]byte{}, "text/plain"},
		{big, "image/png; x=1"},
	}
	for _, p := range payloads {
		id, err := v.Tokenize(ctx, p.data, TokenizeOptions{ContentType: p.ctype})
		if err != nil {
			t.Fatalf("tokenize %s: %v", p.ctype, err)
		}
		got, err := v.Detokenize(ctx, id)
		if err != nil {
			t.Fatalf("detokenize: %v", err)
		}
		if !bytes.Equal(got.Data, p.data) || got.ContentType != p.ctype || got.ETag == "" {
			t.Fatalf("detokenized %d bytes (%s), want %d (%s)", len(got.Data), got.ContentType,
				len(p.data), p.ctype)
		}
	}
	id, err := v.Tokenize(ctx, []byte("delete me"), TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Delete(ctx, id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = v.Detokenize(ctx, id)
	wantStatus(t, "detokenize after delete", err, 404, "not-found")
	if !IsNotFound(err) {
		t.Fatal("IsNotFound")
	}
	wantStatus(t, "delete again", v.Delete(ctx, id), 404, "not-found")

	// Public and expiring tokens; an unsigned read of a private token is refused.
	pub, err := v.Tokenize(ctx, []byte("public data"), TokenizeOptions{ContentType: "text/plain",
		Public: true, Expires: time.Now().Add(time.Hour).In(time.FixedZone("x", 7200))})
	if err != nil {
		t.Fatalf("public tokenize: %v", err)
	}
	got, err := c.DetokenizePublic(ctx, conf.AccountID, pub)
	if err != nil || string(got.Data) != "public data" {
		t.Fatalf("public detokenize: %v", err)
	}
	priv, err := v.Tokenize(ctx, []byte("private"), TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DetokenizePublic(ctx, conf.AccountID, priv)
	wantStatus(t, "unsigned read of a private token", err, 401, "unauthorized")
	_, err = v.Tokenize(ctx, []byte("x"), TokenizeOptions{Expires: time.Now().Add(-time.Hour)})
	wantStatus(t, "tokenize expiring in the past", err, 400, "")

	// A wrong secret, a signature over another date, a revoked code: 401 in vnd.error.
	bad := c.WithAccessCode(conf.AccountID, pair.Code, strings.Repeat("x", 32))
	_, err = bad.Detokenize(ctx, priv)
	wantStatus(t, "wrong secret", err, 401, "unauthorized")
	var e *Error
	if errors.As(err, &e) && (e.Shape != "vnd.error" || e.Logref == "" ||
		strings.Contains(string(e.Body), pair.Secret)) {
		t.Fatalf("error %+v", e)
	}
	hourAgo := func() time.Time { return time.Now().Add(-time.Hour) }
	stale, _ := New(Options{Socket: env.socket, Now: hourAgo})
	if c.host != "localhost" {
		stale, _ = New(Options{URL: env.url, CACertFile: env.cacert, Now: hourAgo})
	}
	_, err = stale.WithAccessCode(conf.AccountID, pair.Code, pair.Secret).Detokenize(ctx, priv)
	wantStatus(t, "an hour-old signature date", err, 401, "unauthorized")
	r, err := v.Do(ctx, "GET", "/account/"+conf.AccountID+"/token/"+priv, "text/plain", nil)
	if err != nil || r.Status != 200 || string(r.Body) != "private" {
		t.Fatalf("Do: %v", err)
	}
	if err := s.RevokeAccessCode(ctx, pair.Code); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	_, err = v.Detokenize(ctx, priv)
	wantStatus(t, "revoked access code", err, 401, "unauthorized")
	wantStatus(t, "revoke again", s.RevokeAccessCode(ctx, pair.Code), 404, "")
	_, err = s.GetAccessCode(ctx, pair.Code)
	wantStatus(t, "revoked access code", err, 404, "")

	// Access tokens: create, list, get, update, use as a bearer, delete.
	tok, err := s.CreateAccessToken(ctx, NewAccessToken{Name: "go test",
		Scope: []string{"account.read", "accessTokens.read"}, Status: "active",
		ExpirationDate: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("create access token: %v", err)
	}
	if !mailedTokenRE.MatchString(tok.Token) || tok.AccountID != conf.AccountID ||
		tok.ExpirationDate == nil || tok.Status != "active" || len(tok.Scope) != 2 {
		t.Fatalf("access token %+v", tok)
	}
	list, err := s.ListAccessTokens(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].Token != "" {
		t.Fatalf("list access tokens: %+v %v", list, err)
	}
	one, err := s.GetAccessToken(ctx, tok.ID)
	if err != nil || one.Name != "go test" || one.Token != "" {
		t.Fatalf("get access token: %+v %v", one, err)
	}
	bearer := c.WithBearer(conf.AccountID, tok.Token)
	if me, err := bearer.Whoami(ctx); err != nil || me.Email != address {
		t.Fatalf("bearer whoami: %v", err)
	}
	_, err = bearer.CreateAccessCode(ctx, "")
	wantStatus(t, "bearer without accessCodes scope", err, 403, "")
	upd, err := s.UpdateAccessToken(ctx, tok.ID,
		AccessTokenUpdate{Name: "renamed", Status: "inactive"})
	if err != nil || upd.Name != "renamed" || upd.Status != "inactive" {
		t.Fatalf("update: %+v %v", upd, err)
	}
	_, err = bearer.Whoami(ctx)
	wantStatus(t, "inactive bearer", err, 401, "")
	if err := s.DeleteAccessToken(ctx, tok.ID); err != nil {
		t.Fatalf("delete access token: %v", err)
	}
	_, err = s.GetAccessToken(ctx, tok.ID)
	wantStatus(t, "deleted access token", err, 404, "NotFound")
	if errors.As(err, &e) && e.Shape != "losant" {
		t.Fatalf("shape %s", e.Shape)
	}

	// The e-mail flow: a mailed token works as a bearer until the mailed code revokes it.
	if err := c.MailAccessToken(ctx, address); err != nil {
		t.Fatalf("mail access token: %v", err)
	}
	mailed := mailedTokenRE.FindString(waitMail(t, env.mailDir, address, "Your opentokend", 1))
	if mailed == "" {
		t.Fatal("no token in the mail")
	}
	mb := c.WithBearer(conf.AccountID, mailed)
	listed := func() error { _, err := mb.ListAccessTokens(ctx); return err }
	if err := afterMail(t, 10, 401, listed); err != nil {
		t.Fatalf("mailed bearer: %v", err)
	}
	if err := c.MailAccessTokenDeletionCode(ctx, address); err != nil {
		t.Fatalf("deletion code: %v", err)
	}
	m := deleteCodeRE.FindStringSubmatch(waitMail(t, env.mailDir, address, "Revoke", 1))
	if m == nil {
		t.Fatal("no deletion code in the mail")
	}
	err = c.RevokeMailedAccessTokens(ctx, address, "wrong"+m[1][5:])
	wantStatus(t, "wrong deletion code", err, 400, "error_access_tokens_invalid")
	if errors.As(err, &e) && e.Shape != "pkmnapi" {
		t.Fatalf("shape %s", e.Shape)
	}
	// At most 3 tries: 5 wrong ones (the one above included) would void the code.
	revoke := func() error { return c.RevokeMailedAccessTokens(ctx, address, m[1]) }
	if err := afterMail(t, 3, 400, revoke); err != nil {
		t.Fatalf("revoke mailed: %v", err)
	}
	_, err = mb.ListAccessTokens(ctx)
	wantStatus(t, "revoked mailed token", err, 401, "Unauthorized")

	// Logout ends the session: its cookie no longer works.
	cookie := s.Cookie()
	if _, err := c.ResumeSession(conf.AccountID, cookie).Whoami(ctx); err != nil {
		t.Fatalf("resumed session: %v", err)
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	_, err = c.ResumeSession(conf.AccountID, cookie).Whoami(ctx)
	wantStatus(t, "whoami after logout", err, 401, "")
}
