/**
 * The cluster source's calls to the apiserver: for each kind it watches, a paged list and a watch
 * (with server-side timeouts), and one Secret read by name. `kubeApi(kubeConfig)` is the real
 * access through @kubernetes/client-node; tests hand the source a fake `SourceApi`.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/types.js';
import type { ListPage, ListWatcher } from './reflector.js';

export type Kind = 'AIRoute' | 'AIPolicy' | 'Secret' | 'Service' | 'EndpointSlice';

/** How the source reaches the apiserver; `kubeApi(kubeConfig)` is the real one. */
export interface SourceApi {
  /** `labelSelector` narrows the list and the watch, as the API's own parameter does. */
  listWatcher(kind: Kind, namespace: string | undefined, labelSelector?: string): ListWatcher;
  /** One Secret by name, raw; undefined when it does not exist. */
  getSecret(namespace: string, name: string): Promise<Record<string, unknown> | undefined>;
}

const PAGE = 500;

function paths(kind: Kind, ns: string | undefined): string {
  const n = ns === undefined ? '' : `/namespaces/${encodeURIComponent(ns)}`;
  switch (kind) {
    case 'AIRoute':
      return `/apis/${GROUP}/${VERSION}${n}/airoutes`;
    case 'AIPolicy':
      return `/apis/${GROUP}/${VERSION}${n}/aipolicies`;
    case 'EndpointSlice':
      return `/apis/discovery.k8s.io/v1${n}/endpointslices`;
    case 'Secret':
      return `/api/v1${n}/secrets`;
    case 'Service':
      return `/api/v1${n}/services`;
  }
}

function listPage(v: unknown): ListPage {
  const list = v as {
    items?: unknown;
    metadata?: { resourceVersion?: unknown; _continue?: unknown; continue?: unknown };
  };
  const md = list?.metadata;
  const cont = md?._continue ?? md?.continue;
  return {
    items: Array.isArray(list?.items) ? (list.items as unknown[]) : [],
    resourceVersion: typeof md?.resourceVersion === 'string' ? md.resourceVersion : '',
    continue: typeof cont === 'string' && cont !== '' ? cont : undefined,
  };
}

/** The real apiserver access, through @kubernetes/client-node. */
export function kubeApi(kc: KubeConfig, watchTimeoutSeconds = 300): SourceApi {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const watcher = new Watch(kc);
  const list = async (
    kind: Kind,
    ns: string | undefined,
    token: string | undefined,
    labelSelector: string | undefined,
  ) => {
    const common = {
      limit: PAGE,
      _continue: token,
      ...(labelSelector !== undefined ? { labelSelector } : {}),
    };
    switch (kind) {
      case 'AIRoute':
      case 'AIPolicy':
      case 'EndpointSlice': {
        const [group, version, plural] =
          kind === 'EndpointSlice'
            ? ['discovery.k8s.io', 'v1', 'endpointslices']
            : [GROUP, VERSION, kind === 'AIRoute' ? 'airoutes' : 'aipolicies'];
        const res: unknown =
          ns === undefined
            ? await custom.listClusterCustomObject({ group, version, plural, ...common })
            : await custom.listNamespacedCustomObject({
                group,
                version,
                plural,
                namespace: ns,
                ...common,
              });
        return listPage(res);
      }
      case 'Secret':
        return listPage(
          ns === undefined
            ? await core.listSecretForAllNamespaces(common)
            : await core.listNamespacedSecret({ namespace: ns, ...common }),
        );
      case 'Service':
        return listPage(
          ns === undefined
            ? await core.listServiceForAllNamespaces(common)
            : await core.listNamespacedService({ namespace: ns, ...common }),
        );
    }
  };
  return {
    listWatcher: (kind, ns, labelSelector) => ({
      list: (token) => list(kind, ns, token, labelSelector),
      watch: async (rv, onEvent, done) => {
        // Server-side timeouts with jitter: every watch is renewed now and then, and replicas
        // do not all come back at the same moment.
        const timeoutSeconds = Math.round(watchTimeoutSeconds * (0.75 + Math.random() * 0.5));
        const ctrl = await watcher.watch(
          paths(kind, ns),
          {
            resourceVersion: rv,
            allowWatchBookmarks: true,
            timeoutSeconds,
            ...(labelSelector !== undefined ? { labelSelector } : {}),
          },
          (type: string, object: unknown) => onEvent({ type, object }),
          done,
        );
        return () => ctrl.abort();
      },
    }),
    getSecret: async (namespace, name) => {
      try {
        const s = await core.readNamespacedSecret({ namespace, name });
        return s as unknown as Record<string, unknown>;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw err;
      }
    },
  };
}
