package main

// The do-nothing ext_proc server in Go (grpc-go), the floor the latency target is
// judged against: `loadgen serve unix:/path` answers every message at once with the empty
// answer of its kind, as test/bench/floor-server.ts does in Node. Run with GOMAXPROCS=1 and
// pinned to the server core, it stands in for a Go extproc's transport on one core.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

type floorServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

// The answers are immutable; one of each kind serves every message.
var (
	floorRequestHeaders   = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	floorResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	floorRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	floorResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	floorRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	floorResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

func (floorServer) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var a *extprocv3.ProcessingResponse
		switch m.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			a = floorRequestHeaders
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			a = floorResponseHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			a = floorRequestBody
		case *extprocv3.ProcessingRequest_ResponseBody:
			a = floorResponseBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			a = floorRequestTrailers
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			a = floorResponseTrailers
		default:
			continue
		}
		if err := s.Send(a); err != nil {
			return err
		}
	}
}

// serveFloor listens on target (unix:/path) until SIGTERM or SIGINT; prints "ready".
func serveFloor(target string) error {
	path, ok := strings.CutPrefix(target, "unix:")
	if !ok {
		return fmt.Errorf("%q: expected unix:/path", target)
	}
	_ = os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	extprocv3.RegisterExternalProcessorServer(srv, floorServer{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	fmt.Println("ready")
	return srv.Serve(lis)
}
