import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseEventTooLargeError, SseParser, type SseEvent } from './sse.js';

interface Parsed {
  event?: string;
  data: string;
  id?: string;
}

function fields(e: SseEvent): Parsed {
  const p: Parsed = { data: e.data };
  if (e.event !== undefined) p.event = e.event;
  if (e.id !== undefined) p.id = e.id;
  return p;
}

/** Feeds `input` cut at `cuts`, checks raws + leftover reproduce the input, returns parsed fields. */
function run(input: Buffer, cuts: number[], opts?: { maxEventBytes?: number }) {
  const p = new SseParser(opts);
  const events: SseEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    events.push(...p.push(input.subarray(prev, c)));
    prev = c;
  }
  const rest = p.end();
  assert.deepEqual(Buffer.concat([...events.map((e) => e.raw), rest]), input);
  return { events: events.map(fields), rest, raws: events.map((e) => e.raw.toString('utf8')) };
}

const OPENAI_SAMPLE = Buffer.from(
  'data: {"id":"c1","choices":[{"delta":{"content":"Grüße, 世界 🌍"}}]}\n\n' +
    ': keep-alive\n\n' +
    'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5}}\n\n' +
    'data: [DONE]\n\n',
);

test('splits a simple stream into events with data', () => {
  const { events, rest } = run(OPENAI_SAMPLE, []);
  assert.equal(events.length, 4);
  assert.equal(JSON.parse(events[0]!.data).choices[0].delta.content, 'Grüße, 世界 🌍');
  assert.deepEqual(events[1], { data: '' });
  assert.equal(events[3]!.data, '[DONE]');
  assert.equal(rest.length, 0);
});

test('every single split position of a multibyte OpenAI stream gives the same events', () => {
  const whole = run(OPENAI_SAMPLE, []).events;
  for (let i = 0; i <= OPENAI_SAMPLE.length; i++) {
    assert.deepEqual(run(OPENAI_SAMPLE, [i]).events, whole, `split at ${i}`);
  }
});

test('every pair of split positions, CRLF with event names and ids', () => {
  const input = Buffer.from(
    'event: message_start\r\nid: 1\r\ndata: {"type":"message_start","t":"é"}\r\n\r\n' +
      'event: content_block_delta\r\ndata: {"text":"日本"}\r\n\r\n',
  );
  const whole = run(input, []).events;
  assert.deepEqual(whole, [
    { event: 'message_start', id: '1', data: '{"type":"message_start","t":"é"}' },
    { event: 'content_block_delta', data: '{"text":"日本"}' },
  ]);
  for (let i = 0; i <= input.length; i++) {
    for (let j = i; j <= input.length; j++) {
      assert.deepEqual(run(input, [i, j]).events, whole, `split at ${i},${j}`);
    }
  }
});

test('byte-at-a-time feeding of every line-ending style', () => {
  for (const nl of ['\n', '\r\n', '\r']) {
    const input = Buffer.from(
      ['event: a', 'data: 1', 'data: 2', '', 'data:x', '', ': c', 'data', ''].join(nl) + nl,
    );
    const cuts = Array.from({ length: input.length - 1 }, (_, k) => k + 1);
    const expected = [{ event: 'a', data: '1\n2' }, { data: 'x' }, { data: '' }];
    assert.deepEqual(run(input, cuts).events, expected, JSON.stringify(nl));
    assert.deepEqual(run(input, []).events, expected, JSON.stringify(nl));
  }
});

test('CRLF split between CR and LF: event emitted at once, LF kept for the next raw', () => {
  const p = new SseParser();
  const a = p.push(Buffer.from('data: a\r\n\r'));
  assert.equal(a.length, 1);
  assert.equal(a[0]!.raw.toString(), 'data: a\r\n\r');
  const b = p.push(Buffer.from('\ndata: b\r\n\r\n'));
  assert.equal(b.length, 1);
  assert.equal(b[0]!.data, 'b');
  assert.equal(b[0]!.raw.toString(), '\ndata: b\r\n\r\n');
  // A lone CR line ending followed by a new line in the next chunk is not a blank line.
  const q = new SseParser();
  assert.equal(q.push(Buffer.from('data: x\r')).length, 0);
  assert.equal(q.push(Buffer.from('\n')).length, 0);
  const c = q.push(Buffer.from('data: y\r\n\r\n'));
  assert.deepEqual(c.map(fields), [{ data: 'x\ny' }]);
});

