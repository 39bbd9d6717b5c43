import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ExtProcFilter,
  type HeaderList,
  type PhaseResult,
} from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  get,
  ROUTER,
  sendRequest,
  split,
  upstreamFilter,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

// Conversations belong to authenticated callers: the `conversation` route checks virtual keys.
const KEYS = { alice: 'sk-sluice-alice-mask-0001', bob: 'sk-sluice-bob-mask-0002' };
const sha = (k: string): string => createHash('sha256').update(k).digest('hex');
const as = (key: string): HeaderList => [['authorization', `Bearer ${key}`]];

const MASKING_CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: masking-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
  - name: vllm
    cluster: sluice/backend/vllm
    provider: openai-compatible
    modelOverride: meta-llama/Llama-3.1-8B-Instruct
  - name: anthropic
    cluster: sluice/backend/anthropic
    provider: anthropic
    credential: { value: sk-ant-backend-0003 }
consumers:
  - { name: alice, keyHashes: ['${sha(KEYS.alice)}'] }
  - { name: bob, keyHashes: ['${sha(KEYS.bob)}'] }
policies:
  - { name: keys, identity: { keys: {} } }
routes:
  - name: conversation
    models: [{ exact: gpt-conv }]
    backends: [{ name: openai }]
    governance: keys
    policy: { name: pii, masking: {} }
  - name: masked
    models: [{ exact: gpt-masked }]
    backends: [{ name: openai }]
    policy: { name: pii, masking: { systemNote: true } }
  - name: override
    models: [{ exact: llama-masked }]
    backends: [{ name: vllm }]
    policy: { name: pii, masking: {} }
  - name: restore-only
    models: [{ exact: gpt-restore }]
    backends: [{ name: openai }]
    policy: { name: restore, masking: { scanResponses: false } }
  - name: blocking
    models: [{ exact: gpt-block }]
    backends: [{ name: openai }]
    policy: { name: strict, masking: { actions: { CREDIT_CARD: block, US_SSN: block } } }
  - name: shadow
    models: [{ exact: gpt-shadow }]
    backends: [{ name: openai }]
    policy: { name: watch, mode: shadow, masking: { actions: { CREDIT_CARD: block } } }
  - name: mixed
    models: [{ exact: gpt-mixed }]
    backends: [{ name: openai }]
    policy:
      name: mixed
      masking:
        actions: { EMAIL: hash, CREDIT_CARD: partial, IP_ADDRESS: redact, PHONE: alert }
        hashKey: { value: a-configured-hash-key-0123456789 }
  - name: closed
    models: [{ exact: gpt-closed }]
    backends: [{ name: openai }]
    policy: { name: fragile, masking: {} }
  - name: open
    models: [{ exact: gpt-open }]
    backends: [{ name: openai }]
    policy: { name: lenient, failureMode: open, masking: {} }
  - name: claude
    models: [{ prefix: 'claude-' }]
    backends: [{ name: anthropic }]
    policy: { name: pii, masking: {} }
