import { test } from 'node:test';
import assert from 'node:assert/strict';
import { usageFromJson } from './extract.js';
import { JsonUsageScanner, MAX_KEPT_VALUE_BYTES } from './json-usage.js';

function scan(chunks: Buffer[]) {
  const s = new JsonUsageScanner();
  for (const c of chunks) s.push(c);
  return s;
}

/** The body cut at every byte: the result must not depend on where the network cut it. */
function everyCut(body: string, check: (s: JsonUsageScanner) => void): void {
  const buf = Buffer.from(body, 'utf8');
  for (let i = 0; i <= buf.length; i++) check(scan([buf.subarray(0, i), buf.subarray(i)]));
  check(scan([...buf].map((b) => Buffer.from([b]))));
}

const chat = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  model: 'gpt-4o-2024-08-06',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        // Look-alikes inside the answer: a string, a tool's arguments, a nested object.
        content: 'Here is JSON: {"usage": {"prompt_tokens": 1}, "model": "fake"} \\" done',
        tool_calls: [
          {
            id: 'c',
            type: 'function',
            function: { name: 'f', arguments: '{"usage":{"completion_tokens":999}}' },
          },
        ],
        usage: { prompt_tokens: 7 },
      },
      finish_reason: 'stop',
    },
  ],
  usage: {
    prompt_tokens: 19,
    completion_tokens: 10,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 3 },
    completion_tokens_details: { reasoning_tokens: 2 },
  },
  system_fingerprint: 'fp',
};

test('reads top-level usage and model wherever the body is cut, and nothing that only looks like them', () => {
  const body = JSON.stringify(chat, null, 1);
  const want = usageFromJson('chat', chat);
  everyCut(body, (s) => assert.deepEqual(usageFromJson('chat', s.result()), want));
  assert.equal(want.usage?.inputTokens, 19);
  assert.equal(want.model, 'gpt-4o-2024-08-06');
});

test('Anthropic messages, Responses and a Responses answer nested under `response`', () => {
  const anthropic = {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4',
    content: [{ type: 'text', text: 'hi "usage"' }],
    usage: { input_tokens: 5, cache_read_input_tokens: 100, output_tokens: 8 },
  };
  everyCut(JSON.stringify(anthropic), (s) =>
    assert.deepEqual(usageFromJson('messages', s.result()), usageFromJson('messages', anthropic)),
  );
  const nested = {
    type: 'response.completed',
    response: {
      model: 'gpt-5',
      output: [{ usage: 1 }],
      usage: { input_tokens: 3, output_tokens: 4 },
    },
  };
  everyCut(JSON.stringify(nested), (s) => {
    const r = usageFromJson('responses', s.result());
    assert.equal(r.usage?.outputTokens, 4);
    assert.equal(r.model, 'gpt-5');
  });
});

test('a 20 MiB answer: usage after the bulk is read, each byte looked at a bounded number of times, little kept', () => {
  const bulk = 'x'.repeat(1024 * 1024);
  const head = Buffer.from('{"object":"list","data":[');
  const item = Buffer.from(`{"embedding":"${bulk}"},`);
  const tail = Buffer.from(
    '{"embedding":"y"}],"model":"text-embedding-3-large","usage":{"prompt_tokens":2000000,"total_tokens":2000000}}',
  );
  const s = new JsonUsageScanner();
  let total = 0;
  for (const c of [head, ...Array<Buffer>(20).fill(item), tail]) {
    // Cut mid-string too, as the network does.
    s.push(c.subarray(0, 7));
    s.push(c.subarray(7));
    total += c.length;
  }
  assert.ok(s.scannedBytes <= 3 * total, `${s.scannedBytes} looks at ${total} bytes`);
  const r = usageFromJson('embeddings', s.result());
  assert.equal(r.usage?.inputTokens, 2_000_000);
  assert.equal(r.model, 'text-embedding-3-large');
});

test('a usage value larger than the bound is not kept; malformed or non-object bodies read nothing', () => {
  const big = JSON.stringify({ usage: { pad: 'p'.repeat(MAX_KEPT_VALUE_BYTES) }, model: 'm' });
  const r = scan([Buffer.from(big)]).result();
  assert.equal(r.usage, undefined);
  assert.equal(r.model, 'm');
  for (const body of [
    '[{"usage":{"prompt_tokens":1}}]',
    'not json',
    '{"usage":',
    '{"usage": {"a": }',
  ]) {
    assert.equal(scan([Buffer.from(body)]).result().usage, undefined, body);
  }
  // A name spelled with an escape is not taken for `usage`.
  assert.equal(scan([Buffer.from('{"\\"usage":{"prompt_tokens":1}}')]).result().usage, undefined);
  // The last of duplicate members wins, as JSON.parse decides.
  const dup = scan([Buffer.from('{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}')]);
  assert.deepEqual(dup.result().usage, { prompt_tokens: 2 });
});

test('deep nesting costs nothing extra and is never mistaken for the top level', () => {
  const deep =
    '{"a":' +
    '['.repeat(100_000) +
    '{"usage":{"prompt_tokens":1}}' +
    ']'.repeat(100_000) +
    ',"usage":{"prompt_tokens":5}}';
  const s = scan([Buffer.from(deep)]);
  assert.deepEqual(s.result().usage, { prompt_tokens: 5 });
});

test('escaped backslashes and quotes, cut anywhere, never end a string early or late', () => {
  const body = {
    a: '\\',
    b: '\\"usage\\":{"prompt_tokens":9}',
    c: '"',
    d: '\\\\\\',
    usage: { prompt_tokens: 3, completion_tokens: 4 },
    e: '}"{',
  };
  everyCut(JSON.stringify(body), (s) => assert.deepEqual(s.result().usage, body.usage));
});

test('only the exact member names are read: prefixes, extensions, case and long names are not', () => {
  const body = JSON.stringify({
    usag: { prompt_tokens: 1 },
    usages: { prompt_tokens: 2 },
    Usage: { prompt_tokens: 3 },
    modelx: 'x',
    model_name_longer_than_sixteen: 'y',
    usage_and_then_some_more_bytes: { prompt_tokens: 4 },
    respons: { usage: { prompt_tokens: 5 } },
  });
  everyCut(body, (s) => assert.deepEqual(s.result(), {}));
  const bigSplit = JSON.stringify({ model: 'm', usage: { pad: 'p'.repeat(MAX_KEPT_VALUE_BYTES) } });
  const half = Buffer.from(bigSplit).subarray(0, 40);
  const rest = Buffer.from(bigSplit).subarray(40);
  assert.deepEqual(scan([half, rest]).result(), { model: 'm' });
});
