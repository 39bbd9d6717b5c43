import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MaskingPolicy } from '../config/contract.js';
import type { Operation } from '../providers/endpoints.js';
import { SseParser } from '../usage/sse.js';
import { OutputTransform, Tally } from './engine.js';
import { MAX_REQUEST_DEPTH, NestingTooDeep, responseSlots } from './fields.js';
import { compileMasking } from './compiled.js';
import { SseMasking } from './sse.js';
import { RequestVault } from './vault.js';

const EMAIL = 'jane.doe@example.com';

/** A transform that restores EMAIL for its placeholder and scans for new findings. */
function transform(): { t: OutputTransform; placeholder: string } {
  const vault = new RequestVault();
  const [placeholder] = vault.put([{ type: 'EMAIL', value: EMAIL }]);
  const masking = compileMasking(MaskingPolicy.parse({ scanResponses: true }));
  return { t: new OutputTransform(masking, false, vault, new Tally()), placeholder: placeholder! };
}

/** What the response phase does to a whole answer (pipeline/response.ts, cache/cache.ts). */
function restoreWhole(op: Operation, body: Record<string, unknown>, t: OutputTransform): string {
  const list = responseSlots(op, body);
  for (const s of list.slots) {
    const to = t.whole(s.text, s.json);
    if (to !== s.text) s.set(to);
  }
  list.commit();
  return JSON.stringify(body);
}

function nested(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { k: v } : [v];
  return v;
}

