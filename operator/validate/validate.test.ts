import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CEL_RULES } from '../api/schema.js';
import { readDocuments } from '../source/yaml.js';
import { evaluateRules, toCel } from './cel.js';
import { main } from './main.js';
import { apiserverMessage, validateDocument, validateDocuments } from './validate.js';

const FIXTURES = new URL('../../test/fixtures/crds/', import.meta.url).pathname;

const route = (spec: object, name = 'r') => ({
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIRoute',
  metadata: { name },
  spec,
});
const backend = {
  name: 'openai',
  provider: 'openai',
  endpoint: { url: 'https://api.openai.com/v1' },
  credential: { secretRef: { name: 'k' } },
};

async function run(argv: string[], stdin = ''): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(argv, { out: (s) => (out += s), stdin: () => Promise.resolve(stdin) });
  return { code, out };
}

void describe('validateDocument', () => {
  // The kube tier checks the same fixtures against the apiserver; this keeps the offline half
  // honest without one.
  void it('gives every fixture its expected verdict and message', async () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml'));
    for (const rule of Object.values(CEL_RULES)) {
      assert.ok(files.includes(`${rule.id}.valid.yaml`), rule.id);
      assert.ok(files.includes(`${rule.id}.invalid.yaml`), rule.id);
    }
    for (const file of files) {
      const { documents } = await readDocuments([FIXTURES + file]);
      for (const { source, doc } of documents) {
        const d = doc as { metadata: { annotations?: Record<string, string> } };
        const result = validateDocument(doc);
        if (file.endsWith('.valid.yaml')) {
          assert.equal(result.outcome, 'valid', `${source}: ${JSON.stringify(result.errors)}`);
          continue;
        }
        assert.equal(result.outcome, 'invalid', source);
        const expect = d.metadata.annotations?.['test.sluice.dev/expect'];
        const field = d.metadata.annotations?.['test.sluice.dev/field'];
        if (expect)
          assert.deepEqual(
            result.errors.map((e) => e.detail),
            [expect],
            source,
          );
        else
          assert.deepEqual(
            result.errors.map((e) => e.field),
            [field],
            source,
          );
      }
    }
  });

  void it('reports every failure with its field path, schema and CEL alike', () => {
    const r = validateDocument(
      route({
        models: [{ exact: 'a', prefix: 'b' }],
        backends: [
          { ...backend, weight: 20000 },
          { ...backend, credential: undefined },
        ],
      }),
    );
    assert.deepEqual(
      r.errors.map((e) => e.detail),
      [
        'spec.backends[0].weight: Too big: expected number to be <=10000',
        'spec.backends: Invalid value: "object": backend names must be unique',
        'spec.models[0]: Invalid value: "object": exactly one of exact and prefix must be set',
        'spec.backends[1].credential: Required value: credential is required for provider openai with a url endpoint',
      ],
    );
    assert.match(
      apiserverMessage(r),
      /^AIRoute\.sluice\.dev "r" is invalid: \[spec\.backends\[0\]/,
    );
  });

  void it('skips CEL when the shape is wrong, as the apiserver does', () => {
    const r = validateDocument(route({ models: 'gpt', backends: [backend] }));
    assert.deepEqual(
      r.errors.map((e) => e.field),
      ['spec.models'],
    );
  });

  void it('points at an unquoted `on` key', () => {
    const r = validateDocument(
      route({ models: [{ exact: 'a' }], backends: [backend], retry: { true: ['5xx'] } }),
    );
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!.detail, /^spec\.retry\.true: unknown field \(an unquoted on/);
  });

  void it('classifies documents', () => {
    const results = validateDocuments([
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } },
      { apiVersion: 'sluice.dev/v1alpha1', kind: 'AIGateway', metadata: { name: 'g' } },
      { apiVersion: 'sluice.dev/v1', kind: 'AIRoute', metadata: { name: 'x' } },
      { kind: 'AIRoute' },
      'text',
      route({ models: [{ exact: 'a' }], backends: [backend] }),
    ]);
    assert.deepEqual(
      results.map((r) => [r.outcome, r.errors.map((e) => e.detail)]),
      [
        ['skipped', []],
        ['invalid', ['kind: unknown kind "AIGateway"; known: AIRoute, AIPolicy']],
        [
          'invalid',
          ['apiVersion: unsupported version "sluice.dev/v1"; supported: sluice.dev/v1alpha1'],
        ],
        ['invalid', ['apiVersion and kind are required']],
        ['invalid', ['a document must be an object with apiVersion and kind']],
        ['valid', []],
      ],
    );
    assert.equal(results[5]!.object?.metadata.namespace, 'default');
  });
});

