import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import type { AIRoute, Resources } from '../api/types.js';
import { compile } from './index.js';

function claudeRoute(anthropic?: AIRoute['spec']['backends'][number]['anthropic']): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name: 'claude', namespace: 'ns', generation: 1 },
    spec: {
      models: [{ prefix: 'claude-' }],
      backends: [
        {
          name: 'anthropic',
          provider: 'anthropic',
          endpoint: { url: 'https://api.anthropic.com' },
          credential: { secretRef: { name: 'anthropic' } },
          ...(anthropic ? { anthropic } : {}),
        },
      ],
    },
  };
}

function bundle(route: AIRoute): Resources {
  return {
    routes: [route],
    policies: [],
    secrets: [
      { metadata: { namespace: 'ns', name: 'anthropic' }, data: { apiKey: 'sk-ant-test' } },
    ],
    endpoints: [],
  };
}

void describe('toExtproc: the anthropic backend block', () => {
  void it('carries the API version and the output default an AIRoute sets', () => {
    const t = compile(bundle(claudeRoute({ version: '2023-06-01', defaultMaxTokens: 2048 })));
    const cfg = ExtprocConfig.parse(t.extproc);
    assert.deepEqual(cfg.backends[0]?.anthropic, { version: '2023-06-01', defaultMaxTokens: 2048 });
  });

  void it('leaves the block out when the AIRoute sets none (the extproc defaults apply)', () => {
    const t = compile(bundle(claudeRoute()));
    const cfg = ExtprocConfig.parse(t.extproc);
    assert.equal(cfg.backends[0]?.anthropic, undefined);
  });
});
