package auth_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
)

// TestLoadKeyPKCS8 loads private keys in PKCS #8 PEM files: each yields
// its public key and the algorithms verifying it.
func TestLoadKeyPKCS8(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		key      crypto.Signer
		wantAlgs []string
	}{
		{"RSA", rsaKey, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"ECDSA", ecKey, []string{"ES384"}},
		{"Ed25519", edKey, []string{"EdDSA"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(c.key)
			if err != nil {
				t.Fatal(err)
			}
			key, algs, err := auth.LoadKey(writePEM(t, der))
			if err != nil {
				t.Fatalf("LoadKey: got error %v, want none", err)
			}
			if want := c.key.Public(); !reflect.DeepEqual(key, want) {
				t.Errorf("key: got %T %v, want %T %v", key, key, want, want)
			}
			if !reflect.DeepEqual(algs, c.wantAlgs) {
				t.Errorf("algorithms: got %v, want %v", algs, c.wantAlgs)
			}
		})
	}
	t.Run("X25519", func(t *testing.T) {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		const want = "-jwt-key: unsupported key type <nil>"
		if _, _, err := auth.LoadKey(writePEM(t, der)); err == nil || err.Error() != want {
			t.Errorf("LoadKey: got error %v, want %q", err, want)
		}
	})
}

func writePEM(t *testing.T, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
