// Each child section bench.ts runs is a file beside it: a rename that leaves the section's name
// behind makes `npm run bench` print "measurement failed" instead of the section's figures,
// which only a full bench run would show (the #13 rename did that to `translation`).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));

test('every child section bench.ts runs has its file', () => {
  const src = readFileSync(here('./bench.ts'), 'utf8');
  const union = /function childSection\(\s*name:([^,]+),/.exec(src);
  assert.ok(union, 'childSection(name: ...) not found in bench.ts');
  const names = [...union[1]!.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
  assert.ok(names.length >= 5, `too few section names parsed: ${names.join(', ')}`);
  for (const name of names) {
    assert.ok(
      existsSync(here(`./${name}.ts`)),
      `section ${name}: test/bench/${name}.ts is missing`,
    );
    assert.match(src, new RegExp(`childSection\\(\\s*'${name}'`), `section ${name} is never run`);
  }
});
