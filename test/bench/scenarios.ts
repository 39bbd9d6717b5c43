/**
 * The exchanges the benchmark times, driven the way Envoy drives a real request, and the
 * closed-loop and open-loop runners around them. "Added latency" of a request is the sum of
 * its ext_proc round trips (the driver's per-message timings): what Envoy waits on.
 */
import {
  ROUTER as HARNESS_ROUTER,
  upstreamFilter as harnessUpstreamFilter,
} from '../conformance/harness.js';
import { performance } from 'node:perf_hooks';
import {
  ExtProcFilter,
  type ExtProcClient,
  type FilterConfig,
  type HeaderList,
  type PhaseResult,
  type Timing,
} from '../../operator/envoy-sim/ext-proc/index.js';
import { sequenceOffset, withSequence } from './payloads.js';
import { Samples } from './stats.js';

/**
 * What the operator emits for the filters (as in test/conformance/harness.ts), except the
 * message timeout: Envoy's 200 ms would turn a slow sample into a failed request, and a
 * benchmark wants the slow sample's latency.
 */
const MESSAGE_TIMEOUT_MS = 10_000;

// The same filter configs as the conformance suite (what the operator emits), but with a timeout
// long enough that a slow sample is measured instead of turned into a failure.
export const ROUTER: FilterConfig = { ...HARNESS_ROUTER, messageTimeoutMs: MESSAGE_TIMEOUT_MS };

export function upstreamFilter(cluster: string): FilterConfig {
  return { ...harnessUpstreamFilter(cluster), messageTimeoutMs: MESSAGE_TIMEOUT_MS };
}

export const CLUSTER = 'sluice/backend/openai';

export interface Target {
  name: 'sluice' | 'floor';
  client: ExtProcClient;
  /**
   * The floor never answers with mode_override, so for SSE its router filter starts in
   * STREAMED: the same messages cross the wire as when Sluice switches the mode.
   */
  streamedFromStart: boolean;
}

export interface Payload {
  reqHeaders: HeaderList;
  /**
   * Sent with its sequence marker (payloads.ts, SEQUENCE_MARKER), when it has one, replaced by
   * each request's own number: no two requests share their last user turn.
   */
  reqBody: Buffer;
  resHeaders: HeaderList;
  /** One buffered body, or the SSE chunks fed one by one. */
  resChunks: Buffer[];
  sse: boolean;
  /** Run the upstream filter's stream too (a real request); false = router 4-phase only. */
  upstream: boolean;
}

/** What one measured point collects. */
export class Recording {
  readonly added = new Samples();
  /** The router filter's share of `added` (the 4-phase exchange). */
  readonly router = new Samples();
  /** SSE only: the round trip of each response body chunk, and by position in the stream. */
  readonly chunk = new Samples();
  readonly chunkHead = new Samples();
  readonly chunkTail = new Samples();
  /** Open loop only: lag behind the schedule plus round trips. */
  readonly scheduled = new Samples();
  errors = 0;
  firstError: string | undefined;
}

function sum(ts: readonly Timing[]): number {
  let s = 0;
  for (const t of ts) s += t.ms;
  return s;
}

export class ExchangeError extends Error {}

function check(target: Target, what: string, r: PhaseResult, f: ExtProcFilter): void {
  if (r.kind === 'local-reply') {
    throw new ExchangeError(
      `${target.name}: ${what} got a local reply ${r.status} (${r.details}): ${r.body
        .toString()
        .slice(0, 300)}`,
    );
  }
  if (f.violations.length > 0) {
    throw new ExchangeError(
      `${target.name}: ${what}: protocol violations: ${f.violations.join('; ')}`,
    );
  }
}

/**
 * Request numbers for the bodies' sequence markers, shared by every Worker of this process and
 * starting at a random point, so neither a second run against the same extproc nor another
 * process (the Go loadgen seeds from the clock) sends a last user turn it already cached.
 */
let sequence = Math.floor(Math.random() * 2 ** 52);

/**
 * One closed-loop worker: its own filter configs, so the per-message callback of the SSE
 * exchange knows whose answer arrived (configs are compiled once per object by the driver).
 */
export class Worker {
  private readonly routerCfg: FilterConfig;
  private readonly upstreamCfg = upstreamFilter(CLUSTER);
  private answered: (() => void) | null = null;
  private lastBodyMs = 0;
  /** Where the request body's sequence marker sits; undefined: the body is replayed as it is. */
  private readonly sequenceAt: number | undefined;

  constructor(
    private readonly target: Target,
    private readonly p: Payload,
  ) {
    this.sequenceAt = sequenceOffset(p.reqBody);
    const base: FilterConfig =
      p.sse && target.streamedFromStart
        ? { ...ROUTER, processingMode: { ...ROUTER.processingMode, responseBodyMode: 'STREAMED' } }
        : ROUTER;
    this.routerCfg = p.sse
      ? {
          ...base,
          onTiming: (t) => {
            if (t.phase !== 'response_body') return;
            this.lastBodyMs = t.ms;
            const a = this.answered;
            this.answered = null;
            a?.();
          },
        }
      : base;
  }

