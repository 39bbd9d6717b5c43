// Smoke tests of the kube tier's control plane itself: if these fail, every operator test that
// relies on CRDs, CEL, status or RBAC would be testing a fake.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  VersionApi,
} from '@kubernetes/client-node';
import type { KubeConfig, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { startKubeEnv } from './env.js';
import type { KubeEnv } from './env.js';

const pinned = (
  JSON.parse(readFileSync(new URL('./tools/versions.json', import.meta.url), 'utf8')) as {
    kubernetes: string;
  }
).kubernetes;

const group = 'test.sluice.dev';
const version = 'v1';
const plural = 'widgets';

const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: version,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['minReplicas', 'maxReplicas'],
                properties: {
                  minReplicas: { type: 'integer', minimum: 0 },
                  maxReplicas: { type: 'integer', minimum: 0 },
                },
                x_kubernetes_validations: [
                  {
                    rule: 'self.minReplicas <= self.maxReplicas',
                    message: 'minReplicas must not exceed maxReplicas',
                  },
                ],
              },
              status: {
                type: 'object',
                properties: {
                  ready: { type: 'boolean' },
                  observedGeneration: { type: 'integer' },
                },
              },
            },
          },
        },
      },
    ],
  },
};

let env: KubeEnv;
let ns = 0;

