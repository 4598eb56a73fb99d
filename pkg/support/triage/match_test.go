package triage

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func mustPhrase(t *testing.T, s string) phrase {
	t.Helper()
	p, err := parsePhrase(s)
	require.NoError(t, err)
	return p
}

func TestPhraseMatching(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		phrase, subject, body string
		want                  bool
	}{
		{"lost data", "", "We LOST DATA yesterday", true},
		{"lost data", "", "we lost, data is fine", true}, // punctuation separates words, nothing more
		{"lost data", "", "we lost metadata", false},
		{"lost data", "", "lost datacenter access", false},
		{"bill", "", "billing question", false},
		{"bill", "", "the bill.", true},
		{"restor*", "", "Restoring now", true},
		{"restor*", "", "our restaurant", false},
		{"restor*", "", "unrestorable", false},
		{"can't restore", "", "I can’t restore", true},
		{"can't restore", "", "I CANT restore", false},
		{"time-sensitive", "", "this is time sensitive", true},
		{"2fa", "", "my 2FA codes", true},
		{"backup* fail*", "", "backups failing", true},
		{"backup* fail*", "", "backup set failed", false},
		{"lost data", "we lost", "data", false}, // never across subject and body
		{"lost data", "we lost data", "", true},
		{"sauvegarde échouée", "", "Sauvegarde ÉCHOUÉE cette nuit", true},
	} {
		got := newText(tc.subject, tc.body).has(mustPhrase(t, tc.phrase), nil)
		require.Equal(t, tc.want, got, "%q in %q / %q", tc.phrase, tc.subject, tc.body)
	}
}

func TestUnlessCancelsOnlyOverlappingMatches(t *testing.T) {
	t.Parallel()
	urgent := mustPhrase(t, "urgent")
	notUrgent := mustPhrase(t, "not urgent")
	for _, tc := range []struct {
		body string
		want bool
	}{
		{"this is not urgent", false},
		{"this is urgent", true},
		{"not urgent for me, but urgent for my boss", true},
		{"not, urgent", false}, // punctuation is a space
	} {
		txt := newText("", tc.body)
		require.Equal(t, tc.want, txt.has(urgent, txt.find(notUrgent)), "%q", tc.body)
	}
}

func TestParsePhraseRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "  ", "?!", "*", "re*store", "**"} {
		_, err := parsePhrase(s)
		require.Error(t, err, "%q", s)
	}
	p := mustPhrase(t, "  Can't  LOG-in* ")
	require.Equal(t, []word{{"can", false}, {"t", false}, {"log", false}, {"in", true}}, p.words)
}
