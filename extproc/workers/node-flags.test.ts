import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { EXTPROC_NODE_FLAGS, missingNodeFlags, withNodeFlags } from './node-flags.js';

const ROOT = new URL('../../', import.meta.url).pathname;

void describe('the extproc node flags', () => {
  it('node accepts each of them on its command line', () => {
    const r = spawnSync(process.execPath, [...EXTPROC_NODE_FLAGS, '-p', 'process.execArgv'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    for (const f of EXTPROC_NODE_FLAGS) assert.ok(r.stdout.includes(f), r.stdout);
  });

  it('adds only those a command line lacks, by name, keeping the rest after them', () => {
    assert.deepEqual(missingNodeFlags([]), [...EXTPROC_NODE_FLAGS]);
    assert.deepEqual(missingNodeFlags(EXTPROC_NODE_FLAGS), []);
    // Given with another value, in V8's underscore spelling, or negated: the operator's choice.
    const chosen = EXTPROC_NODE_FLAGS.map((f) =>
      f.includes('=')
        ? `${f.split('=')[0]!.replaceAll('-', '_').replace(/^__/, '--')}=1`
        : f.replace(/^--/, '--no-'),
    );
    assert.deepEqual(missingNodeFlags(chosen), []);
    assert.deepEqual(withNodeFlags(['--import', 'tsx']), [
      ...EXTPROC_NODE_FLAGS,
      '--import',
      'tsx',
    ]);
    assert.deepEqual(withNodeFlags(chosen), chosen);
  });

  it('npm start runs the quickstart gateway with them', () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as {
      scripts: Record<string, string>;
    };
    const argv = pkg.scripts['start']!.split(' ');
    assert.equal(argv[0], 'node');
    const script = argv.indexOf('examples/quickstart/start.ts');
    assert.ok(script > 0, pkg.scripts['start']);
    assert.deepEqual(missingNodeFlags(argv.slice(1, script)), [], pkg.scripts['start']);
  });

  it("are the Helm chart's default for the extproc container", () => {
    const values = parse(readFileSync(`${ROOT}charts/sluice/values.yaml`, 'utf8')) as {
      gateway: { extproc: { nodeFlags: string[] } };
    };
    assert.deepEqual(values.gateway.extproc.nodeFlags, [...EXTPROC_NODE_FLAGS]);
  });
});
