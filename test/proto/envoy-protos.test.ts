import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

import {
  envoyApiDeclarationFiles,
  envoyApiInfo,
  envoyApiJson,
  envoyApiRoot,
  envoyRelease,
} from '../../operator/envoy-api/index.js';
import { OUR_PROTO_DIR, compareRoots, listProtoFiles, loadRoot } from './compare.js';

const SVC = 'envoy.service.ext_proc.v3';

// The options the extproc server loads with; kept here so a change there is noticed here.
const LOADER_OPTIONS: protoLoader.Options = {
  includeDirs: [OUR_PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

function report(problems: readonly string[]): void {
  if (problems.length > 0) {
    assert.fail(
      `${problems.length} mismatch(es) with the official Envoy API:\n  - ${problems.join('\n  - ')}`,
    );
  }
}

function officialExtProcRoot(): protobuf.Root {
  return envoyApiRoot();
}

// Inline texts cannot import, so the well-known types they mention are preloaded from the
// copies bundled with protobufjs.
function parseInline(text: string): protobuf.Root {
  const root = new protobuf.Root();
  for (const file of ['google/protobuf/struct.proto', 'google/protobuf/wrappers.proto']) {
    const json = protobuf.common.get(file);
    assert.ok(json, `protobufjs bundles ${file}`);
    root.addJSON(json.nested as Record<string, protobuf.AnyNestedObject>);
  }
  protobuf.parse(text, root, { keepCase: true });
  root.resolveAll();
  return root;
}

function inline(body: string, pkg = SVC): string {
  return `syntax = "proto3";\npackage ${pkg};\n${body}\n`;
}

function compareInline(body: string, pkg = SVC): string[] {
  return compareRoots(parseInline(inline(body, pkg)), officialExtProcRoot());
}

function assertOneProblem(problems: readonly string[], pattern: RegExp): void {
  assert.equal(problems.length, 1, `expected exactly one problem, got:\n${problems.join('\n')}`);
  assert.match(problems[0]!, pattern);
}

void describe('proto/ declarations', () => {
  const files = listProtoFiles(OUR_PROTO_DIR);

  void it('finds the ext_proc tree', () => {
    for (const file of [
      'envoy/service/ext_proc/v3/external_processor.proto',
      'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
      'envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto',
      'envoy/config/core/v3/base.proto',
      'envoy/config/core/v3/grpc_service.proto',
      'envoy/type/v3/http_status.proto',
    ]) {
      assert.ok(files.includes(file), `${file} is under proto/`);
    }
  });

  void it(`match Envoy ${envoyRelease()}'s API in every declared message, field, enum and method`, () => {
    const problems: string[] = [];
    // proto/sluice/ holds Sluice's own messages (package sluice.*): nothing official to compare.
    const envoyFiles = files.filter((file) => !file.startsWith('sluice/'));
    const official = new Set(envoyApiInfo().files);
    for (const file of envoyFiles) {
      if (!official.has(file)) problems.push(`${file}: no file at this path in the Envoy API set`);
    }
    const ours = loadRoot(envoyFiles, [OUR_PROTO_DIR]);
    problems.push(
      ...compareRoots(ours, envoyApiRoot(), {
        ourIncludeDir: OUR_PROTO_DIR,
        officialFiles: envoyApiDeclarationFiles(),
      }),
    );
    report(problems);
  });

  void it('load with @grpc/proto-loader from proto/ alone, well-known types included', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on('warning', onWarning);
    try {
      const definition = protoLoader.loadSync(
        [
          'envoy/service/ext_proc/v3/external_processor.proto',
          'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
        ],
        LOADER_OPTIONS,
      );
      for (const name of [
        'google.protobuf.Struct',
        'google.protobuf.Duration',
        'google.protobuf.BoolValue',
        'google.protobuf.UInt32Value',
        'google.protobuf.Any',
        `${SVC}.ProcessingRequest`,
        'envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
      ]) {
        assert.ok(definition[name], `${name} is in the package definition`);
      }
      const service = definition[`${SVC}.ExternalProcessor`] as protoLoader.ServiceDefinition;
      const process_ = service['Process']!;
      assert.equal(process_.path, `/${SVC}.ExternalProcessor/Process`);
      assert.equal(process_.requestStream, true);
      assert.equal(process_.responseStream, true);

      // Every file, not only the two the server loads, must stand on its own.
      protoLoader.loadSync(files, LOADER_OPTIONS);
      // proto-loader reports an unresolvable import as a process warning, emitted on a later tick.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
  });

  void it('encode bytes that the official definitions decode to the same message', () => {
    const ours = loadRoot(files, [OUR_PROTO_DIR]);
    const official = officialExtProcRoot();
    const message = {
      request_body: {
        response: {
          status: 1,
          header_mutation: {
            set_headers: [
              { header: { key: 'x-sluice-model', raw_value: Buffer.from('gpt-4o') } },
              {
                header: { key: 'x-b', raw_value: Buffer.from([0xff, 0x00]) },
                append: { value: true },
              },
            ],
            remove_headers: ['content-length'],
          },
          body_mutation: { body: Buffer.from('{"model":"gpt-4o"}') },
          clear_route_cache: true,
        },
      },
      mode_override: { response_body_mode: 1, response_header_mode: 1 },
      dynamic_metadata: {
        fields: { sluice: { struct_value: { fields: { n: { number_value: 1 } } } } },
      },
      override_message_timeout: { seconds: 2, nanos: 5 },
    };
    const ourType = ours.lookupType(`${SVC}.ProcessingResponse`);
    const officialType = official.lookupType(`${SVC}.ProcessingResponse`);
    const bytes = ourType.encode(ourType.fromObject(message)).finish();
    const opts = { longs: String, enums: String, bytes: String, oneofs: true };
    assert.deepEqual(
      officialType.toObject(officialType.decode(bytes), opts),
      ourType.toObject(ourType.decode(bytes), opts),
    );
    assert.deepEqual(
      officialType.encode(officialType.fromObject(message)).finish(),
      bytes,
      'both definitions produce the same bytes',
    );
  });
});

void describe('the comparison itself', () => {
  const httpBody = 'message HttpBody { bytes body = 1; bool end_of_stream = 2; }';

  void it('accepts a correct declaration', () => {
    assert.deepEqual(
      compareInline(`${httpBody}
        message BodyMutation { oneof mutation { bytes body = 1; bool clear_body = 2; } }
        message HeaderMutation { repeated string remove_headers = 2; }
        message CommonResponse { enum ResponseStatus { CONTINUE = 0; CONTINUE_AND_REPLACE = 1; } }
        message ProcessingRequest { map<string, google.protobuf.Struct> attributes = 9; }
        message ProcessingResponse {}
        service ExternalProcessor {
          rpc Process(stream ProcessingRequest) returns (stream ProcessingResponse);
        }`),
      [],
    );
  });

  void it('catches a changed field number', () => {
    assertOneProblem(
      compareInline('message HttpBody { bytes body = 1; bool end_of_stream = 3; }'),
      /HttpBody\.end_of_stream: declared "bool = 3", officially "bool = 2"/,
    );
  });

  void it('catches a changed scalar type', () => {
    assertOneProblem(
      compareInline('message HttpBody { string body = 1; bool end_of_stream = 2; }'),
      /HttpBody\.body: declared "string = 1", officially "bytes = 1"/,
    );
  });

  void it('catches a changed message type', () => {
    assertOneProblem(
      compareInline(
        'message BodyResponse {} message HeadersResponse { BodyResponse response = 1; }',
      ),
      /HeadersResponse\.response: declared "envoy\.service\.ext_proc\.v3\.BodyResponse = 1", officially "envoy\.service\.ext_proc\.v3\.CommonResponse = 1"/,
    );
  });

  void it('catches a field moved out of its oneof', () => {
    assertOneProblem(
      compareInline(
        'message BodyMutation { bytes body = 1; oneof mutation { bool clear_body = 2; } }',
      ),
      /BodyMutation\.body: declared "bytes = 1", officially "bytes = 1 in oneof mutation"/,
    );
  });

  void it('catches a renamed oneof', () => {
    assertOneProblem(
      compareInline('message BodyMutation { oneof body_mutation { bytes body = 1; } }'),
      /BodyMutation\.body: declared "bytes = 1 in oneof body_mutation", officially "bytes = 1 in oneof mutation"/,
    );
  });

  void it('catches a misspelt field name', () => {
    assertOneProblem(
      compareInline('message HttpBody { bytes body = 1; bool end_of_steam = 2; }'),
      /HttpBody\.end_of_steam: field not in the official message \(official field 2 is "end_of_stream"\)/,
    );
  });

  void it('catches an unknown message', () => {
    assertOneProblem(
      compareInline('message HttpBodyChunk { bytes body = 1; }'),
      /ext_proc\.v3\.HttpBodyChunk: message not in the official API/,
    );
  });

  void it('catches a message declared under the wrong package', () => {
    assert.deepEqual(compareInline(httpBody, 'envoy.service.ext_proc.v4'), [
      'envoy.service.ext_proc.v4.HttpBody: message not in the official API',
    ]);
  });

  void it('catches a lost repeated label and a proto3 optional one', () => {
    const problems = compareInline(
      'message HeaderMutation { string remove_headers = 2; } message HttpBody { optional bool end_of_stream = 2; }',
    );
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(
      problems.join('\n'),
      /remove_headers: declared "string = 2", officially "repeated string = 2"/,
    );
    assert.match(
      problems.join('\n'),
      /end_of_stream: declared "optional bool = 2", officially "bool = 2"/,
    );
  });

  void it('catches a map with a different value type', () => {
    assertOneProblem(
      compareInline('message ProcessingRequest { map<string, string> attributes = 9; }'),
      /attributes: declared "map<string, string> = 9", officially "map<string, google\.protobuf\.Struct> = 9"/,
    );
  });

  void it('catches a changed or misspelt enum value', () => {
    const problems = compareInline(
      'message CommonResponse { enum ResponseStatus { CONTINUE = 0; CONTINUE_AND_REPLACE = 2; CONTINUE_REPLACE = 1; } }',
    );
    assert.deepEqual(problems, [
      `${SVC}.CommonResponse.ResponseStatus.CONTINUE_AND_REPLACE: declared = 2, officially = 1`,
      `${SVC}.CommonResponse.ResponseStatus.CONTINUE_REPLACE: enum value not in the official enum (official 1 is "CONTINUE_AND_REPLACE")`,
    ]);
  });

  void it('catches a method that lost its streaming flag', () => {
    assertOneProblem(
      compareInline(`message ProcessingRequest {} message ProcessingResponse {}
        service ExternalProcessor { rpc Process(ProcessingRequest) returns (stream ProcessingResponse); }`),
      /Process: declared "rpc \(envoy\.service\.ext_proc\.v3\.ProcessingRequest\) returns \(stream /,
    );
  });

  void it('catches a top-level declaration in another file than the official one', () => {
    const ours = parseInline(inline(httpBody));
    for (const t of [ours.lookupType(`${SVC}.HttpBody`)]) t.filename = '/p/envoy/x.proto';
    assert.deepEqual(
      compareRoots(ours, officialExtProcRoot(), {
        ourIncludeDir: '/p',
        officialFiles: envoyApiDeclarationFiles(),
      }),
      [
        `${SVC}.HttpBody: declared in envoy/x.proto, officially in envoy/service/ext_proc/v3/external_processor.proto`,
      ],
    );
  });
});

void describe('the Envoy API descriptor set (proto/envoy-api)', () => {
  void it('is the newest release line, and its description matches its content', () => {
    const info = envoyApiInfo();
    assert.equal(info.module, 'github.com/envoyproxy/go-control-plane/envoy');
    assert.match(info.version, /^v1\.40\.\d+$/);
    assert.equal(envoyRelease(), info.version.slice(1));
    const files = [...new Set(envoyApiDeclarationFiles().values())];
    // Files that declare no top-level type (annotation-only) still count as files of the set.
    for (const f of files) assert.ok(info.files.includes(f), `${f} listed in envoy-api.json`);
    const root = envoyApiRoot();
    for (const name of info.roots) assert.ok(root.lookupType(name), `${name} resolves`);
  });

  void it('keeps maps as maps and proto3 repeated scalars packed', () => {
    const root = envoyApiRoot();
    const cluster = root.lookupType('envoy.config.cluster.v3.Cluster');
    const opts = cluster.fields['typed_extension_protocol_options'];
    assert.ok(opts instanceof protobuf.MapField);
    assert.equal(opts.keyType, 'string');
    const retry = root.lookupType('envoy.config.route.v3.RetryPolicy');
    assert.equal(retry.fields['retriable_status_codes']!.packed, true);
    const bytes = cluster
      .encode(
        cluster.fromObject({
          name: 'c',
          typed_extension_protocol_options: { k: { type_url: 'type.googleapis.com/x', value: [] } },
        }),
      )
      .finish();
    // Field 36, a map entry: key "k" (field 1) and the Any (field 2).
    assert.ok(Buffer.from(bytes).includes(Buffer.from([0xa2, 0x02])), 'map field 36 on the wire');
  });

  void it('serves gRPC services: ADS and ext_proc, streaming both ways', () => {
    const def = protoLoader.fromJSON(envoyApiJson(), { keepCase: true });
    for (const [svc, method] of [
      ['envoy.service.discovery.v3.AggregatedDiscoveryService', 'StreamAggregatedResources'],
      ['envoy.service.ext_proc.v3.ExternalProcessor', 'Process'],
    ] as const) {
      const m = (def[svc] as protoLoader.ServiceDefinition)[method]!;
      assert.equal(m.requestStream, true);
      assert.equal(m.responseStream, true);
    }
  });
});
