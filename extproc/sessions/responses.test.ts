import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { SluiceError } from '../errors.js';
import { ResponseCapture } from './capture.js';
import {
  answerResource as answerOrForward,
  forgetOwned,
  normalizeInput,
  planTurn,
  responsesResource,
  saveTurn,
  type PlanInput,
  type ResourceAnswer,
} from './responses.js';
import { DEFAULT_SESSIONS, SessionsPolicy } from './schema.js';
import { Sessions, vaultSession } from './sessions.js';
import { MemorySessionStore } from './store.js';

const alice = { method: 'key', consumer: 'alice' };
const bob = { method: 'key', consumer: 'bob' };

function world() {
  let now = 5_000_000;
  const sessions = new Sessions({
    store: new MemorySessionStore({ maxBytes: 1 << 24, now: () => now }),
    key: randomBytes(32),
    wallNow: () => now,
  });
  return { sessions, advance: (ms: number) => (now += ms) };
}

/** answerResource for a response the gateway keeps: answered here, never forwarded. */
async function answerResource(
  ...args: Parameters<typeof answerOrForward>
): Promise<ResourceAnswer> {
  const a = await answerOrForward(...args);
  if (a.kind !== 'answer') assert.fail('forwarded, not answered');
  return a;
}

async function refused(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SluiceError, String(e));
    return e;
  }
  assert.fail('not refused');
}

function answer(id: string, text: string): Record<string, unknown> {
  return {
    id,
    object: 'response',
    status: 'completed',
    output: [
      {
        id: `msg_${id}`,
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text, annotations: [] }],
      },
    ],
  };
}

