package service_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
)

// startNATS runs a NATS server with opts on a free loopback port.
func startNATS(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	return s.ClientURL()
}

// connected reports whether a process configured with vars reaches the
// server at url, as the production processes connect.
func connected(t *testing.T, url string, vars map[string]string) bool {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	log := logrus.New()
	log.SetOutput(io.Discard)
	nc, _, err := service.ConnectNATS(url, "test", log, service.NATSOptions(cfg, service.NATSRoleIngest)...)
	require.NoError(t, err)
	defer nc.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if nc.IsConnected() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// TestProcessesConnectWithTheirNATSCredentials: a server that requires a
// user and password refuses a process without them and takes one given
// LEVQOR_NATS_USER and LEVQOR_NATS_PASSWORD; a TLS server is reached
// with LEVQOR_NATS_TLS_CA naming the CA that signed it, and not without.
func TestProcessesConnectWithTheirNATSCredentials(t *testing.T) {
	t.Parallel()
	t.Run("UserAndPassword", func(t *testing.T) {
		t.Parallel()
		url := startNATS(t, &server.Options{Username: "levqor-ingest", Password: "s3cret"})
		require.False(t, connected(t, url, nil), "no credentials, no connection")
		require.False(t, connected(t, url, map[string]string{"LEVQOR_NATS_USER": "levqor-ingest", "LEVQOR_NATS_PASSWORD": "wrong"}))
		require.True(t, connected(t, url, map[string]string{"LEVQOR_NATS_USER": "levqor-ingest", "LEVQOR_NATS_PASSWORD": "s3cret"}))
	})
	t.Run("TLS", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		caFile, serverCert := selfSignedCA(t, dir)
		url := startNATS(t, &server.Options{TLS: true, TLSTimeout: 2, TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}})
		require.False(t, connected(t, url, nil), "the server's certificate is not trusted without the CA")
		require.True(t, connected(t, url, map[string]string{"LEVQOR_NATS_TLS_CA": caFile}))
	})
	t.Run("SettingsAreChecked", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			vars map[string]string
			want string
		}{
			{map[string]string{"LEVQOR_NATS_USER": "u"}, "LEVQOR_NATS_USER and LEVQOR_NATS_PASSWORD go together"},
			{map[string]string{"LEVQOR_NATS_CREDS": "/nonexistent.creds", "LEVQOR_NATS_USER": "u", "LEVQOR_NATS_PASSWORD": "p"}, "not both"},
			{map[string]string{"LEVQOR_NATS_TLS_CA": "/nonexistent/ca.pem"}, "LEVQOR_NATS_TLS_CA"},
			{map[string]string{"LEVQOR_NATS_TLS_CERT": "/c.pem"}, "LEVQOR_NATS_TLS_CERT and LEVQOR_NATS_TLS_KEY go together"},
		} {
			cfg, err := config.FromEnv(func(k string) string { return tc.vars[k] })
			require.NoError(t, err)
			require.ErrorContains(t, cfg.ValidateFor(config.RoleScheduler), tc.want)
		}
	})
}

// selfSignedCA writes a CA certificate to dir and returns its path and a
// server certificate for 127.0.0.1 that it signed.
func selfSignedCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "levqor test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	return caFile, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}
