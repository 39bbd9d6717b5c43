// The upstream filter's response phase for a translated attempt, over the real gRPC server and a
// driver that speaks ext_proc exactly as Envoy does (strict: any protocol violation fails): the
// request-headers answer turns the response headers on for a translated attempt only, the
// response-headers answer picks BUFFERED or STREAMED, content-length stays right, every streamed
// chunk gets its one answer, and the router filter then reads the caller's own format.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtProcFilter, type HeaderList } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  chatHeaders,
  continued,
  get,
  ROUTER,
  split,
  startHarness,
  upstreamFilter,
  type Harness,
} from './harness.js';

const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: translation-1
backends:
  - name: openai
    cluster: c-openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: claude
    cluster: c-claude
    provider: anthropic
    credential: { value: sk-ant-backend-0002 }
routes:
  - name: claude
    models: [{ exact: claude-x }]
    backends: [{ name: claude }]
  - name: gpt
    models: [{ exact: gpt-x }]
    backends: [{ name: openai }]
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG);
});
after(async () => {
  await h.stop();
});

const STRICT = { strict: true, allowModeOverride: true };

async function attempt(body: object, cluster: string, backend: string) {
  const router = new ExtProcFilter(h.client, { ...ROUTER, strict: true });
  const r = continued(await router.runRequest(chatHeaders(), [Buffer.from(JSON.stringify(body))]));
  const up = new ExtProcFilter(h.client, { ...upstreamFilter(cluster, backend), ...STRICT });
  const sent = continued(
    await up.runRequest(
      r.headers,
      [r.body.length > 0 ? r.body : Buffer.from(JSON.stringify(body))],
      undefined,
      {
        dataWithHeaders: true,
      },
    ),
  );
  return { router, up, sent };
}

const ev = (type: string, d: object): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...d })}\n\n`;

describe('conformance: a translated attempt’s response in the upstream filter', () => {
  it('a same-API attempt leaves the response alone: nothing more is asked of the extproc', async () => {
    const { router, up, sent } = await attempt(
      { model: 'gpt-x', messages: [{ role: 'user', content: 'hi' }] },
      'c-openai',
      'openai',
    );
    assert.equal(get(sent.headers, ':path'), '/v1/chat/completions');
    assert.equal(up.response.sendHeaders, false);
    up.close();
    router.close();
  });

  it('JSON: BUFFERED, translated, content-length restated; the router reads OpenAI JSON', async () => {
    const { router, up, sent } = await attempt(
      { model: 'claude-x', messages: [{ role: 'user', content: 'hi' }] },
      'c-claude',
      'claude',
    );
    assert.equal(get(sent.headers, ':path'), '/v1/messages');
    assert.equal(get(sent.headers, 'x-api-key'), 'sk-ant-backend-0002');
    assert.equal(JSON.parse(sent.body.toString()).max_tokens, 4096);
    assert.equal(up.response.sendHeaders, true, 'the request-headers answer turned responses on');
    const answer = Buffer.from(
      JSON.stringify({
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-x',
        content: [{ type: 'text', text: 'grüß dich' }],
        stop_reason: 'end_turn',
        usage: { input_tokens: 3, output_tokens: 2 },
      }),
    );
    const res: HeaderList = [
      [':status', '200'],
      ['content-type', 'application/json'],
      ['content-length', String(answer.length)],
    ];
    const out = continued(await up.runResponse(res, split(answer, 3)));
    assert.deepEqual(up.violations, []);
    const json = JSON.parse(out.body.toString()) as {
      object: string;
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    assert.equal(json.object, 'chat.completion');
    assert.equal(json.choices[0]!.message.content, 'grüß dich');
    assert.equal(get(out.headers, 'content-length'), String(out.body.length));
    const toCaller = continued(await router.runResponse(out.headers, [out.body]));
    assert.deepEqual(router.violations, []);
    assert.equal(JSON.parse(toCaller.body.toString()).usage.completion_tokens, 2);
    up.close();
    router.close();
  });

  it('an error: BUFFERED, in the caller’s error format, with the backend’s status', async () => {
    const { router, up } = await attempt(
      { model: 'claude-x', messages: [{ role: 'user', content: 'hi' }] },
      'c-claude',
      'claude',
    );
    const err = Buffer.from(
      '{"type":"error","error":{"type":"overloaded_error","message":"busy"}}',
    );
    const out = continued(
      await up.runResponse(
        [
          [':status', '529'],
          ['content-type', 'application/json'],
          ['content-length', String(err.length)],
        ],
        [err],
      ),
    );
    assert.deepEqual(up.violations, []);
    assert.equal(get(out.headers, ':status'), '529');
    assert.deepEqual(JSON.parse(out.body.toString()), {
      error: { message: 'busy', type: 'server_error', param: null, code: 'overloaded_error' },
    });
    up.close();
    router.close();
  });

  it('SSE: STREAMED, one answer per chunk, events translated as they complete', async () => {
    const { router, up } = await attempt(
      { model: 'claude-x', messages: [{ role: 'user', content: 'hi' }], stream: true },
      'c-claude',
      'claude',
    );
    const stream = Buffer.from(
      ev('message_start', {
        message: {
          id: 'm',
          model: 'claude-x',
          content: [],
          usage: { input_tokens: 4, output_tokens: 1 },
        },
      }) +
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) +
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'naïve ' } }) +
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'café' } }) +
        ev('content_block_stop', { index: 0 }) +
        ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }) +
        ev('message_stop', {}),
    );
    const out = continued(
      await up.runResponse(
        [
          [':status', '200'],
          ['content-type', 'text/event-stream'],
        ],
        split(stream, 9),
      ),
    );
    assert.deepEqual(up.violations, []);
    const text = out.body
      .toString()
      .split('\n\n')
      .filter((b) => b.startsWith('data: {'))
      .map((b) => JSON.parse(b.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? '')
      .join('');
    assert.equal(text, 'naïve café');
    assert.ok(out.body.toString().endsWith('data: [DONE]\n\n'));
    // The router filter reads it as an OpenAI stream (it drops the usage chunk it forced).
    const toCaller = continued(
      await router.runResponse(
        [
          [':status', '200'],
          ['content-type', 'text/event-stream'],
        ],
        split(out.body, 5),
      ),
    );
    assert.deepEqual(router.violations, []);
    assert.doesNotMatch(toCaller.body.toString(), /"usage":\{/);
    up.close();
    router.close();
  });
});
