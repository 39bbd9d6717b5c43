import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type * as O200k from 'gpt-tokenizer/encoding/o200k_base';
import {
  MAX_PIECE_CHARS,
  observeMerges,
  estimateRequestInputTokens,
  estimateRequestTokens,
  estimateTokens,
  estimateUsage,
  inputTokensOver,
  maxOutputTokens,
  promptText,
  tokenizerLoadMs,
  tokenizerTableBytes,
  warmTokenizer,
} from './estimate.js';

// Must stay the first test: it checks that importing the module did not load the tokenizer.
test('the tokenizer is loaded lazily, on first use', () => {
  assert.equal(tokenizerLoadMs(), undefined);
  const ms = warmTokenizer();
  assert.ok(ms > 0);
  assert.equal(tokenizerLoadMs(), ms);
  assert.equal(warmTokenizer(), 0);
});

test('estimateTokens counts o200k tokens; special-token text is plain text', () => {
  assert.equal(estimateTokens(''), 0);
  assert.equal(estimateTokens('hello world'), 2);
  assert.ok(estimateTokens('a <|endoftext|> b') > 3);
});

// The package's own encoder, loaded only here: the reference our merge must agree with.
const reference = createRequire(import.meta.url)(
  'gpt-tokenizer/encoding/o200k_base',
) as typeof O200k;
const AS_TEXT = { disallowedSpecial: new Set<string>() };

function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

function randomText(r: () => number, length: number, alphabet: string[]): string {
  let s = '';
  while (s.length < length) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}

test('estimateTokens agrees with the package encoder token for token on ordinary text', () => {
  const r = rng(42);
  const words = [
    'The',
    ' quick',
    ' brown',
    ' fox',
    "'s",
    " don't",
    ' Straße',
    ' naïve',
    ' 東京',
    '都',
    ' привет',
    ' мир',
    ' 🚀',
    '👩‍💻',
    ' café',
    '\n',
    '\n\n',
    '\t',
    '    ',
    '  ',
    '123',
    '4567',
    '3.14',
    ' HTTP',
    'Request',
    'camelCase',
    'snake_case',
    '(){}',
    ' => ',
    '/**',
    ' */',
    '<|endoftext|>',
    ' العربية',
    ' हिन्दी',
    'ÅÄÖ',
    ' ЁЖЗ',
    '\u0301',
    '!!!',
    '...',
    ' --',
    '—',
  ];
  const samples = [
    'hello world',
    'The quick brown fox jumps over the lazy dog. '.repeat(20),
    'function f(x: number): number {\n  return x * 2; // double\n}\n'.repeat(10),
    ' '.repeat(MAX_PIECE_CHARS) + 'x',
    '-'.repeat(MAX_PIECE_CHARS),
    '\n'.repeat(100) + 'end',
    '1234567890'.repeat(12),
    ...Array.from({ length: 40 }, () => randomText(r, 400, words)),
    // Any BMP code point but surrogates, so pieces of every script and byte length appear.
    ...Array.from({ length: 20 }, () =>
      randomText(
        r,
        120,
        Array.from({ length: 2000 }, () => {
          const cp = 0x20 + Math.floor(r() * 0xd7e0);
          return String.fromCodePoint(cp);
        }),
      ),
    ),
  ];
  for (const s of samples) {
    assert.equal(
      estimateTokens(s),
      reference.countTokens(s, AS_TEXT),
      JSON.stringify(s.slice(0, 60)),
    );
  }
});

test('estimation work is linear: every piece merged is at most MAX_PIECE_CHARS long, each byte merged once', () => {
  const seen: number[] = [];
  observeMerges((bytes) => seen.push(bytes.length));
  try {
    const r = rng(7);
    const inputs = [
      'a'.repeat(200_000),
      '['.repeat(200_000),
      ' '.repeat(200_000) + 'x',
      '!' + randomText(r, 200_000, ['\n', '/']),
      randomText(r, 200_000, [...'abcdefghijklmnopqrstuvwxyz']),
      randomText(r, 50_000, ['a\u0301', 'e\u0301', 'o\u0308']),
      '😀'.repeat(50_000),
    ];
    for (const text of inputs) {
      seen.length = 0;
      const n = estimateTokens(text);
      const bytes = Buffer.byteLength(text);
      assert.ok(n > 0);
      // The merge ran (128 spaces are one token, so that input needs none): the bound is real.
      if (!text.startsWith(' ')) assert.ok(seen.length > 0, 'no piece was merged');
      // A UTF-16 unit is at most 3 UTF-8 bytes (a surrogate pair, 2 units, is 4).
      assert.ok(
        Math.max(...seen) <= 3 * MAX_PIECE_CHARS,
        `${Math.max(...seen)} bytes merged at once`,
      );
      const merged = seen.reduce((a, b) => a + b, 0);
      assert.ok(merged <= bytes, `${merged} bytes merged for ${bytes} of input`);
    }
  } finally {
    observeMerges(undefined);
  }
});