describe('planTurn and saveTurn', () => {
  const base = (over: Partial<PlanInput>, s: Sessions): PlanInput => ({
    sessions: s,
    policy: DEFAULT_SESSIONS,
    body: { model: 'claude', input: 'Hello' },
    owner: alice,
    route: 'r',
    gatewayKeeps: true,
    ...over,
  });

  it('rebuilds the conversation from previous_response_id, turn after turn', async () => {
    const { sessions } = world();
    const t1 = await planTurn(base({}, sessions));
    assert.equal(t1.mode, 'gateway');
    assert.match(t1.responseId!, /^resp_[0-9a-f]{48}$/);
    assert.equal(t1.store, true);
    assert.equal(t1.body!.store, true);
    assert.equal((t1.body!.input as unknown[]).length, 1);
    assert.equal(
      await saveTurn(sessions, DEFAULT_SESSIONS, t1, { route: 'r' }, answer(t1.responseId!, 'Hi!')),
      'stored',
    );

    const t2 = await planTurn(
      base(
        {
          body: {
            model: 'claude',
            previous_response_id: t1.responseId,
            input: [{ role: 'user', content: 'Again' }],
          },
        },
        sessions,
      ),
    );
    const input2 = t2.body!.input as Record<string, unknown>[];
    assert.deepEqual(
      input2.map((i) => [i.role, (i.content as { text: string }[])[0]!.text]),
      [
        ['user', 'Hello'],
        ['assistant', 'Hi!'],
        ['user', 'Again'],
      ],
    );
    // The echo keeps previous_response_id; the conversation and its vault session carry over.
    assert.equal(t2.body!.previous_response_id, t1.responseId);
    assert.equal(t2.conversationKey, t1.responseId);
    assert.equal(t2.vaultSession, vaultSession(alice, t1.responseId!));
    await saveTurn(
      sessions,
      DEFAULT_SESSIONS,
      t2,
      { route: 'r' },
      answer(t2.responseId!, 'Hi again!'),
    );

    // A fork from the first response sees only the first turn.
    const fork = await planTurn(
      base({ body: { model: 'c', previous_response_id: t1.responseId, input: 'Other' } }, sessions),
    );
    assert.equal((fork.body!.input as unknown[]).length, 3);
  });

  it('never continues another identity’s response, and says only "not found"', async () => {
    const { sessions } = world();
    const t1 = await planTurn(base({}, sessions));
    await saveTurn(
      sessions,
      DEFAULT_SESSIONS,
      t1,
      { route: 'r' },
      answer(t1.responseId!, 'secret'),
    );
    const e = await refused(
      planTurn(
        base(
          { owner: bob, body: { model: 'c', previous_response_id: t1.responseId, input: 'x' } },
          sessions,
        ),
      ),
    );
    assert.equal(e.status, 404);
    assert.equal(e.code, 'response_not_found');
    assert.equal(e.param, 'previous_response_id');
    assert.ok(!e.message.includes('secret'));
  });

  it('needs an identity to store or continue, unless the policy serves anonymous callers stateless', async () => {
    const { sessions } = world();
    const anon = (body: Record<string, unknown>, policy = DEFAULT_SESSIONS) =>
      planTurn(
        base({ owner: undefined, body: { model: 'c', input: 'x', ...body }, policy }, sessions),
      );
    for (const body of [{}, { store: true }, { store: false, previous_response_id: 'resp_1' }]) {
      const e = await refused(anon(body));
      assert.equal(e.status, 400);
      assert.equal(e.code, 'identity_required');
    }
    const t = await anon({ store: false });
    assert.equal(t.mode, 'gateway');
    assert.equal(t.store, false);
    const stateless = SessionsPolicy.parse({ anonymous: 'stateless' });
    assert.equal((await anon({}, stateless)).store, false);
    assert.equal((await anon({}, stateless)).body!.store, false);
    await refused(anon({ store: true }, stateless));
  });

  it('records where a provider-kept response lives, and sends only its owner there', async () => {
    const { sessions } = world();
    const t = await planTurn(base({ gatewayKeeps: false }, sessions));
    const at = { route: 'r', backend: 'ns/r/openai', model: 'gpt' };
    assert.equal(
      await saveTurn(sessions, DEFAULT_SESSIONS, t, at, answer('resp_kept1', 'x')),
      'stored',
    );
    for (const [kind, method] of [
      ['response', 'GET'],
      ['response', 'DELETE'],
      ['input_items', 'GET'],
    ] as const) {
      const q = new URLSearchParams('limit=2');
      const a = await answerOrForward(
        sessions,
        [bob, alice],
        { kind, id: 'resp_kept1' },
        method,
        q,
      );
      assert.deepEqual(a, {
        kind: 'provider',
        owner: alice,
        id: 'resp_kept1',
        route: 'r',
        backend: 'ns/r/openai',
        model: 'gpt',
      });
      const e = await refused(
        answerOrForward(sessions, [bob], { kind, id: 'resp_kept1' }, method, q),
      );
      assert.equal(e.code, 'response_not_found');
      assert.equal(e.status, 404);
    }
    // Another identity cannot forget it; its owner can, once.
    assert.equal(await forgetOwned(sessions, bob, 'resp_kept1'), false);
    assert.equal(await forgetOwned(sessions, alice, 'resp_kept1'), true);
    await refused(
      answerOrForward(
        sessions,
        [alice],
        { kind: 'response', id: 'resp_kept1' },
        'GET',
        new URLSearchParams(),
      ),
    );
  });

  it('passes through to a provider that keeps state, recording only who owns its ids', async () => {
    const { sessions } = world();
    const t = await planTurn(base({ gatewayKeeps: false }, sessions));
    assert.equal(t.mode, 'provider');
    assert.equal(t.body, undefined);
    assert.equal(
      await saveTurn(sessions, DEFAULT_SESSIONS, t, { route: 'r' }, answer('resp_openai1', 'x')),
      'stored',
    );
    const next = await planTurn(
      base(
        {
          gatewayKeeps: false,
          body: { model: 'gpt', previous_response_id: 'resp_openai1', input: 'y' },
        },
        sessions,
      ),
    );
    assert.equal(next.mode, 'provider');
    const e = await refused(
      planTurn(
        base(
          {
            owner: bob,
            gatewayKeeps: false,
            body: { model: 'gpt', previous_response_id: 'resp_openai1', input: 'y' },
          },
          sessions,
        ),
      ),
    );
    assert.equal(e.status, 404);
    // A marker that does not say where the response is kept (written before backends were
    // recorded): neither read, deleted nor forwarded anywhere, and the marker stays.
    for (const [kind, method] of [
      ['response', 'GET'],
      ['response', 'DELETE'],
      ['input_items', 'GET'],
    ] as const) {
      const e = await refused(
        answerOrForward(
          sessions,
          [alice],
          { kind, id: 'resp_openai1' },
          method,
          new URLSearchParams(),
        ),
      );
      assert.equal(e.status, 400);
    }
    assert.equal(
      (
        await planTurn(
          base(
            {
              gatewayKeeps: false,
              body: { model: 'gpt', previous_response_id: 'resp_openai1', input: 'z' },
            },
            sessions,
          ),
        )
      ).mode,
      'provider',
    );
    // The gateway holds no content of a provider's response: a stateless route cannot continue it.
    const cross = await refused(
      planTurn(
        base({ body: { model: 'c', previous_response_id: 'resp_openai1', input: 'y' } }, sessions),
      ),
    );
    assert.equal(cross.status, 400);
  });

  it('refuses a conversation larger than the policy stores, and expires turns', async () => {
    const { sessions, advance } = world();
    const policy = SessionsPolicy.parse({ maxStoredBytes: 2048, ttlSeconds: 60 });
    const e = await refused(
      planTurn(base({ policy, body: { model: 'c', input: 'x'.repeat(3000) } }, sessions)),
    );
    assert.equal(e.code, 'request_too_large');
    // store: false keeps nothing, so nothing to bound.
    await planTurn(
      base({ policy, body: { model: 'c', input: 'x'.repeat(3000), store: false } }, sessions),
    );
    const t = await planTurn(base({ policy }, sessions));
    await saveTurn(sessions, policy, t, { route: 'r' }, answer(t.responseId!, 'ok'));
    advance(59_999);
    await planTurn(
      base(
        { policy, body: { model: 'c', previous_response_id: t.responseId, input: 'y' } },
        sessions,
      ),
    );
    advance(1);
    const gone = await refused(
      planTurn(
        base(
          { policy, body: { model: 'c', previous_response_id: t.responseId, input: 'y' } },
          sessions,
        ),
      ),
    );
    assert.equal(gone.status, 404);
  });

  it('refuses previous_response_id where sessions are off', async () => {
    const { sessions } = world();
    const off = SessionsPolicy.parse({ enabled: false });
    const t = await planTurn(base({ policy: off }, sessions));
    assert.equal(t.store, false);
    const e = await refused(
      planTurn(
        base(
          { policy: off, body: { model: 'c', previous_response_id: 'resp_x', input: 'y' } },
          sessions,
        ),
      ),
    );
    assert.equal(e.param, 'previous_response_id');
  });
});

