package main

// The -trace file: every request's schedule and per-message times, the loadgen's own GC pauses
// and a timeline of the machine (per-core CPU with steal, the server's main thread on and off
// its core) sampled while the load runs, so that a slow request can be placed against what the
// loadgen, the server and the machine were doing at that moment. Written once, after the run.

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TraceRequest is one request; times are µs from the trace's start (its `startUnixNs`).
type TraceRequest struct {
	I    int     `json:"i"`
	Conn int     `json:"conn"`
	Warm bool    `json:"warm,omitempty"`
	Err  string  `json:"err,omitempty"`
	Due  float64 `json:"due"`
	// Began: the request's goroutine started (Due + the loadgen's own scheduling lag).
	Began float64 `json:"began"`
	End   float64 `json:"end"`
	// Per message, in phaseNames order (0 where the message was not sent): handed to Send,
	// Send returned, answer received.
	Sent     [phaseCount]float64 `json:"sent"`
	Wrote    [phaseCount]float64 `json:"wrote"`
	Answered [phaseCount]float64 `json:"answered"`
}

// TraceSample is the machine at one moment of the run; counters are cumulative since boot.
type TraceSample struct {
	T float64 `json:"t"`
	// Cores: per core (cpu0, cpu1, ...) /proc/stat's user, nice, system, idle, iowait, irq,
	// softirq, steal in USER_HZ ticks (10 ms).
	Cores map[string][8]int64 `json:"cores"`
	// ServerRunNs, ServerWaitNs: /proc/PID/task/PID/schedstat of the server's main thread: time
	// on a CPU and time runnable but waiting for one (ns); ServerSwitches its timeslices.
	ServerRunNs    int64 `json:"serverRunNs"`
	ServerWaitNs   int64 `json:"serverWaitNs"`
	ServerSwitches int64 `json:"serverSwitches"`
	// The same for this process's threads, summed: a loadgen kept off its core shows here.
	LoadgenRunNs  int64 `json:"loadgenRunNs"`
	LoadgenWaitNs int64 `json:"loadgenWaitNs"`
}

type TraceGC struct {
	End   float64 `json:"end"`
	Pause float64 `json:"pauseUs"`
}

type traceFile struct {
	StartUnixNs int64 `json:"startUnixNs"`
	// StartMonoNs: the same moment on CLOCK_MONOTONIC, the clock of `perf record -k mono`
	// (e.g. perf sched's timeline of the server's core) and of the kernel's trace events.
	StartMonoNs int64   `json:"startMonoNs"`
	IntervalUs  float64 `json:"intervalUs"`
	WarmupN     int     `json:"warmupN"`
	Conns       int     `json:"conns"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	// Marks: when the window's start snapshot (CPU of every process, the server's probe) began
	// and ended, µs: work of the loadgen's and, with -probe, of the server's.
	Marks    [2]float64     `json:"marks"`
	Requests []TraceRequest `json:"requests"`
	GC       []TraceGC      `json:"gc"`
	Samples  []TraceSample  `json:"samples"`
}

// tracer collects a run's trace; nil when -trace is off (every method is then a no-op).
type tracer struct {
	start     time.Time
	startMono int64
	reqs      []TraceRequest // one slot per request index: goroutines write disjoint slots
	stop      chan struct{}
	done      sync.WaitGroup
	samples   []TraceSample
	serverID  string
	marks     [2]float64
}

// marked records when the window's start snapshot began and ended.
func (t *tracer) marked(began, ended time.Time) {
	if t != nil {
		t.marks = [2]float64{t.us(began), t.us(ended)}
	}
}

func newTracer(start time.Time, total int, serverPid string, every time.Duration) *tracer {
	t := &tracer{start: start, reqs: make([]TraceRequest, total), stop: make(chan struct{}), serverID: serverPid}
	// start is in the future: its monotonic time is now's plus the wait.
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		t.startMono = ts.Nano() + int64(time.Until(start))
	}
	t.done.Add(1)
	go t.sample(every)
	return t
}

func (t *tracer) us(at time.Time) float64 {
	if at.IsZero() {
		return 0
	}
	return float64(at.Sub(t.start).Nanoseconds()) / 1e3
}

func (t *tracer) request(i, conn int, warm bool, due, began, end time.Time, tm *Timings, err error) {
	if t == nil {
		return
	}
	r := &t.reqs[i]
	*r = TraceRequest{I: i, Conn: conn, Warm: warm, Due: t.us(due), Began: t.us(began), End: t.us(end)}
	if err != nil {
		r.Err = err.Error()
	}
	for p := Phase(0); p < phaseCount; p++ {
		r.Sent[p], r.Wrote[p], r.Answered[p] = t.us(tm.Sent[p]), t.us(tm.Wrote[p]), t.us(tm.Answered[p])
	}
}

func (t *tracer) sample(every time.Duration) {
	defer t.done.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	self := strconv.Itoa(os.Getpid())
	for {
		s := TraceSample{T: t.us(time.Now()), Cores: coreCounters()}
		if t.serverID != "" {
			s.ServerRunNs, s.ServerWaitNs, s.ServerSwitches = schedstat("/proc/" + t.serverID + "/task/" + t.serverID + "/schedstat")
		}
		if tasks, err := os.ReadDir("/proc/" + self + "/task"); err == nil {
			for _, e := range tasks {
				run, wait, _ := schedstat("/proc/" + self + "/task/" + e.Name() + "/schedstat")
				s.LoadgenRunNs += run
				s.LoadgenWaitNs += wait
			}
		}
		t.samples = append(t.samples, s)
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

// write stops the sampler and writes the trace as one JSON object.
func (t *tracer) write(path string, interval time.Duration, warmupN, conns int) error {
	if t == nil {
		return nil
	}
	close(t.stop)
	t.done.Wait()
	f := traceFile{
		StartUnixNs: t.start.UnixNano(),
		StartMonoNs: t.startMono,
		IntervalUs:  float64(interval.Nanoseconds()) / 1e3,
		WarmupN:     warmupN,
		Conns:       conns,
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		Marks:       t.marks,
		Requests:    t.reqs,
		Samples:     t.samples,
		GC:          []TraceGC{},
	}
	var gc debug.GCStats
	gc.PauseQuantiles = nil
	debug.ReadGCStats(&gc)
	// PauseEnd and Pause are most recent first, the last 256 collections at most.
	for k := len(gc.PauseEnd) - 1; k >= 0; k-- {
		if gc.PauseEnd[k].Before(t.start) {
			continue
		}
		f.GC = append(f.GC, TraceGC{End: t.us(gc.PauseEnd[k]), Pause: float64(gc.Pause[k].Nanoseconds()) / 1e3})
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	if err := json.NewEncoder(w).Encode(f); err != nil {
		_ = out.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// schedstat reads a thread's schedstat: ns on a CPU, ns runnable waiting for one, timeslices.
func schedstat(path string) (run, wait, slices int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, 0
	}
	run, _ = strconv.ParseInt(f[0], 10, 64)
	wait, _ = strconv.ParseInt(f[1], 10, 64)
	slices, _ = strconv.ParseInt(f[2], 10, 64)
	return run, wait, slices
}