describe('response masking sees every string the caller receives', () => {
  it('chat: reasoning text, annotations, tool names and arguments, unknown fields', () => {
    const { t, placeholder } = transform();
    const out = restoreWhole(
      'chat',
      {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        model: 'gpt-x',
        choices: [
          {
            index: 0,
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: null,
              reasoning_content: `think of ${placeholder}`,
              annotations: [{ type: 'url_citation', url_citation: { title: placeholder } }],
              tool_calls: [
                {
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'mail', arguments: JSON.stringify({ to: [placeholder] }) },
                },
              ],
              vendor_extra: { note: placeholder },
            },
          },
        ],
      },
      t,
    );
    assert.ok(!out.includes(placeholder), out);
    assert.equal(out.split(EMAIL).length - 1, 4, out);
    const parsed = JSON.parse(out) as { choices: [{ message: { tool_calls: [any] } }] };
    // Arguments stay a JSON document in a string.
    assert.deepEqual(JSON.parse(parsed.choices[0].message.tool_calls[0].function.arguments), {
      to: [EMAIL],
    });
  });

  it('Anthropic: server tool input and results, nested past the old 32-level walk', () => {
    const { t, placeholder } = transform();
    const body = {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      stop_reason: 'end_turn',
      content: [
        {
          type: 'server_tool_use',
          id: 'srvtoolu_1',
          name: 'web_search',
          input: { query: placeholder },
        },
        {
          type: 'web_search_tool_result',
          tool_use_id: 'srvtoolu_1',
          content: [{ type: 'web_search_result', title: placeholder, url: 'https://x.example' }],
        },
        { type: 'tool_use', id: 'toolu_1', name: 'f', input: nested(40, placeholder) },
      ],
    };
    const out = restoreWhole('messages', body, t);
    assert.ok(!out.includes(placeholder), out);
    assert.equal(out.split(EMAIL).length - 1, 3, out);
  });

  it('Responses: reasoning summaries and unknown output items', () => {
    const { t, placeholder } = transform();
    const out = restoreWhole(
      'responses',
      {
        id: 'resp_1',
        object: 'response',
        model: 'gpt-x',
        status: 'completed',
        output: [
          { id: 'rs_1', type: 'reasoning', summary: [{ type: 'summary_text', text: placeholder }] },
          {
            id: 'x_1',
            type: 'web_search_call',
            status: 'completed',
            action: { query: placeholder },
          },
        ],
      },
      t,
    );
    assert.ok(!out.includes(placeholder), out);
  });

  it('leaves ids, the model, finish reasons, base64 payloads and signed thinking alone', () => {
    const body = {
      id: 'jane.doe@example.com',
      model: 'jane.doe@example.com',
      content: [
        { type: 'thinking', thinking: EMAIL, signature: 'c2lnbmF0dXJl' },
        { type: 'redacted_thinking', data: 'ZW5jcnlwdGVk' },
        { type: 'tool_use', id: EMAIL, name: 'f', input: {} },
      ],
      stop_reason: EMAIL,
    };
    assert.deepEqual(
      responseSlots('messages', body).slots.map((s) => s.text),
      ['f'],
    );
    const chat = {
      id: EMAIL,
      object: 'chat.completion',
      model: EMAIL,
      system_fingerprint: EMAIL,
      choices: [{ finish_reason: EMAIL, message: { audio: { id: EMAIL, data: 'QUJD' } } }],
    };
    assert.deepEqual(responseSlots('chat', chat).slots, []);
  });

  it('refuses to skip: an answer nested past the limit is a fault, never passed unread', () => {
    assert.throws(
      () =>
        responseSlots('chat', { choices: [{ message: { x: nested(MAX_REQUEST_DEPTH, 'a') } }] }),
      NestingTooDeep,
    );
  });

  it('Responses stream: events the gateway has no case for are restored too', () => {
    const { t, placeholder } = transform();
    const m = new SseMasking('responses', t);
    const ev = {
      type: 'response.reasoning_summary_text.done',
      item_id: 'rs_1',
      output_index: 0,
      summary_index: 0,
      text: `about ${placeholder}`,
    };
    const call = {
      type: 'response.output_item.done',
      output_index: 1,
      item: {
        id: 'fc_1',
        type: 'function_call',
        call_id: 'c1',
        name: 'mail',
        arguments: JSON.stringify({ a: { b: placeholder } }),
      },
    };
    const raw = `event: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\nevent: ${call.type}\ndata: ${JSON.stringify(call)}\n\n`;
    const out: Buffer[] = [];
    for (const e of new SseParser().push(Buffer.from(raw))) out.push(...m.onEvent(e));
    out.push(...m.end());
    const text = Buffer.concat(out).toString('utf8');
    assert.ok(!text.includes(placeholder), text);
    const datas = text.split('\n').filter((l) => l.startsWith('data: '));
    assert.equal((JSON.parse(datas[0]!.slice(6)) as { text: string }).text, `about ${EMAIL}`);
    const item = (JSON.parse(datas[1]!.slice(6)) as { item: { arguments: string; id: string } })
      .item;
    assert.deepEqual(JSON.parse(item.arguments), { a: { b: EMAIL } });
    assert.equal(item.id, 'fc_1');
  });
});

describe('Anthropic stream: blocks that arrive whole in content_block_start', () => {
  it('a server-tool result block is restored; a signed thinking block is left as sent', () => {
    const { t, placeholder } = transform();
    const m = new SseMasking('messages', t);
    const result = {
      type: 'content_block_start',
      index: 1,
      content_block: {
        type: 'web_search_tool_result',
        tool_use_id: 'srvtoolu_1',
        content: [{ type: 'web_search_result', title: placeholder, url: 'https://x.example' }],
      },
    };
    const thinking = {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'thinking', thinking: placeholder, signature: 'c2ln' },
    };
    const raw = [thinking, result]
      .map((ev) => `event: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`)
      .join('');
    const out: Buffer[] = [];
    for (const e of new SseParser().push(Buffer.from(raw))) out.push(...m.onEvent(e));
    const datas = Buffer.concat(out)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)) as { content_block: any });
    assert.equal(datas[0]!.content_block.thinking, placeholder);
    assert.equal(datas[1]!.content_block.content[0].title, EMAIL);
    assert.equal(datas[1]!.content_block.tool_use_id, 'srvtoolu_1');
  });
});
