/**
 * Writes AIRoute/AIPolicy status through the status subresource. A write carries the
 * resourceVersion the status was computed against; on a conflict the object is read again and
 * the status recomputed from what is really there (lastTransitionTime depends on it), so a write
 * never overwrites a change it did not see.
 */
import { ApiException, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, GROUP, VERSION, type ResourceStatus } from '../api/types.js';
import { sameStatus } from './conditions.js';

export type StatusKind = 'AIRoute' | 'AIPolicy';

const PLURAL: Record<StatusKind, string> = { AIRoute: 'airoutes', AIPolicy: 'aipolicies' };

/** An object as the writer needs it. */
export interface StatusTarget {
  metadata: { name: string; namespace: string; resourceVersion?: string | undefined };
  spec: unknown;
  status?: ResourceStatus | undefined;
}

export interface StatusApi {
  get(kind: StatusKind, namespace: string, name: string): Promise<StatusTarget | undefined>;
  /** Rejects with a 409 ApiException on a stale resourceVersion, 404 when the object is gone. */
  replaceStatus(kind: StatusKind, target: StatusTarget, status: ResourceStatus): Promise<void>;
}

export function statusApi(kc: KubeConfig): StatusApi {
  const api = kc.makeApiClient(CustomObjectsApi);
  return {
    get: async (kind, namespace, name) => {
      try {
        const raw: unknown = await api.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL[kind],
          name,
        });
        return raw as StatusTarget;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
    replaceStatus: async (kind, target, status) => {
      const { name, namespace, resourceVersion } = target.metadata;
      await api.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL[kind],
        name,
        body: {
          apiVersion: API_VERSION,
          kind,
          metadata: { name, namespace, resourceVersion },
          spec: target.spec,
          status,
        },
      });
    },
  };
}

export type WriteResult = 'unchanged' | 'written' | 'gone';

export class StatusWriter {
  /** Successful writes, for metrics and for tests that check a standby stays silent. */
  writes = 0;

  constructor(
    private readonly api: StatusApi,
    private readonly maxAttempts = 5,
  ) {}

  /**
   * `compute` turns the object's current status into the one to write. Nothing is written when
   * it comes out the same.
   */
  async write(
    kind: StatusKind,
    cached: StatusTarget | undefined,
    namespace: string,
    name: string,
    compute: (current: ResourceStatus | undefined) => ResourceStatus,
  ): Promise<WriteResult> {
    let target = cached ?? (await this.api.get(kind, namespace, name));
    for (let attempt = 1; ; attempt++) {
      if (!target) return 'gone';
      const next = compute(target.status);
      if (sameStatus(target.status, next)) return 'unchanged';
      try {
        await this.api.replaceStatus(kind, target, next);
        this.writes++;
        return 'written';
      } catch (err) {
        if (!(err instanceof ApiException)) throw err;
        if (err.code === 404) return 'gone';
        if (err.code !== 409 || attempt >= this.maxAttempts) throw err;
      }
      target = await this.api.get(kind, namespace, name);
    }
  }
}