describe('stored responses as resources', () => {
  it('parses the paths', () => {
    assert.deepEqual(responsesResource('/v1/responses/resp_1'), { kind: 'response', id: 'resp_1' });
    assert.deepEqual(responsesResource('/v1/responses/resp_1/input_items'), {
      kind: 'input_items',
      id: 'resp_1',
    });
    assert.equal(responsesResource('/v1/responses'), undefined);
    assert.equal(responsesResource('/v1/responses/a/b'), undefined);
  });

  it('retrieves, lists input items (paged) and deletes for the owner only', async () => {
    const { sessions } = world();
    const p = {
      sessions,
      policy: DEFAULT_SESSIONS,
      owner: alice,
      route: 'r',
      gatewayKeeps: true,
    };
    const t1 = await planTurn({ ...p, body: { model: 'c', input: 'one' } });
    await saveTurn(sessions, DEFAULT_SESSIONS, t1, { route: 'r' }, answer(t1.responseId!, 'two'));
    const t2 = await planTurn({
      ...p,
      body: {
        model: 'c',
        previous_response_id: t1.responseId,
        input: [{ role: 'user', content: 'three' }],
      },
    });
    await saveTurn(sessions, DEFAULT_SESSIONS, t2, { route: 'r' }, answer(t2.responseId!, 'four'));
    const q = (s = '') => new URLSearchParams(s);
    const got = await answerResource(
      sessions,
      [bob, alice],
      { kind: 'response', id: t2.responseId! },
      'GET',
      q(),
    );
    assert.equal((got.value as { id: string }).id, t2.responseId);
    const items = (
      await answerResource(
        sessions,
        [alice],
        { kind: 'input_items', id: t2.responseId! },
        'GET',
        q('order=asc'),
      )
    ).value as {
      data: { content: { text: string }[] }[];
      has_more: boolean;
      first_id: string;
      last_id: string;
    };
    assert.deepEqual(
      items.data.map((i) => i.content[0]!.text),
      ['one', 'two', 'three'],
    );
    const page = (
      await answerResource(
        sessions,
        [alice],
        { kind: 'input_items', id: t2.responseId! },
        'GET',
        q('limit=2'),
      )
    ).value as typeof items;
    assert.deepEqual(
      page.data.map((i) => i.content[0]!.text),
      ['three', 'two'],
    );
    assert.equal(page.has_more, true);
    const rest = (
      await answerResource(
        sessions,
        [alice],
        { kind: 'input_items', id: t2.responseId! },
        'GET',
        q(`limit=2&after=${page.last_id}`),
      )
    ).value as typeof items;
    assert.deepEqual(
      rest.data.map((i) => i.content[0]!.text),
      ['one'],
    );
    assert.equal(rest.has_more, false);

    const e = await refused(
      answerResource(sessions, [bob], { kind: 'response', id: t2.responseId! }, 'GET', q()),
    );
    assert.equal(e.status, 404);
    await refused(
      answerResource(sessions, [bob], { kind: 'response', id: t2.responseId! }, 'DELETE', q()),
    );
    const del = await answerResource(
      sessions,
      [alice],
      { kind: 'response', id: t2.responseId! },
      'DELETE',
      q(),
    );
    assert.deepEqual(del.value, { id: t2.responseId, object: 'response', deleted: true });
    await refused(
      answerResource(sessions, [alice], { kind: 'response', id: t2.responseId! }, 'GET', q()),
    );
  });

  it('normalizes input items with ids', () => {
    const items = normalizeInput([
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
      { type: 'function_call_output', call_id: 'c', output: 'x' },
    ]);
    assert.match(items[0]!.id as string, /^msg_/);
    assert.deepEqual(items[1]!.content, [{ type: 'output_text', text: 'b', annotations: [] }]);
    assert.match(items[2]!.id as string, /^item_/);
  });
});

