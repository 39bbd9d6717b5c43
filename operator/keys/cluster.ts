/** Consumer Secrets in a cluster, for `sluice keys`, through @kubernetes/client-node. */
import { ApiException, CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { CONSUMER_LABEL } from '../api/consumer-secret.js';
import { manifest, type KeySecret } from './format.js';
import { KeysError, type KeyTarget } from './target.js';

export class ClusterTarget implements KeyTarget {
  private readonly core: CoreV1Api;
  readonly where: string;

  constructor(kubeConfig: KubeConfig) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.where = kubeConfig.getCurrentCluster()?.server ?? 'the cluster';
  }

  async list(namespace: string): Promise<KeySecret[]> {
    const out: KeySecret[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(`list secrets in namespace ${namespace}`, () =>
        this.core.listNamespacedSecret({
          namespace,
          labelSelector: CONSUMER_LABEL,
          limit: 500,
          ...(token ? { _continue: token } : {}),
        }),
      );
      for (const item of page.items) out.push(fromApi(item, namespace));
      token = page.metadata?._continue || undefined;
    } while (token);
    return out;
  }

  async create(secret: KeySecret): Promise<void> {
    await this.call(`create Secret ${secret.namespace}/${secret.name}`, () =>
      this.core.createNamespacedSecret({
        namespace: secret.namespace,
        body: manifest(secret),
      }),
    );
  }

  async remove(secrets: readonly KeySecret[]): Promise<void> {
    for (const s of secrets) {
      await this.call(`delete Secret ${s.namespace}/${s.name}`, () =>
        this.core.deleteNamespacedSecret({ name: s.name, namespace: s.namespace }),
      );
    }
  }

  /** Runs one API call; every failure becomes a one-line KeysError saying what was attempted. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ApiException) {
        const reason = statusMessage(err.body) ?? `HTTP ${err.code}`;
        throw new KeysError(`cannot ${what}: ${reason}`);
      }
      // Transport errors name the URL and the cause; credentials travel in headers, not in them.
      const code = networkCode(err);
      const first = err instanceof Error ? err.message.split('\n')[0] : undefined;
      const why = code ? ` (${code})` : first ? ` (${first})` : '';
      throw new KeysError(
        `cannot reach the Kubernetes API at ${this.where}${why}; check the kubeconfig and that the cluster is up`,
      );
    }
  }
}

function fromApi(s: V1Secret, namespace: string): KeySecret {
  const data: Record<string, string> = {};
  // The API returns data base64-encoded; stringData exists only on writes.
  for (const [k, v] of Object.entries(s.data ?? {})) {
    data[k] = Buffer.from(v, 'base64').toString('utf8');
  }
  return {
    namespace: s.metadata?.namespace ?? namespace,
    name: s.metadata?.name ?? '',
    labels: { ...(s.metadata?.labels ?? {}) },
    annotations: { ...(s.metadata?.annotations ?? {}) },
    data,
  };
}

/** The apiserver's Status message, e.g. `namespaces "x" not found`; it never holds data values. */
function statusMessage(body: unknown): string | undefined {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      return undefined;
    }
  }
  if (typeof b !== 'object' || b === null) return undefined;
  const m = (b as { message?: unknown }).message;
  return typeof m === 'string' && m !== '' ? m.split('\n')[0] : undefined;
}

/** ECONNREFUSED, ENOTFOUND, … from the error or its causes. */
function networkCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