async function freshNamespace(kc: KubeConfig): Promise<string> {
  const name = `t${process.pid}-${++ns}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

async function apiError(
  p: Promise<unknown>,
): Promise<{ code: number; body: { message: string; reason?: string } }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body: unknown = err.body;
      return { code: err.code, body: typeof body === 'string' ? JSON.parse(body) : body };
    }
    throw err;
  }
  assert.fail('expected the API server to reject the request');
}

// Authorizer and CRD handler caches are informer-fed, so a just-written object can take a few
// milliseconds to take effect.
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

void before(async () => {
  env = await startKubeEnv();
});

void after(async () => {
  await env?.stop();
});

void describe('kube-apiserver test environment', () => {
  void it('reports the pinned Kubernetes version', async () => {
    const info = await env.kubeConfig.makeApiClient(VersionApi).getCode();
    assert.equal(info.gitVersion, pinned);
    assert.equal(`v${info.major}.${info.minor}.`, pinned.replace(/\d+$/, ''));
    assert.equal(env.version, pinned);
  });

  void it('creates a namespace', async () => {
    const core = env.kubeConfig.makeApiClient(CoreV1Api);
    const name = await freshNamespace(env.kubeConfig);
    const got = await core.readNamespace({ name });
    assert.equal(got.metadata?.name, name);
    assert.equal(got.status?.phase, 'Active');
  });

  void describe('a CRD with a CEL rule and a status subresource', () => {
    let namespace: string;
    const objects = () => env.kubeConfig.makeApiClient(CustomObjectsApi);
    const widget = (name: string, minReplicas: number, maxReplicas: number) => ({
      apiVersion: `${group}/${version}`,
      kind: 'Widget',
      metadata: { name },
      spec: { minReplicas, maxReplicas },
    });

    void before(async () => {
      const ext = env.kubeConfig.makeApiClient(ApiextensionsV1Api);
      await ext.createCustomResourceDefinition({ body: widgetCrd });
      await eventually(async () => {
        const crd = await ext.readCustomResourceDefinition({ name: widgetCrd.metadata!.name! });
        const established = crd.status?.conditions?.find((c) => c.type === 'Established');
        assert.equal(established?.status, 'True', 'CRD not Established yet');
      });
      namespace = await freshNamespace(env.kubeConfig);
    });

    void it('accepts a valid object', async () => {
      const created = await eventually(() =>
        objects().createNamespacedCustomObject({
          group,
          version,
          namespace,
          plural,
          body: widget('ok', 1, 3),
        }),
      );
      assert.deepEqual(created.spec, { minReplicas: 1, maxReplicas: 3 });
    });

    void it('rejects an invalid object with the CEL message', async () => {
      const { code, body } = await apiError(
        objects().createNamespacedCustomObject({
          group,
          version,
          namespace,
          plural,
          body: widget('bad', 5, 2),
        }),
      );
      assert.equal(code, 422);
      assert.equal(body.reason, 'Invalid');
      assert.equal(
        body.message,
        'Widget.test.sluice.dev "bad" is invalid: spec: Invalid value: "object": minReplicas must not exceed maxReplicas',
      );
    });

    void it('rejects a schema violation before CEL', async () => {
      const { code, body } = await apiError(
        objects().createNamespacedCustomObject({
          group,
          version,
          namespace,
          plural,
          body: widget('negative', -1, 2),
        }),
      );
      assert.equal(code, 422);
      assert.match(
        body.message,
        /spec\.minReplicas: Invalid value: -1: .*greater than or equal to 0/,
      );
    });

    void it('updates status only through the status subresource', async () => {
      const api = objects();
      const ref = { group, version, namespace, plural };
      await api.createNamespacedCustomObject({ ...ref, body: widget('st', 1, 2) });
      const current = await api.getNamespacedCustomObject({ ...ref, name: 'st' });
      const generation = current.metadata.generation as number;

      const updated = await api.replaceNamespacedCustomObjectStatus({
        ...ref,
        name: 'st',
        body: {
          ...current,
          spec: { minReplicas: 0, maxReplicas: 9 },
          status: { ready: true, observedGeneration: generation },
        },
      });
      assert.deepEqual(updated.status, { ready: true, observedGeneration: generation });
      assert.deepEqual(updated.spec, { minReplicas: 1, maxReplicas: 2 }, 'spec ignored by /status');
      assert.equal(updated.metadata.generation, generation, 'status writes do not bump generation');

      const viaMain = await api.replaceNamespacedCustomObject({
        ...ref,
        name: 'st',
        body: { ...updated, spec: { minReplicas: 2, maxReplicas: 2 }, status: { ready: false } },
      });
      assert.deepEqual(viaMain.status, { ready: true, observedGeneration: generation });
      assert.equal(viaMain.metadata.generation, generation + 1);
    });
  });

  void describe('RBAC', () => {
    let namespace: string;
    const sa = 'reader';
    const user = () => `system:serviceaccount:${namespace}:${sa}`;

    void before(async () => {
      namespace = await freshNamespace(env.kubeConfig);
      const core = env.kubeConfig.makeApiClient(CoreV1Api);
      const rbac = env.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: sa } } });
      await rbac.createNamespacedRole({
        namespace,
        body: {
          metadata: { name: 'configmap-reader' },
          rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
        },
      });
      await rbac.createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name: 'reader' },
          roleRef: {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'Role',
            name: 'configmap-reader',
          },
          subjects: [
            { kind: 'ServiceAccount', name: sa, namespace },
            { kind: 'Group', name: 'sluice:readers', apiGroup: 'rbac.authorization.k8s.io' },
          ],
        },
      });
    });

    void it('lets the ServiceAccount list configmaps but not create them', async () => {
      const core = env.impersonate(user()).makeApiClient(CoreV1Api);
      const list = await eventually(() => core.listNamespacedConfigMap({ namespace }));
      assert.ok(Array.isArray(list.items));
      const { code, body } = await apiError(
        core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'nope' } } }),
      );
      assert.equal(code, 403);
      assert.equal(
        body.message,
        `configmaps is forbidden: User "${user()}" cannot create resource "configmaps" in API group "" in the namespace "${namespace}"`,
      );
      const other = await apiError(core.listNamespacedConfigMap({ namespace: 'default' }));
      assert.equal(other.code, 403);
    });

    void it('kubectl auth can-i agrees', async () => {
      const canI = (verb: string) =>
        env.kubectl(['auth', 'can-i', verb, 'configmaps', '-n', namespace, `--as=${user()}`]);
      const list = await canI('list');
      assert.equal(list.stdout.trim(), 'yes', list.stderr);
      assert.equal(list.code, 0);
      const create = await canI('create');
      assert.equal(create.stdout.trim(), 'no', create.stderr);
      assert.equal(create.code, 1);
    });

    void it('authenticates a certificate user by group', async () => {
      const alice = await env.authenticateAs('alice', ['sluice:readers']);
      const core = alice.kubeConfig.makeApiClient(CoreV1Api);
      await eventually(() => core.listNamespacedConfigMap({ namespace }));
      const bob = await env.authenticateAs('bob', ['other']);
      const denied = await apiError(
        bob.kubeConfig.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace }),
      );
      assert.equal(denied.code, 403);
      const whoami = await env.kubectl([
        `--kubeconfig=${alice.kubeconfigPath}`,
        'auth',
        'whoami',
        '-o',
        'jsonpath={.status.userInfo.username} {.status.userInfo.groups}',
      ]);
      assert.equal(whoami.code, 0, whoami.stderr);
      assert.equal(whoami.stdout, 'alice ["sluice:readers","system:authenticated"]');
    });
  });
});
