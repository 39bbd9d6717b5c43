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
  CONFIG,
  continued,
  get,
  ROUTER,
  startHarness,
  upstreamFilter,
  waitFor,
  type Harness,
} from './harness.js';

// What the operator emits (operator/compile/to-envoy.ts: per_connection_buffer_limit_bytes).
const BUFFER_LIMIT = 8 * 1024 * 1024;

// The default config plus a masking route whose answers are held up to 1 MiB to be restored.
const MASKED_LIMIT = 1024 * 1024;
const CONFIG_WITH_MASKING = `${CONFIG.replace('maxRequestBodyBytes: 1048576', `maxRequestBodyBytes: 1048576\n  maxResponseBodyBytes: ${MASKED_LIMIT}`)}
  - name: masked
    models: [{ exact: gpt-masked }]
    backends: [{ name: openai }]
    policy: { name: pii, masking: {} }
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG_WITH_MASKING);
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

/** One exchange; `sent` is the request body the provider received. */
async function exchange(
  headers: HeaderList,
  answerOf: (sent: string) => Buffer,
  id: string,
  request: { model: string; content: string } = { model: 'gpt-4o-mini', content: 'Write a lot' },
) {
  const router = new ExtProcFilter(h.client, { ...ROUTER, bufferLimitBytes: BUFFER_LIMIT });
  const routed = continued(
    await router.runRequest(chatHeaders([['x-request-id', id]]), [
      Buffer.from(
        JSON.stringify({
          model: request.model,
          messages: [{ role: 'user', content: request.content }],
        }),
      ),
    ]),
  );
  const up = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/openai'));
  const sent = continued(
    await up.runRequest(routed.headers, [routed.body], undefined, { dataWithHeaders: true }),
  );
  up.close();
  const body = answerOf(sent.body.toString('utf8'));
  // Cut as the network does: 64 KiB frames.
  return router.runResponse(headers, chunks(body, 64 * 1024));
}

async function answer(headers: HeaderList, body: Buffer, id: string) {
  return exchange(headers, () => body, id);
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

  const EMAIL = 'dana.whitfield@example.org';
  const masked = { model: 'gpt-masked', content: `Write to ${EMAIL} please` };
  const withPlaceholder = (sent: string, pad: number) => {
    const placeholder = /\[EMAIL_\d+\]/.exec(sent)?.[0];
    assert.ok(placeholder, `the provider saw a placeholder: ${sent}`);
    return Buffer.from(
      JSON.stringify({
        id: 'chatcmpl-m',
        object: 'chat.completion',
        model: 'gpt-4o-mini-2024-07-18',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: `Sent to ${placeholder}.${' '.repeat(pad)}` },
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: 20, completion_tokens: 300_000, total_tokens: 300_020 },
      }),
    );
  };

  it('a masking route: an answer of unknown length is held, restored and sent without a stale length', async () => {
    const headers: HeaderList = [
      [':status', '200'],
      ['content-type', 'application/json'],
    ];
    const before = accessLines(h).length;
    const r = continued(
      await exchange(headers, (sent) => withPlaceholder(sent, 200 * 1024), 'masked-small', masked),
    );
    assert.deepEqual(r.violations, []);
    assert.equal(get(r.headers, 'content-length'), undefined);
    const got = JSON.parse(r.body.toString('utf8')) as {
      choices: { message: { content: string } }[];
    };
    assert.match(
      got.choices[0]!.message.content,
      new RegExp(`^Sent to ${EMAIL.replace('.', '\\.')}\\.`),
    );
    await waitFor(() => accessLines(h).length > before);
    assert.equal(accessLines(h).at(-1)!.tokens.output, 300_000);
  });

  it('a masking route: an answer over its hold limit goes on unrestored, whole, and billed', async () => {
    const headers: HeaderList = [
      [':status', '200'],
      ['content-type', 'application/json'],
    ];
    const before = accessLines(h).length;
    let sentAnswer = Buffer.alloc(0);
    const r = continued(
      await exchange(
        headers,
        (sent) => (sentAnswer = withPlaceholder(sent, 2 * MASKED_LIMIT)),
        'masked-big',
        masked,
      ),
    );
    assert.deepEqual(r.violations, []);
    assert.ok(r.body.equals(sentAnswer), 'the answer goes on as the provider sent it');
    await waitFor(() => accessLines(h).length > before);
    const line = accessLines(h).at(-1)!;
    assert.equal(line.tokens.output, 300_000);
    assert.ok(JSON.stringify(line).includes('response_unscanned'), JSON.stringify(line.verdicts));
  });
});
