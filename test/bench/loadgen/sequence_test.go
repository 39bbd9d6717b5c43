package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// bodyRecorder is the floor server keeping every request body it was sent.
type bodyRecorder struct {
	floorServer
	mu     sync.Mutex
	bodies [][]byte
}

func (r *bodyRecorder) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		a := floorResponseHeaders
		switch m.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			a = floorRequestHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			r.mu.Lock()
			r.bodies = append(r.bodies, bytes.Clone(m.GetRequestBody().GetBody()))
			r.mu.Unlock()
			a = floorRequestBody
		case *extprocv3.ProcessingRequest_ResponseBody:
			a = floorResponseBody
		}
		if err := s.Send(a); err != nil {
			return err
		}
	}
}

// serveRecorder runs a bodyRecorder on a unix socket for the test and dials it.
func serveRecorder(t *testing.T) (*bodyRecorder, *grpc.ClientConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "lg") // short: a unix socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &bodyRecorder{}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("unix:"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return rec, cc
}

const testMarker = "zqxsequencez"

func testSpec(body string) Spec {
	return Spec{
		RequestHeaders:  [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}},
		RequestBody:     []byte(body),
		ResponseHeaders: [][2]string{{":status", "200"}},
		ResponseBody:    []byte(`{}`),
		SequenceMarker:  testMarker,
	}
}

func TestConsecutiveRequestsDifferOnlyInTheSequenceMarker(t *testing.T) {
	rec, cc := serveRecorder(t)
	body := `{"messages":[{"role":"user","content":"earlier turn"},{"role":"user","content":"last turn ` +
		testMarker + `"}]}`
	x, err := NewExchange(testSpec(body), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var tm Timings
		if err := x.Run(context.Background(), cc, &tm); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.bodies) != 3 {
		t.Fatalf("the server saw %d request bodies, want 3", len(rec.bodies))
	}
	at := strings.Index(body, testMarker)
	end := at + len(testMarker)
	for i, b := range rec.bodies {
		if len(b) != len(body) {
			t.Fatalf("body %d is %d bytes, the spec's %d", i, len(b), len(body))
		}
		if string(b[:at]) != body[:at] || string(b[end:]) != body[end:] {
			t.Fatalf("body %d differs outside the marker: %s", i, b)
		}
		for _, c := range b[at:end] {
			if c < 'a' || c > 'z' {
				t.Fatalf("body %d: sequence %q is not lowercase letters", i, b[at:end])
			}
		}
		if i > 0 && bytes.Equal(b, rec.bodies[i-1]) {
			t.Fatalf("requests %d and %d sent the same body %s", i-1, i, b)
		}
	}
	if string(x.spec.RequestBody) != body {
		t.Fatal("a request overwrote the spec's body instead of a copy")
	}
}

func TestWithoutAMarkerTheBodyIsReplayedAsItIs(t *testing.T) {
	rec, cc := serveRecorder(t)
	s := testSpec(`{"messages":[]}`)
	s.SequenceMarker = ""
	x, err := NewExchange(s, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var tm Timings
		if err := x.Run(context.Background(), cc, &tm); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.bodies) != 2 || string(rec.bodies[0]) != `{"messages":[]}` || string(rec.bodies[1]) != `{"messages":[]}` {
		t.Fatalf("got %q", rec.bodies)
	}
}

func TestSequenceMarkerMustOccurOnce(t *testing.T) {
	if _, err := NewExchange(testSpec(`{"content":"no marker"}`), time.Second); err == nil {
		t.Fatal("a marker missing from the body was accepted")
	}
	if _, err := NewExchange(testSpec(testMarker+" "+testMarker), time.Second); err == nil {
		t.Fatal("a marker in the body twice was accepted")
	}
}

func TestPutSequenceEncodesAsPayloadsTs(t *testing.T) {
	// test/bench/payloads.ts: sequenceText(0) and sequenceText(123456789).
	for n, want := range map[uint64]string{0: "aaaaaaaaaaaa", 25: "aaaaaaaaaaaz", 26: "aaaaaaaaaaba", 123456789: "aaaaaakkeekb"} {
		b := make([]byte, len(testMarker))
		putSequence(b, n)
		if string(b) != want {
			t.Errorf("putSequence(%d) = %q, want %q", n, b, want)
		}
	}
}
