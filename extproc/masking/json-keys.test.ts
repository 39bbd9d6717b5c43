import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { duplicateKey } from './json-keys.js';

const dup = (text: string): string | undefined => duplicateKey(text, JSON.parse(text));

describe('duplicateKey', () => {
  it('finds a duplicate at the top level', () => {
    assert.equal(dup('{"model":"a","messages":[],"model":"b"}'), 'model');
    assert.equal(dup('{"messages":[{"role":"user","content":"x"}], "messages" : []}'), 'messages');
  });

  it('finds a duplicate nested in arrays and objects', () => {
    assert.equal(dup('{"messages":[{"role":"user","content":"a","content":"b"}]}'), 'content');
    assert.equal(dup('{"a":{"b":[[{"c":1}],{"d":{"e":1,"e":2}}]}}'), 'e');
  });

  it('compares keys as decoded strings: an escape does not make a key new', () => {
    assert.equal(dup('{"messages":1,"mess\\u0061ges":2}'), 'messages');
    assert.equal(dup('{"a\\"b":1,"a\\u0022b":2}'), 'a"b');
  });

  it('accepts equal keys in different objects, and strings that look like keys', () => {
    assert.equal(dup('{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}'), undefined);
    assert.equal(dup('{"text":"\\"model\\": 1, \\"model\\": 2","model":"m"}'), undefined);
    assert.equal(dup('{"a":"\\\\","b":"\\\\\\"x"}'), undefined);
    assert.equal(dup('[1,2,{"a":1}]'), undefined);
    assert.equal(dup('"text"'), undefined);
  });

  it('counts __proto__ like any other key', () => {
    assert.equal(dup('{"__proto__":1,"__proto__":2}'), '__proto__');
    assert.equal(dup('{"__proto__":{"a":1},"a":1}'), undefined);
  });

  it('handles deep nesting without recursion', () => {
    const deep = '['.repeat(50_000) + '{"a":1,"a":2}' + ']'.repeat(50_000);
    assert.equal(dup(deep), 'a');
  });
});
