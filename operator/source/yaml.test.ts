import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { toIR } from '../compile/to-ir.js';
import { loadResources, readDocuments, SourceMemory } from './yaml.js';

let dir: string;

const ROUTE = `apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata:
  name: llama
  namespace: ml
spec:
  models: [{ prefix: llama- }]
  backends:
    - name: vllm
      provider: openai-compatible
      endpoint: { service: { name: vllm, port: 80 } }
  retry:
    retryOn: [5xx]
`;

const BAD_ROUTE = `apiVersion: sluice.dev/v1alpha1
kind: AIRoute
metadata: { name: bad }
spec:
  models: [{ exact: gpt-4o }]
  backends:
    - name: openai
      provider: openai
      endpoint: { url: "https://api.openai.com/v1" }
`;

const POLICY = `apiVersion: sluice.dev/v1alpha1
kind: AIPolicy
metadata: { name: shadow }
spec: { selector: {}, mode: shadow }
`;

const SECRETS = `apiVersion: v1
kind: Secret
metadata: { name: keys, namespace: ml }
data:
  apiKey: c2stdGVzdA==
  both: ZnJvbS1kYXRh
stringData:
  both: from-stringData
---
apiVersion: v1
kind: Secret
metadata: { name: broken }
data: { apiKey: "not base64!" }
`;

const SLICES = `apiVersion: v1
kind: Service
metadata: { name: vllm, namespace: ml }
spec:
  ports: [{ name: http, port: 80, targetPort: 8000 }, { name: metrics, port: 9090 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: vllm-a
  namespace: ml
  labels: { kubernetes.io/service-name: vllm }
addressType: IPv4
ports: [{ name: http, port: 8000 }, { name: metrics, port: 9090 }]
endpoints:
  - addresses: [10.0.0.1]
    conditions: { ready: true }
    zone: eu-west-1a
  - addresses: [10.0.0.2]
    conditions: { ready: false }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: vllm-b
  namespace: ml
  labels: { kubernetes.io/service-name: vllm }
addressType: IPv4
ports: [{ name: http, port: 8000 }]
endpoints:
  - addresses: [10.0.0.3]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: tgi-x
  labels: { kubernetes.io/service-name: tgi }
addressType: IPv4
ports: [{ port: 3000 }]
endpoints:
  - addresses: [10.0.1.1]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: orphan }
addressType: IPv4
`;

void before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-yaml-'));
  await mkdir(join(dir, 'nested'));
  await writeFile(join(dir, 'routes.yaml'), `${ROUTE}---\n${BAD_ROUTE}---\n`);
  await writeFile(join(dir, 'nested', 'policy.yml'), POLICY);
  await writeFile(join(dir, 'nested', 'secrets.yaml'), SECRETS);
  await writeFile(join(dir, 'slices.json.yaml'), SLICES);
  await writeFile(join(dir, 'README.md'), '# not read');
  await writeFile(join(dir, '.hidden.yaml'), 'not: [valid');
});

void after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('loadResources', () => {
  void it('reads a directory into a frozen bundle and reports what it left out', async () => {
    const { resources, problems } = await loadResources([dir]);

    assert.deepEqual(
      resources.routes.map((r) => `${r.metadata.namespace}/${r.metadata.name}`),
      ['ml/llama'],
    );
    assert.deepEqual(resources.routes[0]!.spec.retry, { retryOn: ['5xx'] });
    assert.deepEqual(
      resources.policies.map((p) => [p.metadata.namespace, p.metadata.name, p.spec.mode]),
      [['default', 'shadow', 'shadow']],
    );
    assert.deepEqual(resources.secrets, [
      {
        metadata: { name: 'keys', namespace: 'ml' },
        data: { apiKey: 'sk-test', both: 'from-stringData' },
      },
    ]);
    assert.deepEqual(resources.endpoints, [
      {
        namespace: 'ml',
        service: 'vllm',
        port: 80,
        addresses: [
          { ip: '10.0.0.1', port: 8000, ready: true, zone: 'eu-west-1a' },
          { ip: '10.0.0.2', port: 8000, ready: false },
          { ip: '10.0.0.3', port: 8000, ready: true },
        ],
      },
      {
        namespace: 'ml',
        service: 'vllm',
        port: 9090,
        addresses: [
          { ip: '10.0.0.1', port: 9090, ready: true, zone: 'eu-west-1a' },
          { ip: '10.0.0.2', port: 9090, ready: false },
        ],
      },
      {
        namespace: 'default',
        service: 'tgi',
        port: 3000,
        addresses: [{ ip: '10.0.1.1', port: 3000, ready: true }],
      },
    ]);
    assert.ok(Object.isFrozen(resources) && Object.isFrozen(resources.routes));
    assert.ok(Object.isFrozen(resources.routes[0]!.spec.backends[0]));

    assert.deepEqual(
      problems.map((p) => [p.source.slice(dir.length + 1), p.message]),
      [
        [
          'nested/secrets.yaml:10',
          'Secret/default/broken: data[apiKey] is not base64; use stringData for plain text',
        ],
        [
          'routes.yaml:15',
          'AIRoute/default/bad: spec.backends[0].credential: Required value: credential is required for provider openai with a url endpoint',
        ],
        [
          'slices.json.yaml:43',
          'EndpointSlice/default/orphan: no kubernetes.io/service-name label; ignored',
        ],
      ],
    );
  });

  void it('keeps the first of two documents with the same name', async () => {
    const file = join(dir, '..', `${Date.now()}-dup.yaml`);
    await writeFile(file, `${POLICY}---\n${POLICY.replace('mode: shadow', 'mode: enforce')}`);
    try {
      const { resources, problems } = await loadResources([file]);
      assert.equal(resources.policies.length, 1);
      assert.equal(resources.policies[0]!.spec.mode, 'shadow');
      assert.match(
        problems[0]!.message,
        /^AIPolicy\/default\/shadow is also defined at .*:1; that one is used$/,
      );
    } finally {
      await rm(file);
    }
  });
});

