package opentoken_test

// Examples (compiled by go test and go vet, not run: they need a daemon). The README shows them.

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"opentokend.local/opentoken"
)

// A first tokenize/detokenize with an account id and an access code pair from the environment.
func ExampleVault_Tokenize() {
	ctx := context.Background()
	c, err := opentoken.New(opentoken.Options{Socket: "var/run/opentokend.sock"})
	if err != nil {
		log.Fatal(err)
	}
	v := c.WithAccessCode(os.Getenv("OPENTOKEN_ACCOUNT"), os.Getenv("OPENTOKEN_ACCESS_CODE"),
		os.Getenv("OPENTOKEN_SECRET"))
	id, err := v.Tokenize(ctx, []byte("4111 1111 1111 1111"),
		opentoken.TokenizeOptions{ContentType: "text/plain"})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := v.Detokenize(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s %q\n", id, tok.ContentType, tok.Data)
}

// From nothing to an access code pair: register, confirm with the mailed link, log in. The
// password comes from the environment, the link from standard input.
func ExampleClient_Register() {
	ctx := context.Background()
	c, err := opentoken.New(opentoken.Options{URL: "https://127.0.0.1:8443",
		CACertFile: "var/tls/cert.pem"})
	if err != nil {
		log.Fatal(err)
	}
	password := os.Getenv("OPENTOKEN_PASSWORD")
	reg, err := c.Register(ctx, "me@example.com", password)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("add to your authenticator:", reg.TOTPKeyURI) // a secret: show it to the user only
	fmt.Print("confirmation link from the mail: ")
	link, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	conf, err := c.Confirm(ctx, strings.TrimSpace(link))
	if err != nil {
		log.Fatal(err)
	}
	s, err := c.LoginWithKey(ctx, conf.AccountID, password, reg.TOTPKey)
	if err != nil {
		log.Fatal(err)
	}
	pair, err := s.CreateAccessCode(ctx, "my service")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("account", conf.AccountID, "access code", pair.Code) // store pair.Secret safely
}

// Signing a request by hand, e.g. to hand the headers to curl.
func ExampleSign() {
	h := map[string][]string{"Host": {"localhost"}, "Content-Type": {"text/plain"}}
	signed, err := opentoken.Sign("GET", "/account/ACCOUNT/token/TOKEN", h, nil,
		os.Getenv("OPENTOKEN_ACCESS_CODE"), os.Getenv("OPENTOKEN_SECRET"), time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(opentoken.DateHeader+":", signed.Get(opentoken.DateHeader))
	fmt.Println("Authorization:", signed.Get("Authorization"))
}
