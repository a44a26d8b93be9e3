package mercure

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
	"github.com/google/uuid"
)

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// readForm reads r's body as a form of at most max bytes; on failure it
// answers w itself (415, 413 or 400) and returns ok false.
func readForm(w http.ResponseWriter, r *http.Request, max int64) (ps []pair, ok bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		fail(w, http.StatusUnsupportedMediaType, "", "the body must be application/x-www-form-urlencoded")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "", "the body is larger than "+strconv.FormatInt(max, 10)+" bytes")
			return nil, false
		}
		badRequest(w, "reading the body: "+err.Error())
		return nil, false
	}
	return parseForm(string(body)), true
}

// publish handles a POST of an update.
func (h *Hub) publish(w http.ResponseWriter, r *http.Request) {
	if h.cfg.ObservePublish != nil {
		start, sw := time.Now(), &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { h.cfg.ObservePublish(sw.code, time.Since(start)) }()
		w = sw
	}
	g, _, src, ok := h.authenticate(w, r, true)
	if !ok {
		return
	}
	if src == auth.Cookie && !h.originAllowed(r) {
		fail(w, http.StatusForbidden, "", "a publish authorized by cookie must come from an allowed origin")
		return
	}
	form, ok := readForm(w, r, h.cfg.MaxBody)
	if !ok {
		return
	}
	u, code, msg := h.parseUpdate(form, h.base(r))
	if code != 0 {
		fail(w, code, "", msg)
		return
	}
	for _, t := range u.Topics {
		if !g.canPublish(t) {
			h.insufficientScope(w, r, "the token does not grant publish on the topic "+strconv.Quote(t))
			return
		}
	}
	if err := h.cfg.Engine.Publish(r.Context(), u); err != nil {
		if errors.Is(err, ErrTooLarge) {
			fail(w, http.StatusRequestEntityTooLarge, "", "the update is larger than the history holds")
			return
		}
		h.cfg.Logger.Error("ssehub: publish failed", "err", err)
		w.Header().Set("Retry-After", "5")
		fail(w, http.StatusServiceUnavailable, "", "the update could not be stored, retry later")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	io.WriteString(w, u.ID)
}

// parseUpdate reads an update from a publish form; base is the hub's URL.
// code is 0 when the update is valid, else the status to answer with msg.
func (h *Hub) parseUpdate(form []pair, base string) (u *Update, code int, msg string) {
	for _, p := range form {
		if !utf8.ValidString(p.name) {
			return nil, http.StatusBadRequest, "field names must be UTF-8"
		}
		if !utf8.ValidString(p.value) {
			return nil, http.StatusBadRequest, "the field " + strconv.Quote(p.name) + " is not UTF-8"
		}
	}
	topics := values(form, "topic")
	switch {
	case len(topics) == 0:
		return nil, http.StatusBadRequest, "a topic field is required"
	case len(topics) > h.cfg.MaxMatchers:
		return nil, http.StatusRequestEntityTooLarge, "more than " + strconv.Itoa(h.cfg.MaxMatchers) + " topic fields"
	}
	tooLong := func(name string) (*Update, int, string) {
		return nil, http.StatusRequestEntityTooLarge, "the " + name + " is longer than " + strconv.Itoa(h.cfg.MaxTopicLength) + " bytes"
	}
	u = &Update{Topics: topics}
	for _, t := range topics {
		switch {
		case len(t) > h.cfg.MaxTopicLength:
			return tooLong("topic")
		case ValidTopic(t) != nil:
			return nil, http.StatusBadRequest, "the topic " + strconv.Quote(t) + ": " + ValidTopic(t).Error()
		case t == Wildcard:
			return nil, http.StatusBadRequest, "the topic \"*\" is reserved for the wildcard matcher"
		case ReservedTopic(t, base):
			return nil, http.StatusBadRequest, "the topic " + strconv.Quote(t) + " addresses the hub's reserved namespace"
		}
	}
	u.Data, _ = first(form, "data")
	_, u.Private = first(form, "private")
	id, present := first(form, "id")
	switch {
	case !present || id == "":
		u.ID = newID()
	case len(id) > h.cfg.MaxTopicLength:
		return tooLong("id")
	case id[0] == '#':
		return nil, http.StatusBadRequest, "the id must not start with #"
	case id == Earliest:
		return nil, http.StatusBadRequest, "the id \"earliest\" is reserved"
	case ValidTopic(id) != nil:
		return nil, http.StatusBadRequest, "the id must not hold control or format characters"
	default:
		// Kept even when a publisher reuses it: the brokers resolve a
		// Last-Event-ID naming several updates to the earliest one
		// they know, as the draft asks (see TestSpecReusedID).
		u.ID = id
	}
	u.Type, _ = first(form, "type")
	switch {
	case len(u.Type) > h.cfg.MaxTopicLength:
		return tooLong("type")
	case ValidTopic(u.Type) != nil:
		return nil, http.StatusBadRequest, "the type must not hold control or format characters"
	case u.Type == subscriptionEventType:
		return nil, http.StatusBadRequest, "the type \"mercure\" is reserved for the hub's events"
	}
	if retry, present := first(form, "retry"); present {
		if retry == "" || strings.Trim(retry, "0123456789") != "" {
			return nil, http.StatusBadRequest, "the retry must consist of ASCII digits"
		}
		n, err := strconv.ParseInt(retry, 10, 32)
		if err != nil {
			return nil, http.StatusRequestEntityTooLarge, "the retry is larger than " + strconv.Itoa(1<<31-1)
		}
		u.Retry = int(n)
	}
	return u, 0, ""
}

// newID returns a hub-generated update ID: a UUID version 7 URN, which
// sorts by time.
func newID() string {
	return "urn:uuid:" + uuid.Must(uuid.NewV7()).String()
}

// originAllowed is the CSRF check for publishes authorized by cookie: the
// Origin (or else the Referer's origin) must be the hub's own (that of
// its configured URL, which a proxy ending TLS hides from r, or that r
// reached) or one of PublishOrigins; a request with neither is refused.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || ref.Scheme == "" || ref.Host == "" {
			return false
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	for _, self := range []string{h.cfg.URL, hubURL(r)} {
		if self != "" && strings.EqualFold(origin, strings.TrimSuffix(self, hubPath)) {
			return true
		}
	}
	for _, o := range h.cfg.PublishOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
