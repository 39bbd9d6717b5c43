import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MaskingPolicy } from '../config/contract.js';
import type { Operation } from '../providers/endpoints.js';
import { detectAll, maskRequest, Tally } from './engine.js';
import { isBase64Payload } from './fields.js';
import { compileMasking } from './compiled.js';
import { BUILTIN_TYPES } from './detect/index.js';

const masking = compileMasking(MaskingPolicy.parse({}));
const EMAIL = 'leak@example.com';

/** Masks `body` in place and returns what would leave, asserting no EMAIL is left in it. */
async function masked(op: Operation, body: Record<string, unknown>): Promise<string> {
  await maskRequest({ masking, shadow: false, operation: op, body, tally: new Tally() });
  const out = JSON.stringify(body);
  assert.ok(!out.includes('leak@'), `a value left unmasked: ${out}`);
  return out;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('masking scans every field a model or provider reads', () => {
  it('a key that spells an exempt path (dots, or `*` as an object key) exempts nothing', async () => {
    // Exempt fields are matched by path; keys outside the APIs' own names must not forge one.
    await masked('chat', {
      model: 'gpt-x',
      'messages.*.tool_call_id': EMAIL,
      messages: [{ role: 'user', content: 'hi' }],
      metadata: { '*': { tool_call_id: EMAIL } },
    });
    await masked('chat', {
      model: 'gpt-x',
      messages: { '*': { role: 'tool', tool_call_id: EMAIL } },
    });
    await masked('responses', { model: 'gpt-x', 'input.*.call_id': EMAIL, input: 'hi' });
  });

  it('Anthropic: documents, search results, tool descriptions, metadata, nested tool results', async () => {
    await masked('messages', {
      model: 'claude-x',
      metadata: { user_id: EMAIL },
      tools: [
        {
          name: 'lookup',
          description: `Looks up ${EMAIL}`,
          input_schema: {
            type: 'object',
            properties: { who: { type: 'string', enum: [EMAIL], description: EMAIL } },
          },
        },
      ],
      system: [{ type: 'text', text: 'sys' }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: EMAIL } },
            {
              type: 'document',
              source: { type: 'content', content: [{ type: 'text', text: EMAIL }] },
              title: EMAIL,
              context: EMAIL,
            },
            {
              type: 'search_result',
              source: `https://x.example/${EMAIL}`,
              title: EMAIL,
              content: [{ type: 'text', text: EMAIL }],
            },
            {
              type: 'tool_result',
              tool_use_id: 'toolu_1',
              content: [{ type: 'text', text: EMAIL }],
            },
            { type: 'tool_use', id: 'toolu_2', name: 'x', input: { a: [[{ b: EMAIL }]] } },
          ],
        },
      ],
    });
  });

  it('Chat: names, tool descriptions and enums, prediction, response_format, user, metadata, custom tools, untyped parts', async () => {
    await masked('chat', {
      model: 'gpt',
      user: EMAIL,
      metadata: { customer: EMAIL },
      prediction: { type: 'content', content: EMAIL },
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'r',
          description: EMAIL,
          schema: { type: 'object', properties: { a: { description: EMAIL } } },
        },
      },
      tools: [
        {
          type: 'function',
          function: {
            name: 'f',
            description: EMAIL,
            parameters: { properties: { to: { type: 'string', enum: [EMAIL] } } },
          },
        },
      ],
      messages: [
        { role: 'user', name: EMAIL, content: [{ text: EMAIL }] },
        {
          role: 'assistant',
          tool_calls: [
            { id: 'c1', type: 'custom', custom: { name: 'sql', input: `select '${EMAIL}'` } },
          ],
        },
      ],
    });
  });

  it('Responses: prompt variables, reasoning summaries, web search queries', async () => {
    await masked('responses', {
      model: 'gpt',
      prompt: { id: 'pmpt_1', variables: { who: EMAIL } },
      input: [
        {
          type: 'reasoning',
          id: 'rs_1',
          summary: [{ type: 'summary_text', text: EMAIL }],
          encrypted_content: b64('opaque'),
        },
        { type: 'web_search_call', id: 'ws_1', action: { type: 'search', query: EMAIL } },
        {
          type: 'function_call',
          call_id: 'c',
          name: 'f',
          arguments: JSON.stringify({ to: EMAIL }),
        },
      ],
    });
  });

  it('keys of free-form objects are scanned and renamed in place, order kept', async () => {
    const body = {
      model: 'm',
      metadata: { first: '1', [EMAIL]: 'v', 'Card 4111 1111 1111 1111': 'x', last: '2' },
      messages: [],
    };
    await masked('chat', body);
    assert.deepEqual(Object.keys(body.metadata), [
      'first',
      '[EMAIL_1]',
      'Card [CREDIT_CARD_1]',
      'last',
    ]);
  });

  it('JSON inside a string is walked at any path; escapes do not hide a value', async () => {
    const escaped = '{"note":"leak\\u0040example.com"}';
    const body = {
      model: 'm',
      messages: [{ role: 'tool', tool_call_id: 't', content: escaped }],
    };
    const out = await masked('chat', body);
    assert.match(out, /\[EMAIL_1\]/);
  });

  it('JSON inside a string that repeats a key is re-serialized, so what leaves was scanned', async () => {
    const args = '{"to":"leak@example.com","to":"ok"}';
    const body = {
      model: 'm',
      messages: [
        { role: 'assistant', tool_calls: [{ id: 'c', function: { name: 'f', arguments: args } }] },
      ],
    };
    const r = await maskRequest({
      masking,
      shadow: false,
      operation: 'chat',
      body,
      tally: new Tally(),
    });
    assert.equal(r.changed, true);
    assert.equal(body.messages[0]!.tool_calls[0]!.function.arguments, '{"to":"ok"}');
  });

  it('exempt: the model, ids, and base64 payloads; text in a base64 field is scanned', async () => {
    const png = `data:image/png;base64,${b64(`${EMAIL} 4111 1111 1111 1111`)}`;
    const body = {
      model: EMAIL,
      messages: [
        {
          role: 'user',
          content: [
            {
              type: 'image',
              source: { type: 'base64', media_type: 'image/png', data: b64(EMAIL) },
            },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: EMAIL } },
            { type: 'tool_result', tool_use_id: `toolu_${EMAIL}`, content: 'x' },
          ],
        },
      ],
    };
    await maskRequest({ masking, shadow: false, operation: 'messages', body, tally: new Tally() });
    const content = body.messages[0]!.content as {
      source?: { data: string };
      tool_use_id?: string;
    }[];
    assert.equal(body.model, EMAIL);
    assert.equal(content[0]!.source!.data, b64(EMAIL));
    assert.equal(content[1]!.source!.data, '[EMAIL_1]');
    assert.equal(content[2]!.tool_use_id, `toolu_${EMAIL}`);
    assert.ok(isBase64Payload(png));
    assert.ok(!isBase64Payload(`data:text/plain,${EMAIL}`));
    assert.ok(!isBase64Payload(`https://x/${EMAIL}`));
  });

  it('a plain-text document is scanned even when its text is also valid base64', async () => {
    const body = {
      model: 'claude',
      messages: [
        {
          role: 'user',
          content: [
            {
              type: 'document',
              source: { type: 'text', media_type: 'text/plain', data: '4111111111111111' },
            },
          ],
        },
      ],
    };
    await maskRequest({ masking, shadow: false, operation: 'messages', body, tally: new Tally() });
    const doc = body.messages[0]!.content[0]!;
    assert.equal(doc.source.data, '[CREDIT_CARD_1]');
  });

  it('a value in a signed thinking block is refused, not rewritten', async () => {
    const body = {
      model: 'claude',
      messages: [
        {
          role: 'assistant',
          content: [{ type: 'thinking', thinking: `mail ${EMAIL}`, signature: b64('sig') }],
        },
      ],
    };
    const r = await maskRequest({
      masking,
      shadow: false,
      operation: 'messages',
      body,
      tally: new Tally(),
    });
    assert.deepEqual(r.blocked, [{ type: 'EMAIL in a signed thinking block', count: 1 }]);
    assert.equal(body.messages[0]!.content[0]!.thinking, `mail ${EMAIL}`);
  });
});

