/**
 * Kubernetes Events on AIRoutes and AIPolicies, so `kubectl describe` and `kubectl get events`
 * show what happened to an object (a data plane refused it, a reference stopped resolving, it
 * recovered) without reading an operator replica's log.
 *
 * Events follow condition transitions, never every status pass: a condition that turns False
 * (with a new reason) is a Warning, one that turns True again after being False is Normal. Only
 * the status leader records them, because only it writes the conditions they follow. Recording
 * is fire-and-forget: an Event that cannot be created is logged and never delays status.
 */
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, type Condition } from '../api/types.js';

/** Condition types that produce Events. */
const EVENTFUL = new Set(['Accepted', 'Programmed', 'EndpointsReady']);
const MAX_MESSAGE = 1024;

export interface EventApi {
  create(namespace: string, event: CoreV1Event): Promise<void>;
}

export function eventApi(kc: KubeConfig): EventApi {
  const api = kc.makeApiClient(CoreV1Api);
  return {
    create: async (namespace, body) => {
      await api.createNamespacedEvent({ namespace, body });
    },
  };
}

export interface EventTarget {
  kind: 'AIRoute' | 'AIPolicy';
  name: string;
  namespace: string;
  uid?: string | undefined;
  resourceVersion?: string | undefined;
}

export interface RecordedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** The Events a change of conditions calls for, in condition order. */
export function eventsFor(
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): RecordedEvent[] {
  const old = new Map((before ?? []).map((c) => [c.type, c]));
  const out: RecordedEvent[] = [];
  for (const c of after) {
    if (!EVENTFUL.has(c.type)) continue;
    const prev = old.get(c.type);
    if (c.status === 'False' && (prev?.status !== 'False' || prev.reason !== c.reason)) {
      out.push({ type: 'Warning', reason: c.reason, message: `${c.type}: ${c.message}` });
    } else if (c.status === 'True' && prev?.status === 'False') {
      out.push({ type: 'Normal', reason: c.reason, message: `${c.type}: ${c.message}` });
    }
  }
  return out;
}

export interface EventRecorderOptions {
  api: EventApi;
  /** This replica's name, as reportingInstance. */
  instance: string;
  logger: Logger;
  /** Wall-clock milliseconds. */
  now: () => number;
  /**
   * Events recorded per minute at most (default 300). One NACK of a shared resource turns every
   * route False at once; beyond the budget Events are dropped (counted in `dropped`), while the
   * conditions themselves still say everything.
   */
  maxPerMinute?: number;
}

export class EventRecorder {
  /** Events created, for metrics and tests. */
  created = 0;
  /** Events not recorded because the per-minute budget was spent. */
  dropped = 0;
  private warned = false;
  private windowStart = 0;
  private inWindow = 0;

  constructor(private readonly opts: EventRecorderOptions) {}

  record(target: EventTarget, events: readonly RecordedEvent[]): void {
    const now = this.opts.now();
    if (now - this.windowStart >= 60_000) {
      if (this.inWindow > (this.opts.maxPerMinute ?? 300)) {
        this.opts.logger.warn(
          { event: 'events_dropped', dropped: this.dropped },
          'too many Events in a minute; the conditions say the rest',
        );
      }
      this.windowStart = now;
      this.inWindow = 0;
    }
    for (const e of events) {
      if (++this.inWindow > (this.opts.maxPerMinute ?? 300)) {
        this.dropped++;
        continue;
      }
      void this.create(target, e);
    }
  }

  private async create(target: EventTarget, e: RecordedEvent): Promise<void> {
    const now = new Date(Math.floor(this.opts.now() / 1000) * 1000);
    const message = e.message.length <= MAX_MESSAGE ? e.message : `${e.message.slice(0, 1023)}…`;
    const body: CoreV1Event = {
      metadata: {
        // As client-go names them: the object, then a unique suffix.
        name: `${target.name}.${now.getTime().toString(16)}${randomBytes(4).toString('hex')}`,
        namespace: target.namespace,
      },
      involvedObject: {
        apiVersion: API_VERSION,
        kind: target.kind,
        name: target.name,
        namespace: target.namespace,
        ...(target.uid !== undefined ? { uid: target.uid } : {}),
        ...(target.resourceVersion !== undefined
          ? { resourceVersion: target.resourceVersion }
          : {}),
      },
      type: e.type,
      reason: e.reason,
      message,
      source: { component: 'sluice-operator' },
      reportingComponent: 'sluice.dev/operator',
      reportingInstance: this.opts.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.opts.api.create(target.namespace, body);
      this.created++;
      this.warned = false;
    } catch (err) {
      const log = { event: 'event_create_failed', object: `${target.kind}/${target.name}` };
      const reason = err instanceof Error ? err.message.split('\n')[0] : 'unknown';
      // One warning until Events work again: a missing RBAC rule would otherwise flood the log.
      if (!this.warned) this.opts.logger.warn({ ...log, reason }, 'could not record an Event');
      else this.opts.logger.debug({ ...log, reason }, 'could not record an Event');
      this.warned = true;
    }
  }
}
