package notify_test

import (
	"errors"
	"io"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// mailServer is a real SMTP server on loopback that keeps what it
// receives. It can be told to answer "try later" to the next deliveries,
// and refuses recipients at refused.example for good.
type mailServer struct {
	addr string

	mu       sync.Mutex
	received []*mail.Message
	raw      []string
	busy     int // deliveries still to answer 451
}

func startMailServer(t *testing.T) *mailServer {
	t.Helper()
	return startMailServerOn(t, "127.0.0.1:0")
}

// startMailServerOn starts the mail server listening on addr.
func startMailServerOn(t *testing.T, addr string) *mailServer {
	t.Helper()
	ms := &mailServer{}
	srv := smtp.NewServer(ms)
	srv.Domain = "mail.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	ms.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ms
}

func (ms *mailServer) port(t *testing.T) int {
	_, p, err := net.SplitHostPort(ms.addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// failNext makes the next n deliveries fail with 451.
func (ms *mailServer) failNext(n int) {
	ms.mu.Lock()
	ms.busy = n
	ms.mu.Unlock()
}

// messages returns what arrived, oldest first.
func (ms *mailServer) messages() []*mail.Message {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]*mail.Message(nil), ms.received...)
}

func (ms *mailServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{ms: ms}, nil }

type mailSession struct {
	ms *mailServer
}

func (s *mailSession) Mail(string, *smtp.MailOptions) error {
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	if s.ms.busy > 0 {
		s.ms.busy--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "mail system busy, try later"}
	}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasSuffix(to, "@refused.example") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		return errors.New("unreadable message")
	}
	s.ms.mu.Lock()
	s.ms.received = append(s.ms.received, m)
	s.ms.raw = append(s.ms.raw, string(b))
	s.ms.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        {}
func (s *mailSession) Logout() error { return nil }
