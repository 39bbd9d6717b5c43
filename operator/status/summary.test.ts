import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { AIPolicy, AIRoute } from '../api/types.js';
import { oneLine, policySummary, routeSummary } from './summary.js';

it('summarises every model and backend of a route, not only the first', () => {
  const route = {
    spec: {
      models: [{ exact: 'gpt-4o-mini' }, { prefix: 'gpt-' }],
      backends: [
        { name: 'openai', provider: 'openai' },
        { name: 'azure', provider: 'azure-openai' },
      ],
    },
  } as unknown as AIRoute;
  assert.deepEqual(routeSummary(route), {
    models: 'gpt-4o-mini, gpt-*',
    backends: 'openai (openai), azure (azure-openai)',
  });
});

it('names the routes a selector policy targets, and what the spec asks when unknown', () => {
  const policy = {
    spec: { selector: { matchLabels: { team: 'a' } } },
  } as unknown as AIPolicy;
  assert.deepEqual(policySummary(policy, ['gpt', 'claude']), { targets: 'claude, gpt' });
  assert.deepEqual(policySummary(policy, []), { targets: '<none>' });
  assert.deepEqual(policySummary(policy, undefined), { targets: 'team=a' });
});

it('cuts a long list and says how many are left out', () => {
  const items = Array.from({ length: 40 }, (_, i) => `model-number-${i}`);
  const line = oneLine(items);
  assert.ok(line.length < 140, line);
  assert.match(line, /^model-number-0, model-number-1, .* \(\+\d+ more\)$/);
  const shown = line.split(' (+')[0]!.split(', ').length;
  assert.equal(Number(/\+(\d+) more/.exec(line)![1]) + shown, 40);
});
