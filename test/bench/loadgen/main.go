// Command loadgen drives an ext_proc server open-loop at a fixed rate, the way Envoy's ext_proc
// filters would for a stream of requests identical but for a sequence number in the body (the
// spec's sequenceMarker, see Spec), and prints what the server added per
// request as one JSON object. The benchmark (test/bench/bench.ts) builds and runs it: its own
// CPU per request is a fraction of the JS driver's, so it can hold 2,000 req/s on one core.
//
//	loadgen -target unix:/path/extproc.sock -spec exchange.json -rate 2000 -seconds 5 -warmup 1
//	loadgen serve unix:/path/floor.sock    (the do-nothing grpc-go ext_proc server, floor.go)
//	loadgen interop unix:/path/h2.sock     (grpc-go's client against extproc/grpc, interop.go)
//
// Linux only (clock_nanosleep, /proc).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// Envoy's default message_timeout; answers slower than this would have failed the request.
const envoyMessageTimeout = 200 * time.Millisecond

type options struct {
	target, specPath, serverPid string
	cpuProfile                  string
	probe                       string
	trace                       string
	rate, seconds, warmup       float64
	conns, maxInFlight          int
	timeout                     time.Duration
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.target, "target", "", "the ext_proc server, unix:/path or host:port")
	flag.StringVar(&o.specPath, "spec", "", "the exchange to replay (JSON, written by bench.ts)")
	flag.Float64Var(&o.rate, "rate", 0, "requests per second")
	flag.Float64Var(&o.seconds, "seconds", 5, "measured seconds, after the warm-up")
	flag.Float64Var(&o.warmup, "warmup", 1, "seconds at the same rate before measuring")
	flag.IntVar(&o.conns, "conns", 2, "HTTP/2 connections; requests take them in turn (Envoy: one per worker)")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 1024, "requests open at once beyond which new ones are dropped and counted (Envoy's default circuit breaker)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of one request; a benchmark wants a slow sample's latency, not a failure")
	flag.StringVar(&o.serverPid, "server-pid", "", "report this process's CPU over the measured window, with its children's (workers)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the loadgen's own CPU profile here")
	flag.StringVar(&o.probe, "probe", "", "the server's bench probe socket (test/bench/probe.ts): marked at the window's start and end")
	flag.StringVar(&o.trace, "trace", "", "write every request's schedule and per-message times, the loadgen's GC pauses and a 10 ms timeline of per-core CPU (steal included) and the server's run-queue wait here (JSON)")
	flag.Parse()
	switch {
	case o.target == "" || o.specPath == "":
		return o, fmt.Errorf("-target and -spec are required")
	case !(o.rate > 0) || !(o.seconds > 0) || o.warmup < 0:
		return o, fmt.Errorf("-rate and -seconds must be positive, -warmup not negative")
	case o.conns < 1 || o.maxInFlight < 1:
		return o, fmt.Errorf("-conns and -max-in-flight must be at least 1")
	case o.serverPid != "":
		if _, err := strconv.Atoi(o.serverPid); err != nil {
			return o, fmt.Errorf("-server-pid %q: not a pid", o.serverPid)
		}
	}
	return o, nil
}

// Result is what the loadgen prints. Latencies are in ms; "added" is the sum of a request's
// ext_proc round trips (what Envoy waits on), "fromSchedule" adds how late the request started
// compared with its schedule, so a stall cannot hide behind requests not yet sent.
type Result struct {
	Rate             float64            `json:"rate"`
	Seconds          float64            `json:"seconds"`
	Scheduled        int                `json:"scheduled"`
	Completed        int                `json:"completed"`
	Achieved         float64            `json:"achieved"`
	Errors           int                `json:"errors"`
	FirstError       string             `json:"firstError,omitempty"`
	Dropped          int                `json:"dropped"`
	MaxInFlight      int64              `json:"maxInFlight"`
	OverEnvoyTimeout int                `json:"overEnvoyTimeout"`
	Added            Summary            `json:"added"`
	Router           Summary            `json:"router"`
	FromSchedule     Summary            `json:"fromSchedule"`
	Lag              Summary            `json:"lag"`
	Messages         map[string]Summary `json:"messages"`
	CPU              CPU                `json:"cpu"`
	// Probe is the server's runtime figures (GC, allocation, event-loop delay) at the window's
	// start and end, as test/bench/probe.ts answers them; absent without -probe.
	Probe *ProbeMarks `json:"probe,omitempty"`
}

