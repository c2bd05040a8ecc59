package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Reload asks the daemon to read its configuration file again (POST
// /v1/reload, operators only) and returns once the new configuration is in
// effect. An invalid file is an *APIError with Status 422 whose
// Description is the file's error; the running configuration stays.
func (c *Client) Reload(ctx context.Context) (*ReloadResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tokend/v1/reload", nil)
	if err != nil {
		return nil, fmt.Errorf("tokend: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokend-cli")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("tokend: reading the answer: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("tokend: the answer is larger than %d bytes", maxResponse)
	}
	if resp.StatusCode == http.StatusOK {
		var out ReloadResponse
		if err := decodeAnswer(body, &out); err != nil {
			return nil, err
		}
		return &out, nil
	}
	e := &APIError{Status: resp.StatusCode}
	var er ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != "" {
		e.Code, e.Description = er.Error, er.ErrorDescription
	} else {
		// Not the API's JSON (a daemon without /v1/reload answers 404
		// text): show its first line.
		line, _, _ := strings.Cut(string(bytes.TrimSpace(body)), "\n")
		if len(line) > 200 {
			line = line[:200]
		}
		e.Description = line
	}
	return nil, e
}