test('the merge cache keeps no caller text alive: 200 prompts of 64 KiB leave the heap as it was', () => {
  // A piece is a slice of its text; kept as a cache key it kept the whole text (issue 16).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const r = rng(11);
  const word = (): string =>
    ' ' +
    Array.from({ length: 14 + Math.floor(r() * 6) }, () => 'qxzjvkw'[Math.floor(r() * 7)]).join('');
  const prompt = (): string => {
    const words = Array.from({ length: 20 }, word);
    return words.join('the ') + 'the '.repeat(16 * 1024);
  };
  warmTokenizer();
  gc();
  const before = process.memoryUsage().heapUsed;
  let n = 0;
  for (let i = 0; i < 200; i++) n += estimateTokens(prompt());
  assert.ok(n > 200 * 16 * 1024);
  gc();
  const grew = process.memoryUsage().heapUsed - before;
  // 200 × 64 KiB is 12.5 MiB of text; the cache's own keys are ~4,000 short strings.
  assert.ok(grew < 3 * 1024 * 1024, `the heap grew by ${(grew / 1048576).toFixed(1)} MiB`);
});

test('a long piece is counted in parts: at most one extra token per part, never fewer', () => {
  const text = 'a'.repeat(10_000);
  const exact = reference.countTokens(text, AS_TEXT);
  const n = estimateTokens(text);
  assert.ok(n >= exact && n <= exact + Math.ceil(10_000 / MAX_PIECE_CHARS), `${n} vs ${exact}`);
  // A surrogate pair is never cut in two: a run of emoji counts no replacement bytes.
  const emoji = '😀'.repeat(1_000);
  const e = estimateTokens(emoji);
  const exactEmoji = reference.countTokens(emoji, AS_TEXT);
  assert.ok(
    e >= exactEmoji && e <= exactEmoji + Math.ceil(2_000 / MAX_PIECE_CHARS),
    `${e} vs ${exactEmoji}`,
  );
});

const IMAGE_DATA = 'data:image/png;base64,' + 'A'.repeat(5000);

test('promptText: OpenAI chat messages, parts, tool calls, tool results and tool definitions', () => {
  const body = {
    model: 'gpt-4o',
    messages: [
      { role: 'system', content: 'You are terse.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in this image?' },
          { type: 'image_url', image_url: { url: IMAGE_DATA } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'lookup', arguments: '{"q":"cat"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'A cat.' },
    ],
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
  };
  const text = promptText('chat', body);
  for (const s of [
    'You are terse.',
    'What is in this image?',
    '{"q":"cat"}',
    'A cat.',
    '"parameters"',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('base64'), 'image bytes are not text');
  assert.ok(!text.includes('call_1'), 'ids are not model input');
  const n = estimateRequestInputTokens('chat', body);
  // 4 messages x 3 + 3 priming + an image estimate + the text.
  assert.ok(n > estimateTokens(text) + 15 + 500, String(n));
});

test('promptText: Responses input string or items, and instructions', () => {
  assert.equal(
    promptText('responses', { instructions: 'Be brief.', input: 'Tell me a joke' }),
    'Be brief.\nTell me a joke',
  );
  const text = promptText('responses', {
    input: [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'Weather?' },
          { type: 'input_image', image_url: IMAGE_DATA },
        ],
      },
      { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{"city":"Oslo"}' },
      { type: 'function_call_output', call_id: 'c1', output: '{"temp":3}' },
      { role: 'assistant', content: [{ type: 'output_text', text: 'It is 3°C.' }] },
      { role: 'user', content: 'Thanks' },
    ],
    tools: [{ type: 'function', name: 'weather', parameters: {} }],
  });
  for (const s of [
    'Weather?',
    'weather',
    '{"city":"Oslo"}',
    '{"temp":3}',
    'It is 3°C.',
    'Thanks',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('base64'));
});

test('promptText: Anthropic system, blocks, tool_use input, tool_result content, tools', () => {
  const text = promptText('messages', {
    system: [{ type: 'text', text: 'You are Claude.', cache_control: { type: 'ephemeral' } }],
    messages: [
      {
        role: 'user',
        content: [
          {
            type: 'image',
            source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo' },
          },
          { type: 'text', text: 'Describe' },
        ],
      },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'zoom', input: { level: 2 } }],
      },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: [{ type: 'text', text: 'zoomed' }],
          },
        ],
      },
      { role: 'user', content: 'plain string' },
    ],
    tools: [{ name: 'zoom', input_schema: { type: 'object' } }],
  });
  for (const s of [
    'You are Claude.',
    'Describe',
    'zoom',
    '{"level":2}',
    'zoomed',
    'plain string',
    'input_schema',
  ]) {
    assert.ok(text.includes(s), s);
  }
  assert.ok(!text.includes('iVBORw0KGgo'));
  const rag = promptText('messages', {
    messages: [
      {
        role: 'user',
        content: [
          {
            type: 'search_result',
            source: 'https://docs.example/a',
            title: 'Result title',
            content: [{ type: 'text', text: 'result body' }],
          },
          {
            type: 'document',
            source: { type: 'text', media_type: 'text/plain', data: 'doc body' },
            title: 'Doc title',
            context: 'doc context',
          },
        ],
      },
    ],
  });
  for (const s of [
    'Result title',
    'result body',
    'docs.example',
    'doc body',
    'Doc title',
    'doc context',
  ]) {
    assert.ok(rag.includes(s), s);
  }
  assert.equal(promptText('messages', { system: 'sys', messages: [] }), 'sys');
});

