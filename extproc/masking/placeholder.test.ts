import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spliceJsonStrings } from './json-splice.js';
import { couldBePlaceholderPrefix, restore, StreamRestorer } from './placeholder.js';
import { RequestVault } from './vault.js';

const vault = new RequestVault();
vault.put([
  { type: 'EMAIL', value: 'a"b@x.example' },
  { type: 'MY_TYPE_2', value: 'v2' },
]);

describe('placeholders', () => {
  it('restores known placeholders only, JSON-escaped inside JSON', () => {
    assert.equal(restore('[EMAIL_1] [EMAIL_2] [MY_TYPE_2_1]', vault), 'a"b@x.example [EMAIL_2] v2');
    assert.equal(restore('{"to":"[EMAIL_1]"}', vault, true), '{"to":"a\\"b@x.example"}');
  });

  it('recognises what could still become a placeholder', () => {
    for (const s of ['[', '[E', '[EMAIL_', '[EMAIL_12', '[MY_TYPE_2_', '[e', '[Person_'])
      assert.ok(couldBePlaceholderPrefix(s, 41), s);
    for (const s of ['[1', '[EMAIL ', '[EMAIL_1]', '[EM-', '[_'])
      assert.ok(!couldBePlaceholderPrefix(s, 41), s);
  });

  it('streams: splits anywhere, holds only a possible prefix', () => {
    const r = new StreamRestorer(vault, 41);
    assert.equal(r.push('hi ['), 'hi ');
    assert.equal(r.push('EMA'), '');
    assert.equal(r.push('IL_1'), '');
    assert.equal(r.push('] and [-x'), 'a"b@x.example and [-x');
    assert.equal(r.push(' [EMAIL_'), ' ');
    assert.equal(r.flush(), '[EMAIL_');
  });
});

describe('spliceJsonStrings', () => {
  it('replaces only the value under the key, keeping every other byte', () => {
    const json = '{"content" : "to [EMAIL_1]", "x":"to [EMAIL_1]", "n": 1.50, "e":"\\u00e9"}';
    assert.equal(
      spliceJsonStrings(json, [{ key: 'x', from: 'to [EMAIL_1]', to: 'to "a"' }]),
      '{"content" : "to [EMAIL_1]", "x":"to \\"a\\"", "n": 1.50, "e":"\\u00e9"}',
    );
    assert.equal(spliceJsonStrings(json, [{ key: 'nope', from: 'x', to: 'y' }]), undefined);
  });
});
