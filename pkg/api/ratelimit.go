package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

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