void describe('loadResources: consumer Secrets', () => {
  const digest = createHash('sha256').update('sk-sluice-alice-1').digest('hex');
  const secret = (name: string, labels: string, data: string, ns = 'keys') =>
    `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n` +
    `  labels: { ${labels} }\n  annotations: { sluice.dev/expires-at: "2030-01-01T00:00:00Z" }\n` +
    `stringData: { ${data} }\n`;

  void it('reads every labelled Secret as a key digest and reports the ones left out', async () => {
    const file = join(dir, '..', `${process.pid}-consumers.yaml`);
    await writeFile(
      file,
      [
        secret(
          'alice-1',
          'sluice.dev/consumer: alice, sluice.dev/team: search',
          `keyHash: ${digest}`,
        ),
        secret(
          'alice-2',
          'sluice.dev/consumer: alice, sluice.dev/team: search',
          'key: sk-raw-2',
          'other',
        ),
        secret('both', 'sluice.dev/consumer: bob', `key: sk-raw-3, keyHash: ${digest}`),
        secret('carol-1', 'sluice.dev/consumer: carol, sluice.dev/team: a', 'key: sk-raw-4'),
        secret('carol-2', 'sluice.dev/consumer: carol, sluice.dev/team: b', 'key: sk-raw-5'),
        secret('plain', 'app: x', 'key: sk-not-a-consumer'),
      ].join('---\n'),
    );
    try {
      const { resources, problems } = await loadResources([file]);
      assert.deepEqual(
        resources.consumerKeys?.map((k) => [k.namespace, k.secret, k.consumer, k.team ?? '']),
        [
          ['keys', 'alice-1', 'alice', 'search'],
          ['other', 'alice-2', 'alice', 'search'],
          ['keys', 'carol-1', 'carol', 'a'],
          ['keys', 'carol-2', 'carol', 'b'],
        ],
      );
      assert.equal(resources.consumerKeys[0]!.keyHash, digest);
      assert.equal(
        resources.consumerKeys[1]!.keyHash,
        createHash('sha256').update('sk-raw-2').digest('hex'),
      );
      assert.equal(resources.consumerKeys[0]!.expiresAt, '2030-01-01T00:00:00.000Z');
      assert.deepEqual(
        problems.map((p) => [p.source.slice(p.source.lastIndexOf('/') + 1), p.message]),
        [
          [
            `${process.pid}-consumers.yaml:19`,
            'Secret/keys/both: not a consumer key: data has both keyHash and key; keep exactly one',
          ],
          [
            `${process.pid}-consumers.yaml:28`,
            'the Secrets of consumer "carol" disagree on the team ("a", "b"); none of its keys is used',
          ],
        ],
      );
      assert.ok(!JSON.stringify(problems).includes('sk-raw'), 'no key in a problem');
    } finally {
      await rm(file);
    }
  });
});

