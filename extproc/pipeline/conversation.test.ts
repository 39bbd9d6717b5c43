// The router phase with the conversation features of issue 18: the context window (reject,
// trim, shadow), the session affinity key Envoy hashes, and the session id, turn and context
// figures in the access log and metrics.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ExtprocConfig, WIRE } from '../config/contract.js';
import { RuntimeConfig } from '../config/runtime.js';
import { SessionIds } from '../context/session.js';
import { Telemetry } from '../telemetry/telemetry.js';
import {
  body,
  chatRequest,
  header,
  headers,
  jsonOf,
  verdictOf,
} from '../../test/support/messages.js';
import { RequestStore } from './request-store.js';
import { RouterExchange } from './router.js';
import type { Mutation, Outcome } from '../wire/mutation.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const ALICE = 'sk-sluice-alice-conv';
const BOB = 'sk-sluice-bob-conv';
const WINDOW = 400;

function runtime(context: Record<string, unknown>, mode: 'enforce' | 'shadow' = 'enforce') {
  return new RuntimeConfig(
    ExtprocConfig.parse({
      apiVersion: 'sluice.dev/extproc/v1',
      kind: 'ExtprocConfig',
      backends: [
        { name: 'local', cluster: 'c-local', provider: 'openai-compatible' },
        { name: 'small', cluster: 'c-local', provider: 'openai-compatible', modelOverride: 'tiny' },
      ],
      consumers: [
        { name: 'alice', keyHashes: [sha(ALICE)] },
        { name: 'bob', keyHashes: [sha(BOB)] },
      ],
      policies: [{ name: 'gov', identity: { required: false, keys: {} } }],
      routes: [
        {
          name: 'chat',
          models: [{ exact: 'm' }],
          backends: [{ name: 'local' }],
          governance: 'gov',
          affinity: {},
          policy: {
            name: 'ctx',
            mode,
            context: {
              models: { m: { contextTokens: WINDOW } },
              reserveOutputTokens: 50,
              ...context,
            },
          },
        },
        {
          // Two backends: the smaller window (the override's) is the one the request must fit.
          name: 'two',
          models: [{ exact: 'big' }],
          backends: [{ name: 'local' }, { name: 'small', priority: 1 }],
          policy: {
            name: 'ctx2',
            context: {
              models: { big: { contextTokens: 100_000 }, tiny: { contextTokens: WINDOW } },
            },
          },
        },
      ],
    }),
    new Map(),
  );
}

function exchange(cfg: RuntimeConfig, registry = new Registry()) {
  const lines: string[] = [];
  const telemetry = new Telemetry(
    registry,
    pino({ level: 'info' }, { write: (s: string) => lines.push(s) }),
  );
  telemetry.configApplied('v1', { routes: ['chat', 'two'], backends: [], models: [] });
  const ex = new RouterExchange({
    config: cfg,
    store: new RequestStore(() => 0),
    telemetry,
    now: () => 0,
    newId: () => 'id-1',
    sessionIds: new SessionIds(Buffer.alloc(32, 1)),
  });
  const log = () =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'request');
  return { ex, log, registry };
}

async function step(ex: RouterExchange, fn: () => Outcome | Promise<Outcome>): Promise<Outcome> {
  try {
    return await fn();
  } catch (err) {
    return ex.fail(err);
  }
}

const words = (n: number, w: string) => Array.from({ length: n }, () => w).join(' ');

function conversation(turns: number): Record<string, unknown>[] {
  const m: Record<string, unknown>[] = [{ role: 'system', content: 'rules' }];
  for (let i = 0; i < turns; i++) {
    m.push({ role: 'user', content: `u${i} ${words(40, 'alpha')}` });
    m.push({ role: 'assistant', content: `a${i} ${words(40, 'beta')}` });
  }
  m.push({ role: 'user', content: 'last' });
  return m;
}

async function send(
  ex: RouterExchange,
  req: Record<string, unknown>,
  extra: Record<string, string> = {},
): Promise<Outcome> {
  await step(ex, () => ex.requestHeaders(chatRequest(extra)));
  return step(ex, () => ex.requestBody(body(req)));
}

