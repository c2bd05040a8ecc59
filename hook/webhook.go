package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tokend/tokend/oauth"
)

// post delivers e to the webhook, retrying with backoff on network
// errors, 429 and 5xx.
func (r *runner) post(e *Event) (string, error) {
	if err := oauth.CheckEndpointURL(r.cfg.URL); err != nil {
		return "failure", errors.New("webhook URL refused: https is required unless the host is loopback")
	}
	body, err := json.Marshal(e)
	if err != nil {
		return "failure", err
	}
	wait := backoffFirst
	result := "failure"
	for attempt := 1; ; attempt++ {
		var retry bool
		result, retry, err = r.postOnce(e, body)
		if !retry || attempt == attempts {
			return result, err
		}
		r.s.eng.Log.Debug("webhook failed, retrying", "hook", r.label, "event", e.Event, "grant", e.Grant, "attempt", attempt, "err", err, "retry_in", wait)
		if !r.s.eng.Wait(r.s.ctx, wait) {
			return result, err
		}
		wait = min(2*wait, backoffMax)
	}
}

func (r *runner) postOnce(e *Event, body []byte) (result string, retry bool, err error) {
	ctx, cancel := context.WithTimeout(r.s.ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return "failure", false, errors.New("webhook URL does not parse")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokend-hook")
	req.Header.Set(HeaderEvent, e.Event)
	req.Header.Set(HeaderDelivery, e.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign([]byte(r.cfg.Secret.Reveal()), ts, body))
	resp, err := r.s.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "timeout", true, fmt.Errorf("no answer within %s", r.cfg.Timeout)
		}
		// The error names the URL, which may carry credentials: keep
		// only the reason.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap()
		}
		return "failure", true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return "success", false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "failure", true, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return "failure", false, fmt.Errorf("webhook answered %s", resp.Status)
}