describe('ResponseCapture', () => {
  it('reads the final response of a stream cut anywhere, and a JSON body', () => {
    const final = answer('resp_z', 'done');
    const stream =
      `event: response.created\ndata: ${JSON.stringify({ type: 'response.created', response: { id: 'resp_z', output: [] } })}\n\n` +
      `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', delta: 'done' })}\n\n` +
      `event: response.completed\ndata: ${JSON.stringify({ type: 'response.completed', response: final })}\n\n`;
    const bytes = Buffer.from(stream);
    for (const cut of [1, 50, bytes.length - 3]) {
      const c = new ResponseCapture(1 << 20, 1 << 20);
      c.start(true);
      c.push(bytes.subarray(0, cut));
      assert.equal(c.complete, false);
      c.push(bytes.subarray(cut));
      assert.equal(c.complete, true);
      assert.deepEqual(c.result(), final);
    }
    const j = new ResponseCapture(1 << 20, 1 << 20);
    j.start(false);
    const body = Buffer.from(JSON.stringify(final));
    j.push(body.subarray(0, 10));
    j.push(body.subarray(10));
    assert.deepEqual(j.result(), final);
    const small = new ResponseCapture(10, 1 << 20);
    small.start(false);
    small.push(body);
    assert.equal(small.result(), undefined);
  });
});