test('completions and embeddings: strings, string arrays and token-id arrays', () => {
  assert.equal(promptText('completions', { prompt: ['a', 'b'] }), 'a\nb');
  assert.equal(estimateRequestInputTokens('completions', { prompt: [1, 2, 3] }), 3);
  assert.equal(
    estimateRequestInputTokens('embeddings', {
      input: [
        [1, 2, 3],
        [4, 5],
      ],
    }),
    5,
  );
  assert.equal(estimateRequestInputTokens('embeddings', { input: 'hello world' }), 2);
  assert.equal(estimateRequestInputTokens('embeddings', { input: ['hello world', 'hello'] }), 3);
  assert.equal(estimateRequestInputTokens('chat', 'not an object'), 0);
});

test('inputTokensOver: the count when over the limit, undefined when not; no tokenizing when the bytes cannot be over', () => {
  const r = rng(23);
  const alphabet = [
    ...'abcXYZ019 .,;:!?-_/\\()[]{}<>@#',
    '\n',
    'é',
    'ж',
    '中',
    '🙂',
    '\u0001',
    '\u0301',
  ];
  const bodies: Record<string, unknown>[] = [];
  for (let k = 0; k < 60; k++) {
    const text = randomText(r, 1 + Math.floor(r() * 300), alphabet);
    bodies.push({ messages: [{ role: 'user', content: text }] });
  }
  // Where the count is its bytes (every byte its own token), the bound is tight.
  bodies.push({ messages: [{ role: 'user', content: '\u0001\u0002\u0003' }] });
  bodies.push({
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'user', content: '' },
    ],
  });
  bodies.push({ messages: [] });
  for (const body of bodies) {
    const n = estimateRequestInputTokens('chat', body);
    const bytes = Buffer.byteLength(promptText('chat', body));
    for (const limit of [0, 1, n - 1, n, n + 1, bytes + 30, 1e9]) {
      if (limit < 0) continue;
      assert.equal(
        inputTokensOver('chat', body, limit),
        n > limit ? n : undefined,
        `${n} vs ${limit}`,
      );
    }
  }
  // Fresh pieces that need merging: the full count merges them, the bound does not look.
  const fresh = Array.from({ length: 50 }, () => randomText(r, 12, [...'qxzjvkwy'])).join(' ');
  const body = { messages: [{ role: 'user', content: fresh }] };
  const seen: string[] = [];
  observeMerges((b) => seen.push(b));
  try {
    assert.equal(inputTokensOver('chat', body, 1e6), undefined);
    assert.equal(seen.length, 0);
    assert.equal(inputTokensOver('chat', body, 3), estimateRequestInputTokens('chat', body));
    assert.ok(seen.length > 0);
  } finally {
    observeMerges(undefined);
  }
});

