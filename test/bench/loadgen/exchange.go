package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
)

// attributesKey is where Envoy puts the evaluated request_attributes of an ext_proc filter.
const attributesKey = "envoy.filters.http.ext_proc"

// Spec is the exchange to replay, written by bench.ts from the same payloads its JS driver uses.
// Header values are byte strings (one char per octet), as node:http and the driver hold them.
type Spec struct {
	RequestHeaders  [][2]string `json:"requestHeaders"`
	RequestBody     []byte      `json:"requestBody"`
	ResponseHeaders [][2]string `json:"responseHeaders"`
	ResponseBody    []byte      `json:"responseBody"`
	// SequenceMarker, when set, occurs exactly once in RequestBody (test/bench/payloads.ts puts
	// it in the last user turn) and every request overwrites it with its own sequence number, the
	// same width, in a copy of the body: a conversation's last user turn is new with every
	// request, and the extproc's per-text caches (token counts, prompt-guard scores) must not
	// hit on it as they would on a body replayed byte for byte.
	SequenceMarker string `json:"sequenceMarker"`
	// Upstream, when set, adds the upstream filter's stream (request headers only) between the
	// request and the response, as Envoy runs it once routing has picked the cluster.
	Upstream *UpstreamSpec `json:"upstream"`
}

type UpstreamSpec struct {
	// Attributes are the upstream filter's evaluated request_attributes (CEL name → string).
	Attributes map[string]string `json:"attributes"`
	// Metadata is the filter's grpc_initial_metadata (x-sluice-filter: upstream).
	Metadata map[string]string `json:"metadata"`
}

// Phase names the messages of one request in the order Envoy sends them.
type Phase int

const (
	RouterRequestHeaders Phase = iota
	RouterRequestBody
	UpstreamRequestHeaders
	RouterResponseHeaders
	RouterResponseBody
	phaseCount
)

var phaseNames = [phaseCount]string{
	"router.request_headers",
	"router.request_body",
	"upstream.request_headers",
	"router.response_headers",
	"router.response_body",
}

// Exchange holds everything prebuilt that does not change between requests, so the hot path
// only allocates the messages grpc-go needs (it marshals them on Send).
type Exchange struct {
	spec         Spec
	reqList      headerList
	reqHeaders   *corev3.HeaderMap
	resHeaders   *corev3.HeaderMap
	upstreamAttr map[string]*structpb.Struct
	upstreamMD   metadata.MD
	// What the router filter's first message states (BUFFERED both ways, as the operator emits).
	routerProtocol *extprocv3.ProtocolConfiguration
	timeout        time.Duration
	// seqAt is the byte offset of the sequence marker in the request body, -1 without one;
	// seqWidth its length; seq the next request's number.
	seqAt, seqWidth int
	seq             atomic.Uint64
}

func NewExchange(spec Spec, timeout time.Duration) (*Exchange, error) {
	reqHeaders, err := fromSpec(spec.RequestHeaders)
	if err != nil {
		return nil, fmt.Errorf("requestHeaders: %w", err)
	}
	resHeaders, err := fromSpec(spec.ResponseHeaders)
	if err != nil {
		return nil, fmt.Errorf("responseHeaders: %w", err)
	}
	x := &Exchange{
		spec:       spec,
		reqList:    reqHeaders,
		reqHeaders: reqHeaders.headerMap(),
		resHeaders: resHeaders.headerMap(),
		routerProtocol: &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  filterv3.ProcessingMode_BUFFERED,
			ResponseBodyMode: filterv3.ProcessingMode_BUFFERED,
		},
		timeout: timeout,
		seqAt:   -1,
	}
	if m := []byte(spec.SequenceMarker); len(m) > 0 {
		at := bytes.Index(spec.RequestBody, m)
		if at < 0 {
			return nil, fmt.Errorf("sequenceMarker %q is not in the request body", m)
		}
		if bytes.Contains(spec.RequestBody[at+1:], m) {
			return nil, fmt.Errorf("sequenceMarker %q is in the request body more than once", m)
		}
		x.seqAt, x.seqWidth = at, len(m)
		// From the clock: a second run against the same extproc starts ~10^9 numbers per second
		// later, far past every number an earlier run sent.
		x.seq.Store(uint64(time.Now().UnixNano()))
	}
	if u := spec.Upstream; u != nil {
		fields := make(map[string]any, len(u.Attributes))
		for k, v := range u.Attributes {
			fields[k] = v
		}
		s, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, fmt.Errorf("upstream attributes: %w", err)
		}
		x.upstreamAttr = map[string]*structpb.Struct{attributesKey: s}
		x.upstreamMD = metadata.New(u.Metadata)
	}
	return x, nil
}

