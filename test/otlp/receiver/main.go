// A minimal OTLP/HTTP trace receiver for the otlp test tier, built on the OpenTelemetry
// Collector's own pdata decoders (the code every Collector receiver uses): it decodes each
// POST /v1/traces (protobuf or JSON, as the exporter sends it), answers as OTLP says, and hands
// the decoded requests back, re-encoded as OTLP JSON, on GET /received. A payload the Collector
// cannot decode is answered 400 and counted on GET /rejected, so a malformed export fails the test.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to listen on")
	flag.Parse()

	var mu sync.Mutex
	received := []string{}
	rejected := []string{}

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		ct := r.Header.Get("Content-Type")
		switch {
		case strings.HasPrefix(ct, "application/x-protobuf"):
			err = req.UnmarshalProto(body)
		case strings.HasPrefix(ct, "application/json"):
			err = req.UnmarshalJSON(body)
		default:
			err = fmt.Errorf("unsupported content type %q", ct)
		}
		if err != nil {
			mu.Lock()
			rejected = append(rejected, err.Error())
			mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := req.MarshalJSON()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		mu.Lock()
		received = append(received, string(out))
		mu.Unlock()
		resp := ptraceotlp.NewExportResponse()
		if strings.HasPrefix(ct, "application/json") {
			b, _ := resp.MarshalJSON()
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
			return
		}
		b, _ := resp.MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	})
	list := func(items *[]string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "["+strings.Join(*items, ",")+"]")
		}
	}
	mux.HandleFunc("/received", list(&received))
	rejectedJSON := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "%d", len(rejected))
	}
	mux.HandleFunc("/rejected", rejectedJSON)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The parent reads the bound address from the first line.
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr().String())
	log.Fatal(http.Serve(ln, mux))
}