type ProbeMarks struct {
	Begin json.RawMessage `json:"begin"`
	End   json.RawMessage `json:"end"`
}

type CPU struct {
	ServerMs      float64 `json:"serverMs"`
	ServerUsPerRq float64 `json:"serverUsPerReq"`
	ServerShare   float64 `json:"serverShare"`
	LoadgenMs     float64 `json:"loadgenMs"`
	LoadgenShare  float64 `json:"loadgenShare"`
	WallMs        float64 `json:"wallMs"`
	// OthersMs is the CPU of every other process (not the loadgen, the server or the parent
	// that started the loadgen) in the window, on any core: what else the machine was doing.
	OthersMs float64              `json:"othersMs"`
	Cores    map[string]CoreTicks `json:"cores"`
}

// recorder keeps the samples of measured requests; requests finish on many goroutines.
type recorder struct {
	mu                   sync.Mutex
	added, router, sched []float64
	lag                  []float64
	msgs                 [phaseCount][]float64
	completed, errors    int
	overTimeout          int
	firstErr             string
	lastEnd              time.Time
}

func (r *recorder) add(due, began, end time.Time, t *Timings, err error, upstream bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if end.After(r.lastEnd) {
		r.lastEnd = end
	}
	if err != nil {
		r.errors++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
		return
	}
	r.completed++
	var added, router time.Duration
	for p := Phase(0); p < phaseCount; p++ {
		if p == UpstreamRequestHeaders {
			if !upstream {
				continue
			}
		} else {
			router += t.Round[p]
		}
		added += t.Round[p]
		r.msgs[p] = append(r.msgs[p], ms(t.Round[p]))
		if t.Round[p] > envoyMessageTimeout {
			r.overTimeout++
		}
	}
	lag := began.Sub(due)
	r.added = append(r.added, ms(added))
	r.router = append(r.router, ms(router))
	r.lag = append(r.lag, ms(lag))
	r.sched = append(r.sched, ms(lag+added))
}

func dial(o options) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		cc, err := grpc.NewClient(o.target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Envoy never retries an ext_proc stream; grpc-go would keep every sent message for one.
			grpc.WithDisableRetry(),
			// Envoy's HTTP/2 defaults (256 MiB windows): flow control never paces an answer.
			grpc.WithInitialWindowSize(256<<20),
			grpc.WithInitialConnWindowSize(256<<20),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
		)
		if err != nil {
			return nil, err
		}
		conns[i] = cc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cc := range conns {
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				return nil, fmt.Errorf("%s: not connected after 10 s (%s)", o.target, s)
			}
		}
	}
	return conns, nil
}