// requestBody is the body of the next request: the spec's, with the next sequence number in
// place of the marker when it has one. A fresh copy each time, since grpc-go may still hold a
// sent message (stats handlers read it lazily); copying 2 KB costs far less than the request.
func (x *Exchange) requestBody() []byte {
	if x.seqAt < 0 {
		return x.spec.RequestBody
	}
	b := make([]byte, len(x.spec.RequestBody))
	copy(b, x.spec.RequestBody)
	putSequence(b[x.seqAt:x.seqAt+x.seqWidth], x.seq.Add(1)-1)
	return b
}

// putSequence writes n as len(dst) lowercase letters, most significant first, 'a' for zero
// (base 26, the higher digits dropped), as test/bench/payloads.ts sequenceText does: letters,
// because the masking detectors could take a run of digits for a phone or card number.
func putSequence(dst []byte, n uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = 'a' + byte(n%26)
		n /= 26
	}
}

// Timings of one request. Round is each message's round trip, from just before it was handed to
// grpc-go (the first message's includes opening the stream, as Envoy opens it lazily) to its
// answer. Sent, Wrote and Answered are when the message was handed to Send, when Send returned
// (later than Sent only if grpc-go waited, e.g. for HTTP/2 flow-control quota) and when Recv
// returned its answer: the -trace file's per-phase times.
type Timings struct {
	Round                 [phaseCount]time.Duration
	Sent, Wrote, Answered [phaseCount]time.Time
}

// Run performs one request. Envoy waits for each answer before sending the next message of
// this exchange (BUFFERED bodies are sent after the headers answer; the response only exists
// once the request went upstream), so the per-direction FIFO never holds more than one message.
func (x *Exchange) Run(ctx context.Context, cc grpc.ClientConnInterface, t *Timings) error {
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	client := extprocv3.NewExternalProcessorClient(cc)

	started := time.Now()
	router, err := client.Process(ctx)
	if err != nil {
		return fmt.Errorf("router: open stream: %w", err)
	}
	s := &stream{s: router, name: "router"}
	// What the router filter's answers make of the request headers: the upstream filter sees this.
	routed := append(headerList(nil), x.reqList...)

	ans, err := s.roundTrip(RouterRequestHeaders, started, t, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: x.reqHeaders},
		},
		MetadataContext: &corev3.Metadata{},
		ProtocolConfig:  x.routerProtocol,
	})
	if err != nil {
		return err
	}
	routed.apply(ans.GetRequestHeaders().GetResponse().GetHeaderMutation())

	ans, err = s.roundTrip(RouterRequestBody, time.Now(), t, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: x.requestBody(), EndOfStream: true},
		},
		MetadataContext: &corev3.Metadata{},
	})
	if err != nil {
		return err
	}
	routed.apply(ans.GetRequestBody().GetResponse().GetHeaderMutation())

	if x.spec.Upstream != nil {
		if err := x.upstream(ctx, client, routed, t); err != nil {
			return err
		}
	}

	if _, err := s.roundTrip(RouterResponseHeaders, time.Now(), t, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: x.resHeaders},
		},
		MetadataContext: &corev3.Metadata{},
	}); err != nil {
		return err
	}
	if _, err := s.roundTrip(RouterResponseBody, time.Now(), t, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: x.spec.ResponseBody, EndOfStream: true},
		},
		MetadataContext: &corev3.Metadata{},
	}); err != nil {
		return err
	}
	return s.halfClose()
}

// upstream runs the upstream filter's stream: the request headers as routing left them, with
// the filter's attributes and initial metadata; it expects no response direction.
func (x *Exchange) upstream(
	ctx context.Context,
	client extprocv3.ExternalProcessorClient,
	routed headerList,
	t *Timings,
) error {
	started := time.Now()
	up, err := client.Process(metadata.NewOutgoingContext(ctx, x.upstreamMD))
	if err != nil {
		return fmt.Errorf("upstream: open stream: %w", err)
	}
	s := &stream{s: up, name: "upstream"}
	if _, err := s.roundTrip(UpstreamRequestHeaders, started, t, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: routed.headerMap()},
		},
		MetadataContext: &corev3.Metadata{},
		Attributes:      x.upstreamAttr,
		// Body modes NONE: the message is present with nothing set, as Envoy sends it.
		ProtocolConfig: &extprocv3.ProtocolConfiguration{},
	}); err != nil {
		return err
	}
	return s.halfClose()
}

