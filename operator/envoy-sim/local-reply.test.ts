// The HCM's local_reply_config as the emulator runs it (local-reply.ts, after Envoy's
// source/common/local_reply/local_reply.cc and Utility::sendLocalReply), on what the operator
// emits: the extproc's own replies pass untouched, Envoy's own become errors in the caller's
// format — including when the extproc is gone (killed: gRPC error → 500; stopped: message
// timeout → 504), as the OpenAI and Anthropic SDKs see them. Unimplemented features are refused.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { stringify } from 'yaml';
import { WIRE } from '../../extproc/config/contract.js';
import { startFakeServer, type FakeCall, type FakeServer } from '../../test/driver/fake-server.js';
import { desiredState } from '../controller/snapshot.js';
import { loadResources } from '../source/yaml.js';
import { compile } from '../compile/index.js';
import { toEnvoy } from '../compile/to-envoy.js';
import { ALL_NODES, SnapshotCache } from '../xds/cache.js';
import { ResourceEncoder } from '../xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';
import { startEnvoySim, type EnvoySim } from './index.js';
import { ConfigError } from './json.js';
import { buildLocalReply, compileLocalReplyConfig } from './local-reply.js';
import type { Json } from './protos.js';

/** The operator's local_reply_config, as the emulator decodes it (Struct in protobufjs form). */
function emitted(): Json {
  const r = toEnvoy({ routes: [], governance: undefined } as never);
  const hcm = (r.listeners[0]!['filter_chains'] as Json[])[0]!['filters'] as Json[];
  const cfg = (hcm[0]!['typed_config'] as Json)['local_reply_config'] as Json;
  return JSON.parse(JSON.stringify(cfg), (k, v: unknown) =>
    k === 'json_format' ? struct(v) : k === 'status_code' ? { value: v } : v,
  ) as Json;
}

/** Plain JSON → google.protobuf.Struct as protobufjs decodes it. */
function struct(v: unknown): unknown {
  const value = (x: unknown): unknown =>
    typeof x === 'string'
      ? { stringValue: x }
      : typeof x === 'number'
        ? { numberValue: x }
        : { structValue: struct(x) };
  return {
    fields: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, value(x)])),
  };
}

const REQ_OPENAI: [string, string][] = [
  [':method', 'POST'],
  [':path', '/v1/chat/completions'],
  ['x-sluice-request-id', 'rid-1'],
];
const REQ_ANTHROPIC: [string, string][] = [
  [':method', 'POST'],
  [':path', '/v1/messages?beta=true'],
];

describe('envoy-sim local_reply_config: the operator’s mappers', () => {
  const config = compileLocalReplyConfig('test', emitted());
  const none = { flags: [], dynamicMetadata: {} };

  it('no healthy upstream (UH) → 503 upstream_unavailable, OpenAI format, request id copied', () => {
    const r = buildLocalReply(config, {
      status: 503,
      body: Buffer.from('no healthy upstream'),
      headers: [],
      requestHeaders: REQ_OPENAI,
      info: { flags: ['UH'], dynamicMetadata: {} },
    });
    assert.equal(r.status, 503);
    const body = JSON.parse(r.body.toString());
    assert.deepEqual(body.error.code, 'upstream_unavailable');
    assert.equal(body.error.type, 'server_error');
    const h = Object.fromEntries(r.headers);
    assert.equal(h['content-type'], 'application/json');
    assert.equal(h['content-length'], String(r.body.length));
    assert.equal(h['x-sluice-error-code'], 'upstream_unavailable');
    assert.equal(h['x-sluice-request-id'], 'rid-1');
  });

  it('the Anthropic path gets Anthropic’s error object; no request id, no header', () => {
    const r = buildLocalReply(config, {
      status: 504,
      body: Buffer.from('upstream request timeout'),
      headers: [],
      requestHeaders: REQ_ANTHROPIC,
      info: { flags: ['UT'], dynamicMetadata: {} },
    });
    const body = JSON.parse(r.body.toString());
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    assert.equal(body.error.code, 'upstream_timeout');
    assert.equal(
      r.headers.find(([k]) => k === 'x-sluice-request-id'),
      undefined,
      'an empty %REQ()% value adds no header',
    );
  });

  it('an ext_proc failure (no flag, 500 or 504) → extproc_unavailable, status kept', () => {
    for (const status of [500, 504]) {
      const r = buildLocalReply(config, {
        status,
        body: Buffer.alloc(0),
        headers: [],
        requestHeaders: REQ_OPENAI,
        info: none,
      });
      assert.equal(r.status, status);
      assert.equal(JSON.parse(r.body.toString()).error.code, 'extproc_unavailable');
    }
  });

  it('the extproc’s own reply (marked in dynamic metadata) is left exactly as it was', () => {
    const own = Buffer.from('{"error":{"code":"gateway_error"}}');
    const r = buildLocalReply(config, {
      status: 500,
      body: own,
      headers: [
        ['content-type', 'application/json'],
        ['x-sluice-error-code', 'gateway_error'],
      ],
      requestHeaders: REQ_OPENAI,
      info: {
        flags: [],
        dynamicMetadata: {
          [WIRE.replyMetadataNamespace]: { [WIRE.replyMetadataKey]: WIRE.replyMetadataValue },
        },
      },
    });
    assert.equal(r.status, 500);
    assert.deepEqual(r.body, own);
    assert.equal(Object.fromEntries(r.headers)['content-type'], 'application/json');
    assert.equal(Object.fromEntries(r.headers)['x-sluice-error-code'], 'gateway_error');
  });

  it('a direct response (no flag, 404) matches no mapper: the route’s body and headers stay', () => {
    const body = Buffer.from('{"type":"error"}');
    const r = buildLocalReply(config, {
      status: 404,
      body,
      headers: [['content-type', 'application/json']],
      requestHeaders: REQ_ANTHROPIC,
      info: none,
    });
    assert.deepEqual(r.body, body);
    assert.equal(Object.fromEntries(r.headers)['content-type'], 'application/json');
  });

  it('without any mapper a reply stays Envoy’s plain text', () => {
    const r = buildLocalReply(compileLocalReplyConfig('x', undefined), {
      status: 503,
      body: Buffer.from('no healthy upstream'),
      headers: [],
      requestHeaders: REQ_OPENAI,
      info: { flags: ['UH'], dynamicMetadata: {} },
    });
    assert.equal(Object.fromEntries(r.headers)['content-type'], 'text/plain');
    assert.equal(r.body.toString(), 'no healthy upstream');
  });
});