describe('detectAll', () => {
  it('finds per text what a pass per text finds, with offsets into each text', () => {
    const texts = [
      'mail a@example.com',
      'role',
      '',
      'card 4111 1111 1111 1111 ok',
      'b@example.org',
    ];
    assert.deepEqual(
      detectAll(masking.detectors, texts),
      texts.map((t) => masking.detectors.detect(t)),
    );
  });

  it('never joins two texts into one value', () => {
    const m = compileMasking(MaskingPolicy.parse({}));
    const got = detectAll(m.detectors, ['4111 1111', '1111 1111', 'a@', 'example.com']);
    assert.deepEqual(got, [[], [], [], []]);
  });

  it('re-runs a custom pattern that spans texts on each text alone', () => {
    const m = compileMasking(
      MaskingPolicy.parse({ customPatterns: [{ type: 'ANY', pattern: '[a-z\\x00\\n]{5,}' }] }),
    );
    const texts = ['abc', 'defghij'];
    assert.deepEqual(detectAll(m.detectors, texts), [[], [{ type: 'ANY', start: 0, end: 7 }]]);
  });

  it('detects a long text once while it recurs, alone, and the rest in one pass', () => {
    const m = compileMasking(MaskingPolicy.parse({ detectors: [...BUILTIN_TYPES] }));
    const seen: string[] = [];
    const counted = {
      types: m.detectors.types,
      detect: (text: string) => (seen.push(text), m.detectors.detect(text)),
    };
    const history = `My card is 4111 1111 1111 1111 and my mail is ${EMAIL}, please keep both safe.`;
    const turn = (n: number) =>
      `Turn ${n}: write to ${EMAIL} about the invoice due on Friday afternoon.`;
    const scope = m.findingsScope;
    for (const n of [1, 2, 3]) {
      seen.length = 0;
      const texts = ['user', history, 'assistant', turn(n)];
      const got = detectAll(counted, texts, scope);
      // The same findings as a pass per text.
      assert.deepEqual(
        got,
        texts.map((t) => m.detectors.detect(t)),
        `request ${n}`,
      );
      // The history on its own the first time only; each new turn alone; the short texts joined.
      const want = n === 1 ? [history, turn(n)] : [turn(n)];
      assert.deepEqual(
        seen.filter((t) => !t.includes('\u0000') && t.length >= 64),
        want,
        `request ${n}`,
      );
      assert.ok(
        seen.some((t) => t === 'user\n\u0000\nassistant'),
        `request ${n}: ${seen.join(' | ')}`,
      );
      // What the cache hands out is shared: frozen, so no request can change another's.
      assert.ok(Object.isFrozen(got[1]) && got[1]!.every((f) => Object.isFrozen(f)));
    }
  });

  it('finds in a long text what it finds alone, whatever its neighbours; short ones read together', () => {
    // The one pass over many texts lets a text's neighbour count as its context (a phone word on
    // the line before); a text kept by recentFindings must not depend on that, or a cached answer
    // would differ from a fresh one.
    const m = compileMasking(MaskingPolicy.parse({ detectors: [...BUILTIN_TYPES] }));
    const long =
      '730 064 218 is the number of the front desk, open from eight until late at night.';
    for (const before of [
      'Phone:',
      'Notes:',
      'My card is 4111 1111 1111 1111, keep it safe please.',
    ]) {
      const got = detectAll(m.detectors, [before, long], m.findingsScope);
      assert.deepEqual(got[1], m.detectors.detect(long), before);
    }
    // Two short strings (a label and its value) are still read together.
    const short = detectAll(m.detectors, ['Phone:', '730 064 218'], m.findingsScope);
    assert.deepEqual(short[1], [{ type: 'PHONE', start: 0, end: 11 }]);
  });

  it('keeps findings only for policies whose detectors cost more than a digest', () => {
    // The pattern types read a text faster than its digests are made: every text read each time.
    assert.equal(compileMasking(MaskingPolicy.parse({})).findingsScope, undefined);
    const a = compileMasking(MaskingPolicy.parse({ detectors: ['EMAIL', 'PERSON'] }));
    const b = compileMasking(MaskingPolicy.parse({ detectors: ['EMAIL', 'PERSON'] }));
    assert.ok(a.findingsScope !== undefined && b.findingsScope !== undefined);
    // Each compiled policy its own: a new config never reads an old one's findings.
    assert.notEqual(a.findingsScope, b.findingsScope);
  });

  it('masks a recurring text the same way every time', async () => {
    const m = compileMasking(MaskingPolicy.parse({ detectors: [...BUILTIN_TYPES] }));
    const history = `My card is 4111 1111 1111 1111 and my mail is ${EMAIL}, please keep both safe.`;
    const bodies = [1, 2].map(() => ({
      model: 'gpt-x',
      messages: [
        { role: 'user', content: history },
        { role: 'user', content: `and again: ${EMAIL}` },
      ],
    }));
    for (const body of bodies)
      await maskRequest({ masking: m, shadow: false, operation: 'chat', body, tally: new Tally() });
    assert.equal(JSON.stringify(bodies[0]), JSON.stringify(bodies[1]));
    assert.ok(!JSON.stringify(bodies[1]).includes('leak@'));
    assert.ok(!JSON.stringify(bodies[1]).includes('4111'));
  });

  it('places every finding in its own text, sorted or not, among texts re-run and not', () => {
    // Runs of 'a' (NUL and line breaks included, so a run spans the separator when one text
    // ends and the next starts with one): context-free, so the pass over all of them must give
    // what a pass per text gives.
    const runs = (text: string): { type: string; start: number; end: number }[] => {
      const out = [];
      const inRun = (c: string | undefined) => c === 'a' || c === '\n' || c === '\u0000';
      for (let i = 0; i < text.length;) {
        if (!inRun(text[i])) {
          i++;
          continue;
        }
        let e = i;
        while (inRun(text[e])) e++;
        if (text.slice(i, e).includes('a')) out.push({ type: 'A', start: i, end: e });
        i = e;
      }
      return out;
    };
    const texts = ['xa', 'ax', 'b', 'aaa', 'xxaxx', 'a', 'a', 'zz', 'bab', 'x'.repeat(40) + 'a'];
    const perText = texts.map(runs);
    for (const order of ['sorted', 'reversed'] as const) {
      const set = {
        types: ['A'],
        detect: (text: string) => (order === 'sorted' ? runs(text) : runs(text).reverse()),
      };
      const want = order === 'sorted' ? perText : perText.map((f) => [...f].reverse());
      assert.deepEqual(detectAll(set, texts), want, order);
    }
  });
});