test('field parsing: no space after colon, only one space stripped, comments, unknown fields', () => {
  const { events } = run(
    Buffer.from('data:a\ndata:  b\n:comment: data: no\nretry: 10\nfoo: bar\nevent:e\nid\ndata\n\n'),
    [],
  );
  assert.deepEqual(events, [{ event: 'e', id: '', data: 'a\n b\n' }]);
  // An id with NUL is ignored per the spec.
  assert.deepEqual(run(Buffer.from('id: a\0b\ndata: x\n\n'), []).events, [{ data: 'x' }]);
});

test('a leading BOM is skipped, even when split; a later one is data', () => {
  const input = Buffer.concat([
    Buffer.from([0xef, 0xbb, 0xbf]),
    Buffer.from('data: x\n\ndata: \ufeffy\n\n'),
  ]);
  for (let i = 0; i <= input.length; i++) {
    assert.deepEqual(run(input, [i]).events, [{ data: 'x' }, { data: '\ufeffy' }], `at ${i}`);
  }
  // BOM immediately followed by a blank line: a (data-less) event on its own.
  assert.deepEqual(run(Buffer.from('\ufeff\ndata: z\n\n'), [1, 2]).events, [
    { data: '' },
    { data: 'z' },
  ]);
  // Something that only starts like a BOM is part of the first field name.
  assert.deepEqual(run(Buffer.from([0xef, 0xbb, 0x0a, 0x0a]), [1]).events, [{ data: '' }]);
});

test('end() returns the bytes of an unterminated event and resets', () => {
  const p = new SseParser();
  assert.deepEqual(p.push(Buffer.from('data: a\n\ndata: partial')).map(fields), [{ data: 'a' }]);
  assert.equal(p.end().toString(), 'data: partial');
  assert.equal(p.end().length, 0);
  assert.deepEqual(p.push(Buffer.from('data: b\n\n')).map(fields), [{ data: 'b' }]);
});

test('an event larger than the bound throws a typed error, from a tail or a whole event', () => {
  const p = new SseParser({ maxEventBytes: 64 });
  p.push(Buffer.from('data: ' + 'x'.repeat(40)));
  assert.throws(() => p.push(Buffer.from('x'.repeat(40))), SseEventTooLargeError);
  // Once failed, the parser stays failed rather than resynchronising mid-event.
  assert.throws(() => p.push(Buffer.from('\n\n')), SseEventTooLargeError);

  const q = new SseParser({ maxEventBytes: 64 });
  assert.throws(
    () => q.push(Buffer.from('data: ' + 'y'.repeat(100) + '\n\n')),
    (e) => {
      assert.ok(e instanceof SseEventTooLargeError);
      assert.equal(e.code, 'response_too_large');
      assert.equal(e.limit, 64);
      return true;
    },
  );

  // Exactly at the bound is fine.
  const ok = 'data: ' + 'z'.repeat(56) + '\n\n';
  assert.equal(ok.length, 64);
  assert.equal(new SseParser({ maxEventBytes: 64 }).push(Buffer.from(ok)).length, 1);
});

test('no rescanning: a 10k-chunk event and a 10k-event stream scan each byte at most twice', () => {
  // One large event trickling in as 10,000 chunks: a rescanning splitter would examine ~n^2/2.
  const payload = 'data: ' + 'abcdefghij'.repeat(10_000) + '\n\n';
  const input = Buffer.from(payload);
  const p = new SseParser();
  const events: SseEvent[] = [];
  for (let off = 0; off < input.length; off += 10)
    events.push(...p.push(input.subarray(off, off + 10)));
  assert.equal(events.length, 1);
  assert.equal(events[0]!.data.length, 100_000);
  assert.ok(p.scannedBytes <= 2 * input.length, `scanned ${p.scannedBytes} of ${input.length}`);

  // Many events per chunk, CRLF, odd chunk sizes.
  const many = Buffer.from('data: {"i":1}\r\n\r\n'.repeat(10_000));
  const q = new SseParser();
  let n = 0;
  for (let off = 0; off < many.length; off += 333)
    n += q.push(many.subarray(off, off + 333)).length;
  assert.equal(n, 10_000);
  assert.ok(q.scannedBytes <= 2 * many.length, `scanned ${q.scannedBytes} of ${many.length}`);
});