describe('envoy-sim local_reply_config: what is not implemented is refused', () => {
  const mapper = (m: Json): Json => ({ mappers: [m] });
  const flags = { response_flag_filter: { flags: ['UH'] } };
  for (const [what, cfg] of [
    ['a top-level body_format', { mappers: [], body_format: { text_format: 'x' } }],
    ['a mapper body', mapper({ filter: flags, body: { inline_string: 'x' } })],
    ['text_format', mapper({ filter: flags, body_format_override: { text_format: '%RESP%' } })],
    [
      'a command operator in json_format',
      mapper({ filter: flags, body_format_override: { json_format: struct({ a: '%PROTOCOL%' }) } }),
    ],
    ['a duration_filter', mapper({ filter: { duration_filter: {} } })],
    ['an and_filter of one', mapper({ filter: { and_filter: { filters: [flags] } } })],
    [
      'a header value with another command operator',
      mapper({
        filter: flags,
        headers_to_add: [{ header: { key: 'x', value: '%START_TIME%' } }],
      }),
    ],
  ] as [string, Json][]) {
    it(what, () => {
      assert.throws(() => compileLocalReplyConfig('l', cfg), ConfigError);
    });
  }
});

describe('envoy-sim: the extproc unreachable, as the SDKs see it (newest release)', () => {
  let dir: string;
  let processor: FakeServer;
  let script: (call: FakeCall) => Promise<void>;
  let ads: RunningAdsServer;
  let sim: EnvoySim;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-local-reply-'));
    processor = await startFakeServer((c) => script(c));
    const docs = [
      {
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIRoute',
        metadata: { name: 'r', namespace: 'sim' },
        spec: {
          models: [{ prefix: '' }],
          backends: [
            {
              name: 'b',
              provider: 'openai',
              endpoint: { service: { name: 'backend', port: 80 } },
            },
          ],
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'backend', namespace: 'sim' },
        spec: { ports: [{ name: 'http', port: 80, targetPort: 9 }] },
      },
    ];
    const file = join(dir, 'manifests.yaml');
    await writeFile(file, docs.map((d) => stringify(d)).join('---\n'));
    const { resources } = await loadResources([file]);
    const t = compile(resources, {
      version: 'sim',
      listenerAddress: '127.0.0.1',
      listenerPort: 0,
      extprocSocket: processor.target.slice('unix:'.length),
      messageTimeoutMs: 200,
    });
    const cache = new SnapshotCache();
    cache.setSnapshot(ALL_NODES, desiredState(t, ResourceEncoder.fromProtoTree()).snapshot);
    ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
    sim = await startEnvoySim({ adsAddress: ads.address, nodeId: 'test/envoy' });
  });

  after(async () => {
    await sim?.close();
    await ads?.close(100);
    await processor?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  function clients() {
    const url = `http://${sim.listenerAddress()}`;
    const opts = { apiKey: 'k', maxRetries: 0, timeout: 10_000 };
    return {
      openai: new OpenAI({ ...opts, baseURL: `${url}/v1` }),
      anthropic: new Anthropic({ ...opts, baseURL: url }),
    };
  }

  async function failure(p: Promise<unknown>): Promise<unknown> {
    return p.then(
      (v) => assert.fail(`the call succeeded: ${JSON.stringify(v)}`),
      (e: unknown) => e,
    );
  }

  it('stopped (never answers): 504 extproc_unavailable after message_timeout', async () => {
    script = (c) => c.closed();
    const { openai, anthropic } = clients();
    const oa = await failure(
      openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    );
    assert.ok(oa instanceof OpenAI.APIError, String(oa));
    assert.equal(oa.status, 504);
    assert.equal((oa.error as { code?: unknown }).code, 'extproc_unavailable');
    assert.equal(oa.headers?.get('x-sluice-error-code'), 'extproc_unavailable');
    const an = await failure(
      anthropic.messages.create({
        model: 'm',
        max_tokens: 4,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(an instanceof Anthropic.APIError, String(an));
    assert.equal(an.status, 504);
    const b = an.error as { type?: unknown; error?: { type?: unknown; code?: unknown } };
    assert.equal(b.type, 'error');
    assert.equal(b.error?.code, 'extproc_unavailable');
  });

  it('killed (nothing listens on its socket): 500 extproc_unavailable', async () => {
    await processor.stop();
    const { openai, anthropic } = clients();
    const oa = await failure(
      openai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    );
    assert.ok(oa instanceof OpenAI.InternalServerError, String(oa));
    assert.equal(oa.status, 500);
    assert.equal((oa.error as { code?: unknown }).code, 'extproc_unavailable');
    const an = await failure(
      anthropic.messages.create({
        model: 'm',
        max_tokens: 4,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    assert.ok(an instanceof Anthropic.InternalServerError, String(an));
    const b = an.error as { type?: unknown; error?: { type?: unknown; code?: unknown } };
    assert.equal(b.error?.type, 'api_error');
    assert.equal(b.error?.code, 'extproc_unavailable');
  });
});
