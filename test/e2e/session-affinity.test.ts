// Session affinity through `sluice run` with the OpenAI SDK: an AIRoute with sessionAffinity in
// front of an in-cluster backend with four pods (four EndpointSlice endpoints, each its own mock
// server). N turns of M sessions land on one pod each and spread over the pods; another caller
// reusing a session id gets its own placement; when a pod leaves the EndpointSlices its sessions
// move to the others and come back with it. The data plane does the hashing (Envoy's ring hash,
// or the emulator's model of it); the extproc only sets the key.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { startYamlGateway, type YamlGateway } from './harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PODS = 4;
const SESSIONS = 16;
const TURNS = 3;
const LEAVE_SESSIONS = 64;

function manifests(ports: number[]): unknown[] {
  return [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'vllm', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'llama-sticky' }],
        backends: [
          {
            name: 'vllm',
            provider: 'openai-compatible',
            endpoint: { service: { name: 'vllm', port: 80 } },
          },
        ],
        sessionAffinity: {},
      },
    },
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIPolicy',
      metadata: { name: 'identity', namespace: 'e2e' },
      spec: { targetRefs: [{ name: 'vllm' }], consumers: { required: true, keys: {} } },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'vllm', namespace: 'e2e' },
      spec: { ports: [{ name: 'http', port: 80, targetPort: 8000 }] },
    },
    // One slice per pod: every pod listens on 127.0.0.1 here, on a port of its own, and a slice's
    // ports apply to all of its endpoints.
    ...ports.map((port, i) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `vllm-${i}`,
        namespace: 'e2e',
        labels: { 'kubernetes.io/service-name': 'vllm' },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    })),
  ];
}

async function createKey(file: string, consumer: string): Promise<string> {
  let out = '';
  const code = await keysMain(['create', '--consumer', consumer, '--file', file, '--json'], {
    out: (s) => (out += s),
    err: () => undefined,
  });
  assert.equal(code, 0);
  return (JSON.parse(out) as { key: string }).key;
}

describe('e2e: session affinity over the pods of an in-cluster backend', () => {
  const pods: MockProvider[] = [];
  let g: YamlGateway;
  const keys: Record<string, string> = {};

  before(async () => {
    for (let i = 0; i < PODS; i++) pods.push(await startMockProvider({ name: `pod-${i}` }));
    g = await startYamlGateway(manifests(pods.map((p) => p.port)), {
      setup: async (dir) => {
        const file = join(dir, 'keys.yaml');
        for (const c of ['alice', 'bob']) keys[c] = await createKey(file, c);
      },
    });
  });
  after(async () => {
    await g?.close();
    for (const p of pods) await p.close();
  });

  const client = (consumer: string) =>
    new OpenAI({
      baseURL: `${g.gateway.url}/v1`,
      apiKey: keys[consumer]!,
      maxRetries: 0,
      timeout: 15_000,
    });

  /** Sends one turn of `session` and returns the index of the pod that answered it. */
  async function turn(consumer: string, session: string, n: number, live = pods): Promise<number> {
    const marker = `${consumer}/${session}/${n}/${Math.random()}`;
    await client(consumer).chat.completions.create(
      { model: 'llama-sticky', messages: [{ role: 'user', content: marker }] },
      { headers: { 'x-sluice-session': session } },
    );
    const i = live.findIndex((p) =>
      p.requests.some((r) => JSON.stringify(r.json?.messages ?? []).includes(marker)),
    );
    assert.ok(i >= 0, `no pod saw ${marker}`);
    return pods.indexOf(live[i]!);
  }

  const placement = new Map<string, number>();

  it('N turns of M sessions stay on one pod each and spread over the pods', async () => {
    for (let t = 0; t < TURNS; t++) {
      for (let s = 0; s < SESSIONS; s++) {
        const pod = await turn('alice', `s-${s}`, t);
        if (t === 0) placement.set(`s-${s}`, pod);
        else assert.equal(pod, placement.get(`s-${s}`), `session s-${s}, turn ${t}`);
      }
    }
    const used = new Set(placement.values());
    assert.ok(used.size >= 3, `sessions used pods ${[...used].join(',')}`);
    // The key Envoy hashed never reached a pod, nor did the session header of ours.
    for (const p of pods) {
      for (const r of p.requests) {
        assert.equal(r.headers['x-sluice-affinity'], undefined);
      }
    }
  });

  it("another caller's session of the same name is placed on its own", async () => {
    let differs = 0;
    for (let s = 0; s < SESSIONS; s++) {
      const first = await turn('bob', `s-${s}`, 0);
      assert.equal(await turn('bob', `s-${s}`, 1), first);
      if (first !== placement.get(`s-${s}`)) differs++;
    }
    assert.ok(differs > 0, 'bob reuses no placement of alice: the key is bound to the caller');
  });

  it('a pod that leaves the EndpointSlices takes only its sessions away; back, they return', async () => {
    // More sessions than above, so that how many of the others stay is measured, not drawn: the
    // ring's entries hash the pods' ports, which are new each run (see the bound below).
    const spread = new Map<string, number>();
    for (let s = 0; s < LEAVE_SESSIONS; s++) spread.set(`m-${s}`, await turn('alice', `m-${s}`, 0));
    const gone = spread.get('m-0')!;
    const remaining = pods.filter((_, i) => i !== gone);
    // Only EDS changes: the data plane follows; wait until the gone pod gets none of its sessions.
    await g.write(manifests(remaining.map((p) => p.port)));
    let moved: number;
    let stayed: number;
    let others: number;
    for (let attempt = 0; ; attempt++) {
      moved = stayed = others = 0;
      let stale = false;
      for (let s = 0; s < LEAVE_SESSIONS; s++) {
        const was = spread.get(`m-${s}`)!;
        const pod = await turn('alice', `m-${s}`, 10 + attempt, pods);
        if (pod === gone) stale = true;
        else if (was === gone) moved++;
        else {
          others++;
          if (pod === was) stayed++;
        }
      }
      if (!stale) break;
      assert.ok(attempt < 20, 'the pod kept receiving sessions after it left');
      await sleep(200);
    }
    assert.ok(moved > 0);
    // Envoy's ring gives each remaining pod more entries (342 for 3 pods against 256 for 4, with
    // minimum_ring_size 1024), so some other sessions move too: over 100,000 random port sets in
    // the ring model (operator/envoy-sim/ring-hash.ts), 87% of the others stayed on average and
    // never fewer than 60% with 64 sessions. With 16 sessions and 70%, 6% of port sets failed.
    assert.ok(stayed >= others * 0.6, `${stayed} of ${others} other sessions stayed`);
    await g.write(manifests(pods.map((p) => p.port)));
    for (let attempt = 0; ; attempt++) {
      let same = 0;
      for (let s = 0; s < LEAVE_SESSIONS; s++)
        if ((await turn('alice', `m-${s}`, 30 + attempt)) === spread.get(`m-${s}`)) same++;
      if (same === LEAVE_SESSIONS) break;
      assert.ok(attempt < 20, 'the sessions did not come back to the pod');
      await sleep(200);
    }
  });
});
