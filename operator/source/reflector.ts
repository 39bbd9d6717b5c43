/**
 * A reflector: one list+watch loop over one collection, keeping a cache of what it lists and
 * watches, as client-go's Reflector and store do. List, then watch from the list's
 * resourceVersion; a 410 Gone (an expired resourceVersion or continue token) relists; any other
 * failure retries with exponential backoff. Nothing here throws out of the loop, so a flaky
 * apiserver slows the operator down but never stops it.
 *
 * It knows nothing of what it watches: `convert` reduces each object to what the caller keeps.
 * The cluster source (kube.ts) runs one per kind and namespace; the fleet status (status/fleet.ts)
 * one over the operators' Leases.
 */
import { ApiException } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffDelay, DEFAULT_BACKOFF, type Backoff } from '../../extproc/shared/backoff.js';

export interface ListPage {
  items: unknown[];
  resourceVersion: string;
  continue?: string | undefined;
}

export interface WatchEvent {
  type: string;
  object: unknown;
}

/** The two calls a reflector makes; the real ones wrap @kubernetes/client-node, tests fake them. */
export interface ListWatcher {
  list(continueToken: string | undefined): Promise<ListPage>;
  /**
   * Opens a watch from `resourceVersion`. `done` is called once when it ends, with the error if
   * it failed. Resolves with a function that ends it early.
   */
  watch(
    resourceVersion: string,
    onEvent: (e: WatchEvent) => void,
    done: (err: unknown) => void,
  ): Promise<() => void>;
}

interface Stored<T> {
  rv: string;
  value: T;
}

export interface ReflectorOptions<T> {
  name: string;
  lw: ListWatcher;
  /** Reduces a raw object to what the source keeps; undefined skips it. */
  convert(raw: Record<string, unknown>): T | undefined;
  /** After every change of the store (before: absent on add; after: absent on delete). */
  onChange(key: string, before: T | undefined, after: T | undefined): void;
  logger: Logger;
  backoff?: Backoff;
  /** A watch that ends sooner than this without delivering anything counts as a failure. */
  minWatchMs?: number;
  onRestart?(reason: 'gone' | 'error'): void;
}

class Gone extends Error {}

function isGone(err: unknown): boolean {
  if (err instanceof Gone) return true;
  if (err instanceof ApiException) return err.code === 410;
  const e = err as { statusCode?: unknown; code?: unknown } | null;
  return e !== null && typeof e === 'object' && (e.statusCode === 410 || e.code === 410);
}

/** One line about a failed call, without its body (which may quote what it sent). */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  if (err instanceof Error) return err.message.split('\n')[0]!;
  return 'unknown error';
}

function objectKey(raw: Record<string, unknown>): { key: string; rv: string } | undefined {
  const m = raw.metadata as { name?: unknown; namespace?: unknown; resourceVersion?: unknown };
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string') return undefined;
  const ns = typeof m.namespace === 'string' ? m.namespace : '';
  const rv = typeof m.resourceVersion === 'string' ? m.resourceVersion : '';
  return { key: `${ns}/${m.name}`, rv };
}

export class Reflector<T> {
  private readonly store = new Map<string, Stored<T>>();
  private rv = '';
  private stopped = false;
  private stopWatch: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private markSynced!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  hasSynced = false;

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
  }

  start(): void {
    this.loopDone ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopWatch?.();
    this.wake?.();
    await this.loopDone;
  }

  get(key: string): T | undefined {
    return this.store.get(key)?.value;
  }

  /** The stored resourceVersion of `key`, to tell whether it changed meanwhile. */
  version(key: string): string | undefined {
    return this.store.get(key)?.rv;
  }

  /** Replaces a stored value in place (same resourceVersion), e.g. to add or drop Secret data. */
  update(key: string, rv: string, value: T): boolean {
    const cur = this.store.get(key);
    if (!cur || cur.rv !== rv) return false;
    this.store.set(key, { rv, value });
    this.opts.onChange(key, cur.value, value);
    return true;
  }

  values(): IterableIterator<T> {
    const it = this.store.values();
    return (function* () {
      for (const s of it) yield s.value;
    })();
  }

  private async loop(): Promise<void> {
    const backoff = this.opts.backoff ?? DEFAULT_BACKOFF;
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.rv === '') await this.relist();
        const started = Date.now();
        const delivered = await this.watchOnce();
        if (this.stopped) break;
        if (delivered === 0 && Date.now() - started < (this.opts.minWatchMs ?? 1000)) {
          throw new Error('watch closed at once');
        }
        failures = 0;
      } catch (err) {
        if (this.stopped) break;
        const gone = isGone(err);
        if (gone) this.rv = '';
        this.opts.onRestart?.(gone ? 'gone' : 'error');
        const delay = gone && failures === 0 ? 0 : backoffDelay(backoff, failures);
        failures++;
        this.opts.logger.warn(
          {
            event: 'watch_restart',
            resource: this.opts.name,
            reason: gone ? 'gone' : describeError(err),
            delay_ms: delay,
          },
          gone ? 'resourceVersion expired; relisting' : 'list/watch failed; retrying',
        );
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async relist(): Promise<void> {
    const items: unknown[] = [];
    let token: string | undefined;
    let rv: string;
    do {
      const page = await this.opts.lw.list(token);
      items.push(...page.items);
      rv = page.resourceVersion;
      token = page.continue || undefined;
    } while (token !== undefined && !this.stopped);
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const raw of items) this.apply('ADDED', raw, seen);
    for (const [key, old] of [...this.store]) {
      if (seen.has(key)) continue;
      this.store.delete(key);
      this.opts.onChange(key, old.value, undefined);
    }
    this.rv = rv;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.markSynced();
    }
  }

  /** Applies one object; returns its key. */
  private apply(type: string, raw: unknown, seen?: Set<string>): void {
    if (typeof raw !== 'object' || raw === null) return;
    const obj = raw as Record<string, unknown>;
    const id = objectKey(obj);
    if (!id) return;
    seen?.add(id.key);
    const old = this.store.get(id.key);
    if (type === 'DELETED') {
      if (!old) return;
      this.store.delete(id.key);
      this.opts.onChange(id.key, old.value, undefined);
      return;
    }
    if (old && old.rv === id.rv && id.rv !== '') return;
    const value = this.opts.convert(obj);
    if (value === undefined) {
      if (old) {
        this.store.delete(id.key);
        this.opts.onChange(id.key, old.value, undefined);
      }
      return;
    }
    this.store.set(id.key, { rv: id.rv, value });
    this.opts.onChange(id.key, old?.value, value);
  }

  /** Runs one watch to its end; returns how many events it delivered. Throws on failure. */
  private watchOnce(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let delivered = 0;
      let finished = false;
      const finish = (err: unknown): void => {
        if (finished) return;
        finished = true;
        this.stopWatch?.();
        this.stopWatch = undefined;
        if (err !== null && err !== undefined && !this.stopped) {
          reject(err instanceof Error ? err : new Error(describeError(err)));
        } else resolve(delivered);
      };
      const onEvent = (e: WatchEvent): void => {
        if (finished) return;
        delivered++;
        const obj = e.object as { metadata?: { resourceVersion?: unknown }; code?: unknown };
        if (e.type === 'ERROR') {
          // A watch from an expired resourceVersion answers 200 and then this event.
          finish(obj?.code === 410 ? new Gone('410 Gone') : new Error(`watch error event`));
          return;
        }
        if (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED') {
          this.apply(e.type, e.object);
        }
        const rv = obj?.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv !== '') this.rv = rv;
      };
      this.opts.lw.watch(this.rv, onEvent, finish).then(
        (stop) => {
          if (finished || this.stopped) stop();
          else this.stopWatch = stop;
        },
        (err: unknown) => finish(err ?? new Error('watch failed')),
      );
    });
  }
}
