import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PromptGuardPolicy } from './schema.js';

function issues(input: unknown): string {
  const r = PromptGuardPolicy.safeParse(input);
  assert.equal(r.success, false);
  return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
}

test('defaults: injection on at threshold 1, strip invisibles, nothing else', () => {
  const p = PromptGuardPolicy.parse({});
  assert.deepEqual(p.injection, { enabled: true, threshold: 1, action: 'block' });
  assert.equal(p.invisibleCharacters, 'strip');
  assert.deepEqual(p.decorators, { prepend: [], append: [] });
  assert.deepEqual(p.templates, {});
  assert.deepEqual(p.denyPatterns, []);
});

test('patterns that need backtracking are refused with the reason', () => {
  const msg = issues({ denyPatterns: [{ name: 'dup-word', pattern: '(\\w+) \\1' }] });
  assert.match(msg, /^denyPatterns\.0\.pattern: .*backreference.*linear-time RE2/m);
  assert.match(issues({ allowPatterns: [{ name: 'x', pattern: 'a(?=b)' }] }), /lookaround/);
  assert.match(issues({ denyPatterns: [{ name: 'x', pattern: 'a*' }] }), /empty string/);
  assert.match(issues({ denyPatterns: [{ name: 'x', pattern: '[a-' }] }), /not valid RE2/);
});

test('nested quantifiers are fine under RE2; names must be unique', () => {
  PromptGuardPolicy.parse({
    denyPatterns: [{ name: 'x', pattern: '(a+)+b', caseInsensitive: true }],
  });
  assert.match(
    issues({
      denyPatterns: [
        { name: 'x', pattern: 'a' },
        { name: 'x', pattern: 'b' },
      ],
    }),
    /duplicate name "x"/,
  );
});

test('templates: placeholders and declarations must agree', () => {
  const msg = issues({
    templates: {
      t: {
        text: 'Hi {{who}}, {{ when }} {{oops',
        variables: { who: { type: 'string' }, spare: { type: 'number' } },
      },
    },
  });
  assert.match(msg, /templates\.t\.text: uses \{\{when\}\}, which is not declared/);
  assert.match(msg, /templates\.t\.text: contains "\{\{" that is not/);
  assert.match(msg, /templates\.t\.variables\.spare: declared but not used/);
});

test('template variable specs are typed', () => {
  const p = PromptGuardPolicy.parse({
    templates: {
      t: {
        text: '{{a}} {{b}} {{c}}',
        variables: {
          a: { type: 'string', maxLength: 10 },
          b: { type: 'number', integer: true, minimum: 1, maximum: 5, required: false },
          c: { type: 'enum', enum: ['x', 'y'] },
        },
      },
    },
  });
  assert.equal(p.templates.t!.role, 'user');
  assert.equal(p.templates.t!.variables.a!.required, true);
  assert.match(
    issues({ templates: { t: { text: '{{a}}', variables: { a: { type: 'enum' } } } } }),
    /enum/,
  );
  assert.match(
    issues({
      templates: { t: { text: '{{a}}', variables: { a: { type: 'string', enum: ['x'] } } } },
    }),
    /enum/,
  );
  assert.match(
    issues({
      templates: {
        t: { text: '{{a}}', variables: { a: { type: 'number', minimum: 3, maximum: 1 } } },
      },
    }),
    /minimum is greater than maximum/,
  );
  assert.match(issues({ templates: { 'Bad Name': { text: 'x' } } }), /lower-case/);
});
