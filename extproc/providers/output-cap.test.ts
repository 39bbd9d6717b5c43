import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SluiceError } from '../errors.js';
import { withOutputTokenCap } from './output-cap.js';

const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

test('no cap in the request: the backend API own field is injected', () => {
  assert.deepEqual(withOutputTokenCap('chat', 'openai', chat, 500), {
    ...chat,
    max_completion_tokens: 500,
  });
  assert.deepEqual(withOutputTokenCap('chat', 'azure-openai', chat, 500), {
    ...chat,
    max_completion_tokens: 500,
  });
  // Ollama and LM Studio read only max_tokens; vLLM and SGLang read either.
  assert.deepEqual(withOutputTokenCap('chat', 'openai-compatible', chat, 500), {
    ...chat,
    max_tokens: 500,
  });
  assert.deepEqual(withOutputTokenCap('completions', 'openai', { prompt: 'x' }, 7), {
    prompt: 'x',
    max_tokens: 7,
  });
  assert.deepEqual(withOutputTokenCap('responses', 'openai', { input: 'x' }, 7), {
    input: 'x',
    max_output_tokens: 7,
  });
  assert.deepEqual(withOutputTokenCap('messages', 'anthropic', { messages: [] }, 7), {
    messages: [],
    max_tokens: 7,
  });
});

test('a cap within the reservation is left alone; the input is never mutated', () => {
  const body = { ...chat, max_completion_tokens: 100 };
  assert.equal(withOutputTokenCap('chat', 'openai', body, 100), undefined);
  assert.equal(withOutputTokenCap('chat', 'openai-compatible', body, 4096), undefined);
  assert.equal(withOutputTokenCap('messages', 'anthropic', { max_tokens: 1 }, 1), undefined);
  const big = { ...chat, max_tokens: 9000 };
  const out = withOutputTokenCap('chat', 'openai', big, 4096);
  assert.equal(out?.max_tokens, 4096);
  assert.equal(big.max_tokens, 9000);
});

test('every spelling a server may read is clamped, not only the one the reservation counted', () => {
  // The reservation counts max_completion_tokens (1); a server that reads only max_tokens must
  // not be handed a million.
  const out = withOutputTokenCap(
    'chat',
    'openai-compatible',
    { ...chat, max_completion_tokens: 1, max_tokens: 1_000_000 },
    1,
  );
  assert.deepEqual(out, { ...chat, max_completion_tokens: 1, max_tokens: 1 });
});

test('values a server might read as "no limit" are replaced', () => {
  for (const v of [null, 0, -1, 2.5, '100', 1e12]) {
    const out = withOutputTokenCap('messages', 'anthropic', { max_tokens: v }, 64);
    assert.deepEqual(out, { max_tokens: 64 }, String(v));
  }
});

test('embeddings are never changed; a backend without a known output limit is refused', () => {
  assert.equal(withOutputTokenCap('embeddings', 'openai', { input: 'x' }, 10), undefined);
  assert.throws(
    () => withOutputTokenCap('chat', 'aws-bedrock', chat, 10),
    (e: unknown) => e instanceof SluiceError && e.code === 'unsupported_backend',
  );
  assert.throws(() => withOutputTokenCap('chat', 'anthropic', chat, 10), SluiceError);
});
