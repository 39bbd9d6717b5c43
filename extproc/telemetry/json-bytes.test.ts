import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonBytes } from './json-bytes.js';

const written = (v: unknown): string | undefined => {
  const b = new JsonBytes();
  return b.value(v) ? b.take().toString('utf8') : undefined;
};

void describe('JsonBytes', () => {
  void it("writes JSON.stringify's bytes for plain data", () => {
    const values: unknown[] = [
      'plain',
      '',
      'a "quoted" \\ value\n\t\u0001\u001f\u007f',
      'modèle-路由-🚀',
      'lone \ud800 surrogate \udfff',
      0,
      -0,
      1.25,
      -3e-7,
      1e21,
      2 ** 53 + 2,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      true,
      false,
      null,
      [],
      {},
      [1, undefined, null, 'x', [[]], { a: undefined }],
      new Array<unknown>(3),
      { b: 1, a: 2, 10: 'ten', 2: 'two', 'key "q"': 'v', ключ: 'значение', u: undefined },
      Object.assign(Object.create(null) as object, { x: 1 }),
      {
        event: 'request',
        request_id: '58f0869a-4d7c-472f-94ba-e427cdee859e',
        cost_usd: 0.000154,
        tokens: { input: 512, output: 128, estimated: false },
        verdicts: ['mask', 'reserved'],
        findings: [{ direction: 'request', type: 'EMAIL', action: 'mask', count: 1 }],
        context: undefined,
      },
      'x'.repeat(20_000),
      { big: Array.from({ length: 2000 }, (_, i) => ({ i, s: `item ${i}` })) },
    ];
    for (const v of values) assert.equal(written(v), JSON.stringify(v));
  });

  void it('refuses what JSON.stringify writes otherwise, or not at all', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const v of [
      new Date(0),
      { d: new Date(0) },
      { toJSON: () => 'x' },
      Object.assign([1], { toJSON: () => 'x' }),
      { f: () => 1 },
      [Symbol('s')],
      { n: 1n },
      new Map(),
      cycle,
      undefined,
    ]) {
      assert.equal(written(v), undefined);
    }
  });

  void it('writes members without braces, and starts again after reset', () => {
    const b = new JsonBytes();
    b.raw('{"level":30');
    b.byte(0x2c);
    assert.equal(b.members({ a: 'x', n: undefined, o: { k: [1] } }), true);
    b.raw('}\n');
    assert.equal(b.take().toString(), '{"level":30,"a":"x","o":{"k":[1]}}\n');
    b.reset();
    b.raw('é');
    assert.equal(b.take().toString(), 'é');
    assert.equal(b.members(new Date()), false);
  });
});
