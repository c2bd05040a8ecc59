package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

func TestClientDPoP(t *testing.T) {
	var method, path, ctype string
	var body DPoPRequest
	sock := testutil.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, ctype = r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		if path == "/v1/tokens/plain/dpop" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"dpop_not_enabled","error_description":"grant plain does not use DPoP"}`))
			return
		}
		w.Write([]byte(`{"access_token":"at","token_type":"DPoP","dpop":"a.b.c","expires_in":60,"expires_at":"2026-11-23T11:00:00Z"}`))
	}))
	c := NewClient(sock)
	req := DPoPRequest{Method: "POST", URL: "https://api.example/x?y=1", Nonce: "n-1"}
	r, err := c.DPoP(context.Background(), "a/b", req)
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost || path != "/v1/tokens/a%2Fb/dpop" || ctype != "application/json" || body != req {
		t.Fatalf("sent %s %s (%s) %+v", method, path, ctype, body)
	}
	if r.AccessToken != "at" || r.TokenType != "DPoP" || r.DPoP != "a.b.c" || r.ExpiresIn != 60 {
		t.Fatalf("answer %+v", r)
	}
	_, err = c.DPoP(context.Background(), "plain", req)
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeDPoPNotEnabled || ae.Status != http.StatusBadRequest {
		t.Fatalf("non-dpop grant: %v", err)
	}
	if _, err := c.DPoP(context.Background(), "", req); err == nil {
		t.Fatal("empty name accepted")
	}
}
