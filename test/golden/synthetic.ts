/**
 * A synthetic Resources bundle of `n` AIRoutes with policies, for `npm run bench` (the operator's
 * budget: 2,000 routes compile in under a second). Deterministic: the same n, the same bundle.
 * The mix follows what real gateways hold: mostly one or two external backends, some priority
 * fallbacks and header rules, some in-cluster Services with endpoints, one policy per ten routes
 * plus a namespace-wide default that conflicts on one section.
 */
import type {
  AIPolicy,
  AIRoute,
  Backend,
  Resources,
  SecretData,
  ServiceEndpoints,
} from '../../operator/api/types.js';

export function syntheticResources(n: number): Resources {
  const routes: AIRoute[] = [];
  const policies: AIPolicy[] = [];
  const secrets: SecretData[] = [];
  const endpoints: ServiceEndpoints[] = [];
  const namespaces = Math.max(1, Math.ceil(n / 100));
  for (let ns = 0; ns < namespaces; ns++) {
    const namespace = `team-${ns}`;
    secrets.push({
      metadata: { name: 'keys', namespace },
      data: { openai: `sk-synthetic-${ns}`, azure: `az-synthetic-${ns}` },
    });
    policies.push({
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIPolicy',
      metadata: { name: 'defaults', namespace, creationTimestamp: '2025-01-01T00:00:00Z' },
      spec: {
        selector: {},
        priority: 0,
        limits: { rules: [{ name: 'tokens', tokensPerMinute: 100_000 }] },
        pricing: { models: { 'gpt-*': { inputPerMTok: 2.5, outputPerMTok: 10 } } },
      },
    });
  }
  for (let i = 0; i < n; i++) {
    const namespace = `team-${Math.floor(i / 100)}`;
    const name = `route-${i}`;
    const backends: Backend[] = [
      {
        name: 'openai',
        provider: 'openai',
        endpoint: { url: 'https://api.openai.com/v1' },
        credential: { secretRef: { name: 'keys', key: 'openai' } },
        weight: 3,
      },
    ];
    if (i % 2 === 0) {
      backends.push({
        name: 'azure',
        provider: 'azure-openai',
        endpoint: { url: `https://res-${i % 7}.openai.azure.com` },
        credential: { secretRef: { name: 'keys', key: 'azure' } },
        azure: { apiVersion: '2024-10-21', deployment: `dep-${i}` },
        priority: i % 4 === 0 ? 1 : 0,
      });
    }
    if (i % 5 === 0) {
      backends.push({
        name: 'vllm',
        provider: 'openai-compatible',
        endpoint: { service: { name: `vllm-${i}`, port: 8000 } },
      });
      endpoints.push({
        namespace,
        service: `vllm-${i}`,
        port: 8000,
        addresses: [0, 1, 2].map((k) => ({
          ip: `10.${i % 250}.${k}.${(i * 7) % 250}`,
          port: 8000,
          ready: k !== 2,
        })),
      });
    }
    // Every tenth route serves only a self-hosted model: an EDS cluster.
    const served = i % 10 === 5 ? backends.filter((b) => b.endpoint.service) : backends;
    const route: AIRoute = {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: {
        name,
        namespace,
        generation: 1,
        creationTimestamp: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString(),
        labels: { tier: i % 3 === 0 ? 'gold' : 'silver' },
      },
      spec: {
        models: [{ exact: `model-${i}` }, { exact: `model-${i}-mini` }, { prefix: `family-${i}-` }],
        backends: served,
        retry: { attempts: 2, retryOn: ['rate-limited', '5xx'], perTryTimeout: '30s' },
      },
    };
    if (i % 3 === 0) {
      route.spec.rules = [
        {
          matches: [{ headers: [{ name: 'x-team', value: 'beta' }] }],
          backendRefs: [{ name: served[0]!.name }],
        },
        { timeout: '120s' },
      ];
    }
    routes.push(route);
    if (i % 10 === 0) {
      policies.push({
        apiVersion: 'sluice.dev/v1alpha1',
        kind: 'AIPolicy',
        metadata: { name: `policy-${i}`, namespace, creationTimestamp: '2025-02-01T00:00:00Z' },
        spec: {
          targetRefs: [{ name }],
          priority: 10,
          limits: { rules: [{ name: 'tokens', tokensPerMinute: 1000 }] },
          masking: { detectors: ['EMAIL'] },
        },
      });
    }
  }
  return { routes, policies, secrets, endpoints };
}
