import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AIPolicy, AIRoute, AIRouteSpec, Resources } from '../api/types.js';
import { parseDuration, envoyDuration } from './durations.js';
import type { StatusResult } from './ir.js';
import { narrow, toIR } from './to-ir.js';

function route(name: string, spec: Partial<AIRouteSpec> = {}, created?: string): AIRoute {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: {
      name,
      namespace: 'ns',
      generation: 2,
      ...(created ? { creationTimestamp: created } : {}),
    },
    spec: {
      models: [{ exact: `${name}-model` }],
      backends: [
        {
          name: 'local',
          provider: 'openai-compatible',
          endpoint: { url: 'https://llm.example.com' },
        },
      ],
      ...spec,
    },
  };
}

function policy(name: string, spec: AIPolicy['spec'], created?: string): AIPolicy {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'ns', ...(created ? { creationTimestamp: created } : {}) },
    spec,
  };
}

function bundle(parts: Partial<Resources>): Resources {
  return { routes: [], policies: [], secrets: [], endpoints: [], ...parts };
}

function accepted(
  statuses: StatusResult[],
  name: string,
): { status: string; reason: string; message: string } {
  const s = statuses.find((x) => x.name === name);
  const c = s?.conditions.find((x) => x.type === 'Accepted');
  assert.ok(c, `an Accepted condition for ${name}`);
  return c;
}

void describe('toIR: route validation', () => {
  const cases: [string, Partial<AIRouteSpec>, string, RegExp][] = [
    [
      'a rule naming an unknown backend',
      { rules: [{ backendRefs: [{ name: 'ghost' }] }] },
      'BackendNotFound',
      /no backend named "ghost"/,
    ],
    ['a bad duration', { timeout: '5 minutes' }, 'Invalid', /spec\.timeout/],
    [
      'a rule model outside the route models',
      { rules: [{ matches: [{ model: { exact: 'other' } }] }] },
      'Invalid',
      /not among the route's models/,
    ],
    [
      'only weight-0 backends in a rule',
      { rules: [{ backendRefs: [{ name: 'local', weight: 0 }] }] },
      'Invalid',
      /weight 0/,
    ],
    [
      'an azure block on another provider',
      {
        backends: [
          {
            name: 'local',
            provider: 'openai-compatible',
            endpoint: { url: 'https://llm.example.com' },
            azure: { apiVersion: '1' },
          },
        ],
      },
      'Invalid',
      /azure: only allowed/,
    ],
    [
      'an anthropic block on another provider',
      {
        backends: [
          {
            name: 'local',
            provider: 'openai-compatible',
            endpoint: { url: 'https://llm.example.com' },
            anthropic: { defaultMaxTokens: 10 },
          },
        ],
      },
      'Invalid',
      /anthropic: only allowed when provider is anthropic/,
    ],
    [
      'both url and service',
      {
        backends: [
          {
            name: 'local',
            provider: 'openai-compatible',
            endpoint: { url: 'https://llm.example.com', service: { name: 's', port: 1 } },
          },
        ],
      },
      'Invalid',
      /exactly one of url and service/,
    ],
    [
      'a keyed provider without a credential',
      {
        backends: [
          { name: 'openai', provider: 'openai', endpoint: { url: 'https://api.openai.com' } },
        ],
      },
      'Invalid',
      /credential: required/,
    ],
  ];
  for (const [what, spec, reason, message] of cases) {
    void it(`rejects ${what} as ${reason}, and only that route`, () => {
      const ir = toIR(bundle({ routes: [route('bad', spec), route('good')] }));
      const c = accepted(ir.statuses, 'bad');
      assert.equal(c.status, 'False');
      assert.equal(c.reason, reason);
      assert.match(c.message, message);
      assert.equal(accepted(ir.statuses, 'good').status, 'True');
      assert.deepEqual(
        ir.routes.map((r) => r.key),
        ['ns/good'],
      );
    });
  }

  void it('reads a credential, trimmed, and passes the URL path through as written', () => {
    const ir = toIR(
      bundle({
        routes: [
          route('r', {
            backends: [
              {
                name: 'openai',
                provider: 'openai',
                endpoint: { url: 'https://api.openai.com/v1/' },
                credential: { secretRef: { name: 's', key: 'k' } },
              },
            ],
          }),
        ],
        secrets: [{ metadata: { name: 's', namespace: 'ns' }, data: { k: 'sk-1\n' } }],
      }),
    );
    const b = ir.routes[0]!.backends[0]!;
    assert.equal(b.credential?.value, 'sk-1');
    assert.deepEqual(b.target, {
      kind: 'external',
      host: 'api.openai.com',
      port: 443,
      authority: 'api.openai.com',
      // The provider joins its API path to it (extproc/providers/paths.ts); only the slash goes.
      pathPrefix: '/v1',
    });
  });

  void it('defaults: one rule, all backends, 300 s, two retries on the usual conditions', () => {
    const ir = toIR(bundle({ routes: [route('r')] }));
    const rule = ir.routes[0]!.rules[0]!;
    assert.equal(rule.timeoutMs, 300_000);
    assert.deepEqual(rule.retry, {
      attempts: 2,
      on: ['rate-limited', '5xx', 'reset', 'connect-failure'],
    });
    assert.deepEqual(rule.backends, [{ backend: 'ns/r/local', weight: 1, priority: 0 }]);
    assert.deepEqual(rule.matches, []);
  });

  void it('retry: attempts 0 means no retry policy at all', () => {
    const ir = toIR(bundle({ routes: [route('r', { retry: { attempts: 0 } })] }));
    assert.equal(ir.routes[0]!.rules[0]!.retry, undefined);
  });
});

