package sse

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ResponseError reports a response that does not carry an event stream:
// its status is not 200 OK (nor 204 No Content, which ends a subscription
// quietly) or its Content-Type is not text/event-stream. The client does
// not reconnect after it.
type ResponseError struct {
	StatusCode  int    // HTTP status code
	ContentType string // the Content-Type header as received

	// Body is the start of the response body: up to 512 bytes of valid
	// UTF-8 (invalid bytes become U+FFFD, and no character is cut), read
	// for at most a second.
	Body string
}

// maxErrorBody is how much of a response body a ResponseError keeps.
const maxErrorBody = 512

// errorBodyWait bounds the time spent reading it.
const errorBodyWait = time.Second

// Error returns a description starting with "sse: ", followed by the body
// on one line when there is one.
func (e *ResponseError) Error() string {
	var msg string
	if e.StatusCode != http.StatusOK {
		msg = fmt.Sprintf("sse: unexpected response status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	} else {
		msg = fmt.Sprintf("sse: unexpected content type %q, want text/event-stream", e.ContentType)
	}
	body := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(e.Body))
	if body == "" {
		return msg
	}
	return msg + ": " + body
}

// readErrorBody returns the start of a response body as valid UTF-8 of
// at most maxErrorBody bytes.
func readErrorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxErrorBody))
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		ru, size := utf8.DecodeRune(b)
		if ru == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(b) && len(b) < utf8.UTFMax {
				break // cut off by the limit: drop the partial character
			}
			size = invalidLen(b)
		}
		if len(out)+utf8.RuneLen(ru) > maxErrorBody {
			break
		}
		out = utf8.AppendRune(out, ru)
		b = b[size:]
	}
	return string(out)
}

// maxRedirects is how many redirects in a row the client follows when
// its HTTP client has no CheckRedirect, as net/http does.
const maxRedirects = 10

// httpClient returns a copy of the HTTP client whose redirect policy
// marks its refusals, so that they end the subscription. The copy shares
// the original's Transport, and so its connections.
func (c *Client) httpClient() *http.Client {
	hc := http.DefaultClient
	if c.HTTPClient != nil {
		hc = c.HTTPClient
	}
	cp := *hc
	check := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		var err error
		if check != nil {
			err = check(req, via)
		} else if len(via) >= maxRedirects {
			err = fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if err != nil && !errors.Is(err, http.ErrUseLastResponse) {
			return &redirectError{err}
		}
		return err
	}
	return &cp
}

// redirectError carries a refusal of the redirect policy through Do.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }
