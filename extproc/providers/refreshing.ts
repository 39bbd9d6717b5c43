/**
 * Credentials that expire (AWS STS credentials, Google OAuth access tokens), kept fresh off the
 * request path: fetched once at construction, then refreshed by a timer `aheadMs` before they
 * expire, a failure retried every `retryMs` while the old ones still serve. A request waits only
 * when there are none yet or the cached ones have expired.
 */

export interface Expiring {
  /** When the credentials stop working; undefined for ones that do not expire. */
  expiration?: Date | undefined;
}

export interface RefreshingOptions<T extends Expiring> {
  /** Fetches fresh credentials (STS, an OAuth token endpoint); the answer carries `expiration`. */
  fetch: () => Promise<T>;
  /** Refresh this long before expiry (default 5 minutes). */
  aheadMs?: number;
  /** Wait before retrying a failed refresh (default 10 s). */
  retryMs?: number;
  now?: () => number;
}

/**
 * Temporary credentials kept fresh off the request path: a timer refreshes them `aheadMs` before
 * they expire (retrying a failure every `retryMs`), so requests read the cached ones. A request
 * waits only when there are none yet or the cached ones have expired.
 */
export class Refreshing<T extends Expiring> {
  private creds: T | undefined;
  private inflight: Promise<T> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly aheadMs: number;
  private readonly retryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly opts: RefreshingOptions<T>,
    /** The error requests see when there are no valid credentials (never the fetch's own). */
    private readonly failure: () => Error,
  ) {
    this.aheadMs = opts.aheadMs ?? 5 * 60_000;
    this.retryMs = opts.retryMs ?? 10_000;
    this.now = opts.now ?? Date.now;
    // Started at once: the first request finds credentials ready, or an exchange under way.
    this.refresh().catch(() => undefined);
  }

  get(): Promise<T> {
    const c = this.creds;
    if (c && (c.expiration === undefined || c.expiration.getTime() > this.now()))
      return Promise.resolve(c);
    return this.refresh();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private refresh(): Promise<T> {
    this.inflight ??= this.opts
      .fetch()
      .then((c) => {
        this.creds = c;
        // Credentials that live shorter than `aheadMs` are refreshed no sooner than `retryMs`
        // apart: never a tight loop against the issuer.
        this.schedule(
          c.expiration === undefined
            ? undefined
            : Math.max(this.retryMs, c.expiration.getTime() - this.now() - this.aheadMs),
        );
        return c;
      })
      .catch((err: unknown) => {
        this.schedule(this.retryMs);
        // The fetch's error may name a role, a key or a file: not for callers.
        void err;
        throw this.failure();
      })
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  private schedule(inMs: number | undefined): void {
    if (this.closed || inMs === undefined) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.refresh().catch(() => undefined);
      },
      Math.max(0, inMs),
    );
    this.timer.unref();
  }
}