void describe('toIR: model conflicts', () => {
  void it('the oldest route keeps a model; the newer one is told, and rejected when left empty', () => {
    const models = [{ exact: 'gpt-4o' }];
    const ir = toIR(
      bundle({
        routes: [
          route('newer', { models: [...models, { exact: 'mine' }] }, '2025-02-01T00:00:00Z'),
          route('newest', { models }, '2025-03-01T00:00:00Z'),
          route('older', { models }, '2025-01-01T00:00:00Z'),
        ],
      }),
    );
    assert.equal(accepted(ir.statuses, 'older').status, 'True');
    assert.equal(accepted(ir.statuses, 'newer').status, 'True');
    const conflicted = ir.statuses
      .find((s) => s.name === 'newer')!
      .conditions.find((c) => c.type === 'Conflicted');
    assert.match(conflicted!.message, /"gpt-4o" is served by ns\/older/);
    const newest = accepted(ir.statuses, 'newest');
    assert.equal(newest.status, 'False');
    assert.equal(newest.reason, 'ModelConflict');
    assert.deepEqual(ir.routes.find((r) => r.name === 'newer')!.models, [{ exact: 'mine' }]);
  });

  void it('without timestamps, namespace/name decides, so the result never depends on input order', () => {
    const models = [{ prefix: 'gpt-' }];
    const a = toIR(bundle({ routes: [route('b', { models }), route('a', { models })] }));
    const b = toIR(bundle({ routes: [route('a', { models }), route('b', { models })] }));
    assert.deepEqual(a, b);
    assert.equal(accepted(a.statuses, 'a').status, 'True');
    assert.equal(accepted(a.statuses, 'b').reason, 'ModelConflict');
  });
});

