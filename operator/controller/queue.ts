/**
 * A keyed work queue in the manner of client-go's: a key waits at most once however often it is
 * added; a key is never handled twice at the same time, and one added while it is being handled
 * runs again afterwards; a failure re-adds the key with exponential backoff, a success forgets
 * its failures. Keys are independent, so one that keeps failing never holds up the others.
 */
import { backoffDelay, DEFAULT_BACKOFF, type Backoff } from '../../extproc/shared/backoff.js';

export interface WorkQueueOptions {
  /** Keys handled at once (default 1). */
  concurrency?: number;
  backoff?: Backoff;
  /** Called when a handler throws, before the key is retried after `delayMs`. */
  onError?(key: string, err: unknown, attempt: number, delayMs: number): void;
}

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private running = 0;
  private pumpQueued = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly handler: (key: string) => Promise<void>,
    private readonly opts: WorkQueueOptions = {},
  ) {}

  /** Queues `key`, after `delayMs` (a later add with a shorter delay brings it forward). */
  add(key: string, delayMs = 0): void {
    if (this.closed) return;
    if (delayMs > 0) {
      if (this.queued.has(key)) return;
      const at = Date.now() + delayMs;
      const pending = this.timers.get(key);
      if (pending && pending.at <= at) return;
      if (pending) clearTimeout(pending.timer);
      const timer = setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, delayMs);
      this.timers.set(key, { at, timer });
      return;
    }
    const pending = this.timers.get(key);
    if (pending) {
      clearTimeout(pending.timer);
      this.timers.delete(key);
    }
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    // Start on the next microtask, so adds made in the same synchronous run coalesce.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      queueMicrotask(() => {
        this.pumpQueued = false;
        this.pump();
      });
    }
  }

  /** Keys waiting or running. */
  get size(): number {
    return this.queued.size + this.active.size + this.timers.size;
  }

  /** Resolves when nothing is queued, running or waiting for a retry. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops everything queued and waits for running handlers to finish. */
  async close(): Promise<void> {
    this.closed = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.ready.length = 0;
    this.queued.clear();
    this.dirty.clear();
    while (this.active.size > 0) await new Promise((r) => setTimeout(r, 5));
    this.notifyIdle();
  }

  private pump(): void {
    while (!this.closed && this.running < (this.opts.concurrency ?? 1) && this.ready.length > 0) {
      const key = this.ready.shift()!;
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.handle(key);
    }
  }

  private async handle(key: string): Promise<void> {
    let retryIn: number | undefined;
    try {
      await this.handler(key);
      this.failures.delete(key);
    } catch (err) {
      const attempt = this.failures.get(key) ?? 0;
      this.failures.set(key, attempt + 1);
      retryIn = backoffDelay(this.opts.backoff ?? DEFAULT_BACKOFF, attempt);
      this.opts.onError?.(key, err, attempt + 1, retryIn);
    } finally {
      this.active.delete(key);
      this.running--;
    }
    if (this.dirty.delete(key)) this.add(key);
    else if (retryIn !== undefined) this.add(key, retryIn);
    this.pump();
    if (this.size === 0) this.notifyIdle();
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
