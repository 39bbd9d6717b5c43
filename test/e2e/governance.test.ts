// Governance with the official SDKs: app → envoy-sim → extproc → mock provider. The operator does
// not translate governance sections yet, so the translated extproc config is given its consumers
// and policies here before it is served over ADS, exactly where the operator will put them.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import type { ExtprocConfigInput } from '../../extproc/config/contract.js';
import { run as runExtproc, type RunningExtproc } from '../../extproc/run.js';
import { desiredState } from '../../operator/controller/snapshot.js';
import { loadResources } from '../../operator/source/yaml.js';
import { ENVOY_NODE_ID, EXTPROC_NODE_ID } from '../../operator/standalone/run.js';
import { compile } from '../../operator/compile/index.js';
import { ALL_NODES, SnapshotCache } from '../../operator/xds/cache.js';
import { ResourceEncoder } from '../../operator/xds/encode.js';
import { startAdsServer, type RunningAdsServer } from '../../operator/xds/server.js';
import { startEnvoySim, type EnvoySim } from '../../operator/envoy-sim/index.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';

const UPSTREAM = { openai: 'sk-upstream-gov', anthropic: 'sk-ant-upstream-gov' };
const KEYS = { oa: 'sk-sluice-e2e-openai-user', an: 'sk-sluice-e2e-anthropic-user' };
const sha = (k: string) => createHash('sha256').update(k).digest('hex');

function manifests(port: number): string {
  const endpoint = { service: { name: 'mock', port: 80 } };
  const docs = [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'chat', namespace: 'gov' },
      spec: {
        models: [{ exact: 'gpt-test' }],
        backends: [
          {
            name: 'openai',
            provider: 'openai',
            endpoint,
            credential: { secretRef: { name: 'openai' } },
          },
        ],
      },
    },
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'claude', namespace: 'gov' },
      spec: {
        models: [{ exact: 'claude-test' }],
        backends: [
          {
            name: 'anthropic',
            provider: 'anthropic',
            endpoint,
            credential: { secretRef: { name: 'anthropic' } },
          },
        ],
      },
    },
    ...(['openai', 'anthropic'] as const).map((n) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: n, namespace: 'gov' },
      stringData: { apiKey: UPSTREAM[n] },
    })),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'mock', namespace: 'gov' },
      spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'mock-1',
        namespace: 'gov',
        labels: { 'kubernetes.io/service-name': 'mock' },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

function withGovernance(cfg: ExtprocConfigInput): ExtprocConfigInput {
  return {
    ...cfg,
    consumers: [
      { name: 'oa', team: 'apps', keyHashes: [sha(KEYS.oa)] },
      { name: 'an', team: 'apps', keyHashes: [sha(KEYS.an)] },
    ],
    policies: [
      {
        name: 'gov',
        identity: { keys: {} },
        limits: { rules: [{ name: 'one-a-minute', per: ['consumer'], requestsPerMinute: 1 }] },
      },
    ],
    routes: cfg.routes.map((r) => ({ ...r, governance: 'gov' })),
  };
}

/** Both requests of a pair must fall in one fixed UTC minute, the limit's window. */
async function awayFromMinuteEdge(): Promise<void> {
  const into = Date.now() % 60_000;
  if (into > 55_000) await new Promise((r) => setTimeout(r, 60_000 - into + 50));
}

describe('e2e: governance with the official SDKs', () => {
  let dir: string;
  let mock: MockProvider;
  let ads: RunningAdsServer;
  let extproc: RunningExtproc;
  let sim: EnvoySim;
  let url: string;

  before(async () => {
    mock = await startMockProvider({
      name: 'gov',
      models: ['gpt-test'],
      auth: { bearer: UPSTREAM.openai, anthropicKey: UPSTREAM.anthropic },
    });
    dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-gov-'));
    await writeFile(join(dir, 'routes.yaml'), manifests(mock.port), 'utf8');
    const { resources } = await loadResources([join(dir, 'routes.yaml')]);
    const extprocSocket = join(dir, 'extproc.sock');
    const t = compile(resources, {
      listenerAddress: '127.0.0.1',
      listenerPort: 0,
      extprocSocket,
      messageTimeoutMs: 5000,
    });
    const cache = new SnapshotCache();
    cache.setSnapshot(
      ALL_NODES,
      desiredState({ ...t, extproc: withGovernance(t.extproc) }, ResourceEncoder.fromProtoTree())
        .snapshot,
    );
    ads = await startAdsServer({ cache, listen: `unix:${join(dir, 'ads.sock')}` });
    extproc = await runExtproc({
      xds: { address: ads.address, nodeId: EXTPROC_NODE_ID, startTimeoutMs: 10_000 },
      listen: `unix:${extprocSocket}`,
      maxMessageBytes: 16 * 1024 * 1024,
      watchConfig: false,
      shutdownGraceMs: 1000,
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
      now: () => performance.now(),
      env: {},
    });
    sim = await startEnvoySim({ adsAddress: ads.address, nodeId: ENVOY_NODE_ID });
    url = `http://${sim.listenerAddress()}`;
  });

  after(async () => {
    await sim?.close();
    await extproc?.close();
    await ads?.close(500);
    await mock?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const openai = (apiKey: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
  const anthropic = (apiKey: string) => new Anthropic({ baseURL: url, apiKey, maxRetries: 0 });
  const chat = (c: OpenAI) =>
    c.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });
  const message = (c: Anthropic) =>
    c.messages.create({
      model: 'claude-test',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });

  it('a bad key is an AuthenticationError in both SDKs', async () => {
    await assert.rejects(chat(openai('sk-not-a-key')), OpenAI.AuthenticationError);
    await assert.rejects(message(anthropic('sk-not-a-key')), Anthropic.AuthenticationError);
  });

  it('an exhausted limit is a RateLimitError (OpenAI) with retry-after', async () => {
    await awayFromMinuteEdge();
    const c = openai(KEYS.oa);
    mock.take();
    const r = await chat(c);
    assert.ok(r.choices[0]);
    const [seen] = mock.take();
    assert.ok(seen && !JSON.stringify(seen.headers).includes(KEYS.oa), 'virtual key forwarded');
    const err = await chat(c).then(
      () => assert.fail('second request in the minute was admitted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.ok(Number(err.headers?.get('retry-after')) >= 1);
  });

  it('an exhausted limit is a RateLimitError (Anthropic)', async () => {
    await awayFromMinuteEdge();
    const c = anthropic(KEYS.an);
    await message(c);
    await assert.rejects(message(c), Anthropic.RateLimitError);
  });
});
