package main

import (
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func set(key, value string, appendValue bool) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)},
		Append: wrapperspb.Bool(appendValue),
	}
}

func TestApplyRemovesThenSetsAsEnvoyDoes(t *testing.T) {
	h := headerList{{":path", "/v1/chat"}, {"authorization", "Bearer k"}, {"x-a", "1"}, {"x-a", "2"}}
	h.apply(&extprocv3.HeaderMutation{
		RemoveHeaders: []string{"Authorization"},
		SetHeaders: []*corev3.HeaderValueOption{
			set("X-A", "3", false),   // replaces both values
			set("x-new", "n", false), // adds
			set("x-new", "m", true),  // appends
			set("authorization", "Bearer backend", false),
		},
	})
	want := headerList{
		{":path", "/v1/chat"},
		{"x-a", "3"},
		{"x-new", "n"},
		{"x-new", "m"},
		{"authorization", "Bearer backend"},
	}
	if !slices.Equal(h, want) {
		t.Fatalf("got %q, want %q", h, want)
	}
	h.apply(nil) // an answer without a mutation changes nothing
	if !slices.Equal(h, want) {
		t.Fatalf("a nil mutation changed the headers: %q", h)
	}
}

func TestFromSpecKeepsBytesAndRefusesNonOctets(t *testing.T) {
	h, err := fromSpec([][2]string{{"X-Bin", "caf\u00e9\u00ff"}})
	if err != nil {
		t.Fatal(err)
	}
	if h[0][0] != "x-bin" || h[0][1] != "caf\xe9\xff" {
		t.Fatalf("got %q", h)
	}
	if _, err := fromSpec([][2]string{{"x", "\u20ac"}}); err == nil {
		t.Fatal("a character above U+00FF was accepted as a byte")
	}
	m := h.headerMap()
	if v := m.GetHeaders()[0]; v.GetValue() != "" || string(v.GetRawValue()) != "caf\xe9\xff" {
		t.Fatalf("values must go in raw_value only, got %v", v)
	}
}

func TestSummarizeByNearestRank(t *testing.T) {
	var ms []float64
	for i := 1; i <= 1000; i++ {
		ms = append(ms, float64(1001-i))
	}
	s := summarize(ms)
	if s.Count != 1000 || s.P50 != 500 || s.P90 != 900 || s.P99 != 990 || s.P999 != 999 || s.Max != 1000 {
		t.Fatalf("got %+v", s)
	}
	if (summarize(nil) != Summary{}) {
		t.Fatal("no samples must summarise to zero values")
	}
}

func TestPaceLaunchesEveryRequestInOrderAndOnTime(t *testing.T) {
	const total = 200
	interval := 500 * time.Microsecond
	start := time.Now().Add(5 * time.Millisecond)
	var got []int
	late := 0
	if err := pace(start, interval, total, func(i int, due time.Time) {
		if want := start.Add(time.Duration(i) * interval); !due.Equal(want) {
			t.Errorf("request %d due %v, want %v", i, due, want)
		}
		if time.Now().Before(due) {
			t.Errorf("request %d launched before it was due", i)
		}
		if time.Since(due) > 20*time.Millisecond {
			late++
		}
		got = append(got, i)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != total || !slices.IsSorted(got) {
		t.Fatalf("launched %d requests, in order: %v", len(got), slices.IsSorted(got))
	}
	// Not a timing assertion on a shared machine: only that the pacer did not fall behind by
	// whole intervals for most requests, which a millisecond-granular timer would.
	if late > total/2 {
		t.Fatalf("%d of %d requests were launched more than 20 ms late", late, total)
	}
}
