package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestSpecAuthorizationJWKS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	set := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":%q,"y":%q}]}`,
		b64(pad(key.X.Bytes())), b64(pad(key.Y.Bytes())))
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, set)
	}))
	t.Cleanup(jwks.Close)
	h := startRun(t, nil, []string{"-addr", "127.0.0.1:0", "-jwks-url", jwks.URL})
	withKid := func(k *ecdsa.PrivateKey, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, h.claims(detail("publish", "*")))
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Authorization/TokenValidation/JWKS", func(t *testing.T) {
		if code, body, _ := h.publish(t, withKid(key, "k1"), form("topic", "x")); code != http.StatusOK {
			t.Errorf("key of the set: got %d %q, want 200", code, body)
		}
		code, _, res := h.publish(t, withKid(other, "k1"), form("topic", "x"))
		checkStatus(t, "other key, same kid", code, res, http.StatusUnauthorized, challengeInvalidToken)
		code, _, res = h.publish(t, withKid(key, "k2"), form("topic", "x"))
		checkStatus(t, "unknown kid", code, res, http.StatusUnauthorized, challengeInvalidToken)
		hs := signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "at+jwt", h.claims(detail("publish", "*")))
		code, _, res = h.publish(t, hs, form("topic", "x"))
		checkStatus(t, "HS256 against a JWK Set", code, res, http.StatusUnauthorized, challengeInvalidToken)
	})
}
