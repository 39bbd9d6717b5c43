import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { invalidPolicies, compile } from '../compile/index.js';
import type { AIPolicy, AIRoute } from '../api/types.js';
import { InvalidPolicyReporter, policyInvalidGauge } from './invalid-policies.js';

const route: AIRoute = {
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIRoute',
  metadata: { name: 'chat', namespace: 'ns' },
  spec: {
    models: [{ exact: 'm' }],
    backends: [
      { name: 'b', provider: 'openai-compatible', endpoint: { url: 'https://llm.example.com' } },
    ],
  },
};
const policy = (pattern: string): AIPolicy => ({
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIPolicy',
  metadata: { name: 'p', namespace: 'ns' },
  spec: { targetRefs: [{ name: 'chat' }], masking: { customPatterns: [{ type: 'T', pattern }] } },
});
const statuses = (pattern: string) =>
  compile({ routes: [route], policies: [policy(pattern)], secrets: [], endpoints: [] }).statuses;

void describe('invalid policies are loud', () => {
  void it('sets sluice_policy_invalid and logs at error once per change', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const registry = new Registry();
    const reporter = new InvalidPolicyReporter(policyInvalidGauge(registry), pino(sink));
    const value = async () =>
      (await registry.getSingleMetric('sluice_policy_invalid')!.get()).values.find(
        (v) => v.labels['policy'] === 'ns/p',
      )?.value ?? 0;

    const broken = invalidPolicies(statuses('(?!x)y'));
    assert.deepEqual(
      broken.map((p) => [p.policy, p.reason]),
      [['ns/p', 'InvalidPolicy']],
    );
    reporter.report(broken);
    reporter.report(broken); // a resync: no new line
    assert.equal(await value(), 1);
    const errors = lines.filter((l) => l['event'] === 'policy_invalid');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!['level'], 50);
    assert.match(String(errors[0]!['problem']), /spec\.masking\.customPatterns: .*lookaround/);

    reporter.report(invalidPolicies(statuses('y')));
    assert.equal(await value(), 0);
    assert.ok(lines.some((l) => l['event'] === 'policy_valid' && l['policy'] === 'ns/p'));
  });

  void it('counts a policy whose masking hash-key Secret is missing: its routes refuse too', () => {
    const withKey: AIPolicy = {
      ...policy('y'),
      spec: {
        targetRefs: [{ name: 'chat' }],
        masking: { hashKeySecretRef: { name: 'mask-key', key: 'key' } },
      },
    };
    const missing = compile({ routes: [route], policies: [withKey], secrets: [], endpoints: [] });
    assert.deepEqual(
      invalidPolicies(missing.statuses).map((p) => [p.policy, p.reason]),
      [['ns/p', 'SecretNotFound']],
    );
    const present = compile({
      routes: [route],
      policies: [withKey],
      secrets: [
        {
          metadata: { name: 'mask-key', namespace: 'ns' },
          data: { key: '0123456789abcdef0123456789abcdef' },
        },
      ],
      endpoints: [],
    });
    assert.deepEqual(invalidPolicies(present.statuses), []);
  });
});
