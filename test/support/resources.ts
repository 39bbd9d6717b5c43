// Minimal AIRoutes, AIPolicies and bundles for tests of the operator's compilation.
import type { AIPolicy, AIPolicySpec, AIRoute, Resources } from '../../operator/api/types.js';

/** An AIRoute in namespace `ns` serving `<name>-model` from one OpenAI-compatible backend. */
export function route(name: string): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'ns', generation: 1 },
    spec: {
      models: [{ exact: `${name}-model` }],
      backends: [
        { name: 'b', provider: 'openai-compatible', endpoint: { url: 'https://llm.example.com' } },
      ],
    },
  };
}

/** An AIPolicy in namespace `ns` with `spec`. */
export function policy(name: string, spec: AIPolicySpec): AIPolicy {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'ns', generation: 1, creationTimestamp: '2025-01-01T00:00:00Z' },
    spec,
  };
}

/** Resources with the given parts, the rest empty. */
export const bundle = (parts: Partial<Resources>): Resources => ({
  routes: [],
  policies: [],
  secrets: [],
  endpoints: [],
  ...parts,
});