void describe('CEL evaluation', () => {
  void it('types integers as CEL int and prunes undeclared fields', () => {
    const schema = {
      type: 'object' as const,
      properties: {
        n: { type: 'integer' as const },
        x: { type: 'number' as const },
        free: { type: 'object' as const, 'x-kubernetes-preserve-unknown-fields': true as const },
      },
    };
    assert.deepEqual(toCel(schema, { n: 3, x: 2, extra: 1, free: { a: 1, b: 1.5 } }), {
      n: 3n,
      x: 2,
      free: { a: 1n, b: 1.5 },
    });
    const rules = [
      { rule: 'self.n == 3 && type(self.n) == int', message: 'int' },
      { rule: '!has(self.extra)', message: 'pruned' },
      { rule: 'false', messageExpression: "'n is ' + string(self.n)" },
      { rule: 'false', messageExpression: 'self.nope', message: 'fallback' },
      { rule: 'false' },
      { rule: 'self.nope == 1' },
    ];
    const got = evaluateRules(
      { ...schema, 'x-kubernetes-validations': rules },
      { n: 3, x: 2, extra: 1 },
      'spec',
    );
    assert.deepEqual(
      got.map((v) => v.detail),
      [
        'spec: Invalid value: "object": n is 3',
        'spec: Invalid value: "object": fallback',
        'spec: Invalid value: "object": failed rule: false',
        got[3]!.detail,
      ],
    );
    assert.match(got[3]!.message, /evaluating rule: self\.nope == 1$/);
  });
});

