package main

// `loadgen interop unix:/path` drives the extproc's node:http2 gRPC server (extproc/grpc) with
// grpc-go's client, as Envoy's Go peers would, and prints one JSON line per check:
// {"check": name, "ok": bool, "detail": "..."}. extproc/grpc/h2-server-go.test.ts starts the
// server with its interop handler (answers each message with the empty answer of its kind;
// x-interop: never-answer keeps quiet; fail answers then ends the call with INTERNAL, fail-now
// ends it before answering), runs this,
// and drives the shutdown step: after "goaway-ready" it shuts the server down and writes a line
// to stdin.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const interopMax = 64 * 1024

type check struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func report(name string, err error) {
	c := check{Check: name, OK: err == nil}
	if err != nil {
		c.Detail = err.Error()
	}
	b, _ := json.Marshal(c)
	fmt.Println(string(b))
}

func wantCode(err error, code codes.Code) error {
	if s, _ := status.FromError(err); s.Code() != code {
		return fmt.Errorf("want %s, got %v", code, err)
	}
	return nil
}

func headersReq() *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/v1/chat/completions")},
		}}},
	}}
}

func bodyReq(n int, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: make([]byte, n), EndOfStream: eos},
	}}
}

func open(ctx context.Context, cc *grpc.ClientConn, kv ...string) (extprocv3.ExternalProcessor_ProcessClient, error) {
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return extprocv3.NewExternalProcessorClient(cc).Process(ctx)
}

// roundTrip sends one message and expects the answer of the same kind.
func roundTrip(s extprocv3.ExternalProcessor_ProcessClient, req *extprocv3.ProcessingRequest) error {
	if err := s.Send(req); err != nil {
		return err
	}
	a, err := s.Recv()
	if err != nil {
		return err
	}
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if a.GetRequestHeaders() == nil {
			return fmt.Errorf("answer %T to request_headers", a.Response)
		}
	case *extprocv3.ProcessingRequest_RequestBody:
		if a.GetRequestBody() == nil {
			return fmt.Errorf("answer %T to request_body", a.Response)
		}
	}
	return nil
}

func runInterop(target string) error {
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
	)
	if err != nil {
		return err
	}
	defer cc.Close()
	bg := context.Background()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()

	hc := healthpb.NewHealthClient(cc)
	report("health_check", func() error {
		for _, svc := range []string{"", "envoy.service.ext_proc.v3.ExternalProcessor"} {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				return err
			}
			if r.Status != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("%q: %s", svc, r.Status)
			}
		}
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		return wantCode(err, codes.NotFound)
	}())

	report("health_watch", func() error {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "envoy.service.ext_proc.v3.ExternalProcessor"})
		if err != nil {
			return err
		}
		r, err := w.Recv()
		if err != nil {
			return err
		}
		if r.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("first status %s", r.Status)
		}
		return nil
	}())

	report("process_exchange", func() error {
		s, err := open(ctx, cc, "x-sluice-filter", "router")
		if err != nil {
			return err
		}
		// 60 KB: several DATA frames each way.
		for _, req := range []*extprocv3.ProcessingRequest{headersReq(), bodyReq(60_000, false), bodyReq(10, true)} {
			if err := roundTrip(s, req); err != nil {
				return err
			}
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("after half-close: want EOF (status OK), got %v", err)
		}
		return nil
	}())

	// An error status after an answer (in trailers) and before any (a trailers-only response),
	// its message percent-encoded on the wire.
	for _, mode := range []string{"fail", "fail-now"} {
		report("status_"+mode, func() error {
			s, err := open(ctx, cc, "x-interop", mode)
			if err != nil {
				return err
			}
			if mode == "fail" {
				err = roundTrip(s, headersReq())
			} else {
				err = s.Send(headersReq())
			}
			if err != nil {
				return err
			}
			_, err = s.Recv()
			st, _ := status.FromError(err)
			if st.Code() != codes.Internal || st.Message() != "bad — really" {
				return fmt.Errorf("want INTERNAL %q, got %v", "bad — really", err)
			}
			return nil
		}())
	}

	report("deadline", func() error {
		dctx, dcancel := context.WithTimeout(bg, 150*time.Millisecond)
		defer dcancel()
		s, err := open(dctx, cc, "x-interop", "never-answer")
		if err != nil {
			return err
		}
		if err := s.Send(headersReq()); err != nil {
			return err
		}
		_, err = s.Recv()
		return wantCode(err, codes.DeadlineExceeded)
	}())

	report("cancel", func() error {
		cctx, ccancel := context.WithCancel(bg)
		s, err := open(cctx, cc, "x-interop", "never-answer")
		if err != nil {
			ccancel()
			return err
		}
		if err := s.Send(headersReq()); err != nil {
			ccancel()
			return err
		}
		time.AfterFunc(50*time.Millisecond, ccancel)
		_, err = s.Recv()
		return wantCode(err, codes.Canceled)
	}())

	report("max_message_size", func() error {
		s, err := open(ctx, cc)
		if err != nil {
			return err
		}
		if err := s.Send(bodyReq(interopMax+1, true)); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = s.Recv()
		return wantCode(err, codes.ResourceExhausted)
	}())

	report("unknown_method", func() error {
		err := cc.Invoke(ctx, "/envoy.service.ext_proc.v3.ExternalProcessor/Nope", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		return wantCode(err, codes.Unimplemented)
	}())

	// GOAWAY on shutdown: a stream open before it still completes; a new one is refused.
	s, err := open(ctx, cc)
	if err == nil {
		err = roundTrip(s, headersReq())
	}
	if err != nil {
		report("goaway", err)
		return nil
	}
	fmt.Println("goaway-ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		report("goaway", fmt.Errorf("stdin: %w", err))
		return nil
	}
	report("goaway", func() error {
		if err := roundTrip(s, bodyReq(10, true)); err != nil {
			return fmt.Errorf("open stream after GOAWAY: %w", err)
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("open stream after GOAWAY: want EOF, got %v", err)
		}
		nctx, ncancel := context.WithTimeout(bg, time.Second)
		defer ncancel()
		n, err := open(nctx, cc)
		if err == nil {
			err = roundTrip(n, headersReq())
		}
		if err == nil {
			return fmt.Errorf("a new stream after GOAWAY was served")
		}
		return wantCode(err, codes.Unavailable)
	}())
	return nil
}