describe('conversations', () => {
  it('are created, grown by each turn, listed, updated and deleted for their owner only', async () => {
    const { answerConversation, conversationsResource } = await import('./conversations.js');
    const { sessions } = world();
    const base = {
      sessions,
      policy: DEFAULT_SESSIONS,
      query: new URLSearchParams(),
      created: 1_700_000_000,
      normalize: normalizeInput,
    };
    const created = (
      await answerConversation({
        ...base,
        owners: [alice],
        resource: conversationsResource('/v1/conversations')!,
        method: 'POST',
        body: { items: [{ role: 'user', content: 'Hi, I am Jane.' }], metadata: { topic: 't' } },
      })
    ).value as { id: string; object: string; metadata: unknown };
    assert.match(created.id, /^conv_[0-9a-f]{48}$/);
    assert.equal(created.object, 'conversation');

    const p = { sessions, policy: DEFAULT_SESSIONS, owner: alice, route: 'r', gatewayKeeps: true };
    const t = await planTurn({
      ...p,
      body: { model: 'c', conversation: created.id, input: 'Who am I?' },
    });
    assert.equal(t.conversationId, created.id);
    assert.equal((t.body!.input as unknown[]).length, 2);
    assert.equal(t.vaultSession, vaultSession(alice, `conv:${created.id}`));
    await saveTurn(sessions, DEFAULT_SESSIONS, t, { route: 'r' }, answer(t.responseId!, 'Jane.'));
    const t2 = await planTurn({
      ...p,
      body: { model: 'c', conversation: { id: created.id }, input: 'Sure?', store: false },
    });
    assert.equal((t2.body!.input as unknown[]).length, 4);
    await saveTurn(sessions, DEFAULT_SESSIONS, t2, { route: 'r' }, answer(t2.responseId!, 'Yes.'));

    const items = (
      await answerConversation({
        ...base,
        owners: [alice],
        resource: conversationsResource(`/v1/conversations/${created.id}/items`)!,
        method: 'GET',
        body: undefined,
        query: new URLSearchParams('order=asc'),
      })
    ).value as { data: { content: { text: string }[] }[] };
    assert.deepEqual(
      items.data.map((i) => i.content[0]!.text),
      ['Hi, I am Jane.', 'Who am I?', 'Jane.', 'Sure?', 'Yes.'],
    );
    // Not continued with previous_response_id at once, and not another's.
    await refused(
      planTurn({
        ...p,
        body: {
          model: 'c',
          conversation: created.id,
          previous_response_id: t.responseId,
          input: 'x',
        },
      }),
    );
    const e = await refused(
      planTurn({ ...p, owner: bob, body: { model: 'c', conversation: created.id, input: 'x' } }),
    );
    assert.equal(e.status, 404);
    assert.equal(e.code, 'conversation_not_found');
    const conv = conversationsResource(`/v1/conversations/${created.id}`)!;
    await refused(
      answerConversation({
        ...base,
        owners: [bob],
        resource: conv,
        method: 'GET',
        body: undefined,
      }),
    );
    const updated = (
      await answerConversation({
        ...base,
        owners: [alice],
        resource: conv,
        method: 'POST',
        body: { metadata: { topic: 'u' } },
      })
    ).value as { metadata: unknown };
    assert.deepEqual(updated.metadata, { topic: 'u' });
    const del = await answerConversation({
      ...base,
      owners: [alice],
      resource: conv,
      method: 'DELETE',
      body: undefined,
    });
    assert.deepEqual(del.value, { id: created.id, object: 'conversation.deleted', deleted: true });
    await refused(planTurn({ ...p, body: { model: 'c', conversation: created.id, input: 'x' } }));
  });
});

