import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { estimateRequestInputTokens } from '../usage/estimate.js';
import { fitContext, type FitInput } from './window.js';

type Obj = Record<string, unknown>;
const words = (n: number, w = 'alpha') => Array.from({ length: n }, () => w).join(' ');

/** A chat conversation: system, then `turns` user/assistant pairs of ~`size` tokens each. */
function chat(turns: number, size: number, extra: Obj[] = []): Obj {
  const messages: Obj[] = [{ role: 'system', content: 'You are terse.' }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: `q${i} ${words(size)}` });
    messages.push({ role: 'assistant', content: `a${i} ${words(size, 'beta')}` });
  }
  messages.push(...extra, { role: 'user', content: 'last question' });
  return { model: 'm', messages };
}

const fit = (body: Obj, over: Partial<FitInput> = {}) =>
  fitContext({
    operation: 'chat',
    body,
    window: { contextTokens: 1000 },
    overflow: 'trim-oldest',
    outputLimit: undefined,
    reserveOutputTokens: 100,
    ...over,
  });

const contents = (b: Obj) =>
  (b.messages as Obj[]).map((m) => `${String(m.role)}:${String(m.content).split(' ')[0]}`);

describe('context window: counting', () => {
  it('counts exactly what the estimate counts, message by message (all three APIs)', () => {
    const bodies: [FitInput['operation'], Obj][] = [
      ['chat', { ...chat(3, 20), tools: [{ type: 'function', function: { name: 'f' } }] }],
      [
        'messages',
        {
          system: 'sys prompt',
          messages: [
            { role: 'user', content: 'hi there' },
            { role: 'assistant', content: [{ type: 'text', text: 'hello' }] },
            { role: 'user', content: 'more' },
          ],
          tools: [{ name: 't', input_schema: {} }],
          max_tokens: 5,
        },
      ],
      [
        'responses',
        {
          instructions: 'be brief',
          input: [
            { role: 'user', content: 'first' },
            { type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' },
            { type: 'function_call_output', call_id: 'c', output: 'ok' },
            { role: 'user', content: 'second' },
          ],
        },
      ],
    ];
    for (const [operation, body] of bodies) {
      const r = fitContext({
        operation,
        body,
        window: { contextTokens: 1_000_000 },
        overflow: 'reject',
        outputLimit: undefined,
        reserveOutputTokens: 0,
      });
      assert.equal(r.kind, 'fits');
      assert.equal(r.inputTokens, estimateRequestInputTokens(operation, body), operation);
    }
  });
});

describe('context window: reject', () => {
  it('fits when input plus the output limit is within the window', () => {
    const body = chat(2, 10);
    const n = estimateRequestInputTokens('chat', body);
    assert.equal(fit(body, { window: { contextTokens: n + 50 }, outputLimit: 50 }).kind, 'fits');
    const r = fit(body, { window: { contextTokens: n + 49 }, outputLimit: 50, overflow: 'reject' });
    assert.equal(r.kind, 'exceeded');
    assert.deepEqual(r.kind === 'exceeded' && [r.inputTokens, r.outputTokens], [n, 50]);
  });

  it('no output limit: only the input must fit; an input limit binds on its own', () => {
    const body = chat(2, 10);
    const n = estimateRequestInputTokens('chat', body);
    assert.equal(fit(body, { window: { contextTokens: n }, overflow: 'reject' }).kind, 'fits');
    assert.equal(
      fit(body, { window: { contextTokens: 10 * n, maxInputTokens: n - 1 }, overflow: 'reject' })
        .kind,
      'exceeded',
    );
  });
});

describe('context window: trimming', () => {
  it('trim-oldest drops the oldest turns, keeps the system message and the last turn', () => {
    const body = chat(6, 50);
    const r = fit(body, { window: { contextTokens: 400 } });
    assert.equal(r.kind, 'trimmed');
    if (r.kind !== 'trimmed') return;
    const kept = contents(r.body);
    assert.equal(kept[0], 'system:You');
    assert.equal(kept.at(-1), 'user:last');
    assert.ok(!kept.includes('user:q0'));
    assert.equal(r.dropped, (body.messages as Obj[]).length - kept.length);
    assert.ok(r.inputTokens + 100 <= 400, 'room for the answer is left');
    assert.equal(r.inputTokens, estimateRequestInputTokens('chat', r.body));
    // Whole turns: the kept ones still alternate user, assistant.
    const roles = (r.body.messages as Obj[]).slice(1).map((m) => m.role);
    for (let i = 0; i + 1 < roles.length; i += 2)
      assert.deepEqual(roles.slice(i, i + 2), ['user', 'assistant'].slice(0, roles.length - i));
    assert.equal(body.messages && (body.messages as Obj[]).length, 14, 'the input is not changed');
  });

  it('trim-middle keeps the first turn and drops the ones after it', () => {
    const r = fit(chat(6, 50), { window: { contextTokens: 500 }, overflow: 'trim-middle' });
    assert.equal(r.kind, 'trimmed');
    if (r.kind !== 'trimmed') return;
    const kept = contents(r.body);
    assert.deepEqual(kept.slice(0, 3), ['system:You', 'user:q0', 'assistant:a0']);
    assert.ok(!kept.includes('user:q1'));
    assert.equal(kept.at(-1), 'user:last');
  });

  it('never separates tool calls from their results (OpenAI)', () => {
    const toolTurn: Obj[] = [
      { role: 'user', content: `tool ${words(40)}` },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: words(40) } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: words(40) },
      { role: 'assistant', content: 'done' },
    ];
    const body = {
      model: 'm',
      messages: [
        ...(chat(1, 40).messages as Obj[]).slice(0, -1),
        ...toolTurn,
        { role: 'user', content: 'last' },
      ],
    };
    for (const contextTokens of [150, 300, 450]) {
      const r = fit(body, { window: { contextTokens }, reserveOutputTokens: 10 });
      if (r.kind !== 'trimmed') continue;
      const ms = r.body.messages as Obj[];
      const call = ms.findIndex((m) => Array.isArray(m.tool_calls));
      const result = ms.findIndex((m) => m.role === 'tool');
      assert.equal(call === -1, result === -1, `context ${contextTokens}`);
    }
  });

  it('never separates tool_use from tool_result (Anthropic), and the first kept turn is a user turn', () => {
    const messages: Obj[] = [
      { role: 'user', content: `find ${words(60)}` },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 't1', name: 'search', input: { q: words(60) } }],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: words(60) }] },
      { role: 'assistant', content: [{ type: 'text', text: words(60) }] },
      { role: 'user', content: 'and now?' },
    ];
    const body = { system: 'sys', messages, max_tokens: 50 };
    const r = fitContext({
      operation: 'messages',
      body,
      window: { contextTokens: 150 },
      overflow: 'trim-oldest',
      outputLimit: 50,
      reserveOutputTokens: 0,
    });
    assert.equal(r.kind, 'trimmed');
    if (r.kind !== 'trimmed') return;
    // The tool_result message continues the first turn: the whole turn goes, not half of it.
    assert.deepEqual(r.body.messages, [{ role: 'user', content: 'and now?' }]);
    assert.equal(r.dropped, 4);
  });

  it('keeps a system message in the middle of a dropped turn', () => {
    const messages: Obj[] = [
      { role: 'user', content: words(100) },
      { role: 'system', content: 'mid rule' },
      { role: 'assistant', content: words(100) },
      { role: 'user', content: 'last' },
    ];
    const r = fit({ messages }, { window: { contextTokens: 150 } });
    assert.equal(r.kind, 'trimmed');
    assert.deepEqual(r.kind === 'trimmed' && r.body.messages, [messages[1], messages[3]]);
  });

  it('refuses what does not fit even with every earlier turn dropped, with that count', () => {
    const body = {
      messages: [
        { role: 'user', content: words(50) },
        { role: 'assistant', content: 'x' },
        { role: 'user', content: words(500) },
      ],
    };
    const r = fit(body, { window: { contextTokens: 300 } });
    assert.equal(r.kind, 'exceeded');
    assert.ok(r.kind === 'exceeded' && r.trimmedInputTokens! > 200);
  });

  it('Responses input items: function_call and its output leave together', () => {
    const input: Obj[] = [
      { role: 'user', content: words(80) },
      { type: 'function_call', call_id: 'c', name: 'f', arguments: words(80) },
      { type: 'function_call_output', call_id: 'c', output: words(80) },
      { role: 'developer', content: 'keep me' },
      { role: 'user', content: 'last' },
    ];
    const r = fitContext({
      operation: 'responses',
      body: { input },
      window: { contextTokens: 120 },
      overflow: 'trim-oldest',
      outputLimit: undefined,
      reserveOutputTokens: 20,
    });
    assert.equal(r.kind, 'trimmed');
    assert.deepEqual(r.kind === 'trimmed' && r.body.input, [input[3], input[4]]);
  });

  it('a prompt (legacy completions) cannot be trimmed: refused', () => {
    const r = fitContext({
      operation: 'completions',
      body: { prompt: words(300) },
      window: { contextTokens: 100 },
      overflow: 'trim-oldest',
      outputLimit: undefined,
      reserveOutputTokens: 0,
    });
    assert.equal(r.kind, 'exceeded');
  });
});
