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

  it('long values are compared whole: a same-length value of other characters is not the bytes', () => {
    // Past LOOP_MAX characters a value is compared natively: as many bytes as characters must
    // mean the same ASCII, never non-ASCII or a lone surrogate that encodes to that many bytes.
    const long = 'a'.repeat(40);
    for (const [bytes, value, same] of [
      [long, long, true],
      [`é${'a'.repeat(38)}`, long.slice(1), false],
      // `é` is C3 A9 in UTF-8, and C3 A9 are also the Latin-1 bytes of `Ã©`.
      [`é${'a'.repeat(38)}`, `\u00c3\u00a9${'a'.repeat(38)}`, false],
      [`é${'a'.repeat(38)}`, `é${'a'.repeat(38)}`, true],
      [`\u{fffd}${'a'.repeat(37)}`, `\ud800${'a'.repeat(39)}`, false],
      [`${long}b`, `${long}c`, false],
      [`${'a'.repeat(70_000)}`, `${'a'.repeat(70_000)}`, true],
      [`${'a'.repeat(70_000)}`, `${'a'.repeat(69_999)}b`, false],
    ] as const) {
      const text = JSON.stringify({ k: bytes, m: 'x' });
      const doc = { k: value, m: 'y' };
      const out = spliceValues(Buffer.from(text), doc, edit(doc, 'm', 'x', 'y', new Map()));
      assert.equal(out !== undefined, same, `${bytes.slice(0, 3)} / ${value.slice(0, 3)}`);
      if (out) assert.deepEqual(JSON.parse(out.toString()), doc);
    }
  });

  it('numbers and literals: the bytes hold the value exactly when JSON reads them as it', () => {
    // Read without decoding when the bytes are how JavaScript writes the value: the same
    // answers as decoding them with the JSON number grammar and Number().
    const texts = ['0', '-0', '1', '-1', '0.2', '2.5e3', '2500', '1.0', '1e21', '1e+21', '1E+21'];
    texts.push('1e-7', '1.5e-7', '0.1', '01', '+1', '.5', 'NaN', 'Infinity', 'true', 'false');
    texts.push('null', 'undefined', '9007199254740993', '123456789012345680000', '1_0', '0x10');
    const values: unknown[] = [0, -0, 1, -1, 0.2, 2500, 1e21, 1e-7, 1.5e-7, 0.1, 10, 16];
    values.push(
      NaN,
      Infinity,
      true,
      false,
      null,
      undefined,
      9007199254740992,
      1.2345678901234568e20,
    );
    values.push('1', {}, [], 0.5);
    const reads = (text: string, v: unknown): boolean =>
      text === 'true' || text === 'false' || text === 'null'
        ? String(v) === text && typeof v !== 'string'
        : typeof v === 'number' &&
          /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/.test(text) &&
          Object.is(Number(text), v);
    for (const text of texts) {
      for (const v of values) {
        const doc = { k: v, m: 'y' };
        const bytes = Buffer.from(`{"k":${text},"m":"x"}`);
        const out = spliceValues(bytes, doc, edit(doc, 'm', 'x', 'y', new Map()));
        assert.equal(out !== undefined, reads(text, v), `${text} / ${String(v)}`);
      }
    }
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