describe('disguised values', () => {
  it('are masked whole, disguise included, and restored as written', async () => {
    const disguised = [
      'jane&#64;example.com',
      'jane%40exam\u2063ple.com',
      'jane@ex\u0430mple.com',
      '4111\t1111\t1111\t1111',
      '4111.1111.1111.1111',
    ];
    const body = {
      model: 'm',
      messages: [{ role: 'user', content: disguised.map((d) => `<${d}>`).join(' ') }],
    };
    const r = await maskRequest({
      masking,
      shadow: false,
      operation: 'chat',
      body,
      tally: new Tally(),
    });
    assert.equal(
      body.messages[0]!.content,
      '<[EMAIL_1]> <[EMAIL_2]> <[EMAIL_3]> <[CREDIT_CARD_1]> <[CREDIT_CARD_2]>',
    );
    assert.equal(r.lookup.get('[EMAIL_1]'), disguised[0]);
    assert.equal(r.lookup.get('[CREDIT_CARD_1]'), disguised[3]);
  });
});

describe('API enums', () => {
  it('role and type values shaped like enums are left to the API, anything else is scanned', async () => {
    const m = compileMasking(
      MaskingPolicy.parse({ wordLists: [{ type: 'WORD', words: ['user', 'text', 'secretive'] }] }),
    );
    const body = {
      model: 'm',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'a user wrote text' }] },
        {
          role: 'tool',
          tool_call_id: 't',
          content: JSON.stringify({ type: EMAIL, kind: 'secretive' }),
        },
      ],
    };
    await maskRequest({ masking: m, shadow: false, operation: 'chat', body, tally: new Tally() });
    assert.equal(body.messages[0]!.role, 'user');
    assert.deepEqual(body.messages[0]!.content, [
      { type: 'text', text: 'a [WORD_1] wrote [WORD_2]' },
    ]);
    assert.equal(body.messages[1]!.content, '{"type":"[EMAIL_1]","kind":"[WORD_3]"}');
  });
});
