import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  SEQUENCE_MARKER,
  chatPayload,
  chatRequestBody,
  sequenceOffset,
  sequenceText,
  withSequence,
} from './payloads.js';

interface Body {
  messages: { role: string; content: string }[];
}

test('sequence numbers: fixed width, lowercase letters, as the Go loadgen encodes them', () => {
  // loadgen/sequence_test.go checks putSequence against the same values.
  assert.equal(sequenceText(0), 'aaaaaaaaaaaa');
  assert.equal(sequenceText(25), 'aaaaaaaaaaaz');
  assert.equal(sequenceText(26), 'aaaaaaaaaaba');
  assert.equal(sequenceText(123456789), 'aaaaaakkeekb');
  assert.equal(sequenceText(Number.MAX_SAFE_INTEGER).length, SEQUENCE_MARKER.length);
  assert.throws(() => sequenceText(-1), RangeError);
  assert.throws(() => sequenceText(1.5), RangeError);
});

for (const [what, body] of [
  ['2 KB', chatRequestBody(2048)],
  ['2 KB with PII', chatRequestBody(2048, { pii: true })],
  ['2 KB streamed', chatRequestBody(2048, { stream: true })],
  ['100 KB', chatRequestBody(100 * 1024)],
  ['1 MB', chatRequestBody(1 << 20)],
] as const) {
  test(`${what} chat request: ends with a full user turn, which ends with the marker, once`, () => {
    assert.notEqual(sequenceOffset(body), undefined);
    const msgs = (JSON.parse(body.toString('utf8')) as Body).messages;
    const last = msgs.at(-1)!;
    assert.equal(last.role, 'user');
    assert.ok(last.content.endsWith(` ${SEQUENCE_MARKER}`));
    // The extproc's per-text caches skip texts under 64 characters: a shorter last turn would
    // be counted anew with or without the marker.
    assert.ok(last.content.length >= 100, `last user turn of ${last.content.length} chars`);
    for (const m of msgs.slice(0, -1)) {
      assert.ok(!m.content.includes(SEQUENCE_MARKER), 'only the last user turn has the marker');
    }
  });
}

test('two requests differ only in their sequence number and have the same length', () => {
  const p = chatPayload(2048, { pii: true });
  const at = sequenceOffset(p.reqBody)!;
  const original = Buffer.from(p.reqBody);
  const a = withSequence(p.reqBody, at, 41);
  const b = withSequence(p.reqBody, at, 42);
  assert.equal(a.length, p.reqBody.length);
  assert.equal(b.length, p.reqBody.length);
  assert.notDeepEqual(a, b);
  const end = at + SEQUENCE_MARKER.length;
  assert.deepEqual(a.subarray(0, at), b.subarray(0, at));
  assert.deepEqual(a.subarray(end), b.subarray(end));
  assert.equal(a.toString('latin1', at, end), sequenceText(41));
  assert.deepEqual(p.reqBody, original, 'the payload itself is never written');
  // Still the JSON the extproc parses, with the number in the last user turn.
  const msgs = (JSON.parse(b.toString('utf8')) as Body).messages;
  assert.ok(msgs.at(-1)!.content.endsWith(` ${sequenceText(42)}`));
});

test('a body with the marker twice is refused; one without has no offset', () => {
  assert.equal(sequenceOffset(Buffer.from('{"messages":[]}')), undefined);
  assert.throws(() => sequenceOffset(Buffer.from(`${SEQUENCE_MARKER} ${SEQUENCE_MARKER}`)));
});
