// The emulator's upstream ext_proc filter and router, on what the operator emits, against a
// scripted ext_proc server: on the newest release (every supported one, 1.37+) a local reply of
// the upstream filter is sent downstream and not retried; on 1.36 and older (envoyRelease) it is
// ignored and counted and the attempt waits for the route's timeout; an immediate response the
// router filter receives while the router waits for the attempt is sent at once and resets it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { desiredState } from '../controller/snapshot.js';
import { loadResources } from '../source/yaml.js';
import { compile } from '../compile/index.js';
import { ALL_NODES, SnapshotCache } from '../xds/cache.js';
import { ResourceEncoder } from '../xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';
import { startFakeServer, type FakeCall, type FakeServer } from '../../test/driver/fake-server.js';
import { startEnvoySim, type AccessLogEntry, type EnvoySim } from './index.js';

const IGNORED = 'ext_proc.send_immediate_resp_upstream_ignored';

/** What the scripted processor does with the next request. */
interface Script {
  /** The router filter's stream, once it answered the request body. */
  router?: (call: FakeCall) => Promise<void>;
  /** The upstream filter's stream, with the request headers it received. */
  upstream: (call: FakeCall) => Promise<void>;
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

async function passAll(call: FakeCall): Promise<void> {
  for (;;) {
    const m = await call.next();
    if (!m) return;
    call.send({ [m.request!]: {} });
  }
}

const refuse501 = async (call: FakeCall): Promise<void> => {
  await call.expect();
  call.send({
    immediate_response: {
      status: { code: 501 },
      body: Buffer.from('{"error":"refused"}'),
      details: 'sluice_unsupported_backend',
    },
  });
  await call.closed();
};

describe('envoy-sim: upstream ext_proc filter local replies', () => {
  let dir: string;
  let backend: http.Server;
  let backendHits = 0;
  let processor: FakeServer;
  let script: Script;
  let ads: RunningAdsServer;

  async function sim(envoyRelease?: string) {
    const log: AccessLogEntry[] = [];
    const s = await startEnvoySim({
      adsAddress: ads.address,
      nodeId: 'test/envoy',
      retryBackoffBaseMs: 0,
      ...(envoyRelease ? { envoyRelease } : {}),
      onAccessLog: (e) => log.push(e),
    });
    return { s, log };
  }

  async function call(
    s: EnvoySim,
    model: string,
  ): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    const [host, port] = s.listenerAddress().split(':');
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host,
          port: Number(port),
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString(),
              headers: res.headers,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ model, messages: [] }));
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-upstream-'));
    backend = http.createServer((_req, res) => {
      backendHits++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const port = (backend.address() as AddressInfo).port;
    processor = await startFakeServer(async (c) => {
      const upstream = c.metadata.get('x-sluice-filter')[0] === 'upstream';
      if (upstream) return script.upstream(c);
      // The router filter: routes on the model in the body, then does what the script says.
      await c.expect();
      c.send({ request_headers: {} });
      const body = await c.expect();
      const model = (JSON.parse(body.request_body!.body!.toString()) as { model: string }).model;
      c.send({
        request_body: {
          response: {
            header_mutation: {
              set_headers: [{ header: { key: 'x-sluice-model', raw_value: Buffer.from(model) } }],
            },
            clear_route_cache: true,
          },
        },
      });
      await (script.router ?? passAll)(c);
    });
    const route = (name: string, model: string, timeout: string) => ({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name, namespace: 'sim' },
      spec: {
        models: [{ exact: model }],
        backends: [
          { name: 'b', provider: 'openai', endpoint: { service: { name: 'backend', port: 80 } } },
        ],
        timeout,
        retry: { attempts: 0 },
      },
    });
    const docs = [
      route('quick', 'quick-model', '300ms'),
      route('slow', 'slow-model', '60s'),
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'backend', namespace: 'sim' },
        spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
      },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: 'backend-1',
          namespace: 'sim',
          labels: { 'kubernetes.io/service-name': 'backend' },
        },
        addressType: 'IPv4',
        ports: [{ name: 'http', port }],
        endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
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
      messageTimeoutMs: 5000,
    });
    const cache = new SnapshotCache();
    cache.setSnapshot(ALL_NODES, desiredState(t, ResourceEncoder.fromProtoTree()).snapshot);
    ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
  });

  after(async () => {
    await ads?.close(100);
    await processor?.stop();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('Envoy 1.36: ignored and counted; the attempt waits for the route timeout', async () => {
    script = { upstream: refuse501 };
    const { s, log } = await sim('1.36');
    try {
      const hits = backendHits;
      const r = await call(s, 'quick-model');
      // The rule's timeout is the route's idle timeout (to-envoy.ts): the held attempt ends there,
      // as Envoy's 504 "stream timeout" shaped by local_reply_config.
      assert.equal(r.status, 504);
      assert.equal(JSON.parse(r.body).error.code, 'upstream_timeout');
      assert.equal(r.headers['x-sluice-error-code'], 'upstream_timeout');
      assert.equal(s.counters.get(IGNORED), 1);
      assert.equal(backendHits, hits, 'the held attempt never reached the backend');
      assert.equal(log.at(-1)?.details, 'stream_idle_timeout');
      assert.ok(log.at(-1)?.flags.includes('SI'));
    } finally {
      await s.close();
    }
  });

  it('newest release: the upstream filter’s reply goes downstream, not retried', async () => {
    let router: FakeCall | undefined;
    script = {
      upstream: refuse501,
      router: async (c) => {
        router = c;
        await passAll(c);
      },
    };
    const { s, log } = await sim();
    try {
      const r = await call(s, 'slow-model');
      assert.equal(r.status, 501);
      assert.equal(r.body, '{"error":"refused"}');
      assert.equal(s.counters.get(IGNORED), undefined);
      assert.equal(log.at(-1)?.details, 'sluice_unsupported_backend');
      assert.equal(log.at(-1)?.attempts, 1);
      // A local reply of the upstream filter chain reaches the router filter (1.37+, PR #41769).
      assert.ok(router?.received.some((m) => m.request === 'response_headers'));
    } finally {
      await s.close();
    }
  });

  it('the router’s own local reply (connect failure) never reaches the router filter', async () => {
    let router: FakeCall | undefined;
    script = {
      upstream: async (c) => {
        await c.expect();
        c.send({ request_headers: {} });
        await c.closed();
      },
      router: async (c) => {
        router = c;
        await passAll(c);
      },
    };
    const { s, log } = await sim();
    const saved = backend.address() as AddressInfo;
    await new Promise<void>((r) => backend.close(() => r()));
    try {
      const r = await call(s, 'slow-model');
      assert.equal(r.status, 503);
      assert.equal(JSON.parse(r.body).error.code, 'upstream_unavailable');
      assert.ok(log.at(-1)?.flags.includes('UF'));
      assert.equal(
        router?.received.some((m) => m.request === 'response_headers'),
        false,
      );
    } finally {
      await new Promise<void>((r) => backend.listen(saved.port, '127.0.0.1', r));
      await s.close();
    }
  });

  it('an immediate response of the router filter while the attempt is held: sent at once', async () => {
    const held = gate();
    let upstreamCall: FakeCall | undefined;
    script = {
      upstream: async (c) => {
        upstreamCall = c;
        await refuse501(c);
      },
      router: async (c) => {
        // Unasked: nothing is pending on this stream while the router waits for the attempt.
        await held.wait;
        c.send({
          immediate_response: {
            status: { code: 501 },
            body: Buffer.from('{"via":"router"}'),
            details: 'sluice_unsupported_backend',
          },
        });
        await c.closed();
      },
    };
    const { s, log } = await sim('1.36');
    try {
      const hits = backendHits;
      const pending = call(s, 'slow-model');
      await until(() => s.counters.get(IGNORED) === 1);
      held.open();
      const r = await pending;
      assert.equal(r.status, 501);
      assert.equal(r.body, '{"via":"router"}');
      assert.equal(backendHits, hits);
      const entry = log.at(-1)!;
      // An ext_proc immediate response sets no response flag.
      assert.deepEqual(entry.flags, []);
      assert.equal(entry.details, 'sluice_unsupported_backend');
      // The reset attempt took its ext_proc stream with it (already closed by the filter).
      await upstreamCall!.closed();
    } finally {
      await s.close();
    }
  });
});

async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
