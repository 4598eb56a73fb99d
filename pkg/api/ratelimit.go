package api

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/httpjson"
)

// limiter keeps one token bucket per API key.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// sweepEvery is how many calls pass between sweeps of idle buckets.
const sweepEvery = 1024

func newLimiter(r rate.Limit, burst int) *limiter {
	return &limiter{rate: r, burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket at now, or says how long until one
// is available.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls%sweepEvery == 0 {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets buckets idle long enough to have refilled: a new bucket is
// the same as a full one.
func (l *limiter) sweep(now time.Time) {
	full := time.Duration(float64(l.burst) / float64(l.rate) * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.seen) > full {
			delete(l.buckets, k)
		}
	}
}

// rateLimit answers 429 with Retry-After when the caller's key has no
// token left.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.Delegated(r.Context()) {
			// A console page, which makes several calls: the console
			// limits each person's pages instead.
			next.ServeHTTP(w, r)
			return
		}
		p := principal(r)
		ok, wait := s.limiter.allow(p.KeyID, s.now())
		if !ok {
			secs := int(math.Ceil(wait.Seconds()))
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			httpjson.Error(w, http.StatusTooManyRequests, "rate_limited",
				"too many requests for this API key; retry after "+strconv.Itoa(secs)+"s", "")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Failed authentications per client address: a budget of
// AuthFailureBurst, refilled at AuthFailureRate per second. An address
// that spent it is answered 429 before its key is even looked up.
const (
	AuthFailureBurst = 20
	AuthFailureRate  = 1
)

// spent reports whether key has no token left at now, and how long
// until it has one; it takes none.
func (l *limiter) spent(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok || b.lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - b.lim.TokensAt(now)) / float64(l.rate) * float64(time.Second))
}

// clientAddr is the address a request came from: the connection's peer,
// unless the peer is one of the trusted proxies (LEVQOR_TRUSTED_PROXIES).
// Then it is the nearest address in X-Forwarded-For that is not a trusted
// proxy: each proxy appends the address it saw, so what lies further left
// was written by the client and may be a lie. Without trusted proxies the
// header is never read, so that one client cannot lock others out by
// claiming their address.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.cfg.TrustedProxies) == 0 || !s.trustedProxy(host) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			return host // malformed: trust nothing further left
		}
		if !s.trustedProxy(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (s *Server) trustedProxy(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// failGate slows guessing API keys, and flooding their lookup: an address
// whose recent authentications failed AuthFailureBurst times is answered
// 429, without a lookup, until its budget refills (AuthFailureRate a
// second). Good keys spend nothing.
func (s *Server) failGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := s.clientAddr(r)
		if spent, wait := s.failures.spent(addr, s.now()); spent {
			secs := max(int(math.Ceil(wait.Seconds())), 1)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			httpjson.Error(w, http.StatusTooManyRequests, "rate_limited",
				"too many failed authentications from this address; retry after "+strconv.Itoa(secs)+"s", "")
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			s.failures.allow(addr, s.now())
		}
	})
}

// ClientAddr is the client's address as the API's per-address limits see
// it (X-Forwarded-For from LEVQOR_TRUSTED_PROXIES only), for the console's
// sign-in limits.
func (s *Server) ClientAddr(r *http.Request) string { return s.clientAddr(r) }
