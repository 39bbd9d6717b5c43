/**
 * JSON answers larger than Envoy buffers (issue 11, item 4), through the Envoy-exact driver with
 * the router filter as the operator configures it (BUFFERED, 8 MiB per-connection buffer limit,
 * mode override allowed). Before, Envoy answered such an answer with its own empty 500 and the
 * output tokens were never billed; now the caller gets the answer and usage comes from it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtProcFilter, type HeaderList } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
  ROUTER,
  startHarness,
  upstreamFilter,
  waitFor,
  type Harness,
} from './harness.js';

// What the operator emits (operator/translate/to-envoy.ts: per_connection_buffer_limit_bytes).
const BUFFER_LIMIT = 8 * 1024 * 1024;

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(async () => {
  await h.stop();
});

/** An answer of about `bytes` bytes that reports 2M output tokens after its content. */
function bigAnswer(bytes: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: 'chatcmpl-big',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini-2024-07-18',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'token '.repeat(Math.ceil(bytes / 6)) },
          finish_reason: 'length',
        },
      ],
      usage: { prompt_tokens: 14, completion_tokens: 2_000_000, total_tokens: 2_000_014 },
    }),
  );
}

function chunks(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

async function answer(headers: HeaderList, body: Buffer, id: string) {
  const router = new ExtProcFilter(h.client, { ...ROUTER, bufferLimitBytes: BUFFER_LIMIT });
  const routed = continued(
    await router.runRequest(chatHeaders([['x-request-id', id]]), [
      Buffer.from(
        JSON.stringify({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'Write a lot' }],
        }),
      ),
    ]),
  );
  const up = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/openai'));
  continued(
    await up.runRequest(routed.headers, [routed.body], undefined, { dataWithHeaders: true }),
  );
  up.close();
  // Cut as the network does: 64 KiB frames.
  return router.runResponse(headers, chunks(body, 64 * 1024));
}

describe('conformance: JSON answers over the buffer limit', () => {
  for (const [label, withLength] of [
    ['with a content-length', true],
    ['without a content-length', false],
  ] as const) {
    it(`a 9 MiB answer ${label} reaches the caller whole and its usage is billed`, async () => {
      const body = bigAnswer(9 * 1024 * 1024);
      assert.ok(body.length > BUFFER_LIMIT);
      const headers: HeaderList = [
        [':status', '200'],
        ['content-type', 'application/json'],
        ...(withLength ? ([['content-length', String(body.length)]] as HeaderList) : []),
      ];
      const before = accessLines(h).length;
      const r = continued(await answer(headers, body, `big-${label}`));
      assert.deepEqual(r.violations, []);
      assert.equal(r.body.length, body.length);
      assert.ok(r.body.equals(body), 'the caller gets the answer as the provider sent it');
      if (withLength) assert.equal(get(r.headers, 'content-length'), String(body.length));
      await waitFor(() => accessLines(h).length > before);
      const line = accessLines(h).at(-1)!;
      assert.equal(line.status, 200);
      assert.equal(line.tokens.output, 2_000_000);
      assert.equal(line.tokens.input, 14);
      assert.equal(line.tokens.estimated, false);
    });
  }
});