type stream struct {
	s    extprocv3.ExternalProcessor_ProcessClient
	name string
}

// roundTrip sends one message and waits for its answer, which must carry the matching oneof.
// An immediate_response is an error here: every bench exchange is one the extproc lets through.
func (s *stream) roundTrip(
	p Phase,
	started time.Time,
	t *Timings,
	msg *extprocv3.ProcessingRequest,
) (*extprocv3.ProcessingResponse, error) {
	t.Sent[p] = time.Now()
	if err := s.s.Send(msg); err != nil {
		return nil, fmt.Errorf("%s: send: %w", phaseNames[p], s.status(err))
	}
	t.Wrote[p] = time.Now()
	ans, err := s.s.Recv()
	if err != nil {
		return nil, fmt.Errorf("%s: no answer: %w", phaseNames[p], err)
	}
	t.Answered[p] = time.Now()
	t.Round[p] = t.Answered[p].Sub(started)
	if ir := ans.GetImmediateResponse(); ir != nil {
		return nil, fmt.Errorf("%s: immediate response %d (%s): %.300s",
			phaseNames[p], ir.GetStatus().GetCode(), ir.GetDetails(), ir.GetBody())
	}
	var ok bool
	switch p {
	case RouterRequestHeaders, UpstreamRequestHeaders:
		ok = ans.GetRequestHeaders() != nil
	case RouterRequestBody:
		ok = ans.GetRequestBody() != nil
	case RouterResponseHeaders:
		ok = ans.GetResponseHeaders() != nil
	case RouterResponseBody:
		ok = ans.GetResponseBody() != nil
	}
	if !ok {
		// Envoy treats a wrong oneof as a spurious message and fails the request.
		return nil, fmt.Errorf("%s: answered with the wrong oneof (%T)", phaseNames[p], ans.GetResponse())
	}
	return ans, nil
}

// halfClose ends the client side as Envoy does once the last answer arrived, then waits for the
// server's status: a stream left to a reset (RST_STREAM) is what Envoy avoids, and Node's HTTP/2
// server closes connections that draw too many of them.
func (s *stream) halfClose() error {
	if err := s.s.CloseSend(); err != nil {
		return fmt.Errorf("%s: half-close: %w", s.name, err)
	}
	if extra, err := s.s.Recv(); err == nil {
		return fmt.Errorf("%s: unexpected message after the last answer (%T)", s.name, extra.GetResponse())
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: stream ended with %w", s.name, err)
	}
	return nil
}

// status turns grpc-go's io.EOF from Send (the stream already ended) into the actual status.
func (s *stream) status(err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, rerr := s.s.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return errors.New("stream ended by the server")
}

// headerList is an ordered header list as Envoy holds it: names lowercase, values as bytes.
type headerList [][2]string

// apply performs a HeaderMutation as Envoy does: removals first, then each set replacing every
// value of its name unless append is true. Envoy's refusals (host, :authority, x-envoy-*) are
// not modelled: the bench only replays what the extproc under test answers to valid traffic.
func (h *headerList) apply(m *extprocv3.HeaderMutation) {
	for _, name := range m.GetRemoveHeaders() {
		h.remove(strings.ToLower(name))
	}
	for _, o := range m.GetSetHeaders() {
		name := strings.ToLower(o.GetHeader().GetKey())
		if !o.GetAppend().GetValue() {
			h.remove(name)
		}
		*h = append(*h, [2]string{name, string(o.GetHeader().GetRawValue())})
	}
}

func (h *headerList) remove(name string) {
	out := (*h)[:0]
	for _, kv := range *h {
		if kv[0] != name {
			out = append(out, kv)
		}
	}
	*h = out
}

// headerMap encodes headers as Envoy sends them: lowercase keys, values only in raw_value.
func (h headerList) headerMap() *corev3.HeaderMap {
	out := make([]*corev3.HeaderValue, len(h))
	for i, kv := range h {
		out[i] = &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])}
	}
	return &corev3.HeaderMap{Headers: out}
}

// fromSpec turns the spec's byte strings (one char per octet, U+0000..U+00FF) into bytes.
func fromSpec(spec [][2]string) (headerList, error) {
	out := make(headerList, len(spec))
	for i, kv := range spec {
		b := make([]byte, 0, len(kv[1]))
		for _, r := range kv[1] {
			if r > 0xff {
				return nil, fmt.Errorf("header %s: character %q is not an octet", kv[0], r)
			}
			b = append(b, byte(r))
		}
		out[i] = [2]string{strings.ToLower(kv[0]), string(b)}
	}
	return out, nil
}
