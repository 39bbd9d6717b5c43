/**
 * Credentials that expire (AWS STS credentials, Google OAuth and Microsoft Entra ID access
 * tokens), kept fresh off the request path: fetched once at construction, then refreshed by a
 * timer `aheadMs` before they expire, a failure retried every `retryMs` while the old ones still
 * serve. A request waits only when there are none yet or the cached ones are (about to be)
 * expired: credentials in the last quarter of their life, at most their last 30 s, are not handed
 * out, so none expires between the request that reads it and the provider that checks it.
 */

export interface Expiring {
  /** When the credentials stop working; undefined for ones that do not expire. */
  expiration?: Date | undefined;
}

/** The longest margin before expiry within which cached credentials are no longer handed out. */
const MAX_MARGIN_MS = 30_000;

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
  /** When the cached credentials stop being handed out (their expiry less the margin). */
  private usableUntil = Number.POSITIVE_INFINITY;
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
    if (c && this.usableUntil > this.now()) return Promise.resolve(c);
    // In the margin: fresh ones are fetched; if that fails, the old ones serve while they last.
    return this.refresh().catch((err: unknown) => {
      if (c?.expiration !== undefined && c.expiration.getTime() > this.now()) return c;
      throw err;
    });
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
        const now = this.now();
        const expiry = c.expiration?.getTime();
        this.usableUntil =
          expiry === undefined
            ? Number.POSITIVE_INFINITY
            : expiry - Math.min(MAX_MARGIN_MS, Math.max(0, (expiry - now) / 4));
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

/**
 * How far ahead of expiry tokens are refreshed, how soon a failure is retried, and how long a
 * token request may take.
 */
export interface Timing {
  aheadMs?: number;
  retryMs?: number;
  timeoutMs?: number;
}

/**
 * Bearer tokens kept fresh by name (a backend's own credential, or the pod's workload identity),
 * each source built once per credential: the one for a name is replaced, and its timer stopped,
 * when the credential it came from (`key`) changes.
 */
export class BearerTokens<T extends Expiring & { token: string }> {
  private readonly sources = new Map<string, { key: string; source: Refreshing<T> }>();

  constructor(
    private readonly timing: Timing,
    /** The error requests see when there is no valid token. */
    private readonly failure: () => Error,
  ) {}

  /** The Authorization header of the source `name`; `fetch` builds its token request if new. */
  async headers(
    name: string,
    key: string,
    fetch: () => () => Promise<T>,
  ): Promise<[string, string][]> {
    let entry = this.sources.get(name);
    if (!entry || entry.key !== key) {
      entry?.source.close();
      const { aheadMs, retryMs } = this.timing;
      entry = { key, source: new Refreshing({ fetch: fetch(), aheadMs, retryMs }, this.failure) };
      this.sources.set(name, entry);
    }
    const t = await entry.source.get();
    return [['authorization', `Bearer ${t.token}`]];
  }

  close(): void {
    for (const s of this.sources.values()) s.source.close();
    this.sources.clear();
  }
}
