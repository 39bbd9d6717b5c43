import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { compileConfig, ConfigError, FileConfigSource } from './load.js';
import type { RuntimeConfig } from './runtime.js';

const good = (version: string, extra = '') => `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: "${version}"
backends:
  - name: openai
    cluster: c-openai
    provider: openai
    credential: { env: TEST_OPENAI_KEY }
${extra}
routes:
  - name: gpt
    models: [{ exact: gpt-4o }, { prefix: gpt- }, { prefix: gpt-4o- }]
    backends: [{ name: openai }]
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const env = { TEST_OPENAI_KEY: 'sk-test-123' };

describe('compileConfig', () => {
  it('resolves credentials and indexes routes (exact, then longest prefix)', async () => {
    const cfg = await compileConfig(good('1'), { baseDir: dir, env });
    assert.equal(cfg.backendForCluster('c-openai')?.credential, 'sk-test-123');
    assert.equal(cfg.routeForModel('gpt-4o')?.name, 'gpt');
    assert.equal(cfg.routeForModel('gpt-4o-mini')?.name, 'gpt');
    assert.equal(cfg.routeForModel('claude'), undefined);
    assert.deepEqual(
      cfg.models.map((m) => m.id),
      ['gpt-4o'],
    );
  });

  it('reads a credential from a file relative to the config', async () => {
    await writeFile(join(dir, 'key'), 'sk-from-file\n');
    const text = good('1').replace('{ env: TEST_OPENAI_KEY }', '{ file: key }');
    const cfg = await compileConfig(text, { baseDir: dir, env: {} });
    assert.equal(cfg.backendForCluster('c-openai')?.credential, 'sk-from-file');
  });

  it('keeps a refused route: found for its models, refusing, and not listed', async () => {
    const text = good('1').replace(
      '    backends: [{ name: openai }]',
      '    backends: [{ name: openai }]\n    refuse: policy_invalid',
    );
    const cfg = await compileConfig(text, { baseDir: dir, env });
    assert.equal(cfg.routeForModel('gpt-4o')?.refuse, 'policy_invalid');
    assert.equal(cfg.routeForModel('gpt-4o-mini')?.refuse, 'policy_invalid');
    assert.deepEqual(cfg.models, [], 'no model of a refused route is offered');
  });

  const bad: [string, string, RegExp][] = [
    ['not YAML', 'a: [1,', /not valid YAML or JSON/],
    [
      'another contract version',
      good('1').replace('extproc/v1', 'extproc/v2'),
      /incompatible contract version "sluice.dev\/extproc\/v2"/,
    ],
    ['a wrong kind', good('1').replace('kind: ExtprocConfig', 'kind: Other'), /kind/],
    [
      'an unknown field',
      good('1').replace('version:', 'colour: red\nversion:'),
      /Unrecognized key/,
    ],
    [
      'an unknown backend',
      good('1').replace('backends: [{ name: openai }]', 'backends: [{ name: nope }]'),
      /routes.0.backends.0.name: unknown backend "nope"/,
    ],
    [
      'a duplicate route',
      good('1') + '  - name: gpt\n    models: [{ exact: x }]\n    backends: [{ name: openai }]\n',
      /duplicate route name "gpt"/,
    ],
    [
      'a missing env credential',
      good('1').replace('TEST_OPENAI_KEY', 'MISSING_KEY'),
      /MISSING_KEY is not set/,
    ],
    [
      'an unreadable credential file',
      good('1').replace('{ env: TEST_OPENAI_KEY }', '{ file: nope }'),
      /credential file nope cannot be read/,
    ],
    [
      // The operator never sends it (the policy is InvalidPolicy and its routes refuse requests);
      // a document that holds one anyway is refused whole, so the last good config stays.
      'a masking pattern RE2 cannot compile',
      good('1').replace(
        '    backends: [{ name: openai }]',
        '    backends: [{ name: openai }]\n    policy:\n      name: p\n      masking:\n' +
          "        customPatterns: [{ type: ZIP, pattern: '(?=\\d{5})\\d+' }]",
      ),
      /routes.0.policy.masking.customPatterns: custom pattern for ZIP refused: .*lookaround/,
    ],
    [
      'azure without apiVersion',
      good('1').replace('provider: openai', 'provider: azure-openai'),
      /azure-openai backends need azure.apiVersion/,
    ],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what} with a clear message`, async () => {
      await assert.rejects(compileConfig(text, { baseDir: dir, env }), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, message);
        assert.doesNotMatch(err.message, /sk-test-123/);
        return true;
      });
    });
  }
});

describe('FileConfigSource', () => {
  it('applies a changed file, refuses a bad one whole and keeps the last good config', async () => {
    const path = join(dir, 'extproc.yaml');
    await writeFile(path, good('1'));
    const applied: RuntimeConfig[] = [];
    const rejected: string[] = [];
    const lines: string[] = [];
    const log = pino({}, { write: (s: string) => lines.push(s) });
    const src = new FileConfigSource(
      path,
      { onConfig: (c) => void applied.push(c), onRejected: (r) => rejected.push(r) },
      log,
      env,
      20,
    );
    const first = await src.start(true);
    assert.equal(first.version, '1');

    await writeFile(path, good('2'));
    await waitFor(() => applied.length === 1);
    assert.equal(applied[0]!.version, '2');

    // Half-valid documents are refused whole: nothing of version 3 applies.
    await writeFile(
      path,
      good('3').replace('backends: [{ name: openai }]', 'backends: [{ name: ghost }]'),
    );
    await waitFor(() => rejected.length === 1);
    assert.match(rejected[0]!, /unknown backend "ghost"/);
    assert.equal(applied.length, 1);
    assert.ok(lines.some((l) => l.includes('config_rejected')));

    // An atomic replace by rename, as editors and Kubernetes volumes do.
    await writeFile(join(dir, 'tmp.yaml'), good('4'));
    await rename(join(dir, 'tmp.yaml'), path);
    await waitFor(() => applied.length === 2);
    assert.equal(applied[1]!.version, '4');
    src.close();
  });

  it('fails loudly when the first load is bad', async () => {
    const path = join(dir, 'bad.yaml');
    await writeFile(path, 'kind: nothing');
    const src = new FileConfigSource(
      path,
      { onConfig: () => undefined, onRejected: () => undefined },
      pino({ level: 'silent' }),
      env,
    );
    await assert.rejects(src.start(false), ConfigError);
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
