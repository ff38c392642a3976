package opentoken

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Registration is a registration in progress: its TOTP key (put it in an authenticator app),
// and what the secure step needs. The password itself is not kept, only its hash.
type Registration struct {
	ID string // the registration id (from Location)
	// TOTPKey is the account's TOTP key; TOTPKeyBase32 and TOTPKeyURI (otpauth://) are the
	// forms authenticator apps take.
	TOTPKey       []byte
	TOTPKeyBase32 string
	TOTPKeyURI    string
	// PasswordHash is the PBKDF2 hash sent to the server (what login challenges are based on).
	PasswordHash string
	secureHref   string
}

// Confirmation is the account a confirmation link created.
type Confirmation struct {
	AccountID string
}

func (c *Client) discover(ctx context.Context, title string) (string, error) {
	r, err := c.do(ctx, "GET", "/", nil, nil)
	if err != nil {
		return "", err
	}
	if r.Status/100 != 2 {
		return "", newError(r)
	}
	href, ok := r.findLink("service", title)
	if !ok {
		return "", fmt.Errorf("opentoken: the daemon links no %q service from /", title)
	}
	return href, nil
}

// Register starts a registration for email with password: it asks the server for a
// registration (following the link of GET /), hashes the password as the server says, and
// secures the registration with two TOTP codes of the new key. The server then mails a
// confirmation link to email: pass it to Confirm.
func (c *Client) Register(ctx context.Context, email, password string) (*Registration, error) {
	if password == "" {
		return nil, errors.New("opentoken: empty password")
	}
	href, err := c.discover(ctx, "registration-register")
	if err != nil {
		return nil, err
	}
	var body struct {
		PasswordHashConfig PasswordHashConfig `json:"passwordHashConfig"`
		MFA                struct {
			TOTP struct {
				KeyHex    string `json:"keyHex"`
				KeyBase32 string `json:"keyBase32"`
				KeyURI    string `json:"keyUri"`
			} `json:"totp"`
		} `json:"mfa"`
	}
	r, err := c.jsonCall(ctx, "POST", href, nil, map[string]string{"email": email}, 200, &body)
	if err != nil {
		return nil, err
	}
	reg := &Registration{
		TOTPKeyBase32: body.MFA.TOTP.KeyBase32,
		TOTPKeyURI:    body.MFA.TOTP.KeyURI,
	}
	if reg.TOTPKey, err = hex.DecodeString(body.MFA.TOTP.KeyHex); err != nil || len(reg.TOTPKey) == 0 {
		return nil, errors.New("opentoken: the registration reply has no TOTP key")
	}
	loc := r.Header.Get("Location")
	reg.ID = loc[strings.LastIndexByte(loc, '/')+1:]
	var ok bool
	if reg.secureHref, ok = r.findLink("edit", "registration-secure"); !ok {
		return nil, errors.New("opentoken: the registration reply links no secure step")
	}
	if reg.PasswordHash, err = PasswordHash(body.PasswordHashConfig, password); err != nil {
		return nil, err
	}
	if err := c.Secure(ctx, reg); err != nil {
		return nil, err
	}
	return reg, nil
}

// Secure sends (again) the secure step of reg: the password hash and the TOTP codes of the
// current and the previous 30 s step. Each call mails a new confirmation link and voids the
// previous one. Register already calls it once.
func (c *Client) Secure(ctx context.Context, reg *Registration) error {
	now := c.now()
	body := map[string]interface{}{
		"mfa": map[string]interface{}{"totp": map[string]string{
			"current":  TOTP(reg.TOTPKey, now),
			"previous": TOTP(reg.TOTPKey, now.Add(-TOTPPeriod)),
		}},
		"passwordHash": reg.PasswordHash,
	}
	_, err := c.jsonCall(ctx, "POST", reg.secureHref, nil, body, 204, nil)
	return err
}

var confirmPathRE = regexp.MustCompile(`^/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+$`)

// Confirm opens the confirmation link of the mail (the whole https://... link, or its path)
// and returns the new account's id.
func (c *Client) Confirm(ctx context.Context, link string) (*Confirmation, error) {
	path := strings.TrimSpace(link)
	if strings.Contains(path, "://") {
		u, err := url.Parse(path)
		if err != nil {
			return nil, errors.New("opentoken: not a confirmation link")
		}
		path = u.EscapedPath()
	}
	if !confirmPathRE.MatchString(path) {
		return nil, errors.New("opentoken: not a confirmation link (/registration/ID/confirm/CODE)")
	}
	var out Confirmation
	if _, err := c.jsonCall(ctx, "GET", path, nil, nil, 201, &out); err != nil {
		return nil, err
	}
	if out.AccountID == "" {
		return nil, errors.New("opentoken: the confirmation reply names no account")
	}
	return &out, nil
}

// ConfirmCode is Confirm with the registration id and the code of the mailed link.
func (c *Client) ConfirmCode(ctx context.Context, registrationID,
	code string) (*Confirmation, error) {
	return c.Confirm(ctx, "/registration/"+registrationID+"/confirm/"+code)
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func checkID(what, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("opentoken: malformed %s", what)
	}
	return nil
}

// Session is a logged-in account (the login cookie) or a bearer access token. Its methods
// manage access codes and access tokens; a session lasts 10 minutes on the server by default.
type Session struct {
	c         *Client
	AccountID string // empty for a bearer session made without one
	cookie    string
	bearer    string
}

func (s *Session) auth() http.Header {
	h := http.Header{}
	if s.cookie != "" {
		h.Set("Cookie", "login="+s.cookie)
	}
	if s.bearer != "" {
		h.Set("Authorization", "Bearer "+s.bearer)
	}
	return h
}

