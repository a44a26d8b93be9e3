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
	claims := jwt.MapClaims{"iss": "i", "aud": "hub", "exp": time.Now().Add(time.Hour).Unix(), "sub": "alice",
		"authorization_details": []any{
			map[string]any{"type": "other"},
			map[string]any{"type": "mercure", "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "old"}}},
			map[string]any{"type": auth.DetailType, "actions": []string{"subscribe", "future"}, "topics": []any{
				map[string]any{"match": "a"}, map[string]any{"match": "b/:x", "match_type": "urlpattern"},
			}, "payload": map[string]any{"k": 1}},
			map[string]any{"type": auth.DetailType, "actions": []string{"future"}, "topics": []any{map[string]any{"match": "*"}}},
		}}
	tok, err := validator().Validate(signed(t, claims))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(tok.Details)
	want := `[{"Actions":["subscribe"],"Topics":[{"Match":"a","MatchType":"exact"},{"Match":"b/:x","MatchType":"urlpattern"}],"Payload":{"k":1}},{"Actions":null,"Topics":[{"Match":"*","MatchType":"exact"}],"Payload":null}]`
	if string(got) != want || tok.Subject != "alice" {
		t.Errorf("got %s sub %q, want %s sub alice", got, tok.Subject, want)
	}
}

func TestValidateRefusals(t *testing.T) {
	v := validator()
	v.ValidateTopic = func(mt, m string) error {
		if mt != "exact" && mt != "urlpattern" {
			return errors.New("bad type")
		}
		return nil
	}
	exp := time.Now().Add(time.Hour).Unix()
	detail := func(d map[string]any) []any {
		d["type"] = auth.DetailType
		return []any{map[string]any{"type": auth.DetailType, "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "*"}}}, d}
	}
	cases := map[string]jwt.MapClaims{
		"NoExp":            {"iss": "i", "aud": "hub"},
		"NoIss":            {"aud": "hub", "exp": exp},
		"Audience":         {"iss": "i", "aud": "x", "exp": exp},
		"Details":          {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": "x"},
		"MatchType":        {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"actions": []string{"publish"}, "topics": []any{map[string]any{"match": "a", "match_type": "Exact"}}})},
		"NoType":           {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": []any{map[string]any{"actions": []string{"publish"}}}},
		"NoActions":        {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"topics": []any{map[string]any{"match": "a"}}})},
		"ActionNotAString": {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"actions": []any{"publish", 1}, "topics": []any{map[string]any{"match": "a"}}})},
		"NoTopics":         {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"actions": []string{"publish"}, "topics": []any{}})},
		"TopicNotObject":   {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"actions": []string{"publish"}, "topics": []any{"a"}})},
		"PayloadNotObject": {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": detail(map[string]any{"actions": []string{"subscribe"}, "topics": []any{map[string]any{"match": "a"}}, "payload": "x"})},
		"TooManyDets":      {"iss": "i", "aud": "hub", "exp": exp, "authorization_details": manyDetails(auth.MaxDetails + 1)},
	}
	for name, c := range cases {
		if _, err := v.Validate(signed(t, c)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := v.Validate(signed(t, jwt.MapClaims{"iss": "i", "aud": "hub", "exp": exp, "authorization_details": manyDetails(auth.MaxDetails)})); err != nil {
		t.Errorf("%d details: got %v, want them accepted", auth.MaxDetails, err)
	}
}

func manyDetails(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"type": auth.DetailType, "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "*"}}}
	}
	return out
}

func TestExtract(t *testing.T) {
	cases := []struct {
		name    string
		url     string
		header  http.Header
		want    string
		source  auth.Source
		wantErr bool
	}{
		{"None", "/", nil, "", auth.None, false},
		{"HeaderWinsOverCookie", "/", http.Header{"Authorization": {"Bearer h"}, "Cookie": {"c=k"}}, "h", auth.Header, false},
		{"SchemeCase", "/", http.Header{"Authorization": {"bearer h"}}, "h", auth.Header, false},
		{"QueryNeverRead", "/?access_token=q", nil, "", auth.None, false},
		{"QueryNeverReadCookieUsed", "/?access_token=q", http.Header{"Cookie": {"c=k"}}, "k", auth.Cookie, false},
		{"Cookie", "/", http.Header{"Cookie": {"c=k"}}, "k", auth.Cookie, false},
		{"SecondCookie", "/", http.Header{"Cookie": {"d=k"}}, "k", auth.Cookie, false},
		{"FirstCookieWins", "/", http.Header{"Cookie": {"d=l; c=k"}}, "k", auth.Cookie, false},
		{"OtherCookie", "/", http.Header{"Cookie": {"e=k"}}, "", auth.None, false},
		{"Basic", "/", http.Header{"Authorization": {"Basic x"}}, "", auth.Header, true},
		{"NoToken", "/", http.Header{"Authorization": {"Bearer "}}, "", auth.Header, true},
		{"TwoHeaders", "/", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", auth.Header, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", c.url, nil)
			for k, v := range c.header {
				r.Header[k] = v
			}
			got, src, err := auth.Extract(r, "c", "d")
			if got != c.want || src != c.source || (err != nil) != c.wantErr {
				t.Errorf("got %q %v %v, want %q %v error=%v", got, src, err, c.want, c.source, c.wantErr)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(`[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"*"}]}]`)
	f.Add(`[{"type":"https://mercure.rocks/authorization-detail","actions":["x"],"topics":[{"match":"a","match_type":"urlpattern"}]}]`)
	f.Add(`[{"type":"https://mercure.rocks/authorization-detail","actions":[],"topics":[]}]`)
	f.Add(`{}`)
	v := validator()
	exp := time.Now().Add(time.Hour).Unix()
	f.Fuzz(func(t *testing.T, details string) {
		var raw json.RawMessage
		if json.Unmarshal([]byte(details), &raw) != nil {
			return
		}
		tok, err := v.Validate(signed(t, jwt.MapClaims{"iss": "i", "aud": "hub", "exp": exp, "authorization_details": raw}))
		if err != nil {
			return
		}
		for _, d := range tok.Details {
			if len(d.Topics) == 0 {
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
