package opentoken

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Vault tokenizes and detokenizes with one access code pair of one account. Every request is
// OT1-signed; the secret never leaves the process.
type Vault struct {
	c         *Client
	accountID string
	code      string
	secret    string
}

// WithAccessCode returns a Vault for accountID that signs with the pair (code, secret).
func (c *Client) WithAccessCode(accountID, code, secret string) *Vault {
	return &Vault{c: c, accountID: accountID, code: code, secret: secret}
}

// TokenizeOptions are the optional parts of a tokenize request.
type TokenizeOptions struct {
	// ContentType is stored with the data and returned by Detokenize
	// (default application/octet-stream).
	ContentType string
	// Public lets anyone read the token without a signature (Client.DetokenizePublic).
	Public bool
	// Expires, when set, is when the token stops existing (sent in UTC at second precision).
	Expires time.Time
}

// Token is detokenized data: the exact bytes and the content type they were stored with.
type Token struct {
	Data        []byte
	ContentType string
	ETag        string
}

// detokenizeContentType is the Content-Type sent (and signed) on GET and DELETE: the server
// requires a signed Content-Type on every signed request, even without a body.
const detokenizeContentType = "text/plain"

// Do sends an OT1-signed request with the vault's pair and returns the raw reply, whatever its
// status. target is "/path[?query]"; contentType is sent and signed (required by OT1 even for a
// GET).
func (v *Vault) Do(ctx context.Context, method, target, contentType string,
	body []byte) (*Response, error) {
	h := http.Header{}
	h.Set("Host", v.c.host)
	h.Set("Content-Type", contentType)
	signed, err := Sign(method, target, h, body, v.code, v.secret, v.c.now())
	if err != nil {
		return nil, err
	}
	return v.c.do(ctx, method, target, signed, body)
}

func (v *Vault) tokenPath(id string) (string, error) {
	if err := checkID("account id", v.accountID); err != nil {
		return "", err
	}
	if err := checkID("token id", id); err != nil {
		return "", err
	}
	return "/account/" + v.accountID + "/token/" + id, nil
}

// Tokenize stores data and returns the new token's id.
func (v *Vault) Tokenize(ctx context.Context, data []byte, opts TokenizeOptions) (string, error) {
	if err := checkID("account id", v.accountID); err != nil {
		return "", err
	}
	target := "/account/" + v.accountID + "/token"
	var query []string
	if opts.Public {
		query = append(query, "public=true")
	}
	if !opts.Expires.IsZero() {
		query = append(query, "expires="+FormatDate(opts.Expires))
	}
	if len(query) > 0 {
		target += "?" + strings.Join(query, "&")
	}
	ctype := opts.ContentType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	if data == nil {
		data = []byte{}
	}
	r, err := v.Do(ctx, "POST", target, ctype, data)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusCreated {
		return "", newError(r)
	}
	loc := r.Header.Get("Location")
	prefix := "/account/" + v.accountID + "/token/"
	if !strings.HasPrefix(loc, prefix) || len(loc) == len(prefix) {
		return "", errors.New("opentoken: the tokenize reply has no token Location")
	}
	return loc[len(prefix):], nil
}

// Detokenize returns the exact bytes and content type of a token. A token that does not exist
// (unknown, expired, deleted, another account's) is a 404 *Error (IsNotFound).
func (v *Vault) Detokenize(ctx context.Context, id string) (*Token, error) {
	p, err := v.tokenPath(id)
	if err != nil {
		return nil, err
	}
	r, err := v.Do(ctx, "GET", p, detokenizeContentType, nil)
	if err != nil {
		return nil, err
	}
	return tokenFrom(r)
}

func tokenFrom(r *Response) (*Token, error) {
	if r.Status != http.StatusOK {
		return nil, newError(r)
	}
	return &Token{Data: r.Body, ContentType: r.Header.Get("Content-Type"),
		ETag: r.Header.Get("ETag")}, nil
}

// Delete deletes a token (404 *Error if it does not exist).
func (v *Vault) Delete(ctx context.Context, id string) error {
	p, err := v.tokenPath(id)
	if err != nil {
		return err
	}
	r, err := v.Do(ctx, "DELETE", p, detokenizeContentType, nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusNoContent {
		return newError(r)
	}
	return nil
}

// DetokenizePublic reads a public token without a signature (a private token is a 401).
func (c *Client) DetokenizePublic(ctx context.Context, accountID, id string) (*Token, error) {
	p, err := (&Vault{accountID: accountID}).tokenPath(id)
	if err != nil {
		return nil, err
	}
	r, err := c.do(ctx, "GET", p, nil, nil)
	if err != nil {
		return nil, err
	}
	return tokenFrom(r)
}