describe('conversation items and concurrent turns', () => {
  async function setup() {
    const { answerConversation, conversationsResource } = await import('./conversations.js');
    const { sessions } = world();
    const ask = (owner: typeof alice, method: string, path: string, body?: object) =>
      answerConversation({
        sessions,
        policy: DEFAULT_SESSIONS,
        query: new URLSearchParams(path.split('?')[1] ?? ''),
        created: 1_700_000_000,
        normalize: normalizeInput,
        owners: [owner],
        resource: conversationsResource(path.split('?')[0]!)!,
        method,
        body: body as Record<string, unknown> | undefined,
      });
    const created = (
      await ask(alice, 'POST', '/v1/conversations', {
        items: [{ role: 'user', content: 'one' }],
      })
    ).value as { id: string };
    return { sessions, ask, id: created.id, conversationsResource };
  }
  const texts = (v: unknown) =>
    (v as { data: { content: { text: string }[] }[] }).data.map((i) => i.content[0]!.text);

  it('parses the item path', async () => {
    const { conversationsResource } = await setup();
    assert.deepEqual(conversationsResource('/v1/conversations/conv_1/items/msg_2'), {
      kind: 'item',
      id: 'conv_1',
      itemId: 'msg_2',
    });
    assert.deepEqual(conversationsResource('/v1/conversations/conv_1/items/'), {
      kind: 'items',
      id: 'conv_1',
    });
    assert.equal(conversationsResource('/v1/conversations/conv_1/items/a/b'), undefined);
    assert.equal(conversationsResource('/v1/conversations/conv_1/other'), undefined);
  });

  it('adds items, gets one and deletes one for the owner only', async () => {
    const { ask, id } = await setup();
    const added = (
      await ask(alice, 'POST', `/v1/conversations/${id}/items`, {
        items: [
          { role: 'user', content: 'two' },
          { type: 'message', role: 'assistant', content: 'three' },
        ],
      })
    ).value as { object: string; data: { id: string }[] };
    assert.equal(added.object, 'list');
    assert.equal(added.data.length, 2);
    const all = (await ask(alice, 'GET', `/v1/conversations/${id}/items?order=asc`)).value;
    assert.deepEqual(texts(all), ['one', 'two', 'three']);
    const two = added.data[0]!.id;
    const got = (await ask(alice, 'GET', `/v1/conversations/${id}/items/${two}`)).value as {
      id: string;
      content: { text: string }[];
    };
    assert.equal(got.id, two);
    assert.equal(got.content[0]!.text, 'two');
    for (const m of ['GET', 'DELETE']) {
      const e = await refused(ask(bob, m, `/v1/conversations/${id}/items/${two}`));
      assert.equal(e.code, 'conversation_not_found');
    }
    const after = (await ask(alice, 'DELETE', `/v1/conversations/${id}/items/${two}`)).value;
    assert.deepEqual(Object.keys(after as object).sort(), [
      'created_at',
      'id',
      'metadata',
      'object',
    ]);
    assert.equal((after as { object: string }).object, 'conversation');
    const e = await refused(ask(alice, 'GET', `/v1/conversations/${id}/items/${two}`));
    assert.equal(e.code, 'item_not_found');
    assert.equal(e.status, 404);
    assert.equal(
      (await refused(ask(alice, 'DELETE', `/v1/conversations/${id}/items/${two}`))).status,
      404,
    );
    const bad = await refused(ask(alice, 'POST', `/v1/conversations/${id}/items`, { items: [] }));
    assert.equal(bad.param, 'items');
  });

  it('keeps every turn of concurrent turns on one conversation', async () => {
    const { sessions, ask, id } = await setup();
    const p = { sessions, policy: DEFAULT_SESSIONS, owner: alice, route: 'r', gatewayKeeps: true };
    // Four turns planned from the same state, answered and saved at once.
    const turns = await Promise.all(
      ['a', 'b', 'c', 'd'].map((x) =>
        planTurn({ ...p, body: { model: 'm', conversation: id, input: `q-${x}` } }),
      ),
    );
    const saved = await Promise.all(
      turns.map((t, i) =>
        saveTurn(sessions, DEFAULT_SESSIONS, t, { route: 'r' }, answer(t.responseId!, `a-${i}`)),
      ),
    );
    assert.deepEqual(saved, ['stored', 'stored', 'stored', 'stored']);
    const all = texts((await ask(alice, 'GET', `/v1/conversations/${id}/items?limit=100`)).value);
    assert.equal(all.length, 9);
    for (const [i, x] of ['a', 'b', 'c', 'd'].entries()) {
      // Each turn's question right before its answer.
      const at = all.indexOf(`a-${i}`);
      assert.equal(all[at + 1], `q-${x}`);
    }
  });
});
