/**
 * The response cache's figures (issue 19): what a lookup adds to a request that misses, in
 * memory (target ≤ 0.05 ms p50: canonical key, SHA-256 and the store read), and what a hit costs
 * end to end through `sluice run` next to the same request answered by the mock provider (which
 * answers at once, so the difference is the gateway's own work on the upstream path, not a
 * model's time). `npm run bench` includes it; alone:
 *
 *   npx tsx test/bench/cache.ts
 *
 * Environment: BENCH_CACHE_N lookups (default 20,000), BENCH_CACHE_HTTP_N requests per kind
 * through the gateway (default 300).
 */
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { ResponseCache, type LookupInput } from '../../extproc/cache/cache.js';
import { MemoryCacheStore } from '../../extproc/cache/store.js';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { RuntimeConfig } from '../../extproc/config/runtime.js';
import { startMockProvider } from '../../operator/mock-provider/provider.js';
import { secretDoc, serviceDocs, startYamlGateway } from '../e2e/harness.js';
import { chatRequestBody } from './payloads.js';
import { pinSelf } from './proc.js';
import { fmtMs, Samples, table } from './stats.js';

const N = Number(process.env.BENCH_CACHE_N ?? 20_000) || 20_000;
const HTTP_N = Number(process.env.BENCH_CACHE_HTTP_N ?? 300) || 300;
const MISS_P50_MS = 0.05;

export interface CacheBenchRow {
  name: string;
  p50: number;
  p99: number;
  target: string;
  status: 'PASS' | 'FAIL' | 'info';
  note?: string;
}

function runtime(): RuntimeConfig {
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [{ name: 'openai', cluster: 'c-openai', provider: 'openai' }],
      routes: [
        {
          name: 'gpt',
          models: [{ prefix: 'gpt-' }],
          backends: [{ name: 'openai' }],
          policy: { name: 'p', cache: { scope: 'route', cacheNonDeterministic: true } },
        },
      ],
    }),
    new Map(),
  );
}

/** A miss in memory: the store holds 10,000 other entries, as a warm cache would. */
async function missLookups(bytes: number): Promise<Samples> {
  const cfg = runtime();
  const store = new MemoryCacheStore({ maxBytes: 256 * 1024 * 1024, now: () => 0 });
  for (let i = 0; i < 10_000; i++)
    store.set(i.toString(16).padStart(64, '0'), 'x'.repeat(2000), 3_600_000);
  const cache = new ResponseCache({ store, registry: new Registry(), wallNow: Date.now });
  const route = cfg.routes[0]!;
  const base = JSON.parse(chatRequestBody(bytes).toString('utf8')) as Record<string, unknown>;
  const input = (i: number): LookupInput => ({
    cfg,
    route,
    api: 'openai',
    operation: 'chat',
    path: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    stream: false,
    includeUsage: false,
    // A different request each time, so nothing is found.
    body: { ...base, user: `user-${i}` },
    headers: new Map(),
    caller: undefined,
    policy: undefined,
  });
  for (let i = 0; i < 2000; i++) await cache.lookup(input(-i - 1));
  const s = new Samples();
  for (let i = 0; i < N; i++) {
    const req = input(i);
    const t0 = performance.now();
    const r = await cache.lookup(req);
    s.add(performance.now() - t0);
    if (r?.kind !== 'miss') throw new Error(`expected a miss, got ${r?.kind}`);
  }
  return s;
}

/** Requests through `sluice run`: the provider's answer (cache bypassed) against a hit. */
async function endToEnd(): Promise<{ provider: Samples; hit: Samples } | string> {
  const mock = await startMockProvider({ name: 'openai', auth: { bearer: 'sk-bench-cache' } });
  const g = await startYamlGateway([
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'bench', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'gpt-bench' }],
        backends: [
          {
            name: 'openai',
            provider: 'openai',
            endpoint: { service: { name: 'mock-openai', port: 80 } },
            credential: { secretRef: { name: 'openai' } },
          },
        ],
      },
    },
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIPolicy',
      metadata: { name: 'cache', namespace: 'e2e' },
      spec: { targetRefs: [{ name: 'bench' }], cache: { scope: 'route' } },
    },
    secretDoc('openai', 'sk-bench-cache'),
    ...serviceDocs('mock-openai', mock.port),
  ]);
  try {
    const url = `${g.gateway.url}/v1/chat/completions`;
    const body = JSON.stringify({
      model: 'gpt-bench',
      temperature: 0,
      messages: [{ role: 'user', content: 'What does a sluice gate do? Answer in one line.' }],
    });
    const send = async (headers: Record<string, string>): Promise<string | null> => {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      return r.headers.get('x-sluice-cache');
    };
    // Stores the answer; then wait until a request is served from it.
    await send({});
    for (let i = 0; (await send({})) !== 'hit'; i++) {
      if (i > 100) return 'the answer was never served from the cache';
      await new Promise((r) => setTimeout(r, 10));
    }
    const provider = new Samples();
    const hit = new Samples();
    for (let i = 0; i < 50; i++) {
      await send({ 'cache-control': 'no-store' });
      await send({});
    }
    for (let i = 0; i < HTTP_N; i++) {
      let t0 = performance.now();
      if ((await send({ 'cache-control': 'no-store' })) !== 'bypass')
        throw new Error('not bypassed');
      provider.add(performance.now() - t0);
      t0 = performance.now();
      if ((await send({})) !== 'hit') throw new Error('not a hit');
      hit.add(performance.now() - t0);
    }
    return { provider, hit };
  } finally {
    await g.close();
    await mock.close();
  }
}

export async function runCacheBench(): Promise<CacheBenchRow[]> {
  const rows: CacheBenchRow[] = [];
  for (const bytes of [2 * 1024, 100 * 1024]) {
    const s = await missLookups(bytes);
    const [p50, p99] = s.percentiles([50, 99]) as [number, number];
    const gated = bytes === 2 * 1024;
    rows.push({
      name: `miss lookup, memory, ${bytes / 1024} KiB request`,
      p50,
      p99,
      target: gated ? `p50 ≤ ${MISS_P50_MS}` : '-',
      status: gated ? (p50 <= MISS_P50_MS ? 'PASS' : 'FAIL') : 'info',
    });
  }
  const e2e = await endToEnd();
  if (typeof e2e === 'string') {
    rows.push({
      name: 'hit end to end',
      p50: NaN,
      p99: NaN,
      target: '-',
      status: 'info',
      note: e2e,
    });
    return rows;
  }
  const [pp50, pp99] = e2e.provider.percentiles([50, 99]) as [number, number];
  const [hp50, hp99] = e2e.hit.percentiles([50, 99]) as [number, number];
  rows.push({
    name: 'sluice run: mock provider answer (cache bypassed)',
    p50: pp50,
    p99: pp99,
    target: '-',
    status: 'info',
  });
  rows.push({
    name: 'sluice run: cache hit',
    p50: hp50,
    p99: hp99,
    target: '-',
    status: 'info',
    note: `${(hp50 / pp50).toFixed(2)}× the provider answer's p50`,
  });
  return rows;
}

export function cacheTable(rows: readonly CacheBenchRow[]): string {
  return table(
    ['figure', 'p50 ms', 'p99 ms', 'target', 'verdict', 'note'],
    rows.map((r) => [r.name, fmtMs(r.p50), fmtMs(r.p99), r.target, r.status, r.note ?? '']),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  pinSelf(0);
  const rows = await runCacheBench();
  console.log(cacheTable(rows));
  process.exitCode = rows.some((r) => r.status === 'FAIL') ? 1 : 0;
}
