package api_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tokend/tokend/api"
)

// A program fetching the access token of grant "reports" from the tokend
// running on this host.
func Example() {
	c := api.NewClient("/run/tokend/tokend.sock")
	// A fetch of an expired token waits for its refresh: bound it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := c.Token(ctx, "reports")
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Code == api.CodeReauthorizationRequired:
		log.Fatal("a person must run: tokend authorize reports")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("Authorization: " + tok.TokenType + " " + tok.AccessToken)
}