// Login logs into accountID with the password and a current TOTP code (from the user's
// authenticator, or TOTP(key, time.Now())). A code can be used for one login only.
func (c *Client) Login(ctx context.Context, accountID, password,
	totpCode string) (*Session, error) {
	if err := checkID("account id", accountID); err != nil {
		return nil, err
	}
	href := "/account/" + accountID + "/login"
	var challenge struct {
		PasswordHashConfig  PasswordHashConfig  `json:"passwordHashConfig"`
		ChallengeHashConfig ChallengeHashConfig `json:"challengeHashConfig"`
	}
	if _, err := c.jsonCall(ctx, "GET", href, nil, nil, 200, &challenge); err != nil {
		return nil, err
	}
	pw, err := PasswordHash(challenge.PasswordHashConfig, password)
	if err != nil {
		return nil, err
	}
	proof, err := ChallengeHash(pw, challenge.ChallengeHashConfig)
	if err != nil {
		return nil, err
	}
	body := map[string]interface{}{"challengeHash": proof,
		"mfa": map[string]string{"totp": totpCode}}
	r, err := c.jsonCall(ctx, "POST", href, nil, body, 200, nil)
	if err != nil {
		return nil, err
	}
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == "login" && ck.Value != "" {
			return &Session{c: c, AccountID: accountID, cookie: ck.Value}, nil
		}
	}
	return nil, errors.New("opentoken: the login reply set no session cookie")
}

// LoginWithKey is Login with the TOTP code computed from the account's TOTP key now.
func (c *Client) LoginWithKey(ctx context.Context, accountID, password string,
	totpKey []byte) (*Session, error) {
	return c.Login(ctx, accountID, password, TOTP(totpKey, c.now()))
}

// ResumeSession rebuilds a session from a login cookie value kept elsewhere.
func (c *Client) ResumeSession(accountID, cookie string) *Session {
	return &Session{c: c, AccountID: accountID, cookie: cookie}
}

// WithBearer returns a session that authenticates with an access token ("otk_..."). accountID
// may be empty; account routes need it.
func (c *Client) WithBearer(accountID, token string) *Session {
	return &Session{c: c, AccountID: accountID, bearer: token}
}

// Cookie returns the session's login cookie value (a secret: store it like a password).
func (s *Session) Cookie() string { return s.cookie }

func (s *Session) accountPath() (string, error) {
	if err := checkID("account id", s.AccountID); err != nil {
		return "", errors.New("opentoken: this session has no account id")
	}
	return "/account/" + s.AccountID, nil
}

// Account is what GET /account/{id} says.
type Account struct {
	ID    string `json:"-"`
	Email string `json:"email"`
}

// Whoami returns the session's account.
func (s *Session) Whoami(ctx context.Context) (*Account, error) {
	p, err := s.accountPath()
	if err != nil {
		return nil, err
	}
	var a Account
	if _, err := s.c.jsonCall(ctx, "GET", p, s.auth(), nil, 200, &a); err != nil {
		return nil, err
	}
	a.ID = s.AccountID
	return &a, nil
}

// Logout ends the session on the server (a cookie session; a bearer session is revoked with
// DeleteAccessToken instead).
func (s *Session) Logout(ctx context.Context) error {
	p, err := s.accountPath()
	if err != nil {
		return err
	}
	_, err = s.c.jsonCall(ctx, "POST", p+"/logout", s.auth(), nil, 204, nil)
	if err == nil {
		s.cookie = ""
	}
	return err
}

// AccessCodePair is a new access code and its secret. The secret is shown once: keep it.
type AccessCodePair struct {
	Code    string    `json:"code"`
	Secret  string    `json:"secret"`
	Expires time.Time `json:"expires"`
	Href    string    `json:"-"`
}

// AccessCode is a listed access code (never with its secret).
type AccessCode struct {
	Code        string    `json:"code"`
	Description string    `json:"description"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	Href        string    `json:"href"`
}

// CreateAccessCode makes an access code pair (description may be empty).
func (s *Session) CreateAccessCode(ctx context.Context,
	description string) (*AccessCodePair, error) {
	p, err := s.accountPath()
	if err != nil {
		return nil, err
	}
	body := map[string]string{}
	if description != "" {
		body["description"] = description
	}
	var pair AccessCodePair
	r, err := s.c.jsonCall(ctx, "POST", p+"/accessCode", s.auth(), body, 201, &pair)
	if err != nil {
		return nil, err
	}
	pair.Href = r.Header.Get("Location")
	return &pair, nil
}

// ListAccessCodes lists the account's access codes.
func (s *Session) ListAccessCodes(ctx context.Context) ([]AccessCode, error) {
	p, err := s.accountPath()
	if err != nil {
		return nil, err
	}
	var out struct {
		Items []AccessCode `json:"items"`
	}
	if _, err := s.c.jsonCall(ctx, "GET", p+"/accessCode", s.auth(), nil, 200, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// GetAccessCode returns one access code (without its secret).
func (s *Session) GetAccessCode(ctx context.Context, code string) (*AccessCode, error) {
	p, err := s.accountPath()
	if err != nil {
		return nil, err
	}
	if err := checkID("access code", code); err != nil {
		return nil, err
	}
	var out AccessCode
	_, err = s.c.jsonCall(ctx, "GET", p+"/accessCode/"+code, s.auth(), nil, 200, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeAccessCode revokes an access code: it signs nothing any more (404 if unknown).
func (s *Session) RevokeAccessCode(ctx context.Context, code string) error {
	p, err := s.accountPath()
	if err != nil {
		return err
	}
	if err := checkID("access code", code); err != nil {
		return err
	}
	_, err = s.c.jsonCall(ctx, "DELETE", p+"/accessCode/"+code, s.auth(), nil, 204, nil)
	return err
}