const mutationOf = (o: Outcome): Mutation => {
  assert.equal(o.kind, 'continue', JSON.stringify(o));
  return (o as { mutation: Mutation }).mutation;
};

async function answer(ex: RouterExchange): Promise<Outcome> {
  const o = await step(ex, () =>
    ex.responseHeaders(headers({ ':status': '200', 'content-type': 'application/json' })),
  );
  await step(ex, () =>
    ex.responseBody(
      body({
        id: 'x',
        object: 'chat.completion',
        choices: [
          { index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' },
        ],
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
      }),
    ),
  );
  return o;
}

describe('router phase: context window', () => {
  it('reject: 400 context_length_exceeded with the counts, in the OpenAI format', async () => {
    const { ex, log } = exchange(runtime({}));
    const v = verdictOf(await send(ex, { model: 'm', messages: conversation(8), max_tokens: 20 }));
    assert.equal(v.status, 400);
    const b = jsonOf(v);
    assert.equal(b.error.code, 'context_length_exceeded');
    assert.equal(b.error.param, 'messages');
    assert.match(
      b.error.message,
      /context window of 400 tokens; this request needs about \d+ \(\d+ estimated input \+ 20 output limit\)/,
    );
    ex.finish('complete');
    assert.equal(log()?.error_code, 'context_length_exceeded');
  });

  it('trim-oldest: forwards the trimmed body, says how many were dropped in the answer and the log', async () => {
    const registry = new Registry();
    const { ex, log } = exchange(runtime({ contextOverflow: 'trim-oldest' }), registry);
    const messages = conversation(8);
    const m = mutationOf(await send(ex, { model: 'm', messages, max_tokens: 20 }));
    const sent = JSON.parse(m.body!.toString('utf8')) as { messages: { content: string }[] };
    const dropped = messages.length - sent.messages.length;
    assert.ok(dropped > 0);
    assert.equal(sent.messages[0]!.content, 'rules');
    assert.equal(sent.messages.at(-1)!.content, 'last');
    assert.equal(header(m.setHeaders, 'content-length'), undefined, 'no content-length was sent');
    const rh = mutationOf(await answer(ex));
    assert.equal(header(rh.setHeaders, 'x-sluice-context-trimmed'), String(dropped));
    const line = log()!;
    const ctx = line.context as Record<string, number>;
    assert.equal(ctx.trimmed_messages, dropped);
    assert.equal(ctx.context_tokens, WINDOW);
    assert.ok((line.verdicts as string[]).includes('context_trimmed'));
    const text = await registry.metrics();
    assert.match(
      text,
      new RegExp(`sluice_context_trimmed_messages_total\\{sluice_route="chat"\\} ${dropped}`),
    );
    assert.match(text, /sluice_context_requests_total\{sluice_route="chat",result="trimmed"\} 1/);
  });

  it('a request that fits goes on untouched, without the header', async () => {
    const { ex } = exchange(runtime({ contextOverflow: 'trim-oldest' }));
    const m = mutationOf(await send(ex, { model: 'm', messages: conversation(1), max_tokens: 20 }));
    assert.equal(m.body, undefined);
    const rh = await answer(ex);
    assert.equal(
      rh.kind === 'continue' ? header(rh.mutation?.setHeaders, 'x-sluice-context-trimmed') : 'x',
      undefined,
    );
  });

  it('shadow mode changes nothing and says what it would have done', async () => {
    const { ex, log } = exchange(runtime({ contextOverflow: 'trim-oldest' }, 'shadow'));
    const m = mutationOf(await send(ex, { model: 'm', messages: conversation(8), max_tokens: 20 }));
    assert.equal(m.body, undefined);
    await answer(ex);
    assert.ok((log()!.verdicts as string[]).includes('would_context_trim'));
  });

  it('holds the request to the smallest window among the backends the route may pick', async () => {
    const { ex } = exchange(runtime({}));
    const v = verdictOf(await send(ex, { model: 'big', messages: conversation(8) }));
    assert.equal(jsonOf(v).error.code, 'context_length_exceeded');
    assert.match(jsonOf(v).error.message, /"big"/);
  });
});

describe('router phase: session affinity and session visibility', () => {
  const affinityOf = async (extra: Record<string, string>) => {
    const { ex } = exchange(runtime({}));
    const m = mutationOf(
      await send(ex, { model: 'm', messages: [{ role: 'user', content: 'hi' }] }, extra),
    );
    return { key: header(m.setHeaders, WIRE.affinityHeader), m };
  };

  it('sets the key Envoy hashes: per caller and session, stable, never the raw session id', async () => {
    const a1 = (await affinityOf({ authorization: `Bearer ${ALICE}`, 'x-sluice-session': 's1' }))
      .key;
    const a2 = (await affinityOf({ authorization: `Bearer ${ALICE}`, 'x-sluice-session': 's1' }))
      .key;
    const b1 = (await affinityOf({ authorization: `Bearer ${BOB}`, 'x-sluice-session': 's1' })).key;
    const a3 = (await affinityOf({ authorization: `Bearer ${ALICE}`, 'x-sluice-session': 's2' }))
      .key;
    assert.ok(a1);
    assert.equal(a1, a2);
    assert.notEqual(a1, b1);
    assert.notEqual(a1, a3);
    assert.ok(!a1.includes('s1'));
    // Without a session header: per caller.
    const c = (await affinityOf({ authorization: `Bearer ${ALICE}` })).key;
    assert.ok(c && c !== a1);
  });

  it("overwrites a client's own affinity header, and removes our session header", async () => {
    const forged = 'forged-key';
    const { key, m } = await affinityOf({
      authorization: `Bearer ${ALICE}`,
      'x-sluice-session': 's1',
      [WIRE.affinityHeader]: forged,
    });
    assert.notEqual(key, forged);
    assert.ok(m.removeHeaders?.includes('x-sluice-session'));
    // Anonymous, no session: nothing to hash, and the forged header is removed.
    const anon = await affinityOf({ [WIRE.affinityHeader]: forged });
    assert.equal(anon.key, undefined);
    assert.ok(anon.m.removeHeaders?.includes(WIRE.affinityHeader));
  });

  it('logs a keyed session id and the turn; metrics count turns without the id', async () => {
    const registry = new Registry();
    const { ex, log } = exchange(runtime({}), registry);
    await send(
      ex,
      { model: 'm', messages: conversation(2), max_tokens: 5 },
      { authorization: `Bearer ${ALICE}`, 'x-sluice-session': 'alice@example.com' },
    );
    await answer(ex);
    const s = log()!.session as { id: string; turn: number };
    assert.match(s.id, /^[0-9a-f]{32}$/);
    assert.equal(s.turn, 3);
    assert.equal(
      new SessionIds(Buffer.alloc(32, 1)).id(
        'chat',
        { method: 'key', consumer: 'alice' },
        'alice@example.com',
      ),
      s.id,
    );
    const text = await registry.metrics();
    assert.ok(!text.includes(s.id), 'no session id in metrics');
    assert.ok(
      !JSON.stringify(log()).includes('alice@example.com'),
      'no raw session value in the log',
    );
    assert.match(text, /sluice_session_turns_total\{sluice_route="chat"\} 1/);
    assert.match(text, /sluice_session_turn_bucket\{le="3",sluice_route="chat"\} 1/);
    assert.match(
      text,
      /sluice_session_tokens_total\{sluice_route="chat",gen_ai_token_type="input"\} 10/,
    );
  });

  it('an anonymous caller has no session in the log', async () => {
    const { ex, log } = exchange(runtime({}));
    await send(
      ex,
      { model: 'm', messages: conversation(1), max_tokens: 5 },
      { 'x-sluice-session': 's' },
    );
    await answer(ex);
    assert.equal(log()!.session, undefined);
  });
});