  /** One whole request; returns its added latency in ms. */
  async exchange(rec: Recording): Promise<number> {
    const { target: t, p } = this;
    const router = new ExtProcFilter(t.client, this.routerCfg);
    const body =
      this.sequenceAt === undefined
        ? p.reqBody
        : withSequence(p.reqBody, this.sequenceAt, sequence++);
    const routed = await router.runRequest(p.reqHeaders, [body]);
    check(t, 'router request', routed, router);
    let upstreamMs = 0;
    if (p.upstream && routed.kind === 'continue') {
      const up = new ExtProcFilter(t.client, this.upstreamCfg);
      const sent = await up.runRequest(routed.headers, routed.hasBody ? [routed.body] : []);
      // The upstream filter skips the response direction: its stream ends with the request.
      up.close();
      check(t, 'upstream request', sent, up);
      upstreamMs = sum(up.timings);
    }
    const res = p.sse
      ? await this.stream(router, rec)
      : await router.runResponse(p.resHeaders, p.resChunks);
    check(t, 'router response', res, router);
    const routerMs = sum(router.timings);
    rec.router.add(routerMs);
    rec.added.add(routerMs + upstreamMs);
    return routerMs + upstreamMs;
  }

  /** Chunks go one at a time, each after the previous answer, as a provider trickles tokens. */
  private async stream(router: ExtProcFilter, rec: Recording): Promise<PhaseResult> {
    const d = router.response;
    const chunks = this.p.resChunks;
    d.headers(this.p.resHeaders, false);
    await d.headersAnswered();
    const quarter = Math.floor(chunks.length / 4);
    for (let i = 0; i < chunks.length; i++) {
      if (router.ended) break;
      const answer = new Promise<void>((r) => (this.answered = r));
      d.data(chunks[i]!, i === chunks.length - 1);
      await answer;
      rec.chunk.add(this.lastBodyMs);
      if (i < quarter) rec.chunkHead.add(this.lastBodyMs);
      else if (i >= chunks.length - quarter) rec.chunkTail.add(this.lastBodyMs);
    }
    return d.result();
  }
}

export interface LoopResult {
  rec: Recording;
  requests: number;
  seconds: number;
}

/** `concurrency` workers, each starting its next request when the last one ends. */
export async function closedLoop(
  target: Target,
  p: Payload,
  concurrency: number,
  seconds: number,
): Promise<LoopResult> {
  const rec = new Recording();
  const start = performance.now();
  const end = start + seconds * 1000;
  let requests = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const w = new Worker(target, p);
      while (performance.now() < end) {
        await w.exchange(rec);
        requests++;
      }
    }),
  );
  return { rec, requests, seconds: (performance.now() - start) / 1000 };
}

/** A closed loop of exactly `count` exchanges, `concurrency` at a time (a count, not a time). */
export async function countedLoop(
  target: Target,
  p: Payload,
  concurrency: number,
  count: number,
): Promise<{ rec: Recording; requests: number }> {
  const rec = new Recording();
  let started = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const w = new Worker(target, p);
      while (started < count) {
        started++;
        await w.exchange(rec);
      }
    }),
  );
  return { rec, requests: count };
}

export interface RateResult {
  rec: Recording;
  /** How late each request started compared with its schedule (driver-side, ms). */
  lag: Samples;
  scheduled: number;
  completed: number;
  /** Not sent because `maxInFlight` were already open: the run had collapsed. */
  dropped: number;
  seconds: number;
  maxInFlight: number;
}

/**
 * Open loop: request i is due at start + i/rate whatever happened to the others, and its
 * latency counts from when it was due (lag + round trips), so a stall cannot hide behind
 * requests that were never sent (coordinated omission). The scheduler spins on setImmediate
 * because timers only have millisecond resolution and 2,000 req/s is one every 0.5 ms.
 * Requests beyond `maxInFlightCap` open at once are dropped and counted, as Envoy's default
 * circuit breaker (max_requests 1024) would overflow them; past that the run has collapsed
 * and piling on more streams only measures HTTP/2 session limits.
 */
export function openLoop(
  target: Target,
  p: Payload,
  rate: number,
  seconds: number,
  maxInFlightCap = 1024,
): Promise<RateResult> {
  const rec = new Recording();
  const lag = new Samples();
  const w = new Worker(target, p);
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = performance.now();
  let next = 0;
  let completed = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let dropped = 0;
  let lastEnd = start;
  return new Promise((resolve) => {
    const finish = (): void => {
      if (completed + dropped < total) return;
      resolve({
        rec,
        lag,
        scheduled: total,
        completed: completed - rec.errors,
        dropped,
        seconds: (lastEnd - start) / 1000,
        maxInFlight,
      });
    };
    const done = (): void => {
      completed++;
      inFlight--;
      lastEnd = performance.now();
      finish();
    };
    const launch = (due: number): void => {
      if (inFlight >= maxInFlightCap) {
        dropped++;
        finish();
        return;
      }
      const late = performance.now() - due;
      inFlight++;
      if (inFlight > maxInFlight) maxInFlight = inFlight;
      w.exchange(rec).then(
        (ms) => {
          lag.add(late);
          rec.scheduled.add(late + ms);
          done();
        },
        (err: unknown) => {
          rec.errors++;
          rec.firstError ??= err instanceof Error ? err.message : String(err);
          done();
        },
      );
    };
    const tick = (): void => {
      const now = performance.now();
      while (next < total && start + next * interval <= now) {
        launch(start + next * interval);
        next++;
      }
      if (next < total) setImmediate(tick);
    };
    tick();
  });
}