func run(o options) (*Result, error) {
	raw, err := os.ReadFile(o.specPath)
	if err != nil {
		return nil, err
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", o.specPath, err)
	}
	x, err := NewExchange(spec, o.timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.specPath, err)
	}
	conns, err := dial(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
	// One request per connection before the clock starts: a wrong exchange fails here, once,
	// instead of as thousands of errors.
	for _, cc := range conns {
		var t Timings
		if err := x.Run(context.Background(), cc, &t); err != nil {
			return nil, fmt.Errorf("first request: %w", err)
		}
	}

	interval := time.Duration(float64(time.Second) / o.rate)
	warmupN := int(math.Round(o.rate * o.warmup))
	total := warmupN + int(math.Round(o.rate*o.seconds))
	upstream := spec.Upstream != nil
	rec := &recorder{}
	warm := &recorder{}
	var measured sync.WaitGroup
	var inFlight, maxInFlight atomic.Int64
	dropped := 0

	type mark struct {
		at              time.Time
		server, loadgen float64
		cores           map[string]CoreTicks
		all             map[string]float64
		probe           json.RawMessage
		probeErr        error
	}
	probe := probeClient(o.probe)
	// The server and the processes it forked (workers), as they are when the run starts.
	var serverTree []string
	if o.serverPid != "" {
		serverTree = processTree(o.serverPid)
	}
	snap := func() mark {
		m := mark{server: -1, loadgen: processCPU("self"), cores: coreTicks(), all: processesCPU()}
		if o.serverPid != "" {
			m.server = treeCPU(m.all, serverTree)
		}
		m.at = time.Now()
		if probe != nil {
			m.probe, m.probeErr = probe()
		}
		return m
	}
	var begin mark
	var marked sync.WaitGroup
	marked.Add(1)

	start := time.Now().Add(10 * time.Millisecond)
	var tr *tracer
	if o.trace != "" {
		tr = newTracer(start, total, o.serverPid, 10*time.Millisecond)
	}
	windowStart := start.Add(time.Duration(warmupN) * interval)
	time.AfterFunc(time.Until(windowStart), func() {
		at := time.Now()
		begin = snap()
		tr.marked(at, time.Now())
		marked.Done()
	})

	err = pace(start, interval, total, func(i int, due time.Time) {
		r := warm
		if i >= warmupN {
			r = rec
			measured.Add(1)
		}
		if inFlight.Load() >= int64(o.maxInFlight) {
			if r == rec {
				dropped++
				measured.Done()
			}
			return
		}
		if n := inFlight.Add(1); n > maxInFlight.Load() {
			maxInFlight.Store(n)
		}
		go func() {
			var t Timings
			began := time.Now()
			err := x.Run(context.Background(), conns[i%len(conns)], &t)
			ended := time.Now()
			inFlight.Add(-1)
			r.add(due, began, ended, &t, err, upstream)
			tr.request(i, i%len(conns), r == warm, due, began, ended, &t, err)
			if r == rec {
				measured.Done()
			}
		}()
	})
	if err != nil {
		return nil, err
	}
	measured.Wait()
	marked.Wait()
	end := snap()
	if err := tr.write(o.trace, interval, warmupN, len(conns)); err != nil {
		return nil, fmt.Errorf("-trace: %w", err)
	}

	res := &Result{
		Rate:             o.rate,
		Scheduled:        total - warmupN,
		Completed:        rec.completed,
		Errors:           rec.errors,
		FirstError:       rec.firstErr,
		Dropped:          dropped,
		MaxInFlight:      maxInFlight.Load(),
		OverEnvoyTimeout: rec.overTimeout,
		Added:            summarize(rec.added),
		Router:           summarize(rec.router),
		FromSchedule:     summarize(rec.sched),
		Lag:              summarize(rec.lag),
		Messages:         map[string]Summary{},
	}
	if res.FirstError == "" && warm.firstErr != "" {
		res.FirstError = "warm-up: " + warm.firstErr
	}
	if !rec.lastEnd.IsZero() {
		res.Seconds = rec.lastEnd.Sub(windowStart).Seconds()
		res.Achieved = float64(rec.completed) / res.Seconds
	}
	for p := Phase(0); p < phaseCount; p++ {
		if len(rec.msgs[p]) > 0 {
			res.Messages[phaseNames[p]] = summarize(rec.msgs[p])
		}
	}
	wall := end.at.Sub(begin.at)
	res.CPU = CPU{
		LoadgenMs:    end.loadgen - begin.loadgen,
		LoadgenShare: (end.loadgen - begin.loadgen) / ms(wall),
		WallMs:       ms(wall),
		Cores:        map[string]CoreTicks{},
		OthersMs: othersMs(begin.all, end.all,
			append([]string{strconv.Itoa(os.Getpid()), strconv.Itoa(os.Getppid())}, serverTree...)...),
	}
	if begin.server >= 0 && end.server >= 0 {
		res.CPU.ServerMs = end.server - begin.server
		res.CPU.ServerShare = res.CPU.ServerMs / ms(wall)
		if rec.completed > 0 {
			res.CPU.ServerUsPerRq = res.CPU.ServerMs * 1000 / float64(rec.completed)
		}
	}
	if probe != nil {
		if begin.probeErr != nil || end.probeErr != nil {
			return nil, fmt.Errorf("-probe %s: %v", o.probe, errors.Join(begin.probeErr, end.probeErr))
		}
		res.Probe = &ProbeMarks{Begin: begin.probe, End: end.probe}
	}
	for core, b := range end.cores {
		a := begin.cores[core]
		res.CPU.Cores[core] = CoreTicks{BusyMs: b.BusyMs - a.BusyMs, TotalMs: b.TotalMs - a.TotalMs}
	}
	return res, nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "interop" {
		if err := runInterop(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen interop: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		if err := serveFloor(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen serve: %v\n", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		flag.Usage()
		os.Exit(2)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: -cpuprofile: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	res, err := run(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	out, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
