import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { compile, type CompileOptions } from '../../operator/compile/index.js';
import {
  GOLDEN_DIR,
  OUTPUT_DIRS,
  goldenPaths,
  listCases,
  loadCase,
  renderGoldens,
} from './cases.js';

/** Flags of `sluice operator` a case is translated with (besides the version). */
const CASE_OPTIONS: Readonly<Record<string, Partial<CompileOptions>>> = {
  'envoy-tracing': {
    tracing: {
      collectorHost: 'otel.observability.svc',
      collectorPort: 4317,
      samplingPercent: 10,
      serviceName: 'sluice-envoy',
    },
  },
};

// `npm run golden:update` sets it: every golden file is rewritten, and files no case writes go.
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

void describe('golden compilation', () => {
  const cases = listCases();

  void it('has the cases the compilation is known by', () => {
    assert.ok(cases.length >= 10, `only ${cases.length} cases`);
  });

  for (const name of cases) {
    void it(name, async () => {
      const { resources, problems } = await loadCase(name);
      const t = compile(resources, { version: 'golden', ...CASE_OPTIONS[name] });
      const actual = await renderGoldens(name, t, problems);
      for (const [path, text] of actual) {
        const file = join(GOLDEN_DIR, path);
        if (UPDATE) {
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(file, text);
        }
        let expected: string;
        try {
          expected = readFileSync(file, 'utf8');
        } catch {
          assert.fail(`${path} is missing; npm run golden:update creates it`);
        }
        assert.equal(text, expected, `${path} differs; npm run golden:update rewrites it`);

        for (const s of resources.secrets) {
          for (const v of Object.values(s.data)) {
            if (v.trim().length >= 6)
              assert.ok(!text.includes(v.trim()), `a secret value leaked into ${path}`);
          }
        }
      }

      // Same bundle in another order: same bytes.
      const shuffled = {
        routes: [...resources.routes].reverse(),
        policies: [...resources.policies].reverse(),
        secrets: [...resources.secrets].reverse(),
        endpoints: [...resources.endpoints].reverse(),
        consumerKeys: [...(resources.consumerKeys ?? [])].reverse(),
      };
      assert.deepEqual(
        await renderGoldens(
          name,
          compile(shuffled, { version: 'golden', ...CASE_OPTIONS[name] }),
          problems,
        ),
        actual,
      );

      const parsed = ExtprocConfig.safeParse(t.extproc);
      assert.deepEqual(parsed.error?.issues ?? [], [], 'the extproc document follows the contract');
    });
  }

  // A golden file no case writes is left over from a renamed or deleted case, and would go on
  // being read as if it were true. (Last, so that an update has written every case first.)
  void it('holds no golden file that no case writes', () => {
    const written = new Set(cases.flatMap(goldenPaths));
    const stale: string[] = [];
    for (const dir of OUTPUT_DIRS) {
      let names: string[];
      try {
        names = readdirSync(join(GOLDEN_DIR, dir));
      } catch {
        continue;
      }
      for (const f of names) {
        const path = `${dir}/${f}`;
        if (written.has(path)) continue;
        if (UPDATE) rmSync(join(GOLDEN_DIR, path));
        else stale.push(path);
      }
    }
    assert.deepEqual(stale, [], 'npm run golden:update removes them');
  });
});
