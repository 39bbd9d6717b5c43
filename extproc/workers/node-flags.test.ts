import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { EXTPROC_ENV, EXTPROC_NODE_FLAGS, missingNodeFlags, withNodeFlags } from './node-flags.js';

const ROOT = new URL('../../', import.meta.url).pathname;

void describe('the extproc node flags', () => {
  it('node accepts each of them on its command line', () => {
    const r = spawnSync(process.execPath, [...EXTPROC_NODE_FLAGS, '-p', 'process.execArgv'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    for (const f of EXTPROC_NODE_FLAGS) assert.ok(r.stdout.includes(f), r.stdout);
  });

  it('fix how far V8 lets the old generation grow, whatever memory the machine has', () => {
    // V8 lets the old generation grow to up to 4x what survived the last full collection when its
    // heap may take 2 GiB or more (a host without a memory limit), 1.3x at 256 MiB (a 1Gi
    // container), so the extproc's memory would follow the machine. The flag fixes the factor;
    // V8 prints the factor of each new limit under --trace-gc-verbose.
    const percent = Number(
      EXTPROC_NODE_FLAGS.find((f) => f.startsWith('--heap-growing-percent='))?.split('=')[1],
    );
    assert.ok(percent > 0, 'no --heap-growing-percent among the flags');
    const factor = (flags: readonly string[]): number => {
      const r = spawnSync(
        process.execPath,
        [...flags, '--trace-gc-verbose', '--expose-gc', '-e', 'globalThis.gc()'],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const m = /\[HeapController\] Limit: .*\((\d+(?:\.\d+)?)\)/.exec(r.stdout);
      assert.ok(m, `no limit in V8's trace:\n${r.stdout.slice(0, 2000)}`);
      return Number(m[1]);
    };
    const shipped = Number((1 + percent / 100).toFixed(1));
    // The control, a 4 GiB heap without the flag: V8's own factor (4.0 after a first collection).
    assert.notEqual(factor(['--max-old-space-size=4096']), shipped);
    assert.equal(factor(['--max-old-space-size=4096', ...EXTPROC_NODE_FLAGS]), shipped);
    assert.equal(factor(['--max-old-space-size=256', ...EXTPROC_NODE_FLAGS]), shipped);
  });

  it('give V8 one helper thread instead of the 4 node starts whatever the CPUs', () => {
    const threads = (flags: readonly string[]): number => {
      const r = spawnSync(
        process.execPath,
        [
          ...flags,
          '-e',
          "process.stdout.write(String(require('fs').readdirSync('/proc/self/task').length))",
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      return Number(r.stdout);
    };
    assert.equal(threads([]) - threads(EXTPROC_NODE_FLAGS), 3);
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

  it("keep body-sized Buffers out of malloc's main arena (EXTPROC_ENV)", () => {
    // 200 Buffers of 100 KiB (a 100 KB request body and its copies), every other one freed, then
    // the growth of the brk heap: glibc puts allocations under its mmap threshold there, and one
    // still in use above freed ones keeps them resident (it never returns brk memory below its
    // top). With the shipped environment they are mapped apart and unmapped when freed.
    const script = `
      const { readFileSync } = require('node:fs');
      const heap = () => Number(/\\[heap\\]\\n(?:.*\\n)*?Rss:\\s+(\\d+)/.exec(readFileSync('/proc/self/smaps', 'utf8'))?.[1] ?? 0);
      const before = heap();
      const kept = [];
      for (let i = 0; i < 200; i++) { const b = Buffer.alloc(100 * 1024, 1); if (i % 2) kept.push(b); }
      process.stdout.write(String(heap() - before));
      kept.length;`;
    const grown = (env: Record<string, string>): number => {
      // glibc reads an empty value as 0: the ones this test may run under are left out.
      const base = Object.fromEntries(
        Object.entries(process.env).filter(
          ([k]) => !k.startsWith('MALLOC_') && k !== 'GLIBC_TUNABLES',
        ),
      );
      const r = spawnSync(process.execPath, ['-e', script], {
        encoding: 'utf8',
        env: { ...base, ...env },
      });
      assert.equal(r.status, 0, r.stderr);
      return Number(r.stdout);
    };
    // The default (a control: the test would pass vacuously if glibc mapped them anyway).
    assert.ok(grown({}) >= 5 * 1024, `without it: ${grown({})} KiB`);
    const shipped = grown({ ...EXTPROC_ENV });
    assert.ok(shipped < 2 * 1024, `brk heap grew ${shipped} KiB`);
  });
});