void describe('toIR: endpoints', () => {
  const svc = (name: string): AIRouteSpec['backends'] => [
    { name: 'vllm', provider: 'openai-compatible', endpoint: { service: { name, port: 80 } } },
  ];
  void it('names fields the way the apiserver does: spec.backends[0].name', () => {
    const bad = route('bad', {
      backends: [
        {
          name: 'Not_A_Label',
          provider: 'openai-compatible',
          endpoint: { url: 'https://x.example' },
        },
      ],
    });
    const ir = toIR(bundle({ routes: [bad] }));
    const accepted = ir.statuses[0]!.conditions.find((c) => c.type === 'Accepted')!;
    assert.equal(accepted.status, 'False');
    assert.match(accepted.message, /spec\.backends\[0\]\.name: /);
    assert.doesNotMatch(accepted.message, /\.0\./);
  });

  void it('keeps routes Accepted and reports missing Services and unready endpoints apart', () => {
    const ir = toIR(
      bundle({
        routes: [
          route('missing', { backends: svc('none') }),
          route('down', { backends: svc('down') }),
          route('up', { backends: svc('up') }),
          route('no-port', { backends: svc('no-port') }),
          route('empty', { backends: svc('empty') }),
        ],
        endpoints: [
          {
            namespace: 'ns',
            service: 'no-port',
            port: 80,
            addresses: [],
            portNotFound: { ports: [8000, 9000] },
          },
          { namespace: 'ns', service: 'empty', port: 80, addresses: [] },
          {
            namespace: 'ns',
            service: 'down',
            port: 80,
            addresses: [{ ip: '10.0.0.1', port: 8000, ready: false }],
          },
          {
            namespace: 'ns',
            service: 'up',
            port: 80,
            addresses: [
              { ip: '10.0.0.3', port: 8000, ready: true },
              { ip: '10.0.0.2', port: 8000, ready: true },
              { ip: '10.0.0.2', port: 8000, ready: true },
            ],
          },
        ],
      }),
    );
    const ready = (name: string) =>
      ir.statuses
        .find((s) => s.name === name)!
        .conditions.find((c) => c.type === 'EndpointsReady')!;
    assert.equal(ready('missing').reason, 'ServiceNotFound');
    assert.equal(ready('down').reason, 'NoReadyEndpoints');
    assert.equal(ready('up').status, 'True');
    assert.deepEqual([ready('no-port').status, ready('no-port').reason], ['False', 'PortNotFound']);
    assert.match(ready('no-port').message, /has no port 80 \(its ports: 8000, 9000\)/);
    assert.deepEqual([ready('empty').status, ready('empty').reason], ['False', 'NoReadyEndpoints']);
    assert.equal(ir.routes.length, 5);
    const up = ir.routes.find((r) => r.name === 'up')!.backends[0]!.target;
    assert.deepEqual(up.kind === 'service' && up.addresses, [
      { ip: '10.0.0.2', port: 8000 },
      { ip: '10.0.0.3', port: 8000 },
    ]);
  });
});

void describe('toIR: policies', () => {
  void it('per section: priority, then age, then name; losers are Conflicted', () => {
    const ir = toIR(
      bundle({
        routes: [route('r')],
        policies: [
          policy(
            'b-tie',
            { targetRefs: [{ name: 'r' }], priority: 1, limits: { defaultMaxTokens: 2 } },
            '2025-01-01T00:00:00Z',
          ),
          policy(
            'a-tie',
            { targetRefs: [{ name: 'r' }], priority: 1, limits: { defaultMaxTokens: 1 } },
            '2025-01-01T00:00:00Z',
          ),
          policy('high', {
            selector: {},
            priority: 9,
            masking: { detectors: ['EMAIL'] },
            mode: 'shadow',
          }),
        ],
      }),
    );
    const p = ir.routes[0]!.policies;
    assert.equal(p.limits?.policy, 'ns/a-tie');
    assert.equal(p.masking?.policy, 'ns/high');
    assert.equal(p.masking?.mode, 'shadow');
    const lost = ir.statuses
      .find((s) => s.name === 'b-tie')!
      .conditions.find((c) => c.type === 'Conflicted');
    assert.match(lost!.message, /section limits on ns\/r is taken by ns\/a-tie/);
  });

  void it('reports a policy without target as Invalid and one without match as TargetNotFound', () => {
    const ir = toIR(
      bundle({
        routes: [route('r')],
        policies: [policy('none', {}), policy('miss', { selector: { matchLabels: { x: 'y' } } })],
      }),
    );
    assert.equal(accepted(ir.statuses, 'none').reason, 'Invalid');
    assert.equal(accepted(ir.statuses, 'miss').reason, 'TargetNotFound');
    assert.deepEqual(ir.routes[0]!.policies, {});
  });
});

