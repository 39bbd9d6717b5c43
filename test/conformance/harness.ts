/**
 * The extproc, whole and in-process, over a real Unix socket, driven by the Envoy-exact driver
 * through both filters the operator configures: `sluice.router` (HTTP filter) and
 * `sluice.upstream` (upstream filter on a backend cluster).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { WIRE } from '../../extproc/config/contract.js';
import { run, type RunningExtproc } from '../../extproc/run.js';
import {
  ExtProcClient,
  ExtProcFilter,
  type Continued,
  type FilterConfig,
  type HeaderList,
  type PhaseResult,
} from '../../operator/envoy-sim/ext-proc/index.js';

export const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: conformance-1
limits:
  maxRequestBodyBytes: 1048576
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: vllm
    cluster: sluice/backend/vllm
    provider: openai-compatible
    modelOverride: meta-llama/Llama-3.1-8B-Instruct
  - name: azure
    cluster: sluice/backend/azure
    provider: azure-openai
    credential: { value: azure-backend-key-0002 }
    azure: { deployment: gpt4o-prod, apiVersion: '2024-10-21' }
  - name: anthropic
    cluster: sluice/backend/anthropic
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
routes:
  - name: gpt
    models: [{ exact: gpt-4o-mini }, { prefix: 'gpt-' }]
    backends: [{ name: openai }, { name: azure, priority: 1 }]
  - name: llama
    models: [{ exact: llama-3.1-8b }]
    backends: [{ name: vllm }]
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: anthropic }]
`;

/**
 * Envoy's default message timeout is 200 ms; conformance is about behaviour, and CI machines run
 * tiers in parallel, so the suite allows more. Latency is measured by `npm run bench`.
 */
const MESSAGE_TIMEOUT_MS = 5000;

/** What the operator emits for the router filter. */
export const ROUTER: FilterConfig = {
  processingMode: {
    requestHeaderMode: 'SEND',
    responseHeaderMode: 'SEND',
    requestBodyMode: 'BUFFERED',
    responseBodyMode: 'BUFFERED',
  },
  allowModeOverride: true,
  messageTimeoutMs: MESSAGE_TIMEOUT_MS,
  // The extproc marks its immediate responses here (local_reply_config leaves them as they are).
  receivingNamespaces: [WIRE.replyMetadataNamespace],
};

/**
 * What the operator emits for the upstream filter of a backend cluster. Envoy evaluates the
 * attributes per attempt: the cluster, and the chosen endpoint's backend metadata (empty when the
 * endpoint has none).
 */
export function upstreamFilter(cluster: string, backend = ''): FilterConfig {
  return {
    processingMode: {
      requestHeaderMode: 'SEND',
      responseHeaderMode: 'SKIP',
      requestBodyMode: 'NONE',
      responseBodyMode: 'NONE',
    },
    upstream: true,
    requestAttributes: { [WIRE.clusterAttribute]: cluster, [WIRE.backendAttribute]: backend },
    initialMetadata: { 'x-sluice-filter': 'upstream' },
    messageTimeoutMs: MESSAGE_TIMEOUT_MS,
    receivingNamespaces: [WIRE.replyMetadataNamespace],
  };
}

export interface Harness {
  ext: RunningExtproc;
  client: ExtProcClient;
  logs: string[];
  registry: Registry;
  dir: string;
  configPath: string;
  stop(): Promise<void>;
}

export async function startHarness(config = CONFIG): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-conf-'));
  const configPath = join(dir, 'extproc.yaml');
  await writeFile(configPath, config);
  const logs: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => logs.push(s) });
  const registry = new Registry();
  const ext = await run({
    configPath,
    listen: `unix:${join(dir, 'extproc.sock')}`,
    admin: '127.0.0.1:0',
    maxMessageBytes: 16 * 1024 * 1024,
    watchConfig: true,
    shutdownGraceMs: 2000,
    logger,
    registry,
    now: () => performance.now(),
    env: {},
  });
  const client = new ExtProcClient(ext.grpcAddress);
  return {
    ext,
    client,
    logs,
    registry,
    dir,
    configPath,
    async stop() {
      client.close();
      await ext.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function chatHeaders(extra: HeaderList = [], path = '/v1/chat/completions'): HeaderList {
  return [
    [':method', 'POST'],
    [':path', path],
    [':scheme', 'http'],
    [':authority', 'gateway.local'],
    ['content-type', 'application/json'],
    ['authorization', 'Bearer client-virtual-key-zzz'],
    ['x-request-id', 'envoy-generated-id'],
    ...extra,
  ];
}

export interface Upstream {
  /** The headers and body the provider would receive, or the local reply instead. */
  sent: PhaseResult;
}

/**
 * Envoy's request path: the router filter, then (after routing) the upstream filter of the
 * chosen cluster, fed with what the router filter let through.
 */
export async function sendRequest(
  h: Harness,
  headers: HeaderList,
  body: Buffer | string | object | undefined,
  cluster: string,
  frames = 1,
): Promise<{ router: ExtProcFilter; routed: PhaseResult; upstream?: PhaseResult }> {
  const router = new ExtProcFilter(h.client, ROUTER);
  const buf =
    body === undefined
      ? undefined
      : Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const chunks = buf === undefined ? [] : split(buf, frames);
  const routed = await router.runRequest(headers, chunks);
  if (routed.kind !== 'continue') return { router, routed };
  const up = new ExtProcFilter(h.client, upstreamFilter(cluster));
  // Envoy's router hands an attempt its buffered body right after the headers.
  const upstream = await up.runRequest(
    routed.headers,
    routed.hasBody ? [routed.body] : [],
    undefined,
    {
      dataWithHeaders: true,
    },
  );
  // The upstream filter skips the response direction: its stream ends with the upstream request.
  up.close();
  return { router, routed, upstream };
}

export function split(buf: Buffer, parts: number): Buffer[] {
  if (parts <= 1) return [buf];
  const size = Math.ceil(buf.length / parts);
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

export function continued(r: PhaseResult | undefined): Continued {
  if (!r || r.kind !== 'continue') {
    throw new Error(
      `expected the request to continue, got ${r ? `${r.status} ${r.body.toString()}` : 'nothing'}`,
    );
  }
  return r;
}

export function get(headers: HeaderList, name: string): string | undefined {
  return headers.find(([k]) => k === name)?.[1];
}

export function accessLines(h: Harness): Record<string, any>[] {
  return h.logs.map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.log === 'access');
}

export async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}
