package notify

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"path"
	"slices"
	"strings"
	"text/template"
	"time"
)

//go:embed templates
var templateFS embed.FS

// templates holds, per event name, the text template defining "subject",
// "body" and "link" (a path under LEVQOR_PUBLIC_URL).
var templates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".txt")
		if !ok {
			continue
		}
		out[name] = template.Must(template.New(name).Option("missingkey=error").Funcs(funcs).ParseFS(templateFS, path.Join("templates", e.Name())))
	}
	return out
}()

// funcs are the templates' helpers: when formats an RFC 3339 time for
// people ("6 December 2026, 22:41 UTC"), and leaves anything else as it is.
var funcs = template.FuncMap{
	"when": func(v any) string {
		s := fmt.Sprint(v)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return s
		}
		return t.UTC().Format("2 January 2006, 15:04 UTC")
	},
}

var layout = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/layout.html"))

func hasTemplate(event string) bool { _, ok := templates[event]; return ok }

func templateEvents() []string {
	names := sortedKeys(templates)
	slices.Sort(names)
	return names
}

// Party is an account or a source, as a message names it.
type Party struct {
	ID   string
	Name string
}

// messageData is what a template sees.
type messageData struct {
	// Account is the account the event concerns (empty for the platform's
	// events), Source the backup source it names, if any.
	Account Party
	Source  Party
	// Event is the event's payload, field by field as in its JSON.
	Event map[string]any
	// At is when the event happened (its "at" field), as RFC 3339.
	At string
}

// Message is a rendered notification.
type Message struct {
	Subject string
	Text    string
	HTML    string
}

// Render renders event's message from its JSON payload for the account
// and source it concerns, with links under publicURL and, when
// unsubscribe is set, the link that stops the event's emails.
func Render(event string, payload []byte, account, source Party, publicURL, unsubscribe string) (Message, error) {
	t, ok := templates[event]
	if !ok {
		return Message{}, fmt.Errorf("no message for event %s", event)
	}
	fields := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		return Message{}, fmt.Errorf("decoding %s: %w", event, err)
	}
	data := messageData{Account: account, Source: source, Event: fields}
	if at, ok := fields["at"].(string); ok {
		data.At = at
	}
	part := func(name string) (string, error) {
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, data); err != nil {
			return "", fmt.Errorf("rendering the %s of %s: %w", name, event, err)
		}
		return strings.TrimSpace(b.String()), nil
	}
	subject, err := part("subject")
	if err != nil {
		return Message{}, err
	}
	body, err := part("body")
	if err != nil {
		return Message{}, err
	}
	link, err := part("link")
	if err != nil {
		return Message{}, err
	}
	if link != "" {
		link = strings.TrimRight(publicURL, "/") + link
	}
	m, err := compose(subject, body, link, event, unsubscribe)
	if err != nil {
		return Message{}, fmt.Errorf("rendering the HTML of %s: %w", event, err)
	}
	return m, nil
}

// compose makes a message's text and HTML from its subject, body
// (paragraphs separated by blank lines), link and unsubscribe link (of
// event's emails).
func compose(subject, body, link, event, unsubscribe string) (Message, error) {
	m := Message{Subject: subject, Text: body + "\n\n"}
	if link != "" {
		m.Text += link + "\n\n"
	}
	m.Text += "-- \nLevqor · " + footer + "\n"
	if unsubscribe != "" {
		m.Text += "To stop emails about " + event + ": " + unsubscribe + "\n"
	}
	var paragraphs []string
	for _, p := range strings.Split(body, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			paragraphs = append(paragraphs, p)
		}
	}
	var h bytes.Buffer
	if err := layout.Execute(&h, map[string]any{
		"Subject": subject, "Paragraphs": paragraphs, "Link": link, "Footer": footer,
		"Event": event, "Unsubscribe": unsubscribe,
	}); err != nil {
		return Message{}, err
	}
	m.HTML = h.String()
	return m, nil
}

// footer closes every message.
const footer = "an automatic message about your account"