`;

let h: Harness;
before(async () => {
  h = await startHarness(MASKING_CONFIG);
});
after(async () => {
  await h.stop();
});

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const PHONE = '+1 415 555 0132';

const JSON_HEADERS: HeaderList = [
  [':status', '200'],
  ['content-type', 'application/json'],
];
const SSE_HEADERS: HeaderList = [
  [':status', '200'],
  ['content-type', 'text/event-stream'],
];

function withLength(body: object, extra: HeaderList = [], path?: string): [HeaderList, Buffer] {
  const buf = Buffer.from(JSON.stringify(body));
  const own = new Set(extra.map(([k]) => k));
  const base = chatHeaders([['content-length', String(buf.length)]], path).filter(
    ([k]) => !own.has(k),
  );
  return [[...base, ...extra], buf];
}

async function send(
  body: object,
  opts: { extra?: HeaderList; path?: string; cluster?: string } = {},
): Promise<{
  router: ExtProcFilter;
  routed: PhaseResult;
  sent: string;
  upstreamHeaders: HeaderList;
}> {
  const [headers, buf] = withLength(body, opts.extra, opts.path);
  const r = await sendRequest(h, headers, buf, opts.cluster ?? 'sluice/backend/openai');
  if (r.routed.kind !== 'continue') {
    return { router: r.router, routed: r.routed, sent: '', upstreamHeaders: [] };
  }
  assert.deepEqual(r.router.violations, [], 'the router answers as Envoy requires');
  const up = continued(r.upstream);
  return {
    router: r.router,
    routed: r.routed,
    sent: up.body.toString('utf8'),
    upstreamHeaders: up.headers,
  };
}

/** The chat answer `content` as the client receives it through `router`. */
async function answer(router: ExtProcFilter, content: string): Promise<string> {
  const res = continued(
    await router.runResponse(JSON_HEADERS, [
      Buffer.from(
        JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content } }] }),
      ),
    ]),
  );
  return (JSON.parse(res.body.toString()) as { choices: { message: { content: string } }[] })
    .choices[0]!.message.content;
}

function placeholders(text: string): string[] {
  return text.match(/\[[A-Z_]+_\d+\]/g) ?? [];
}

async function streamAll(router: ExtProcFilter, chunks: Buffer[]): Promise<string> {
  const s = router.streamResponse(SSE_HEADERS);
  await s.headers;
  const got: Buffer[] = [];
  const reading = (async () => {
    for await (const c of s) got.push(c.data);
  })();
  for (const c of chunks.slice(0, -1)) s.write(c);
  s.end(chunks.at(-1));
  await reading;
  assert.equal((await s.result).kind, 'continue');
  assert.deepEqual(router.violations, []);
  return Buffer.concat(got).toString('utf8');
}

function cut(text: string, size: number): Buffer[] {
  const b = Buffer.from(text);
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

describe('conformance: masking', () => {
  it('masks chat messages, tool calls and tool results before the provider, and restores the JSON answer', async () => {
    const body = {
      model: 'gpt-masked',
      messages: [
        { role: 'system', content: `Support desk. Escalations to ${EMAIL}.` },
        {
          role: 'user',
          content: [
            { type: 'text', text: `My card ${CARD} was charged twice; mail me at ${EMAIL}` },
            {
              type: 'image_url',
              image_url: { url: 'https://img.example.com/jane.doe@example.com.png' },
            },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: {
                name: 'lookup',
                arguments: JSON.stringify({ email: EMAIL, note: 'x"y' }),
              },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: `Customer phone ${PHONE}` },
      ],
    };
    const { router, sent } = await send(body);
    // An image URL is text the provider reads and fetches: scanned like the rest.
    assert.ok(!sent.includes(EMAIL) && !sent.includes('jane.doe'), 'nothing of the email leaves');
    assert.ok(!sent.includes(CARD) && !sent.includes(PHONE));
    const up = JSON.parse(sent) as {
      model: string;
      messages: {
        role: string;
        content: unknown;
        tool_calls?: { function: { arguments: string } }[];
      }[];
    };
    assert.equal(up.model, 'gpt-masked');
    assert.equal(up.messages[0]!.role, 'system', 'the system note comes first');
    assert.match(String(up.messages[0]!.content), /placeholder/);
    assert.equal(up.messages[1]!.content, 'Support desk. Escalations to [EMAIL_1].');
    const args = JSON.parse(up.messages[3]!.tool_calls![0]!.function.arguments) as Record<
      string,
      string
    >;
    assert.deepEqual(args, { email: '[EMAIL_1]', note: 'x"y' }, 'tool arguments stay valid JSON');
    assert.equal(up.messages[4]!.content, 'Customer phone [PHONE_1]');
    assert.deepEqual(
      new Set(placeholders(sent)),
      new Set(['[EMAIL_1]', '[EMAIL_2]', '[CREDIT_CARD_1]', '[PHONE_1]']),
    );
    assert.match(sent, /"url":"https:\/\/img\.example\.com\/\[EMAIL_2\]"/);

    const answer = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'I refunded [CREDIT_CARD_1] and wrote to [EMAIL_1]. [UNKNOWN_9] stays.',
            tool_calls: [
              {
                id: 'c2',
                type: 'function',
                function: { name: 'mail', arguments: '{"to":"[EMAIL_1]"}' },
              },
            ],
          },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
    };
    const raw = Buffer.from(JSON.stringify(answer));
    const res = await router.runResponse(
      [...JSON_HEADERS, ['content-length', String(raw.length)]],
      [raw],
    );
    const out = continued(res);
    assert.deepEqual(router.violations, []);
    assert.equal(get(out.headers, 'content-length'), String(out.body.length));
    const client = JSON.parse(out.body.toString()) as typeof answer;
    assert.equal(
      client.choices[0]!.message.content,
      `I refunded ${CARD} and wrote to ${EMAIL}. [UNKNOWN_9] stays.`,
    );
    assert.equal(client.choices[0]!.message.tool_calls[0]!.function.arguments, `{"to":"${EMAIL}"}`);

    await waitFor(() => accessLines(h).some((l) => l.route === 'masked'));
    const line = accessLines(h).find((l) => l.route === 'masked')!;
    assert.equal(line.policy, 'pii');
    assert.ok(line.verdicts.includes('mask'));
    const req = (
      line.findings as { direction: string; type: string; action: string; count: number }[]
    ).filter((f) => f.direction === 'request');
    assert.deepEqual(req.map((f) => `${f.type}:${f.action}:${f.count}`).sort(), [
      'CREDIT_CARD:mask:1',
      'EMAIL:mask:4',
      'PHONE:mask:1',
    ]);
  });

  it('keeps placeholders stable across turns of a session, and apart between callers', async () => {
    const session: HeaderList = [['x-sluice-session', 'conv-42'], ...as(KEYS.alice)];
    const a = await send(
      { model: 'gpt-conv', messages: [{ role: 'user', content: `a@example.org then ${EMAIL}` }] },
      { extra: session },
    );
    a.router.close();
    const b = await send(
      {
        model: 'gpt-conv',
        messages: [{ role: 'user', content: `${EMAIL} again, and new b@example.org` }],
      },
      { extra: session },
    );
    b.router.close();
    assert.match(a.sent, /\[EMAIL_1\] then \[EMAIL_2\]/);
    assert.match(b.sent, /\[EMAIL_2\] again, and new \[EMAIL_3\]/);
    assert.equal(
      get(b.upstreamHeaders, 'x-sluice-session'),
      undefined,
      'the session header stays inside',
    );
    // The same session id from another authenticated caller is another conversation.
    const other = await send(
      { model: 'gpt-conv', messages: [{ role: 'user', content: `${EMAIL}` }] },
      { extra: [['x-sluice-session', 'conv-42'], ...as(KEYS.bob)] },
    );
    assert.match(other.sent, /\[EMAIL_1\]/);
    assert.equal(
      await answer(other.router, 'see [EMAIL_2] and [EMAIL_1]'),
      `see [EMAIL_2] and ${EMAIL}`,
      "another caller's placeholders are not restored",
    );
  });

  it('binds no conversation to a caller without identity: a session header alone restores nothing', async () => {
    // Caller A, anonymous, on a route without governance, masks a value under a session id.
    const session: HeaderList = [['x-sluice-session', 'conv-anon']];
    const a = await send(
      { model: 'gpt-masked', messages: [{ role: 'user', content: `mail ${EMAIL}` }] },
      { extra: session },
    );
    assert.match(a.sent, /mail \[EMAIL_1\]/);
    assert.equal(await answer(a.router, 'ok [EMAIL_1]'), `ok ${EMAIL}`, 'its own answer restores');
    // Caller B sends A's session id, with no credential or with a made-up one.
    for (const extra of [
      session,
      [...session, ['authorization', 'Bearer anything']],
    ] as HeaderList[]) {
      const b = await send(
        { model: 'gpt-masked', messages: [{ role: 'user', content: 'repeat [EMAIL_1]' }] },
        { extra },
      );
      assert.equal(await answer(b.router, 'It is [EMAIL_1]'), 'It is [EMAIL_1]');
      assert.equal(get(b.upstreamHeaders, 'x-sluice-session'), undefined);
    }
    await waitFor(() =>
      accessLines(h).some((l) => l.route === 'masked' && l.verdicts.includes('session_unbound')),
    );
  });

  it('restores placeholders split across SSE chunks and events, with a bounded hold-back', async () => {
    const { router, sent } = await send({
      model: 'gpt-restore',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: `Card ${CARD}, mail ${EMAIL}` }],
    });
    assert.ok(!sent.includes(EMAIL));
    const deltas = [
      'Your card [CRED',
      'IT_CARD_1',
      '] is',
      ' fine; I wrote to [',
      'EMAIL_1]',
      '.',
      ' Bye [EMAIL',
    ];
    const chunk = (content: string | undefined, finish: string | null = null): string =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }] })}\n\n`;
    const stream =
      deltas.map((d) => chunk(d)).join('') +
      chunk(undefined, 'stop') +
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })}\n\n` +
      'data: [DONE]\n\n';
    const out = await streamAll(router, cut(stream, 7));
    const text = out
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? '')
      .join('');
    assert.equal(text, `Your card ${CARD} is fine; I wrote to ${EMAIL}. Bye [EMAIL`);
    assert.ok(out.endsWith('data: [DONE]\n\n'));
    assert.ok(out.includes('"usage"'), 'the usage chunk the client asked for is kept');
    // Without response scanning, events that need no restoring are forwarded byte for byte.
    assert.ok(out.includes(chunk('.')));
  });

  it('restores Anthropic streams and masks system, tool_use and tool_result blocks', async () => {
    const { router, sent } = await send(
      {
        model: 'claude-sonnet-4-5',
        max_tokens: 50,
        stream: true,
        system: [{ type: 'text', text: `Owner: ${EMAIL}` }],
        messages: [
          { role: 'user', content: `call ${PHONE}` },
          {
            role: 'assistant',
            content: [
              { type: 'tool_use', id: 't1', name: 'dial', input: { number: PHONE, retries: 2 } },
            ],
          },
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: 't1',
                content: [{ type: 'text', text: `busy; try ${EMAIL}` }],
              },
            ],
          },
        ],
      },
      { path: '/v1/messages', cluster: 'sluice/backend/anthropic' },
    );
    assert.ok(!sent.includes(EMAIL) && !sent.includes(PHONE));
    const up = JSON.parse(sent) as { system: { text: string }[]; messages: { content: unknown }[] };
    assert.equal(up.system[0]!.text, 'Owner: [EMAIL_1]');
    assert.deepEqual((up.messages[1]!.content as { input: unknown }[])[0]!.input, {
      number: '[PHONE_1]',
      retries: 2,
    });
    const ev = (name: string, data: object): string =>
      `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
    const delta = (text: string): string =>
      ev('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text },
      });
    const stream =
      ev('message_start', {
        type: 'message_start',
        message: {
          id: 'm',
          model: 'claude',
          content: [],
          usage: { input_tokens: 5, output_tokens: 1 },
        },
      }) +
      ev('content_block_start', {
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      }) +
      delta('Calling [PHO') +
      delta('NE_1] for [EMAIL_') +
      ev('content_block_stop', { type: 'content_block_stop', index: 0 }) +
      ev('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn' },
        usage: { output_tokens: 9 },
      }) +
      ev('message_stop', { type: 'message_stop' });
    const out = await streamAll(router, cut(stream, 5));
    const texts = out
      .split('\n\n')
      .filter((e) => e.startsWith('event: content_block_delta'))
      .map((e) => (JSON.parse(e.split('\ndata: ')[1]!) as { delta: { text: string } }).delta.text);
    assert.equal(texts.join(''), `Calling ${PHONE} for [EMAIL_`);
    // The held `[EMAIL_` is released in a delta of its own, before the block stops.
    assert.ok(out.indexOf('[EMAIL_') < out.indexOf('content_block_stop'));
  });

  it('masks Responses API input and instructions, embeddings and completions', async () => {
    const r = await send(
      {
        model: 'gpt-masked',
        instructions: `Reply to ${EMAIL}`,
        input: [
          {
            role: 'user',
            content: [
              { type: 'input_text', text: `card ${CARD}` },
              { type: 'input_image', image_url: 'data:image/png;base64,QUJD' },
            ],
          },
          { type: 'function_call', call_id: 'c', name: 'f', arguments: `{"to":"${EMAIL}"}` },
          { type: 'function_call_output', call_id: 'c', output: `sent to ${EMAIL}` },
        ],
      },
      { path: '/v1/responses' },
    );
    r.router.close();
    assert.ok(!r.sent.includes(EMAIL) && !r.sent.includes(CARD));
    assert.ok(r.sent.includes('data:image/png;base64,QUJD'));
    const e = await send(
      { model: 'gpt-masked', input: [`x ${EMAIL}`, 'plain'] },
      { path: '/v1/embeddings' },
    );
    e.router.close();
    assert.deepEqual((JSON.parse(e.sent) as { input: string[] }).input, ['x [EMAIL_1]', 'plain']);
    const c = await send(
      { model: 'gpt-masked', prompt: `to ${EMAIL}` },
      { path: '/v1/completions' },
    );
    c.router.close();
    assert.equal((JSON.parse(c.sent) as { prompt: string }).prompt, 'to [EMAIL_1]');
  });

  it('blocks in the caller format with types and counts, never values', async () => {
    const { routed } = await send({
      model: 'gpt-block',
      messages: [
        {
          role: 'user',
          content: `cards ${CARD} and 5500 0000 0000 0004, ssn 536-22-8974, ${EMAIL}`,
        },
      ],
    });
    assert.equal(routed.kind, 'local-reply');
    if (routed.kind !== 'local-reply') return;
    assert.equal(routed.status, 403);
    const err = JSON.parse(routed.body.toString()) as {
      error: { code: string; type: string; message: string };
    };
    assert.equal(err.error.code, 'policy_blocked');
    assert.equal(err.error.type, 'permission_error');
    assert.match(err.error.message, /CREDIT_CARD \(2\)/);
    assert.match(err.error.message, /US_SSN \(1\)/);
    assert.ok(!routed.body.toString().includes('4111'));
    const a = await send(
      { model: 'claude-x', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
      { path: '/v1/messages', cluster: 'sluice/backend/anthropic' },
    );
    a.router.close();
    await waitFor(() => accessLines(h).some((l) => l.route === 'blocking'));
    const line = accessLines(h).find((l) => l.route === 'blocking')!;
    assert.equal(line.status, 403);
    assert.equal(line.error_code, 'policy_blocked');
    assert.ok(line.verdicts.includes('block'));
  });

  it('shadow mode changes nothing and logs would_* verdicts', async () => {
    const body = {
      model: 'gpt-shadow',
      messages: [{ role: 'user', content: `card ${CARD}, ${EMAIL}` }],
    };
    const { router, routed, sent } = await send(body);
    assert.equal(routed.kind, 'continue');
    assert.deepEqual(JSON.parse(sent), body);
    const answer = Buffer.from(
      JSON.stringify({
        choices: [{ index: 0, message: { role: 'assistant', content: `new ${PHONE}` } }],
      }),
    );
    const res = continued(await router.runResponse(JSON_HEADERS, [answer]));
    assert.equal(res.body.toString(), answer.toString(), 'responses pass unchanged');
    await waitFor(() => accessLines(h).some((l) => l.route === 'shadow'));
    const line = accessLines(h).find((l) => l.route === 'shadow')!;
    assert.deepEqual(line.verdicts, ['response_would_mask', 'would_block', 'would_mask']);
    const metrics = await h.registry.metrics();
    assert.match(
      metrics,
      /sluice_policy_findings_total\{[^}]*sluice_route="shadow"[^}]*sluice_pii_type="CREDIT_CARD",action="would_block",direction="request"\} 1/,
    );
  });

  it('hash, partial, redact and alert actions; new PII in answers is masked irreversibly', async () => {
    const { router, sent } = await send({
      model: 'gpt-mixed',
      messages: [{ role: 'user', content: `${EMAIL} ${CARD} from 10.1.2.3, call ${PHONE}` }],
    });
    const content = (JSON.parse(sent) as { messages: { content: string }[] }).messages[0]!.content;
    assert.match(
      content,
      /^\[EMAIL:[0-9a-f]{10}\] \*{4} \*{4} \*{4} 1111 from \[IP_ADDRESS\], call \+1 415 555 0132$/,
    );
    const res = continued(
      await router.runResponse(JSON_HEADERS, [
        Buffer.from(
          JSON.stringify({
            choices: [
              { index: 0, message: { role: 'assistant', content: `Also bob@corp.example.net` } },
            ],
          }),
        ),
      ]),
    );
    const c = (JSON.parse(res.body.toString()) as { choices: { message: { content: string } }[] })
      .choices[0]!.message.content;
    assert.match(c, /^Also \[EMAIL:[0-9a-f]{10}\]$/);
  });

  it('fails closed on a detector fault, or open with the header saying so', async () => {
    const cfg = h.ext.config();
    for (const route of ['closed', 'open']) {
      const set = cfg.policyFor(route)!.masking!.detectors as { detect: (t: string) => unknown };
      set.detect = () => {
        throw new Error('detector exploded with jane.doe@example.com');
      };
    }
    const closed = await send({
      model: 'gpt-closed',
      messages: [{ role: 'user', content: EMAIL }],
    });
    assert.equal(closed.routed.kind, 'local-reply');
    if (closed.routed.kind === 'local-reply') {
      assert.equal(closed.routed.status, 503);
      assert.equal(get(closed.routed.headers, 'x-sluice-policy-failure'), 'closed');
      assert.match(closed.routed.body.toString(), /policy_unavailable/);
    }
    const open = await send({ model: 'gpt-open', messages: [{ role: 'user', content: 'hello' }] });
    const res = continued(
      await open.router.runResponse(JSON_HEADERS, [Buffer.from('{"choices":[]}')]),
    );
    assert.equal(get(res.headers, 'x-sluice-policy-failure'), 'open');
    await waitFor(() => accessLines(h).some((l) => l.route === 'open'));
    const metrics = await h.registry.metrics();
    assert.match(
      metrics,
      /sluice_policy_failures_total\{sluice_route="open",sluice_policy="lenient",failure_mode="open"\} 1/,
    );
    assert.match(
      metrics,
      /sluice_policy_failures_total\{sluice_route="closed",sluice_policy="fragile",failure_mode="closed"\} 1/,
    );
    assert.ok(!h.logs.join('\n').includes('jane.doe'), 'a fault message never reaches the logs');
  });

  it('the upstream phase translates from the masked body (model override)', async () => {
    const r = await send(
      { model: 'llama-masked', messages: [{ role: 'user', content: `hi ${EMAIL}` }] },
      { cluster: 'sluice/backend/vllm' },
    );
    r.router.close();
    const up = JSON.parse(r.sent) as { model: string; messages: { content: string }[] };
    assert.equal(up.model, 'meta-llama/Llama-3.1-8B-Instruct');
    assert.equal(up.messages[0]!.content, 'hi [EMAIL_1]');
  });

  it('a STREAMED request body is held until it has been masked whole', async () => {
    const router = new ExtProcFilter(h.client, {
      ...ROUTER,
      processingMode: { ...ROUTER.processingMode, requestBodyMode: 'STREAMED' },
    });
    const body = Buffer.from(
      JSON.stringify({
        model: 'gpt-masked',
        messages: [{ role: 'user', content: `write ${EMAIL} now` }],
      }),
    );
    const released: Buffer[] = [];
    router.request.observe({ data: (c) => released.push(Buffer.from(c)) });
    const routed = continued(await router.runRequest(chatHeaders(), split(body, 5)));
    // Routing on the body needs BUFFERED (the operator's mode); only body handling is judged here.
    assert.deepEqual(
      router.violations.filter((v) => !/header_mutation in a STREAMED|clear_route_cache/.test(v)),
      [],
    );
    assert.ok(!Buffer.concat(released).toString().includes(EMAIL), 'no chunk went on unmasked');
    assert.match(routed.body.toString(), /write \[EMAIL_1\] now/);
    const up = new ExtProcFilter(h.client, upstreamFilter('sluice/backend/openai'));
    const sent = continued(await up.runRequest(routed.headers, [routed.body]));
    up.close();
    router.close();
    assert.ok(!sent.body.toString().includes(EMAIL));
  });
});

