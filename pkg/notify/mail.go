package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// Sender delivers one rendered notification through its channel: email
// (SMTPMailer, DirMailer) or chat (Chat).
type Sender interface {
	// Send delivers n. An error wrapped with bus.Permanent means the
	// message can never be delivered as it is (the server refused the
	// address); any other error is worth retrying.
	Send(ctx context.Context, n *store.Notification) error
}

// SMTP settings' defaults.
const (
	// SMTPPortDefault is LEVQOR_SMTP_PORT: the submission port, STARTTLS.
	SMTPPortDefault = 587
	// SMTPTimeoutDefault bounds one connection and its conversation.
	SMTPTimeoutDefault = 30 * time.Second
	// FromDefault is LEVQOR_MAIL_FROM.
	FromDefault = "Levqor <notifications@levqor.example>"
)

// SMTP TLS modes (LEVQOR_SMTP_TLS).
const (
	// TLSStartTLS upgrades the connection with STARTTLS and refuses a
	// server that cannot.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (port 465).
	TLSImplicit = "tls"
	// TLSNone sends in the clear: for a relay on the same host or in tests.
	TLSNone = "none"
)

// SMTPConfig says how to reach the mail server.
type SMTPConfig struct {
	// Host is the server's name (LEVQOR_SMTP_HOST); required.
	Host string
	// Port defaults to SMTPPortDefault.
	Port int
	// TLS is TLSStartTLS (the default), TLSImplicit or TLSNone.
	TLS string
	// Username and Password authenticate with PLAIN (over TLS); empty
	// Username sends without authenticating.
	Username, Password string
	// From is the sender; FromDefault when empty.
	From string
	// Timeout defaults to SMTPTimeoutDefault.
	Timeout time.Duration
}

// Validate reports the first setting that cannot work, naming its
// variable.
func (c SMTPConfig) Validate() error {
	switch {
	case c.Host == "":
		return errors.New("LEVQOR_SMTP_HOST: required")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("LEVQOR_SMTP_PORT: %d is not a port", c.Port)
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("LEVQOR_SMTP_TLS: %q: want %s, %s or %s", c.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if _, err := message(&store.Notification{ID: "ntf_check", Recipient: "check@example.com", Subject: "check"}, c.from()); err != nil {
		return fmt.Errorf("LEVQOR_MAIL_FROM: %w", err)
	}
	return nil
}

func (c SMTPConfig) from() string {
	if c.From == "" {
		return FromDefault
	}
	return c.From
}

// SMTPMailer sends through a mail server, one connection per message.
type SMTPMailer struct {
	cfg SMTPConfig
}

// NewSMTP checks cfg and returns a mailer using it.
func NewSMTP(cfg SMTPConfig) (*SMTPMailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = SMTPPortDefault
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = SMTPTimeoutDefault
	}
	return &SMTPMailer{cfg: cfg}, nil
}

// Send delivers n to the server. A refusal the server calls permanent
// (5xx) is returned as bus.Permanent.
func (s *SMTPMailer) Send(ctx context.Context, n *store.Notification) error {
	msg, err := message(n, s.cfg.from())
	if err != nil {
		return bus.Permanent(err)
	}
	opts := []mail.Option{mail.WithPort(s.cfg.Port), mail.WithTimeout(s.cfg.Timeout)}
	switch s.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password))
	}
	c, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Host, err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		var se *mail.SendError
		if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 {
			return bus.Permanent(fmt.Errorf("smtp %s refused the message for good: %w", s.cfg.Host, err))
		}
		return fmt.Errorf("smtp %s: %w", s.cfg.Host, err)
	}
	return nil
}

// DirMailer writes each message as an .eml file into a directory instead
// of sending it: dev mode's mailer, so that notifications can be read
// without a mail server.
type DirMailer struct {
	// Dir is where the files go; it is created when missing.
	Dir string
	// From is the sender; FromDefault when empty.
	From string
}

// Send writes n to <Dir>/<notification id>.eml, replacing the file a
// previous attempt may have left.
func (d DirMailer) Send(_ context.Context, n *store.Notification) error {
	from := d.From
	if from == "" {
		from = FromDefault
	}
	msg, err := message(n, from)
	if err != nil {
		return bus.Permanent(err)
	}
	if err := os.MkdirAll(d.Dir, 0o750); err != nil {
		return fmt.Errorf("mail directory: %w", err)
	}
	tmp := filepath.Join(d.Dir, "."+n.ID+".eml.tmp")
	if err := msg.WriteToFile(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, d.Path(n.ID)); err != nil {
		return fmt.Errorf("writing %s: %w", d.Path(n.ID), err)
	}
	return nil
}

// Path is the file the notification id is written to.
func (d DirMailer) Path(id string) string { return filepath.Join(d.Dir, id+".eml") }

// message builds the MIME message of n: text with an HTML alternative, a
// Message-ID derived from the notification's id so that a resend is
// recognisably the same message.
func message(n *store.Notification, from string) (*mail.Msg, error) {
	m := mail.NewMsg()
	if err := m.From(from); err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	if err := m.To(n.Recipient); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", n.Recipient, err)
	}
	m.Subject(n.Subject)
	m.SetMessageIDWithValue(n.ID + "@levqor")
	m.SetDateWithValue(n.CreatedAt)
	m.SetGenHeader("X-Levqor-Event", n.Event)
	m.SetGenHeader("X-Levqor-Notification", n.ID)
	if u := n.UnsubscribeURL; u != "" {
		// One-click (RFC 8058) only over https, as it requires; a plain
		// http link (dev mode) is still offered (RFC 2369).
		if strings.HasPrefix(u, "https://") {
			if err := m.SetListUnsubscribeOneClick(u); err != nil {
				return nil, fmt.Errorf("unsubscribe link: %w", err)
			}
		} else {
			m.SetListUnsubscribe(u)
		}
	}
	m.SetBodyString(mail.TypeTextPlain, n.BodyText)
	if strings.TrimSpace(n.BodyHTML) != "" {
		m.AddAlternativeString(mail.TypeTextHTML, n.BodyHTML)
	}
	return m, nil
}
