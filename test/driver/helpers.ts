// Shared fixtures for the driver self-tests.
import * as grpc from '@grpc/grpc-js';
import type {
  ProcessingRequest,
  ProcessingResponse,
} from '../../operator/envoy-sim/ext-proc/codec.js';
import { startFakeServer, type FakeHandler, type FakeServer } from './fake-server.js';
import { ExtProcClient } from '../../operator/envoy-sim/ext-proc/client.js';
import type { FilterConfig } from '../../operator/envoy-sim/ext-proc/config.js';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/filter.js';
import type { HeaderList } from '../../operator/envoy-sim/ext-proc/headers.js';

export interface Harness {
  server: FakeServer;
  client: ExtProcClient;
  filter(config?: FilterConfig): ExtProcFilter;
}

export async function withServer(
  handler: FakeHandler,
  fn: (h: Harness) => Promise<void>,
): Promise<void> {
  const server = await startFakeServer(handler);
  const client = new ExtProcClient(server.target);
  const filters: ExtProcFilter[] = [];
  try {
    await fn({
      server,
      client,
      filter: (config) => {
        const f = new ExtProcFilter(client, config);
        filters.push(f);
        return f;
      },
    });
  } finally {
    for (const f of filters) f.close();
    client.close();
    await server.stop();
  }
}

export function postHeaders(extra: HeaderList = []): HeaderList {
  return [
    [':method', 'POST'],
    [':path', '/v1/chat/completions'],
    [':scheme', 'http'],
    [':authority', 'gw.example'],
    ['content-type', 'application/json'],
    ...extra,
  ];
}

export function getHeaders(): HeaderList {
  return [
    [':method', 'GET'],
    [':path', '/v1/models'],
    [':scheme', 'http'],
    [':authority', 'gw.example'],
  ];
}

export const raw = (
  key: string,
  value: string,
): { header: { key: string; raw_value: Buffer } } => ({
  header: { key, raw_value: Buffer.from(value, 'latin1') },
});

export function headerValue(m: ProcessingRequest, name: string): string | undefined {
  const h = m.request_headers ?? m.response_headers;
  const hv = h?.headers?.headers?.find((x) => x.key === name);
  return hv?.raw_value?.toString('latin1');
}

export function cont(kind: NonNullable<ProcessingRequest['request']>): ProcessingResponse {
  const r: ProcessingResponse = {};
  r[kind] = {};
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Settles like `p`, or rejects with `what` after `ms`: a lost event fails, it does not hang. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (not within ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every 5 ms; rejects with `what` after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} (not within ${ms} ms)`);
    await sleep(5);
  }
}

export { grpc };
