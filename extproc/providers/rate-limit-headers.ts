/**
 * Rate-limit headers across translation. An SDK reads its own API's headers: OpenAI's
 * `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as a Go-style duration such as
 * `6m0s`) and Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (reset as
 * an RFC 3339 time). A translated answer carries the backend's, renamed and converted to the
 * caller's; the backend's own are removed. `retry-after` passes as it is, and a throttled answer
 * (429, 503) without one gets it from what the backend did say: `retry-after-ms`, the reset of an
 * exhausted limit, or Google's RetryInfo in the error body.
 *
 * Values are the backend's: only plain numbers, durations and times are read, anything else is
 * dropped, never passed on under the caller's names.
 */
import type { ApiFormat } from './endpoints.js';

type Kind = 'requests' | 'tokens';
const KINDS: readonly Kind[] = ['requests', 'tokens'];

const openai = {
  limit: (k: Kind) => `x-ratelimit-limit-${k}`,
  remaining: (k: Kind) => `x-ratelimit-remaining-${k}`,
  reset: (k: Kind) => `x-ratelimit-reset-${k}`,
};
const anthropic = {
  limit: (k: Kind) => `anthropic-ratelimit-${k}-limit`,
  remaining: (k: Kind) => `anthropic-ratelimit-${k}-remaining`,
  reset: (k: Kind) => `anthropic-ratelimit-${k}-reset`,
};

const COUNT = /^\d{1,15}$/;
const GO_DURATION =
  /^(?:(\d{1,9})h)?(?:(\d{1,9})m(?!s))?(?:(\d{1,9}(?:\.\d{1,9})?)s)?(?:(\d{1,12})ms)?$/;

/** Milliseconds of a Go-style duration (`1s`, `6m0s`, `17.28s`, `120ms`), or undefined. */
export function parseDuration(v: string): number | undefined {
  if (v === '' || v.length > 64) return undefined;
  const m = GO_DURATION.exec(v);
  if (!m || m[0] === '') return undefined;
  const [, h, min, s, ms] = m;
  return (
    Number(h ?? 0) * 3_600_000 +
    Number(min ?? 0) * 60_000 +
    Math.round(Number(s ?? 0) * 1000) +
    Number(ms ?? 0)
  );
}

/** A duration as OpenAI writes it: `120ms` below a second, else `1h2m3.5s` from the first unit. */
export function formatDuration(ms: number): string {
  const t = Math.max(0, Math.round(ms));
  if (t < 1000) return `${t}ms`;
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor((t % 3_600_000) / 60_000);
  const s = (t % 60_000) / 1000;
  const sec = `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`;
  if (h > 0) return `${h}h${m}m${sec}`;
  if (m > 0) return `${m}m${sec}`;
  return sec;
}

/** Milliseconds from `now` to an RFC 3339 time, or undefined. */
function untilTime(v: string, now: number): number | undefined {
  if (v.length > 64 || !/^\d{4}-\d{2}-\d{2}T/.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

/** An RFC 3339 time, to the second (rounded up, so a caller never retries early). */
function timeAfter(now: number, ms: number): string {
  return new Date(Math.ceil((now + ms) / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export interface RateLimitMapping {
  set: [string, string][];
  remove: string[];
}

/**
 * The headers to set and remove so a backend's answer speaks the caller's rate-limit headers.
 * `now` is the backend's `date` when it sent one (its resets are relative to its clock), else ours.
 */
export function rateLimitHeaders(
  caller: ApiFormat,
  status: number,
  headers: ReadonlyMap<string, string>,
  wallNow: number,
): RateLimitMapping {
  const date = headers.get('date');
  const parsedDate = date === undefined ? NaN : Date.parse(date);
  const now = Number.isFinite(parsedDate) ? parsedDate : wallNow;
  const [from, to] = caller === 'openai' ? [anthropic, openai] : [openai, anthropic];
  const set: [string, string][] = [];
  const remove: string[] = [];
  /** Milliseconds until an exhausted limit resets (the longest, if both are). */
  let exhaustedResetMs: number | undefined;
  for (const k of KINDS) {
    const limit = headers.get(from.limit(k));
    const remaining = headers.get(from.remaining(k));
    const reset = headers.get(from.reset(k));
    for (const name of [from.limit(k), from.remaining(k), from.reset(k)])
      if (headers.has(name)) remove.push(name);
    if (limit !== undefined && COUNT.test(limit)) set.push([to.limit(k), limit]);
    if (remaining !== undefined && COUNT.test(remaining)) set.push([to.remaining(k), remaining]);
    const resetMs =
      reset === undefined
        ? undefined
        : caller === 'openai'
          ? untilTime(reset, now)
          : parseDuration(reset);
    if (resetMs !== undefined) {
      set.push([
        to.reset(k),
        caller === 'openai' ? formatDuration(resetMs) : timeAfter(now, resetMs),
      ]);
      if (remaining === '0') exhaustedResetMs = Math.max(exhaustedResetMs ?? 0, resetMs);
    }
  }
  if (isThrottled(status) && !headers.has('retry-after')) {
    const ms = headers.get('retry-after-ms');
    const wait = ms !== undefined && COUNT.test(ms) ? Number(ms) : exhaustedResetMs;
    if (wait !== undefined) set.push(['retry-after', retryAfterSeconds(wait)]);
  }
  return { set, remove };
}

function isThrottled(status: number): boolean {
  return status === 429 || status === 503;
}

function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/**
 * `retry-after` for a throttled error whose headers had none, from Google's RetryInfo in the
 * body (`error.details[].retryDelay`, e.g. `"30s"`; Gemini and Vertex AI send it on 429).
 */
export function retryAfterFromErrorBody(status: number, body: Buffer): string | undefined {
  if (!isThrottled(status) || body.length > 1024 * 1024) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const root = Array.isArray(doc) ? (doc[0] as unknown) : doc;
  const error = isObj(root) ? root.error : undefined;
  const details = isObj(error) ? error.details : undefined;
  if (!Array.isArray(details)) return undefined;
  for (const d of details) {
    if (!isObj(d) || typeof d.retryDelay !== 'string') continue;
    const ms = parseDuration(d.retryDelay);
    if (ms !== undefined) return retryAfterSeconds(ms);
  }
  return undefined;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
