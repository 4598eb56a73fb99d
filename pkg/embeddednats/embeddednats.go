// Package embeddednats runs a NATS server with JetStream inside the current
// process. Dev mode uses it so that Levqor needs no external services, and
// tests use it so that each test owns a server it can stop and restart to
// inject faults.
package embeddednats

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ReadyTimeoutDefault is how long Start waits for the server to accept
// connections before giving up.
const ReadyTimeoutDefault = 10 * time.Second

// Options configure an embedded server.
type Options struct {
	// Addr is host:port to listen on. Port 0 picks a free port; the chosen
	// port is kept across Restart so clients can reconnect.
	Addr string
	// StoreDir is where JetStream keeps its file storage. Required: state
	// must survive a restart.
	StoreDir string
	// SyncAlways makes JetStream fsync every write before acknowledging it,
	// at a throughput cost. Recommended for billing data.
	SyncAlways bool
	// ServerName names the server in monitoring output and logs.
	ServerName string
	// Logger receives the server's own log lines; nil keeps it quiet.
	Logger server.Logger
	// User and Password, when set, are the one user the server accepts;
	// it refuses clients without them. Empty, it accepts anyone.
	User, Password string
}

// Server is a running embedded NATS server.
type Server struct {
	opts Options
	host string
	port int
	srv  *server.Server
}

// Start launches a server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embeddednats: StoreDir is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("embeddednats: address %q: %w", opts.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embeddednats: port in %q: %w", opts.Addr, err)
	}
	if port == 0 {
		// Reserve the port now so that a Restart listens on the same one.
		port, err = freePort(host)
		if err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, host: host, port: port}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("embeddednats: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	name := s.opts.ServerName
	if name == "" {
		name = "levqor-embedded"
	}
	so := &server.Options{
		ServerName: name,
		Host:       s.host,
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.opts.StoreDir,
		SyncAlways: s.opts.SyncAlways,
		NoSigs:     true,
		NoLog:      s.opts.Logger == nil,
		MaxPayload: 8 * 1024 * 1024,
		Username:   s.opts.User,
		Password:   s.opts.Password,
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("embeddednats: configuring server: %w", err)
	}
	// The server reports a failure to listen or to open its store only
	// through its logger's Fatalf, and ReadyForConnections would wait out
	// its whole timeout: watch for it so a taken port fails at once.
	watch := &watchLogger{next: s.opts.Logger, fatal: make(chan string, 1)}
	srv.SetLoggerV2(watch, false, false, false)
	go srv.Start()
	deadline := time.Now().Add(ReadyTimeoutDefault)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-watch.fatal:
			srv.Shutdown()
			srv.WaitForShutdown()
			return startError(s.Addr(), msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return fmt.Errorf("embeddednats: server on %s not ready after %s", s.Addr(), ReadyTimeoutDefault)
		}
	}
	s.srv = srv
	return nil
}

// startError turns the server's fatal log line into an error; a taken
// address wraps syscall.EADDRINUSE so callers can say which setting to
// change.
func startError(addr, msg string) error {
	if strings.Contains(msg, "address already in use") {
		return fmt.Errorf("embeddednats: %s is already in use by another process: %w", addr, syscall.EADDRINUSE)
	}
	return fmt.Errorf("embeddednats: server on %s failed to start: %s", addr, msg)
}

// watchLogger passes the server's log lines on to next (if any) and
// reports its first Fatalf. It never exits the process, as the server's
// own loggers do on Fatalf.
type watchLogger struct {
	next  server.Logger
	fatal chan string
}

var _ server.Logger = (*watchLogger)(nil)

func (l *watchLogger) Noticef(format string, v ...any) {
	if l.next != nil {
		l.next.Noticef(format, v...)
	}
}

func (l *watchLogger) Warnf(format string, v ...any) {
	if l.next != nil {
		l.next.Warnf(format, v...)
	}
}

func (l *watchLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.next != nil {
		l.next.Errorf("%s", msg)
	}
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l *watchLogger) Errorf(format string, v ...any) {
	if l.next != nil {
		l.next.Errorf(format, v...)
	}
}

func (l *watchLogger) Debugf(format string, v ...any) {
	if l.next != nil {
		l.next.Debugf(format, v...)
	}
}

func (l *watchLogger) Tracef(format string, v ...any) {
	if l.next != nil {
		l.next.Tracef(format, v...)
	}
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string {
	return fmt.Sprintf("nats://%s", net.JoinHostPort(s.host, strconv.Itoa(s.port)))
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// Running reports whether the server is up.
func (s *Server) Running() bool { return s.srv != nil && s.srv.Running() }

// Stop shuts the server down and waits until it has released its port and
// store. Calling Stop on a stopped server does nothing.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart stops the server (if running) and starts it again on the same
// address and store, as an operator restarting NATS would.
func (s *Server) Restart() error {
	s.Stop()
	var err error
	// The kernel may need a moment to release the port.
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
