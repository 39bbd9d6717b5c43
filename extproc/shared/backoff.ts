/**
 * Retry delays shared by every loop that retries against a remote (the operator's list/watch
 * reflectors and its work queue): exponential from `initialMs`, capped at `maxMs`, with jitter.
 */

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 200, maxMs: 30_000 };

/** Exponential with full jitter on the upper half, so replicas that failed together spread out. */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random) {
  const ceiling = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
