package opentoken

import (
	"context"
	"errors"
	"time"
)

// AccessToken is an access token of /access-tokens (Losant's shape). Token, the bearer secret
// ("otk_..."), is only set in the reply of CreateAccessToken.
type AccessToken struct {
	ID             string     `json:"id"`
	AccessTokenID  string     `json:"accessTokenId"`
	AccountID      string     `json:"accountId"`
	Name           string     `json:"name"`
	Scope          []string   `json:"scope"`
	Status         string     `json:"status"` // "active" or "inactive"
	Source         string     `json:"source,omitempty"`
	CreationDate   time.Time  `json:"creationDate"`
	LastUpdated    time.Time  `json:"lastUpdated"`
	ExpirationDate *time.Time `json:"expirationDate,omitempty"`
	Token          string     `json:"token,omitempty"`
}

// NewAccessToken is what CreateAccessToken sends. Only Name is required; Scope empty means no
// rights at all; a zero ExpirationDate means the server's default.
type NewAccessToken struct {
	Name           string
	Scope          []string
	Status         string
	ExpirationDate time.Time
}

// AccessTokenUpdate changes a token's name and/or status (empty: unchanged).
type AccessTokenUpdate struct {
	Name   string `json:"name,omitempty"`
	Status string `json:"status,omitempty"`
}

// accessTokenDate is the date form of Losant's documents (milliseconds, Z); the server accepts
// any RFC 3339 date here.
const accessTokenDate = "2006-01-02T15:04:05.000Z"

// CreateAccessToken makes an access token; the reply's Token is shown once.
func (s *Session) CreateAccessToken(ctx context.Context, t NewAccessToken) (*AccessToken, error) {
	body := map[string]interface{}{"name": t.Name}
	if t.Scope != nil {
		body["scope"] = t.Scope
	}
	if t.Status != "" {
		body["status"] = t.Status
	}
	if !t.ExpirationDate.IsZero() {
		body["expirationDate"] = t.ExpirationDate.UTC().Format(accessTokenDate)
	}
	var out AccessToken
	if _, err := s.c.jsonCall(ctx, "POST", "/access-tokens", s.auth(), body, 201, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAccessTokens lists the account's access tokens (without their secrets).
func (s *Session) ListAccessTokens(ctx context.Context) ([]AccessToken, error) {
	var out struct {
		Items []AccessToken `json:"items"`
		Count int           `json:"count"`
	}
	if _, err := s.c.jsonCall(ctx, "GET", "/access-tokens", s.auth(), nil, 200, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// GetAccessToken returns one access token.
func (s *Session) GetAccessToken(ctx context.Context, id string) (*AccessToken, error) {
	if err := checkID("access token id", id); err != nil {
		return nil, err
	}
	var out AccessToken
	if _, err := s.c.jsonCall(ctx, "GET", "/access-tokens/"+id, s.auth(), nil, 200, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateAccessToken renames and/or (de)activates an access token and returns it.
func (s *Session) UpdateAccessToken(ctx context.Context, id string,
	u AccessTokenUpdate) (*AccessToken, error) {
	if err := checkID("access token id", id); err != nil {
		return nil, err
	}
	var out AccessToken
	if _, err := s.c.jsonCall(ctx, "PATCH", "/access-tokens/"+id, s.auth(), u, 200, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAccessToken revokes an access token.
func (s *Session) DeleteAccessToken(ctx context.Context, id string) error {
	if err := checkID("access token id", id); err != nil {
		return err
	}
	var out struct {
		Success bool `json:"success"`
	}
	_, err := s.c.jsonCall(ctx, "DELETE", "/access-tokens/"+id, s.auth(), nil, 200, &out)
	if err != nil {
		return err
	}
	if !out.Success {
		return errors.New("opentoken: the server did not confirm the deletion")
	}
	return nil
}

// The e-mail flow (/v1/access_tokens, pkmnapi's shape): no credential; the server mails the
// token, or a deletion code, to the address if it belongs to a confirmed account, and answers
// the same either way.

func v1Body(email, code string) map[string]interface{} {
	attrs := map[string]string{"email_address": email}
	if code != "" {
		attrs["code"] = code
	}
	return map[string]interface{}{"data": map[string]interface{}{
		"type": "access_tokens", "attributes": attrs}}
}

// MailAccessToken asks the server to mail a new access token to email.
func (c *Client) MailAccessToken(ctx context.Context, email string) error {
	_, err := c.jsonCall(ctx, "POST", "/v1/access_tokens", nil, v1Body(email, ""), 201, nil)
	return err
}

// MailAccessTokenDeletionCode asks the server to mail a code that revokes the access tokens
// mailed to email.
func (c *Client) MailAccessTokenDeletionCode(ctx context.Context, email string) error {
	_, err := c.jsonCall(ctx, "POST", "/v1/access_tokens/delete", nil, v1Body(email, ""), 201, nil)
	return err
}

// RevokeMailedAccessTokens revokes every access token mailed to email, with the mailed code.
func (c *Client) RevokeMailedAccessTokens(ctx context.Context, email, code string) error {
	if code == "" {
		return errors.New("opentoken: a deletion code is needed")
	}
	_, err := c.jsonCall(ctx, "DELETE", "/v1/access_tokens", nil, v1Body(email, code), 204, nil)
	return err
}