describe('conformance: bodies the checks could read differently from the provider', () => {
  const user = (text: string) => `{"role":"user","content":${JSON.stringify(text)}}`;
  const cases: [string, string, string, string, string][] = [
    [
      'a first, unmasked `messages` before the checked one',
      '/v1/chat/completions',
      `{"model":"gpt-masked","messages":[${user(`mail ${EMAIL}`)}],"messages":[${user('hi')}]}`,
      'messages',
      'invalid_request_error',
    ],
    [
      'a first `model` other than the routed one',
      '/v1/chat/completions',
      `{"model":"gpt-4o","messages":[${user('hi')}],"model":"gpt-masked"}`,
      'model',
      'invalid_request_error',
    ],
    [
      'a nested duplicate `content`',
      '/v1/chat/completions',
      `{"model":"gpt-masked","messages":[{"role":"user","content":${JSON.stringify(EMAIL)},"content":"hi"}]}`,
      'content',
      'invalid_request_error',
    ],
    [
      'a duplicate inside an Anthropic block, answered in Anthropic format',
      '/v1/messages',
      `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":${JSON.stringify(EMAIL)},"text":"hi"}]}]}`,
      'text',
      'invalid_request_error',
    ],
  ];
  for (const [what, path, raw, key, type] of cases) {
    it(`refuses ${what}: 400 duplicate_key naming the key, nothing sent`, async () => {
      const body = Buffer.from(raw);
      const r = await sendRequest(
        h,
        chatHeaders([['content-length', String(body.length)]], path),
        body,
        'sluice/backend/openai',
      );
      assert.equal(r.routed.kind, 'local-reply');
      if (r.routed.kind !== 'local-reply') return;
      assert.equal(r.routed.status, 400);
      const text = r.routed.body.toString();
      assert.ok(!text.includes(EMAIL));
      const err = (JSON.parse(text) as { error: { type: string; message: string } }).error;
      assert.equal(err.type, type);
      assert.match(err.message, new RegExp(`"${key}"`));
      assert.equal(get(r.routed.headers, 'x-sluice-error-code'), 'duplicate_key');
    });
  }

  it('JSON nested deeper than the policy can check is refused with 400 nesting_too_deep', async () => {
    let deep: unknown = EMAIL;
    for (let i = 0; i < 70; i++) deep = { k: deep };
    const r = await send({
      model: 'gpt-open',
      messages: [
        {
          role: 'assistant',
          tool_calls: [
            { id: 'c', type: 'function', function: { name: 'f', arguments: JSON.stringify(deep) } },
          ],
        },
      ],
    });
    assert.equal(r.routed.kind, 'local-reply');
    if (r.routed.kind !== 'local-reply') return;
    assert.equal(r.routed.status, 400);
    assert.equal(get(r.routed.headers, 'x-sluice-error-code'), 'nesting_too_deep');
    assert.ok(!r.routed.body.toString().includes(EMAIL));
  });
});