void describe('sluice validate', () => {
  void it('prints ok, skipped and errors, and exits 1 when anything is invalid', async () => {
    const { code, out } = await run(
      ['-f', `${FIXTURES}policy-target.invalid.yaml`, '-f', '-'],
      'apiVersion: v1\nkind: Secret\nmetadata: {name: key, namespace: ns}\n---\n' +
        'apiVersion: sluice.dev/v1alpha1\nkind: AIPolicy\nmetadata: {name: p}\nspec: {selector: {}}\n',
    );
    assert.equal(code, 1);
    assert.equal(
      out,
      `invalid AIPolicy/default/untargeted (${FIXTURES}policy-target.invalid.yaml:1)\n` +
        '  spec: Invalid value: "object": at least one of targetRefs and selector must be set\n' +
        'skipped Secret/ns/key\n' +
        'ok AIPolicy/default/p\n',
    );
  });

  void it('refuses what the extproc cannot compile, naming file:line, the policy and the field', async () => {
    const policy = (name: string, spec: string) =>
      `apiVersion: sluice.dev/v1alpha1\nkind: AIPolicy\nmetadata: {name: ${name}, namespace: ns}\n` +
      `spec:\n  targetRefs: [{name: r}]\n${spec}`;
    const docs = [
      policy(
        'lookahead',
        "  masking:\n    customPatterns: [{type: ZIP, pattern: '(?=\\d{5})\\d+'}]\n",
      ),
      policy(
        'template',
        "  promptGuard:\n    templates:\n      t: {text: 'Hi {{who}}', variables: {name: {type: string}}}\n",
      ),
      policy('jwks', '  consumers:\n    jwt: {issuer: i, jwks: \'{"keys": []}\'}\n'),
      policy('budget', '  limits:\n    rules: [{name: broke, spendPerDayUsd: 0}]\n'),
      policy('guard', "  promptGuard:\n    denyPatterns: [{name: d, pattern: 'a\\1'}]\n"),
      policy('fine', "  masking:\n    customPatterns: [{type: ZIP, pattern: '\\d{5}'}]\n"),
    ];
    const { code, out } = await run(['-f', '-'], docs.join('---\n'));
    assert.equal(code, 1);
    const blocks = out.split(/\n(?=\S)/);
    const block = (name: string) => blocks.find((b) => b.includes(`AIPolicy/ns/${name} `)) ?? '';
    assert.match(block('lookahead'), /^invalid AIPolicy\/ns\/lookahead \(<stdin>:1\)\n/);
    assert.match(
      block('lookahead'),
      /\n {2}spec\.masking\.customPatterns: custom pattern for ZIP refused: .*lookaround/,
    );
    assert.match(block('lookahead'), /503 policy_invalid/);
    assert.match(
      block('template'),
      /^invalid .*\(<stdin>:9\)\n {2}spec\.promptGuard\.templates\.t\.text: uses \{\{who\}\}/,
    );
    assert.match(
      block('jwks'),
      /\n {2}spec\.consumers\.jwt\.jwks: a JWKS document needs a non-empty "keys" array/,
    );
    assert.match(block('budget'), /\n {2}spec\.limits\.rules\[0\]\.spendPerDayUsd: Too small/);
    assert.match(
      block('guard'),
      /\n {2}spec\.promptGuard\.denyPatterns\[0\]\.pattern: .*backreference/,
    );
    assert.match(out, /^ok AIPolicy\/ns\/fine$/m);
  });

  void it("refuses a route's own faults the operator finds, leaving references to render", async () => {
    const route = (name: string, extra: string) =>
      `apiVersion: sluice.dev/v1alpha1\nkind: AIRoute\nmetadata: {name: ${name}, namespace: ns}\n` +
      'spec:\n  models: [{exact: m}]\n  backends:\n' +
      '    - {name: local, provider: openai, endpoint: {url: "https://api.openai.com/v1"},\n' +
      `       credential: {secretRef: {name: missing-here}}}\n${extra}`;
    const docs = [
      route('outside', '  rules: [{matches: [{model: {exact: other}}]}]\n'),
      route('idle', '  rules: [{backendRefs: [{name: local, weight: 0}]}]\n'),
      // Its Secret is not in the files: the cluster may have it, so that is render's to say.
      route('fine', ''),
    ];
    const { code, out } = await run(['-f', '-'], docs.join('---\n'));
    assert.equal(code, 1);
    assert.match(
      out,
      /^invalid AIRoute\/ns\/outside \(<stdin>:1\)\n {2}spec\.rules.*not among the route's models.* \(Invalid\)\n {2}\(the apiserver accepts this route/m,
    );
    assert.match(out, /^invalid AIRoute\/ns\/idle .*\n {2}.*weight 0.*\(Invalid\)/m);
    assert.match(out, /^ok AIRoute\/ns\/fine$/m);
  });

  void it('exits 0 when every document is valid', async () => {
    const { code, out } = await run(['--filename', `${FIXTURES}policy-target.valid.yaml`]);
    assert.equal(code, 0, out);
    assert.equal(out.split('\n').filter((l) => l.startsWith('ok ')).length, 3);
  });

  void it('reports unreadable paths and bad YAML', async () => {
    const missing = await run(['-f', '/nonexistent/x.yaml']);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /^error \/nonexistent\/x\.yaml: ENOENT/);
    const bad = await run(['-f', '-'], 'a: [\n');
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^error <stdin>:1: /);
  });

  void it('explains its usage', async () => {
    assert.equal((await run([])).code, 2);
    assert.equal((await run(['-f'])).code, 2);
    assert.equal((await run(['--what'])).code, 2);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: sluice validate -f PATH/);
  });
});