test('estimateRequestTokens adds the output cap per choice', () => {
  const input = estimateRequestInputTokens('chat', { messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(
    estimateRequestTokens('chat', {
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 100,
      n: 2,
    }),
    input + 200,
  );
  assert.equal(
    estimateRequestTokens('chat', {
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 100,
      max_completion_tokens: 50,
    }),
    input + 50,
  );
  assert.equal(
    estimateRequestTokens('chat', { messages: [{ role: 'user', content: 'hi' }] }),
    input,
  );
  assert.equal(
    estimateRequestTokens(
      'chat',
      { messages: [{ role: 'user', content: 'hi' }] },
      { defaultMaxOutputTokens: 4096 },
    ),
    input + 4096,
  );
  assert.equal(maxOutputTokens('responses', { max_output_tokens: 64 }), 64);
  assert.equal(maxOutputTokens('messages', { max_tokens: 1024 }), 1024);
  assert.equal(estimateRequestTokens('embeddings', { input: 'hello world', max_tokens: 9 }), 2);
});

test('estimateUsage: estimated flag, truncated-text scaling, reported partial counts win', () => {
  const body = { messages: [{ role: 'user', content: 'Say hello' }] };
  const u = estimateUsage('chat', body, 'hello world');
  assert.equal(u.estimated, true);
  assert.equal(u.outputTokens, 2);
  assert.equal(u.inputTokens, estimateRequestInputTokens('chat', body));
  assert.equal(u.totalTokens, u.inputTokens + 2);

  const scaled = estimateUsage('chat', body, 'hello world', { outputTextBytes: 110 });
  assert.equal(scaled.outputTokens, 20);

  const reported = {
    inputTokens: 2125,
    outputTokens: 1,
    totalTokens: 2126,
    cachedInputTokens: 2000,
    cacheCreationInputTokens: 100,
    reasoningTokens: 0,
    estimated: false,
  };
  const p = estimateUsage('messages', body, 'hello world', { reported });
  assert.deepEqual(p, { ...reported, outputTokens: 2, totalTokens: 2127, estimated: true });

  assert.equal(estimateUsage('embeddings', { input: 'hello world' }, '').outputTokens, 0);
});

test('estimateTokens agrees with the package encoder on a varied corpus (sentences, source, markup, scripts)', () => {
  const root = new URL('../../', import.meta.url);
  const texts: string[] = [];
  // People's sentences: names, addresses, phone numbers, dates in many locales.
  for (const line of readFileSync(
    new URL('test/fixtures/pii/external/presidio-evaluator.jsonl', root),
    'utf8',
  ).split('\n')) {
    if (line) texts.push((JSON.parse(line) as { text: string }).text);
  }
  // Source code, markdown and YAML, in 2 KiB pieces.
  for (const f of ['README.md', 'extproc/usage/estimate.ts', 'charts/sluice/values.yaml']) {
    const t = readFileSync(new URL(f, root), 'utf8');
    for (let i = 0; i < t.length; i += 2048) texts.push(t.slice(i, i + 2048));
  }
  // Mixed scripts, symbols, emoji, whitespace runs and CRLF: every byte length of UTF-8.
  const r = rng(11);
  const alphabet = [
    ...'abcXYZ019 .,;:!?-_/\\\'"()[]{}<>@#$%^&*+=~`|',
    '\r\n',
    '\n\n',
    '\t',
    '   ',
    'é',
    'ß',
    'ж',
    'ع',
    'क',
    '中',
    'の',
    '한',
    '🙂',
    '🇩🇪',
    '\u200b',
    '\u0301',
    // Not U+FEFF: its bytes are one token (rank 5574), but the package's encoder decodes them
    // with a TextDecoder that drops a byte-order mark, and counts 2.
  ];
  for (let k = 0; k < 300; k++) texts.push(randomText(r, 20 + Math.floor(r() * 400), alphabet));
  assert.ok(texts.length > 3300);
  let total = 0;
  for (const s of texts) {
    const n = estimateTokens(s);
    total += n;
    assert.equal(n, reference.countTokens(s, AS_TEXT), JSON.stringify(s.slice(0, 80)));
  }
  assert.ok(total > 100_000, `${total} tokens`);
});

test('the vocabulary is read from the .tiktoken file into a few MiB of typed arrays, not the package table', () => {
  warmTokenizer();
  const bytes = tokenizerTableBytes();
  // ~4.5 MiB of arrays for 200k tokens; as a Map of strings it was ~20 MiB of V8 heap.
  assert.ok(bytes > 2 * 1024 * 1024 && bytes < 6 * 1024 * 1024, `${bytes} bytes`);
  // The package's JavaScript table (a 2.4 MB array literal, ~70 MiB of RSS to parse) is never
  // loaded by estimation. This file's reference encoder loads it, so ask a fresh process.
  const probe = `
    import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
    import { estimateTokens } from ${JSON.stringify(new URL('./estimate.ts', import.meta.url).href)};
    const req = createRequire(import.meta.url);
    const n = estimateTokens('hello world');
    const table = req.resolve('gpt-tokenizer/bpeRanks/o200k_base');
    console.log(JSON.stringify({ n, loaded: table in req.cache }));
  `;
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', probe],
    { cwd: new URL('../../', import.meta.url), encoding: 'utf8' },
  );
  assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { n: 2, loaded: false });
});