void describe('model match narrowing', () => {
  void it('intersects exact and prefix matches', () => {
    assert.deepEqual(narrow({ prefix: 'gpt-' }, { exact: 'gpt-4o' }), { exact: 'gpt-4o' });
    assert.deepEqual(narrow({ prefix: 'gpt-' }, { prefix: 'gpt-4' }), { prefix: 'gpt-4' });
    assert.deepEqual(narrow({ prefix: 'gpt-4' }, { prefix: 'gpt-' }), { prefix: 'gpt-4' });
    assert.deepEqual(narrow({ exact: 'gpt-4o' }, { prefix: 'gpt' }), { exact: 'gpt-4o' });
    assert.equal(narrow({ exact: 'gpt-4o' }, { exact: 'gpt-4' }), undefined);
    assert.equal(narrow({ prefix: 'claude' }, { prefix: 'gpt' }), undefined);
  });
});

void describe('durations', () => {
  void it('reads Go durations and writes proto3 JSON ones', () => {
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration('10'), undefined);
    assert.equal(parseDuration(''), undefined);
    assert.equal(envoyDuration(90_000), '90s');
    assert.equal(envoyDuration(250), '0.250s');
    assert.equal(envoyDuration(1005), '1.005s');
  });
});

void describe('toIR: data-protection sections', () => {
  const masked = (ref: { name: string; key: string }) =>
    policy('p', { targetRefs: [{ name: 'r' }], masking: { hashKeySecretRef: ref } });
  const secret = (data: Record<string, string>) => ({
    metadata: { name: 'k', namespace: 'ns' },
    data,
  });

  void it('resolves the hash key, trimmed, into the route policy', () => {
    const ir = toIR(
      bundle({
        routes: [route('r')],
        policies: [masked({ name: 'k', key: 'hmac' })],
        secrets: [secret({ hmac: '0123456789abcdef\n' })],
      }),
    );
    assert.deepEqual(ir.routes[0]!.policy?.masking?.hashKey, { value: '0123456789abcdef' });
    assert.deepEqual(ir.routes[0]!.hashKeyRef, { namespace: 'ns', secret: 'k', key: 'hmac' });
  });

  void it('refuses the route when the hash key is missing or too short, without echoing it', () => {
    const cases: [Record<string, string>[], string][] = [
      [[], 'SecretNotFound'],
      [[{ other: 'x' }], 'SecretKeyNotFound'],
      [[{ hmac: 'short-key' }], 'InvalidPolicy'],
    ];
    for (const [data, reason] of cases) {
      const ir = toIR(
        bundle({
          routes: [route('r')],
          policies: [masked({ name: 'k', key: 'hmac' })],
          secrets: data.map(secret),
        }),
      );
      assert.equal(accepted(ir.statuses, 'p').reason, reason);
      const r = accepted(ir.statuses, 'r');
      assert.equal(r.reason, 'PolicyNotReady');
      assert.match(
        r.message,
        /masking policy ns\/p is not ready: .*refused \(503 policy_invalid\)/,
      );
      // Refused, not withheld: the route keeps its models (no other route's prefix takes them)
      // and carries no policy, so nothing is served unmasked.
      assert.deepEqual(
        ir.routes.map((x) => [x.key, x.refused, x.policy, x.hashKeyRef]),
        [['ns/r', 'policy_invalid', undefined, undefined]],
      );
      assert.ok(!JSON.stringify(ir).includes('short-key'));
    }
  });

  void it('takes the stricter mode and failure mode when the sections come from two policies', () => {
    const ir = toIR(
      bundle({
        routes: [route('r')],
        policies: [
          policy('m', { targetRefs: [{ name: 'r' }], mode: 'shadow', masking: {} }),
          policy('g', { targetRefs: [{ name: 'r' }], failureMode: 'open', promptGuard: {} }),
        ],
      }),
    );
    const p = ir.routes[0]!.policy!;
    assert.equal(p.name, 'ns/m:ns/g');
    assert.equal(p.mode, 'enforce');
    assert.equal(p.failureMode, 'closed');
  });
});

