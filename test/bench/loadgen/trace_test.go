package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTraceRecordsEachMessageInOrderAndTheMachine(t *testing.T) {
	_, cc := serveRecorder(t)
	x, err := NewExchange(testSpec(`{"messages":[{"role":"user","content":"hi `+testMarker+`"}]}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tr := newTracer(start, 3, "", time.Millisecond)
	for i := range 3 {
		var tm Timings
		due := start.Add(time.Duration(i) * time.Millisecond)
		began := time.Now()
		err := x.Run(context.Background(), cc, &tm)
		if err != nil {
			t.Fatal(err)
		}
		tr.request(i, i%2, i == 0, due, began, time.Now(), &tm, nil)
	}
	tr.marked(start.Add(time.Millisecond), start.Add(2*time.Millisecond))
	time.Sleep(5 * time.Millisecond) // a few samples
	path := filepath.Join(t.TempDir(), "trace.json")
	if err := tr.write(path, time.Millisecond, 1, 2); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f traceFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if f.StartUnixNs != start.UnixNano() || f.WarmupN != 1 || f.Conns != 2 || f.IntervalUs != 1000 {
		t.Fatalf("header: %+v", f)
	}
	if f.Marks != [2]float64{1000, 2000} {
		t.Fatalf("marks %v, want [1000 2000] µs", f.Marks)
	}
	if len(f.Requests) != 3 || !f.Requests[0].Warm || f.Requests[1].Warm || f.Requests[1].Conn != 1 {
		t.Fatalf("requests: %+v", f.Requests)
	}
	prev := 0.0
	for i, r := range f.Requests {
		if r.I != i || r.Began < prev || r.End < r.Began {
			t.Fatalf("request %d out of order: %+v", i, r)
		}
		last := r.Began
		for p := Phase(0); p < phaseCount; p++ {
			if p == UpstreamRequestHeaders { // the spec has no upstream filter: never sent
				if r.Sent[p] != 0 || r.Answered[p] != 0 {
					t.Fatalf("request %d: unsent %s has times", i, phaseNames[p])
				}
				continue
			}
			if !(r.Sent[p] >= last && r.Wrote[p] >= r.Sent[p] && r.Answered[p] >= r.Wrote[p] && r.End >= r.Answered[p]) {
				t.Fatalf("request %d %s: sent %.1f wrote %.1f answered %.1f after %.1f, end %.1f",
					i, phaseNames[p], r.Sent[p], r.Wrote[p], r.Answered[p], last, r.End)
			}
			last = r.Answered[p]
		}
		prev = r.End
	}
	if len(f.Samples) < 2 {
		t.Fatalf("%d samples in ~5 ms at 1 ms", len(f.Samples))
	}
	s := f.Samples[len(f.Samples)-1]
	if len(s.Cores) == 0 || s.LoadgenRunNs <= 0 {
		t.Fatalf("a sample without per-core CPU or the loadgen's own run time: %+v", s)
	}
}

func TestWithoutTraceTheTracerIsANoOp(t *testing.T) {
	var tr *tracer
	var tm Timings
	tr.request(0, 0, false, time.Now(), time.Now(), time.Now(), &tm, nil)
	tr.marked(time.Now(), time.Now())
	if err := tr.write(filepath.Join(t.TempDir(), "none.json"), time.Millisecond, 0, 1); err != nil {
		t.Fatal(err)
	}
}
