package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLength is the least length of an HMAC secret in bytes: the
// 256 bits RFC 7518 requires for HS256.
const MinSecretLength = 32

// LoadKey reads a verification key: the contents of a PEM file when spec
// names one (a public key, certificate or private key), else spec itself
// as an HMAC secret. It also returns the algorithms the key can verify,
// the first being the default.
func LoadKey(spec string) (key any, algs []string, err error) {
	if data, err := os.ReadFile(spec); err == nil && strings.Contains(string(data), "-----BEGIN") {
		return parsePEM(data)
	}
	if len(spec) < MinSecretLength {
		return nil, nil, fmt.Errorf("-jwt-key: an HMAC secret needs at least %d bytes (or give a PEM file)", MinSecretLength)
	}
	return []byte(spec), []string{"HS256", "HS384", "HS512"}, nil
}

func parsePEM(data []byte) (any, []string, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("-jwt-key: no PEM block in the file")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	case "PRIVATE KEY":
		var k any
		if k, err = x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok { // RSA, ECDSA, Ed25519
				key = s.Public()
			}
		}
	case "RSA PRIVATE KEY":
		var k *rsa.PrivateKey
		if k, err = x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			key = &k.PublicKey
		}
	case "EC PRIVATE KEY":
		var k *ecdsa.PrivateKey
		if k, err = x509.ParseECPrivateKey(block.Bytes); err == nil {
			key = &k.PublicKey
		}
	default:
		return nil, nil, fmt.Errorf("-jwt-key: unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("-jwt-key: %w", err)
	}
	algs := algsFor(key)
	if algs == nil {
		return nil, nil, fmt.Errorf("-jwt-key: unsupported key type %T", key)
	}
	return key, algs, nil
}

// algsFor returns the algorithms a public key verifies, default first.
func algsFor(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// JWKSAlgorithms is the default allowlist for keys from a JWK Set.
var JWKSAlgorithms = []string{"EdDSA", "ES256", "RS256"}

// CheckAlgorithms returns an error unless every alg in want is one the
// key verifies (supported lists them).
func CheckAlgorithms(want, supported []string) error {
	for _, a := range want {
		if a == "none" {
			return errors.New("-jwt-alg: \"none\" is never accepted")
		}
		if jwt.GetSigningMethod(a) == nil {
			return fmt.Errorf("-jwt-alg: unknown algorithm %q", a)
		}
		ok := false
		for _, s := range supported {
			ok = ok || s == a
		}
		if !ok {
			return fmt.Errorf("-jwt-alg: %s does not fit the key (it verifies %s)", a, strings.Join(supported, ", "))
		}
	}
	return nil
}

// StaticKeyfunc returns a keyfunc always choosing key.
func StaticKeyfunc(key any) jwt.Keyfunc {
	return func(*jwt.Token) (any, error) { return key, nil }
}

// JWKSKeyfunc returns a keyfunc choosing keys by kid from the JWK Set at
// url, refreshed in the background until ctx ends.
func JWKSKeyfunc(ctx context.Context, url string) (jwt.Keyfunc, error) {
	k, err := keyfunc.NewDefaultCtx(ctx, []string{url})
	if err != nil {
		return nil, fmt.Errorf("-jwks-url: %w", err)
	}
	return k.Keyfunc, nil
}