void describe('toIR: an invalid policy fails closed on the routes it targets', () => {
  const other = (name: string): AIRoute => {
    const r = route(name);
    return { ...r, metadata: { ...r.metadata, namespace: 'elsewhere' } };
  };
  const guard = { masking: { detectors: ['EMAIL' as const] } };

  void it('refuses the targets of a policy the extproc cannot compile, not serving them under the rest', () => {
    const ir = toIR(
      bundle({
        routes: [route('r'), route('s')],
        policies: [
          policy('broken', {
            targetRefs: [{ name: 'r' }],
            masking: { customPatterns: [{ type: 'ZIP', pattern: '(?=\\d{5})\\d+' }] },
          }),
          policy('fine', { selector: {}, ...guard }),
        ],
      }),
    );
    const p = accepted(ir.statuses, 'broken');
    assert.equal(p.reason, 'InvalidPolicy');
    assert.match(p.message, /spec\.masking\.customPatterns: .*lookaround/);
    assert.match(p.message, /Requests to ns\/r are refused \(503 policy_invalid\)/);
    const r = accepted(ir.statuses, 'r');
    assert.deepEqual([r.status, r.reason], ['False', 'PolicyInvalid']);
    assert.match(r.message, /policy ns\/broken is invalid/);
    const refused = ir.routes.find((x) => x.key === 'ns/r')!;
    assert.equal(refused.refused, 'policy_invalid');
    assert.equal(refused.policy, undefined);
    assert.equal(refused.governance, undefined);
    assert.deepEqual(refused.models, [{ exact: 'r-model' }], 'its models stay claimed');
    // The route the broken policy does not target is served under the valid one.
    const s = ir.routes.find((x) => x.key === 'ns/s')!;
    assert.equal(s.refused, undefined);
    assert.equal(s.policy?.name, 'ns/fine');
  });

  void it('refuses the readable targets of a policy that fails the schema', () => {
    const ir = toIR(
      bundle({
        routes: [route('r'), route('s')],
        policies: [
          // A kube source hands translation what the apiserver stored; a YAML file anything.
          policy('typo', {
            targetRefs: [{ name: 's' }],
            masking: { detectors: ['EMIAL'] },
          } as unknown as AIPolicy['spec']),
        ],
      }),
    );
    assert.equal(accepted(ir.statuses, 'typo').reason, 'Invalid');
    assert.equal(ir.routes.find((x) => x.key === 'ns/s')!.refused, 'policy_invalid');
    assert.equal(ir.routes.find((x) => x.key === 'ns/r')!.refused, undefined);
  });

  void it('takes every route of its namespace as a target when the targets cannot be read', () => {
    const specs: unknown[] = [
      { targetRef: { name: 'r' }, ...guard }, // a typo: neither targetRefs nor selector
      { targetRefs: 'r', ...guard },
      { targetRefs: [{ name: 7 }], ...guard },
      { selector: { matchLabels: { team: 1 } }, ...guard },
      { selector: 'team=a', ...guard },
    ];
    for (const spec of specs) {
      const ir = toIR(
        bundle({
          routes: [route('r'), route('s'), other('t')],
          policies: [policy('unreadable', spec as AIPolicy['spec'])],
        }),
      );
      assert.equal(accepted(ir.statuses, 'unreadable').reason, 'Invalid', JSON.stringify(spec));
      const refused = ir.routes.filter((x) => x.refused).map((x) => x.key);
      assert.deepEqual(refused, ['ns/r', 'ns/s'], JSON.stringify(spec));
      assert.equal(ir.routes.find((x) => x.key === 'elsewhere/t')!.refused, undefined);
    }
  });

  void it('serves the route again, governed, once the policy is fixed', () => {
    const ir = toIR(
      bundle({
        routes: [route('r')],
        policies: [
          policy('broken', {
            targetRefs: [{ name: 'r' }],
            masking: { customPatterns: [{ type: 'ZIP', pattern: '\\d{5}' }] },
          }),
        ],
      }),
    );
    assert.equal(accepted(ir.statuses, 'r').status, 'True');
    assert.equal(ir.routes[0]!.refused, undefined);
    assert.equal(ir.routes[0]!.policy?.name, 'ns/broken');
  });
});
