// Command gen writes the FileDescriptorSet of the Envoy API that Sluice emits, decodes and checks
// against: the transitive closure of the files declaring the message types below, taken from
// go-control-plane's generated packages (the Envoy release named in go.mod). Sluice loads the set
// with protobufjs at run time, so the emulator, the ext_proc client and the strict golden checks
// all judge config by the targeted release's own definitions.
//
// Run from the repository root: npm run gen:envoy-protos
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"

	"github.com/envoyproxy/protoc-gen-validate/validate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// Imported for their registration in protoregistry.GlobalFiles.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// The roots: every message type Sluice emits (xDS resources, bootstrap, typed_config payloads),
// decodes (ext_proc stream) or speaks (ADS). Everything they reference comes along.
var roots = []protoreflect.FullName{
	"envoy.config.bootstrap.v3.Bootstrap",
	"envoy.config.cluster.v3.Cluster",
	"envoy.config.endpoint.v3.ClusterLoadAssignment",
	"envoy.config.listener.v3.Listener",
	"envoy.config.route.v3.RouteConfiguration",
	"envoy.config.trace.v3.OpenTelemetryConfig",
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
	"envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
	"envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
	"envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
	"envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
	"envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
	"envoy.extensions.filters.http.router.v3.Router",
	"envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec",
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
	"envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
	"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
	"envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
	"envoy.service.discovery.v3.DiscoveryRequest",
	"envoy.service.discovery.v3.DiscoveryResponse",
	"envoy.service.ext_proc.v3.ProcessingRequest",
	"envoy.service.ext_proc.v3.ProcessingResponse",
	"envoy.type.v3.HttpStatus",
}

// Services whose files must be in the set so their methods can be looked up.
var services = []protoreflect.FullName{
	"envoy.service.discovery.v3.AggregatedDiscoveryService",
	"envoy.service.ext_proc.v3.ExternalProcessor",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen OUT_DIR")
		os.Exit(2)
	}
	out := os.Args[1]
	seen := map[string]bool{}
	var order []protoreflect.FileDescriptor
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			visit(imports.Get(i).FileDescriptor)
		}
		order = append(order, fd) // dependencies first, as protoc writes a set
	}
	for _, name := range append(append([]protoreflect.FullName{}, roots...), services...) {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
		visit(d.ParentFile())
	}
	set := &descriptorpb.FileDescriptorSet{}
	paths := make([]string, 0, len(order))
	for _, fd := range order {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
		paths = append(paths, fd.Path())
	}
	bytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(out, "envoy-api.binpb"), bytes, 0o644); err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(out, "envoy-api-rules.json"), validationRules(order), 0o644); err != nil {
		fail(err)
	}
	sort.Strings(paths)
	info := map[string]any{
		"module":  "github.com/envoyproxy/go-control-plane/envoy",
		"version": moduleVersion("github.com/envoyproxy/go-control-plane/envoy"),
		"roots":   roots,
		"files":   paths,
	}
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(out, "envoy-api.json"), append(js, '\n'), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("%d files, %d bytes\n", len(set.File), len(bytes))
}

// validationRules writes the protoc-gen-validate constraints the release declares, which Envoy
// enforces when it loads config (a violation is a NACK): per field (full message name "." field
// name) its validate.rules, and per message the oneofs that must be set. Messages marked
// validate.disabled or validate.ignored are left out, as Envoy does not check them.
func validationRules(files []protoreflect.FileDescriptor) []byte {
	fields := map[string]json.RawMessage{}
	oneofs := map[string][]string{}
	var walk func(msgs protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			walk(m.Messages())
			opts := m.Options()
			if proto.GetExtension(opts, validate.E_Disabled).(bool) || proto.GetExtension(opts, validate.E_Ignored).(bool) {
				continue
			}
			fs := m.Fields()
			for j := 0; j < fs.Len(); j++ {
				f := fs.Get(j)
				rules, _ := proto.GetExtension(f.Options(), validate.E_Rules).(*validate.FieldRules)
				if rules == nil || proto.Size(rules) == 0 {
					continue
				}
				js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(rules)
				if err != nil {
					fail(err)
				}
				fields[string(f.FullName())] = js
			}
			os := m.Oneofs()
			for j := 0; j < os.Len(); j++ {
				o := os.Get(j)
				if !o.IsSynthetic() && proto.GetExtension(o.Options(), validate.E_Required).(bool) {
					oneofs[string(m.FullName())] = append(oneofs[string(m.FullName())], string(o.Name()))
				}
			}
		}
	}
	for _, fd := range files {
		walk(fd.Messages())
	}
	js, err := json.MarshalIndent(map[string]any{"fields": fields, "required_oneofs": oneofs}, "", " ")
	if err != nil {
		fail(err)
	}
	return append(js, '\n')
}

func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fail(fmt.Errorf("no build info"))
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	fail(fmt.Errorf("%s is not a dependency", path))
	return ""
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}
