// Package heapwatch samples the Go heap while something runs, for the
// benchmarks and tests that show memory stays flat whatever the size of
// what is streamed.
package heapwatch

import (
	"runtime"
	"sync"
	"time"
)

// Sampler records the peak of the Go heap from Start to Done.
type Sampler struct {
	stop      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	base      uint64
	peakInuse uint64
	peakSys   uint64
}

// Peaks are a Sampler's findings, in bytes: the heap in use at its peak,
// its growth over the start, and the heap obtained from the OS.
type Peaks struct {
	InUse, Growth, Sys uint64
}

// Start collects garbage, notes the heap in use, and samples it every
// 5 ms until Done.
func Start() *Sampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &Sampler{stop: make(chan struct{}), base: ms.HeapInuse, peakInuse: ms.HeapInuse, peakSys: ms.HeapSys}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
				h.sample()
			}
		}
	}()
	return h
}

func (h *Sampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peakInuse = max(h.peakInuse, ms.HeapInuse)
	h.peakSys = max(h.peakSys, ms.HeapSys)
}

// Done stops sampling and returns the peaks.
func (h *Sampler) Done() Peaks {
	close(h.stop)
	h.wg.Wait()
	h.sample()
	return Peaks{InUse: h.peakInuse, Growth: h.peakInuse - h.base, Sys: h.peakSys}
}