void describe('readDocuments', () => {
  void it('reads YAML 1.1 as kubectl does', async () => {
    const { documents, problems } = await readDocuments(['-'], () =>
      Promise.resolve(
        'a: 2024-10-21\nb: 0755\non: yes\nc: 1:20\n---\n---\nkind: List\napiVersion: v1\nitems: [{x: 1}, {x: 2}]\n',
      ),
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(
      documents.map((d) => d.doc),
      [{ a: '2024-10-21', b: 493, true: true, c: '1:20' }, { x: 1 }, { x: 2 }],
    );
    assert.deepEqual(
      documents.map((d) => d.source),
      ['<stdin>:1', '<stdin>:7', '<stdin>:7'],
    );
  });
});

void describe('loadResources with a memory: a bad edit never opens the gate', () => {
  const route = (name: string) =>
    `apiVersion: sluice.dev/v1alpha1\nkind: AIRoute\nmetadata: { name: ${name}, namespace: g }\n` +
    `spec:\n  models: [{ exact: ${name}-model }]\n  backends:\n    - name: local\n` +
    `      provider: openai-compatible\n      endpoint: { url: "https://llm.example.com" }\n`;
  const policy = (body: string) =>
    `apiVersion: sluice.dev/v1alpha1\nkind: AIPolicy\nmetadata: { name: keys, namespace: g }\n` +
    `spec:\n  targetRefs: [{ name: chat }]\n${body}`;
  const KEYS = '  consumers: { required: true, keys: {} }\n';
  let root: string;
  let routes: string;
  let policies: string;
  before(async () => {
    root = join(dir, '..', `${Date.now()}-memory`);
    await mkdir(root, { recursive: true });
    routes = join(root, 'routes.yaml');
    policies = join(root, 'policies.yaml');
    await writeFile(routes, route('chat'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  void it('keeps the last good state of a file that stops parsing, and says so at error level', async () => {
    const memory = new SourceMemory();
    await writeFile(policies, policy(KEYS));
    const good = await loadResources([root], memory);
    assert.equal(good.resources.policies[0]?.spec.consumers?.required, true);
    // A syntax error after the policy's edit: the edit is not taken, and neither is nothing.
    await writeFile(policies, policy('  consumers: { required: false, keys: {} }\n  mode: [\n'));
    const held = await loadResources([root], memory);
    assert.equal(held.resources.policies.length, 1);
    assert.equal(held.resources.policies[0]!.spec.consumers?.required, true);
    const loud = held.problems.filter((p) => p.level === 'error');
    assert.equal(loud.length, 1);
    assert.equal(loud[0]!.source, policies);
    assert.match(loud[0]!.message, /last good state stays in force/);
    // Fixed: the new content applies.
    await writeFile(policies, policy('  consumers: { required: false, keys: {} }\n'));
    const fixed = await loadResources([root], memory);
    assert.equal(fixed.resources.policies[0]!.spec.consumers?.required, false);
    assert.deepEqual(fixed.problems, []);
  });

  void it('serves nothing of a file that never parsed, even the documents before the error', async () => {
    const memory = new SourceMemory();
    await writeFile(policies, `${policy(KEYS)}---\nkind: [\n`);
    const first = await loadResources([root], memory);
    assert.deepEqual(first.resources.policies, []);
    assert.equal(first.resources.routes.length, 1, 'other files are read');
    const loud = first.problems.find((p) => p.level === 'error');
    assert.match(loud!.message, /no earlier good state: nothing it declares is served/);
    // Without a memory (validate, render) every document that parses is read, as before.
    const once = await loadResources([root]);
    assert.equal(once.resources.policies.length, 1);
  });

  void it('keeps the last valid version of a policy the cluster would refuse', async () => {
    const memory = new SourceMemory();
    await writeFile(policies, policy(KEYS));
    await loadResources([root], memory);
    await writeFile(
      policies,
      policy('  consumers: { required: true, keys: {} }\n  mode: strict\n'),
    );
    const held = await loadResources([root], memory);
    assert.equal(held.resources.policies.length, 1);
    assert.equal(held.resources.policies[0]!.spec.mode, undefined);
    const loud = held.problems.find((p) => p.level === 'error');
    assert.match(
      loud!.message,
      /^AIPolicy\/g\/keys: spec\.mode: .*last valid version .* stays in force/,
    );
  });

  void it('hands compilation a refused policy with no valid version, which refuses its routes', async () => {
    for (const memory of [new SourceMemory(), undefined]) {
      await writeFile(policies, policy(`${KEYS}  mode: strict\n`));
      const { resources, problems } = await loadResources([root], memory);
      assert.equal(resources.policies.length, 1);
      assert.match(problems[0]!.message, /the routes it targets refuse requests until it is fixed/);
      const ir = toIR(resources);
      assert.equal(ir.routes[0]!.refused, 'policy_invalid');
    }
  });

  void it('keeps the last good state of a policy file emptied (an editor mid-save)', async () => {
    const memory = new SourceMemory();
    await writeFile(policies, policy(KEYS));
    await loadResources([root], memory);
    await writeFile(policies, '\n');
    const held = await loadResources([root], memory);
    assert.equal(held.resources.policies.length, 1);
    assert.match(held.problems[0]!.message, /is empty: its last good state stays in force/);
    assert.equal(held.problems[0]!.level, 'error');
    // A file without policies is taken as written: emptying it closes (here: the route goes).
    await writeFile(routes, '');
    const closed = await loadResources([root], memory);
    assert.deepEqual(closed.resources.routes, []);
    await writeFile(routes, route('chat'));
  });

  void it('drops what a removed file declared', async () => {
    const memory = new SourceMemory();
    await writeFile(policies, policy(KEYS));
    await loadResources([root], memory);
    await rm(policies);
    const gone = await loadResources([root], memory);
    assert.deepEqual(gone.resources.policies, []);
    assert.deepEqual(gone.problems, []);
  });
});
