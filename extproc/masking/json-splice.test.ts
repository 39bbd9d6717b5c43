import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../config/contract.js';
import { compilePolicy } from '../policy/policy.js';
import { newPolicyState } from '../policy/state.js';
import { applyRequestPolicy } from '../pipeline/masking.js';
import { MemoryVault } from './vault.js';
import { spliceValues, type ValueEdit } from './json-splice.js';

type Edits = Map<object, Map<string | number, ValueEdit>>;

function edit(holder: object, at: string | number, from: string, to: string, e: Edits): Edits {
  let m = e.get(holder);
  if (!m) e.set(holder, (m = new Map()));
  m.set(at, { from, to });
  return e;
}

describe('spliceValues', () => {
  it('replaces edited values and keeps every other byte', () => {
    const text =
      '{ "a" : [1, 2.5e3, -0.0, true, null],\n  "b": {"c": "x y", "d": "\\u00e9t\\u00e9"} }';
    const doc = JSON.parse(text) as { b: { c: string } };
    doc.b.c = 'X "q" é';
    const out = spliceValues(Buffer.from(text), doc, edit(doc.b, 'c', 'x y', 'X "q" é', new Map()));
    assert.equal(
      out?.toString(),
      '{ "a" : [1, 2.5e3, -0.0, true, null],\n  "b": {"c": "X \\"q\\" é", "d": "\\u00e9t\\u00e9"} }',
    );
    assert.deepEqual(JSON.parse(out?.toString() ?? ''), doc);
  });

  it('edits array elements and non-ASCII or escaped values', () => {
    const text = '{"m":["caf\\u00e9 a@b.c","naïve a@b.c"]}';
    const doc = JSON.parse(text) as { m: string[] };
    const e = edit(doc.m, 0, doc.m[0]!, 'café [E_1]', new Map());
    edit(doc.m, 1, doc.m[1]!, 'naïve [E_1]', e);
    doc.m[0] = 'café [E_1]';
    doc.m[1] = 'naïve [E_1]';
    const out = spliceValues(Buffer.from(text), doc, e);
    assert.equal(out?.toString(), '{"m":["café [E_1]","naïve [E_1]"]}');
  });

  it('gives up when the bytes do not hold the parsed value', () => {
    const text = '{"a":"x","n":1,"o":{"k":"v"}}';
    const cases: [string, (d: Record<string, unknown>) => void][] = [
      ['a string changed', (d) => ((d.o as Record<string, string>).k = 'w')],
      ['a number changed', (d) => (d.n = 2)],
      ['a key added', (d) => (d.z = 1)],
      ['a key removed', (d) => delete d.n],
      [
        'keys reordered',
        (d) => {
          const v = d.a;
          delete d.a;
          d.a = v;
        },
      ],
      ['a type changed', (d) => (d.n = '1')],
    ];
    for (const [why, change] of cases) {
      const doc = JSON.parse(text) as Record<string, unknown>;
      change(doc);
      const e = edit(doc, 'a', 'x', 'y', new Map());
      assert.equal(spliceValues(Buffer.from(text), doc, e), undefined, why);
    }
    // V8 lists integer-like keys first: not the order of the bytes.
    const ints = '{"b":"x","1":"y"}';
    const doc = JSON.parse(ints) as Record<string, string>;
    assert.equal(
      spliceValues(Buffer.from(ints), doc, edit(doc, 'b', 'x', 'z', new Map())),
      undefined,
    );
    // An edit whose old value is not what the bytes hold, or that names no value.
    const d2 = JSON.parse(text) as Record<string, unknown>;
    assert.equal(
      spliceValues(Buffer.from(text), d2, edit(d2, 'a', 'other', 'y', new Map())),
      undefined,
    );
    assert.equal(
      spliceValues(Buffer.from(text), d2, edit({}, 'a', 'x', 'y', new Map())),
      undefined,
    );
    assert.equal(
      spliceValues(Buffer.from(text), d2, edit(d2, 'n', '1', 'y', new Map())),
      undefined,
    );
    // Trailing bytes, truncated bytes.
    assert.equal(spliceValues(Buffer.from(`${text} x`), d2, new Map()), undefined);
    assert.equal(spliceValues(Buffer.from(text.slice(0, -1)), d2, new Map()), undefined);
  });
});

describe('masked request bytes', () => {
  const policy = compilePolicy(Policy.parse({ name: 'p', masking: {} }));

  async function mask(text: string): Promise<string | undefined> {
    const body = JSON.parse(text) as Record<string, unknown>;
    const r = await applyRequestPolicy({
      state: newPolicyState(policy),
      operation: 'chat',
      body,
      headers: new Map(),
      route: 'r',
      vault: new MemoryVault(),
      source: Buffer.from(text),
    });
    if (r.body) assert.deepEqual(JSON.parse(r.body.toString()), body, 'the bytes hold the body');
    return r.body?.toString();
  }

  it('splices masked values into the request as it came', async () => {
    const sent = await mask(
      '{\n  "model": "m",\n  "temperature": 0.20,\n  "messages": [\n    {"role": "user", "content": "mail jane@example.com or +1 415 555 0132"},\n    {"role": "user", "content": "again jane@example.com"}\n  ]\n}',
    );
    assert.equal(
      sent,
      '{\n  "model": "m",\n  "temperature": 0.20,\n  "messages": [\n    {"role": "user", "content": "mail [EMAIL_1] or [PHONE_1]"},\n    {"role": "user", "content": "again [EMAIL_1]"}\n  ]\n}',
    );
  });

  it('re-serializes what splicing cannot write', async () => {
    // A value inside JSON carried in a string, and a key: the body is serialized again.
    const tool = await mask(
      '{"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": "{\\"to\\": \\"jane@example.com\\"}"}]}',
    );
    assert.equal(
      tool,
      '{"model":"m","messages":[{"role":"tool","tool_call_id":"c","content":"{\\"to\\":\\"[EMAIL_1]\\"}"}]}',
    );
    const key = await mask('{"model": "m", "metadata": {"jane@example.com": "x"}, "messages": []}');
    assert.equal(key, '{"model":"m","metadata":{"[EMAIL_1]":"x"},"messages":[]}');
  });
});
