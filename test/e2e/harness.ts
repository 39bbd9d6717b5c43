// The e2e gateway: two mock providers, manifests written to a temp directory, and the standalone
// gateway in-process on ephemeral ports (Envoy when ENVOY_BIN/PATH has one, else the emulator).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { findEnvoy } from '../../operator/standalone/main.js';
import { run, type RunningGateway } from '../../operator/standalone/run.js';
import type { StateStore } from '../../extproc/state/store.js';
import type { CompileOptions } from '../../operator/compile/index.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';

export const KEYS = {
  client: 'sk-client-key-never-forwarded',
  primary: 'sk-upstream-primary',
  secondary: 'sk-upstream-secondary',
  anthropic: 'sk-ant-upstream',
};

export interface Harness {
  gateway: RunningGateway;
  primary: MockProvider;
  secondary: MockProvider;
  dir: string;
  /** Access-log lines the extproc wrote (parsed). */
  accessLog: Record<string, unknown>[];
  /** Rewrites the manifests; `extraModel` adds an exact model to the chat route. */
  writeManifests(extraModel?: string): Promise<void>;
  close(): Promise<void>;
}

function service(name: string, port: number): unknown[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'e2e' },
      spec: { ports: [{ name: 'http', port: 80, targetPort: port }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${name}-1`,
        namespace: 'e2e',
        labels: { 'kubernetes.io/service-name': name },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port }],
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    },
  ];
}

function secret(name: string, apiKey: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: 'e2e' },
    stringData: { apiKey },
  };
}

function manifests(primary: number, secondary: number, extraModel?: string): string {
  const svc = (name: string) => ({ service: { name, port: 80 } });
  const docs: unknown[] = [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'chat', namespace: 'e2e' },
      spec: {
        models: [
          { exact: 'gpt-test' },
          { exact: 'embed-test' },
          ...(extraModel ? [{ exact: extraModel }] : []),
        ],
        backends: [
          {
            name: 'primary',
            provider: 'openai',
            endpoint: svc('mock-primary'),
            credential: { secretRef: { name: 'primary' } },
          },
          {
            name: 'secondary',
            provider: 'openai',
            endpoint: svc('mock-secondary'),
            credential: { secretRef: { name: 'secondary' } },
            priority: 1,
          },
        ],
        timeout: '20s',
        retry: {
          attempts: 1,
          retryOn: ['5xx', 'reset', 'timeout', 'connect-failure'],
          perTryTimeout: '800ms',
        },
      },
    },
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'claude', namespace: 'e2e' },
      spec: {
        models: [{ exact: 'claude-test' }],
        backends: [
          {
            name: 'anthropic',
            provider: 'anthropic',
            endpoint: svc('mock-primary'),
            credential: { secretRef: { name: 'anthropic' } },
          },
        ],
      },
    },
    secret('primary', KEYS.primary),
    secret('secondary', KEYS.secondary),
    secret('anthropic', KEYS.anthropic),
    ...service('mock-primary', primary),
    ...service('mock-secondary', secondary),
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

export async function startHarness(): Promise<Harness> {
  const primary = await startMockProvider({
    name: 'primary',
    models: ['gpt-test'],
    auth: { bearer: KEYS.primary, anthropicKey: KEYS.anthropic },
  });
  const secondary = await startMockProvider({
    name: 'secondary',
    auth: { bearer: KEYS.secondary },
  });
  const dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-'));
  const file = join(dir, 'routes.yaml');
  const writeManifests = (extra?: string): Promise<void> =>
    writeFile(file, manifests(primary.port, secondary.port, extra), 'utf8');
  await writeManifests();
  const accessLog: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry['log'] === 'access') accessLog.push(entry);
      }
      cb();
    },
  });
  const envoyBin = findEnvoy(process.env);
  const gateway = await run({
    files: [dir],
    host: '127.0.0.1',
    // Envoy needs a fixed port; the emulator binds an ephemeral one.
    port: envoyBin ? 19750 + (process.pid % 200) : 0,
    envoyBin,
    watch: true,
    compile: { limits: { maxRequestBodyBytes: 64 * 1024 }, messageTimeoutMs: 5000 },
    logger: pino({ level: 'info' }, sink),
    registry: new Registry(),
    env: {},
    emulator: { retryBackoffBaseMs: 0 },
  });
  return {
    gateway,
    primary,
    secondary,
    dir,
    accessLog,
    writeManifests,
    async close() {
      await gateway.close();
      await primary.close();
      await secondary.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function until<T>(fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The Service and EndpointSlice (namespace e2e) that route `name` to a local port. */
export function serviceDocs(name: string, port: number): unknown[] {
  return service(name, port);
}

/** A Secret (namespace e2e) holding `apiKey`. */
export function secretDoc(name: string, apiKey: string): unknown {
  return secret(name, apiKey);
}

/** The retry a fallback route needs: the next backend after a 5xx, a 429 or a failed connect. */
export const FALLBACK_RETRY = { attempts: 2, retryOn: ['5xx', 'rate-limited', 'connect-failure'] };

/** An AIRoute (namespace e2e) for the exact model `model` (default: its name). */
export function routeDoc(
  name: string,
  backends: unknown[],
  opts: { model?: string; retry?: Record<string, unknown> } = {},
): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: opts.model ?? name }],
      backends,
      ...(opts.retry ? { retry: opts.retry } : {}),
    },
  };
}

/** An AIPolicy (namespace e2e) on the named routes. */
export function policyDoc(name: string, targets: string[], spec: Record<string, unknown>): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), ...spec },
  };
}

/** The access-log lines of one route of namespace e2e, in order. */
export function routeLog(
  g: Pick<YamlGateway, 'accessLog'>,
  route: string,
): Record<string, unknown>[] {
  return g.accessLog.filter((e) => e['route'] === `e2e/${route}`);
}

/** The cost charged for the route's latest request, once the route has `count` access-log lines. */
export async function lastCost(
  g: Pick<YamlGateway, 'accessLog'>,
  route: string,
  count: number,
): Promise<number> {
  const lines = await until(() => {
    const l = routeLog(g, route);
    return l.length >= count ? l : undefined;
  });
  return Number(lines.at(-1)!['cost_usd']);
}

/** A gateway from the caller's own manifests, with every log line it writes kept. */
export interface YamlGateway {
  gateway: RunningGateway;
  dir: string;
  /** Every log line of the run, raw, in order, at level trace. */
  logLines: string[];
  /** Access-log lines the extproc wrote (parsed). */
  accessLog: Record<string, unknown>[];
  /** Replaces the manifests file; the watcher reloads it. */
  write(docs: unknown[]): Promise<void>;
  /** The run's metrics (the extproc's, as its admin endpoint would serve them). */
  registry: Registry;
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1, for Envoy, which cannot bind port 0 and report it back. */
/**
 * The official SDK clients as an app would point them at the gateway: no SDK retries (a retry
 * would hide what the gateway answered) and a timeout, so a hang fails the test instead of
 * stalling it.
 */
export function sdkClients(
  gatewayUrl: string,
  apiKey: string = KEYS.client,
): { openai: OpenAI; anthropic: Anthropic } {
  const opts = { apiKey, maxRetries: 0, timeout: 15_000 };
  return {
    openai: new OpenAI({ ...opts, baseURL: `${gatewayUrl}/v1` }),
    anthropic: new Anthropic({ ...opts, baseURL: gatewayUrl }),
  };
}

/** The error a call that must fail ends with; a call that succeeds fails the test. */
export async function failure<T>(p: Promise<T>): Promise<unknown> {
  return p.then(
    (v) => assert.fail(`the call succeeded: ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export async function startYamlGateway(
  docs: unknown[],
  opts: {
    compile?: CompileOptions;
    /** Runs once the manifests are written, before the gateway starts: more files for `dir`. */
    setup?: (dir: string) => Promise<void>;
    /** The extproc's state store (budgets, usage), for a test to read; absent: memory. */
    stateStore?: StateStore;
    /** The extproc's wall clock (ms), for a test to move; absent: Date.now. */
    wallClock?: () => number;
  } = {},
): Promise<YamlGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-'));
  const file = join(dir, 'manifests.yaml');
  const write = (d: unknown[]): Promise<void> =>
    writeFile(file, d.map((x) => stringify(x)).join('---\n'), 'utf8');
  await write(docs);
  try {
    await opts.setup?.(dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const logLines: string[] = [];
  const accessLog: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        logLines.push(line);
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry['log'] === 'access') accessLog.push(entry);
      }
      cb();
    },
  });
  const envoyBin = findEnvoy(process.env);
  const registry = new Registry();
  let gateway: RunningGateway;
  try {
    gateway = await run({
      files: [dir],
      host: '127.0.0.1',
      port: envoyBin ? await freePort() : 0,
      envoyBin,
      watch: true,
      compile: { messageTimeoutMs: 5000, ...opts.compile },
      // trace: a value that leaks at any level must show up in logLines.
      logger: pino({ level: 'trace' }, sink),
      registry,
      env: {},
      stateStore: opts.stateStore,
      wallClock: opts.wallClock,
      emulator: { retryBackoffBaseMs: 0 },
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    gateway,
    dir,
    logLines,
    accessLog,
    write,
    registry,
    async close() {
      await gateway.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The config versions the extproc applied so far, in order (its `config_applied` log lines). */
export function extprocVersions(g: Pick<YamlGateway, 'logLines'>): string[] {
  const out: string[] = [];
  for (const line of g.logLines) {
    if (!line.includes('"config_applied"')) continue;
    const e = JSON.parse(line) as Record<string, unknown>;
    if (e['event'] === 'config_applied' && typeof e['version'] === 'string') out.push(e['version']);
  }
  return out;
}

/**
 * The gate after a YAML change: resolves once the extproc has applied a config other than
 * `previous` (take it with extprocVersions() before writing). The snapshot version alone is not
 * enough: the extproc receives the new config over ADS a moment after it is served.
 */
export async function untilExtprocApplies(
  g: Pick<YamlGateway, 'logLines'>,
  previous: string | undefined,
  timeoutMs = 5000,
): Promise<string> {
  return until(() => {
    const last = extprocVersions(g).at(-1);
    return last !== undefined && last !== previous ? last : undefined;
  }, timeoutMs);
}

/** A counter's value for the series whose labels include `labels` (0 when there is none). */
export async function counterValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  let sum = 0;
  for (const v of metric?.values ?? []) {
    const l = v.labels as Record<string, string | number>;
    if (Object.entries(labels).every(([k, want]) => l[k] === want)) sum += v.value;
  }
  return sum;
}
