import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Resources } from '../api/types.js';
import { envoyBufferLimit, compile } from './index.js';

const MiB = 1024 * 1024;

const resources: Resources = {
  routes: [
    {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'AIRoute',
      metadata: { name: 'r', namespace: 'ns' },
      spec: {
        models: [{ prefix: 'gpt-' }],
        backends: [
          { name: 'a', provider: 'openai-compatible', endpoint: { url: 'https://a.example' } },
        ],
      },
    },
  ],
  policies: [],
  secrets: [],
  endpoints: [],
};

function bufferOf(options: Parameters<typeof compile>[1]): number {
  const l = compile(resources, options).envoy.listeners[0] as Record<string, unknown>;
  return l['per_connection_buffer_limit_bytes'] as number;
}

describe('the Envoy buffer limit follows the extproc body limits', () => {
  it('is raised to maxResponseBodyBytes, so an answer the extproc reads whole is never cut by Envoy', () => {
    const t = compile(resources, { limits: { maxResponseBodyBytes: 32 * MiB } });
    assert.equal(t.extproc.limits?.maxResponseBodyBytes, 32 * MiB);
    assert.equal(bufferOf({ limits: { maxResponseBodyBytes: 32 * MiB } }), 32 * MiB);
  });

  it('is raised to maxRequestBodyBytes, so a request the extproc accepts is not Envoy’s 413', () => {
    assert.equal(bufferOf({ limits: { maxRequestBodyBytes: 20 * MiB } }), 20 * MiB);
  });

  it('a buffer asked for below the limits is raised; a larger one is kept', () => {
    assert.equal(bufferOf({ bufferLimitBytes: MiB }), 8 * MiB);
    assert.equal(bufferOf({ bufferLimitBytes: 64 * MiB }), 64 * MiB);
    assert.equal(envoyBufferLimit(undefined, undefined), 8 * MiB);
  });
});
