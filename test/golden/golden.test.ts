import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExtprocConfig } from '../../extproc/config/contract.js';
import { translate } from '../../operator/translate/index.js';
import { CASES_DIR, listCases, loadCase, renderGolden } from './cases.js';

const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

void describe('golden translation', () => {
  const cases = listCases();

  void it('has the cases the translation is known by', () => {
    assert.ok(cases.length >= 10, `only ${cases.length} cases`);
  });

  for (const name of cases) {
    void it(name, async () => {
      const { resources, problems } = await loadCase(name);
      const t = translate(resources, { version: 'golden' });
      const actual = await renderGolden(t, problems);
      const file = join(CASES_DIR, `${name}.out.yaml`);
      if (UPDATE) writeFileSync(file, actual);
      let expected: string;
      try {
        expected = readFileSync(file, 'utf8');
      } catch {
        assert.fail(`${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
      }
      assert.equal(actual, expected, `${name}: output differs; UPDATE_GOLDEN=1 rewrites it`);

      for (const s of resources.secrets) {
        for (const v of Object.values(s.data)) {
          if (v.trim().length >= 6)
            assert.ok(!actual.includes(v.trim()), 'a secret value leaked into the output');
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
      assert.equal(
        await renderGolden(translate(shuffled, { version: 'golden' }), problems),
        actual,
      );

      const parsed = ExtprocConfig.safeParse(t.extproc);
      assert.deepEqual(parsed.error?.issues ?? [], [], 'the extproc document follows the contract');
    });
  }
});
