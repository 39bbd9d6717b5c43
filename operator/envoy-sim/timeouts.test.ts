// Route timeouts as Envoy runs them: the route `timeout` spans the whole response (the router
// disables it only in onUpstreamComplete, source/common/router/router.cc) — once the response has
// started it can only reset the stream — and the route `idle_timeout` ends a stream that stays
// silent, re-armed by every chunk. What the operator emits (timeout 0s, idle_timeout = the rule's
// timeout) lets a long stream that keeps talking live and ends one that stalls.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startFakeServer, type FakeCall, type FakeServer } from '../../test/driver/fake-server.js';
import { desiredState } from '../controller/snapshot.js';
import { loadResources } from '../source/yaml.js';
import { compile } from '../compile/index.js';
import { ALL_NODES, SnapshotCache } from '../xds/cache.js';
import { ResourceEncoder } from '../xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../xds/server.js';
import { startEnvoySim, type AccessLogEntry, type EnvoySim } from './index.js';

/** The router filter of the scripted processor: routes on the body's model, passes the rest. */
async function route(c: FakeCall): Promise<void> {
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
  for (;;) {
    const m = await c.next();
    if (!m) return;
    // SSE: switch the response body to STREAMED, as the extproc does (response.ts).
    if (m.request === 'response_headers') {
      c.send({
        response_headers: {},
        mode_override: { request_body_mode: 'BUFFERED', response_body_mode: 'STREAMED' },
      });
    } else c.send({ [m.request!]: {} });
  }
}

describe('envoy-sim: route timeout and idle timeout', () => {
  let dir: string;
  let backend: http.Server;
  let processor: FakeServer;
  let ads: RunningAdsServer;
  let sim: EnvoySim;
  const log: AccessLogEntry[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-sim-timeouts-'));
    // Streams `n` chunks `gapMs` apart (then stalls forever when `stall` is set).
    backend = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      void (async () => {
        for await (const chunk of req) void chunk;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        const n = Number(u.searchParams.get('n') ?? 0);
        const gap = Number(u.searchParams.get('gap') ?? 0);
        for (let i = 0; i < n; i++) {
          await new Promise((r) => setTimeout(r, gap));
          if (res.destroyed) return;
          res.write(`data: ${i}\n\n`);
        }
        if (u.searchParams.get('stall') !== '1') res.end('data: [DONE]\n\n');
      })();
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const port = (backend.address() as AddressInfo).port;
    processor = await startFakeServer(async (c) => {
      if (c.metadata.get('x-sluice-filter')[0] === 'upstream') {
        // Keep the path the test chose (the upstream phase would set the provider's).
        await c.expect();
        c.send({ request_headers: {} });
        await c.closed();
        return;
      }
      await route(c);
    });
    const airoute = (name: string, model: string, timeout: string) => ({
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
      airoute('idle', 'idle-model', '400ms'),
      airoute('whole', 'whole-model', '60s'),
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
    // The 'whole' route gets a route timeout of 600 ms (the operator emits 0s): what Envoy does
    // with one once the response has started.
    for (const vh of t.envoy.routes[0]!['virtual_hosts'] as {
      routes: Record<string, unknown>[];
    }[]) {
      for (const r of vh.routes) {
        const action = r['route'] as Record<string, unknown> | undefined;
        if (action && String(r['name']).includes('whole')) action['timeout'] = '0.600s';
      }
    }
    const cache = new SnapshotCache();
    cache.setSnapshot(ALL_NODES, desiredState(t, ResourceEncoder.fromProtoTree()).snapshot);
    ads = await startAdsServer({ cache, listen: '127.0.0.1:0' });
    sim = await startEnvoySim({
      adsAddress: ads.address,
      nodeId: 'test/envoy',
      onAccessLog: (e) => log.push(e),
    });
  });

  after(async () => {
    await sim?.close();
    await ads?.close(100);
    await processor?.stop();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
    await rm(dir, { recursive: true, force: true });
  });

  /** Streams a request; resolves with what arrived and whether the stream was cut. */
  function stream(
    model: string,
    query: string,
  ): Promise<{ status: number; text: string; complete: boolean }> {
    const [host, port] = sim.listenerAddress().split(':');
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host,
          port: Number(port),
          method: 'POST',
          path: `/v1/chat/completions?${query}`,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, complete: true }));
          res.on('error', () => resolve({ status: res.statusCode ?? 0, text, complete: false }));
          res.on('aborted', () => resolve({ status: res.statusCode ?? 0, text, complete: false }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ model, stream: true, messages: [] }));
    });
  }

  it('a stream that keeps talking outlives the idle timeout many times over', async () => {
    // 8 chunks 150 ms apart: 1.2 s, three times the 400 ms idle timeout.
    const r = await stream('idle-model', 'n=8&gap=150');
    assert.equal(r.status, 200);
    assert.equal(r.complete, true);
    assert.match(r.text, /data: 7\n\n[\s\S]*\[DONE\]/);
  });

  it('a stream that stalls is cut at the idle timeout (SI)', async () => {
    const started = performance.now();
    const r = await stream('idle-model', 'n=2&gap=50&stall=1');
    assert.equal(r.complete, false);
    assert.match(r.text, /data: 1/);
    assert.ok(performance.now() - started < 5000);
    assert.ok(log.at(-1)?.flags.includes('SI'));
  });

  it('the route timeout covers the whole response: a streaming answer is reset at it (UT)', async () => {
    // 10 chunks 100 ms apart would take 1 s; the route timeout is 600 ms.
    const r = await stream('whole-model', 'n=10&gap=100');
    assert.equal(r.status, 200, 'the response had started');
    assert.equal(r.complete, false);
    assert.doesNotMatch(r.text, /\[DONE\]/);
    const entry = log.at(-1)!;
    assert.ok(entry.flags.includes('UT'));
    assert.equal(entry.details, 'response_timeout');
  });
});
