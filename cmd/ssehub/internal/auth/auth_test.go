package auth_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func signed(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["typ"] = "at+jwt"
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validator() *auth.Validator {
	return &auth.Validator{Keyfunc: auth.StaticKeyfunc(secret), Algorithms: []string{"HS256"}, Audience: "hub"}
}

func TestValidateDetails(t *testing.T) {
	claims := jwt.MapClaims{"aud": "hub", "exp": time.Now().Add(time.Hour).Unix(), "sub": "alice",
		"authorization_details": []any{
			map[string]any{"type": "other"},
			map[string]any{"type": "mercure", "actions": []string{"subscribe"}, "topics": []any{
				map[string]any{"match": "a"}, map[string]any{"match": "b/:x", "matchType": "URLPattern"},
			}, "payload": map[string]any{"k": 1}},
		}}
	tok, err := validator().Validate(signed(t, claims))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(tok.Details)
	want := `[{"Actions":["subscribe"],"Topics":[{"match":"a","matchType":"Exact"},{"match":"b/:x","matchType":"URLPattern"}],"Payload":{"k":1}}]`
	if string(got) != want || tok.Subject != "alice" {
		t.Errorf("got %s sub %q, want %s sub alice", got, tok.Subject, want)
	}
}

func TestValidateRefusals(t *testing.T) {
	v := validator()
	v.ValidateTopic = func(mt, m string) error {
		if mt != "Exact" && mt != "URLPattern" {
			return errors.New("bad type")
		}
		return nil
	}
	exp := time.Now().Add(time.Hour).Unix()
	cases := map[string]jwt.MapClaims{
		"NoExp":       {"aud": "hub"},
		"Audience":    {"aud": "x", "exp": exp},
		"Details":     {"aud": "hub", "exp": exp, "authorization_details": "x"},
		"MatchType":   {"aud": "hub", "exp": exp, "authorization_details": []any{map[string]any{"type": "mercure", "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "a", "matchType": "Regex"}}}}},
		"NoType":      {"aud": "hub", "exp": exp, "authorization_details": []any{map[string]any{"actions": []string{"publish"}}}},
		"TooManyDets": {"aud": "hub", "exp": exp, "authorization_details": manyDetails(auth.MaxDetails + 1)},
	}
	for name, c := range cases {
		if _, err := v.Validate(signed(t, c)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := v.Validate(signed(t, jwt.MapClaims{"aud": "hub", "exp": exp, "authorization_details": manyDetails(auth.MaxDetails)})); err != nil {
		t.Errorf("%d details: got %v, want them accepted", auth.MaxDetails, err)
	}
}

func manyDetails(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"type": "mercure", "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "*"}}}
	}
	return out
}

func TestExtract(t *testing.T) {
	cases := []struct {
		name    string
		url     string
		header  http.Header
		query   bool
		want    string
		source  auth.Source
		wantErr bool
	}{
		{"None", "/", nil, true, "", auth.None, false},
		{"Header", "/?access_token=q", http.Header{"Authorization": {"Bearer h"}, "Cookie": {"c=k"}}, true, "h", auth.Header, false},
		{"SchemeCase", "/", http.Header{"Authorization": {"bearer h"}}, true, "h", auth.Header, false},
		{"Query", "/?access_token=q", http.Header{"Cookie": {"c=k"}}, true, "q", auth.Query, false},
		{"QueryRefused", "/?access_token=q", http.Header{"Cookie": {"c=k"}}, false, "k", auth.Cookie, false},
		{"Cookie", "/", http.Header{"Cookie": {"c=k"}}, true, "k", auth.Cookie, false},
		{"OtherCookie", "/", http.Header{"Cookie": {"d=k"}}, true, "", auth.None, false},
		{"Basic", "/", http.Header{"Authorization": {"Basic x"}}, true, "", auth.Header, true},
		{"TwoHeaders", "/", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, true, "", auth.Header, true},
		{"TwoQueries", "/?access_token=a&access_token=b", nil, true, "", auth.Query, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", c.url, nil)
			for k, v := range c.header {
				r.Header[k] = v
			}
			got, src, err := auth.Extract(r, "c", c.query)
			if got != c.want || src != c.source || (err != nil) != c.wantErr {
				t.Errorf("got %q %v %v, want %q %v error=%v", got, src, err, c.want, c.source, c.wantErr)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(`[{"type":"mercure","actions":["publish"],"topics":[{"match":"*"}]}]`)
	f.Add(`[{"type":"mercure","actions":[],"topics":[]}]`)
	f.Add(`{}`)
	v := validator()
	exp := time.Now().Add(time.Hour).Unix()
	f.Fuzz(func(t *testing.T, details string) {
		var raw json.RawMessage
		if json.Unmarshal([]byte(details), &raw) != nil {
			return
		}
		tok, err := v.Validate(signed(t, jwt.MapClaims{"aud": "hub", "exp": exp, "authorization_details": raw}))
		if err != nil {
			return
		}
		for _, d := range tok.Details {
			if len(d.Actions) == 0 || len(d.Topics) == 0 {
				t.Fatalf("accepted an empty detail: %+v from %s", d, details)
			}
			for _, a := range d.Actions {
				if a != auth.Publish && a != auth.Subscribe {
					t.Fatalf("accepted action %q from %s", a, details)
				}
			}
		}
	})
}
