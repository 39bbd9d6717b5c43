// Masking configured the way users configure it: AIRoute and AIPolicy YAML run by the standalone
// gateway (operator translation → ADS → extproc and envoy-sim), called with the official SDKs.
// The mock providers echo the last user message, so what the model "says" is exactly what it was
// sent: placeholders upstream, originals restored for the caller.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import {
  startMockProvider,
  type Captured,
  type MockProvider,
} from '../../operator/mock-provider/provider.js';
import {
  KEYS,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  type YamlGateway,
} from './harness.js';

const SESSION_HEADER = 'x-chat-session';

// Values every detector accepts: a Luhn-valid card, an SSN the SSA rules allow, and a value of
// the policy's own pattern. Each one is unique in the run so any log line holding it is a leak.
const PII = {
  email: 'ada.lovelace@example.org',
  email2: 'charles.babbage@example.net',
  card: '4111 1111 1111 1111',
  ssn: '219-09-9998',
  employee: 'EMP-482913',
  shadowEmail: 'grace.hopper@example.com',
  liveEmail: 'alan.turing@example.edu',
  blockedSsn1: '078-05-1121',
  blockedSsn2: '123-45-6780',
};

const PLACEHOLDER = /\[[A-Z][A-Z0-9_]*_[0-9]+\]/;

function route(name: string, model: string, provider: 'openai' | 'anthropic'): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: provider,
          provider,
          endpoint: { service: { name: `mock-${provider}`, port: 80 } },
          credential: { secretRef: { name: provider } },
        },
      ],
    },
  };
}

function policy(name: string, targets: string[], spec: Record<string, unknown>): unknown {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), ...spec },
  };
}

const MASKING = {
  detectors: ['EMAIL', 'CREDIT_CARD', 'US_SSN'],
  customPatterns: [{ type: 'EMPLOYEE_ID', pattern: 'EMP-[0-9]{6}' }],
  actions: { EMAIL: 'mask', CREDIT_CARD: 'mask', US_SSN: 'redact', EMPLOYEE_ID: 'mask' },
  reversible: true,
  sessionHeader: SESSION_HEADER,
};

function manifests(openaiPort: number, anthropicPort: number, liveMasking: boolean): unknown[] {
  return [
    route('chat', 'gpt-masked', 'openai'),
    route('claude', 'claude-masked', 'anthropic'),
    route('guarded', 'gpt-guarded', 'openai'),
    route('shadowed', 'gpt-shadow', 'openai'),
    route('live', 'gpt-live', 'openai'),
    policy('pii', ['chat', 'claude'], { masking: MASKING }),
    policy('no-ssn', ['guarded'], {
      masking: { detectors: ['EMAIL', 'US_SSN'], actions: { US_SSN: 'block' } },
    }),
    policy('watch-only', ['shadowed'], { mode: 'shadow', masking: MASKING }),
    ...(liveMasking ? [policy('live-pii', ['live'], { masking: MASKING })] : []),
    secretDoc('openai', KEYS.primary),
    secretDoc('anthropic', KEYS.anthropic),
    ...serviceDocs('mock-openai', openaiPort),
    ...serviceDocs('mock-anthropic', anthropicPort),
  ];
}

/** Everything the provider was sent: headers and body, as one searchable string. */
function seenText(c: Captured): string {
  return JSON.stringify(c.headers) + c.body.toString('utf8');
}

function assertNoOriginals(c: Captured, values: string[]): void {
  const text = seenText(c);
  for (const v of values) assert.ok(!text.includes(v), `the provider was sent an original value`);
}

function userText(c: Captured): string {
  const messages = c.json?.['messages'] as { role: string; content: unknown }[];
  const last = messages[messages.length - 1]!;
  return typeof last.content === 'string'
    ? last.content
    : (last.content as { text?: string }[]).map((p) => p.text ?? '').join('');
}

describe('e2e: masking from AIPolicy YAML with the official SDKs', () => {
  let openaiMock: MockProvider;
  let anthropicMock: MockProvider;
  let g: YamlGateway;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    openaiMock = await startMockProvider({ name: 'openai', auth: { bearer: KEYS.primary } });
    anthropicMock = await startMockProvider({
      name: 'anthropic',
      auth: { anthropicKey: KEYS.anthropic },
    });
    g = await startYamlGateway(manifests(openaiMock.port, anthropicMock.port, false));
    openai = new OpenAI({ baseURL: `${g.gateway.url}/v1`, apiKey: KEYS.client, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: g.gateway.url, apiKey: KEYS.client, maxRetries: 0 });
  });
  after(async () => {
    await g?.close();
    await openaiMock?.close();
    await anthropicMock?.close();
  });

  const prompt = `Mail ${PII.email}, card ${PII.card}, SSN ${PII.ssn}, badge ${PII.employee}.`;
  // The SSN is redacted (not reversible), so the caller gets the typed marker back, not the value.
  const restored = `echo: Mail ${PII.email}, card ${PII.card}, SSN [US_SSN], badge ${PII.employee}.`;
  const originals = [PII.email, PII.card, PII.ssn, PII.employee];

  it('chat JSON: placeholders upstream, originals restored for the caller', async () => {
    openaiMock.take();
    const r = await openai.chat.completions.create({
      model: 'gpt-masked',
      messages: [{ role: 'user', content: prompt }],
    });
    const [seen] = openaiMock.take();
    assert.ok(seen);
    assertNoOriginals(seen, originals);
    assert.equal(
      userText(seen),
      'Mail [EMAIL_1], card [CREDIT_CARD_1], SSN [US_SSN], badge [EMPLOYEE_ID_1].',
    );
    assert.equal(r.choices[0]?.message.content, restored);
  });

  it('chat SSE: placeholders split across many deltas are restored exactly', async () => {
    openaiMock.take();
    // Three characters per delta: every placeholder spans several events. (How many deltas the
    // caller gets is the gateway's business: its response scanner holds text back at word edges.)
    openaiMock.enqueue({ chunkChars: 3, chunkDelayMs: 1 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-masked',
      stream: true,
      messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, restored);
    const [seen] = openaiMock.take();
    assert.ok(seen);
    assertNoOriginals(seen, originals);
    assert.match(userText(seen), /\[EMAIL_1\]/);
  });

  it('Anthropic messages JSON and SSE: same masking and restoring', async () => {
    anthropicMock.take();
    const m = await anthropic.messages.create({
      model: 'claude-masked',
      max_tokens: 256,
      messages: [{ role: 'user', content: prompt }],
    });
    assert.equal(m.content[0]?.type === 'text' ? m.content[0].text : '', restored);
    const [seenJson] = anthropicMock.take();
    assert.ok(seenJson);
    assert.equal(seenJson.api, 'anthropic');
    assertNoOriginals(seenJson, originals);
    assert.equal(
      userText(seenJson),
      'Mail [EMAIL_1], card [CREDIT_CARD_1], SSN [US_SSN], badge [EMPLOYEE_ID_1].',
    );

    anthropicMock.enqueue({ chunkChars: 2, chunkDelayMs: 1 });
    const stream = anthropic.messages.stream({
      model: 'claude-masked',
      max_tokens: 256,
      messages: [{ role: 'user', content: prompt }],
    });
    let text = '';
    stream.on('text', (t) => (text += t));
    await stream.finalMessage();
    assert.equal(text, restored);
    const [seenSse] = anthropicMock.take();
    assert.ok(seenSse);
    assertNoOriginals(seenSse, originals);
  });

  it('a conversation resent whole keeps each value on one placeholder', async () => {
    // These callers are anonymous, so the session header binds nothing (a conversation vault
    // belongs to an authenticated caller); numbering is per request, and stable within it.
    openaiMock.take();
    const session = { headers: { [SESSION_HEADER]: 'conversation-a' } };
    const first = await openai.chat.completions.create(
      { model: 'gpt-masked', messages: [{ role: 'user', content: `Write to ${PII.email}` }] },
      session,
    );
    assert.equal(first.choices[0]?.message.content, `echo: Write to ${PII.email}`);
    const second = await openai.chat.completions.create(
      {
        model: 'gpt-masked',
        messages: [
          { role: 'user', content: `Write to ${PII.email}` },
          { role: 'assistant', content: `echo: Write to ${PII.email}` },
          { role: 'user', content: `Copy ${PII.email2}, then ${PII.email}` },
        ],
      },
      session,
    );
    assert.equal(second.choices[0]?.message.content, `echo: Copy ${PII.email2}, then ${PII.email}`);
    const [t1, t2] = openaiMock.take();
    assert.ok(t1 && t2);
    assert.equal(userText(t1), 'Write to [EMAIL_1]');
    assert.equal(userText(t2), 'Copy [EMAIL_2], then [EMAIL_1]');
    assertNoOriginals(t2, [PII.email, PII.email2]);

    // Another conversation starts its own numbering: placeholders are not shared between them.
    await openai.chat.completions.create(
      { model: 'gpt-masked', messages: [{ role: 'user', content: `Ask ${PII.email2}` }] },
      { headers: { [SESSION_HEADER]: 'conversation-b' } },
    );
    const [t3] = openaiMock.take();
    assert.ok(t3);
    assert.equal(userText(t3), 'Ask [EMAIL_1]');
  });

  it("another anonymous caller sending the same session header gets none of the first caller's values", async () => {
    openaiMock.take();
    const session = { headers: { [SESSION_HEADER]: 'conversation-stolen' } };
    const first = await openai.chat.completions.create(
      { model: 'gpt-masked', messages: [{ role: 'user', content: `Write to ${PII.email}` }] },
      session,
    );
    assert.equal(first.choices[0]?.message.content, `echo: Write to ${PII.email}`);
    // Caller B asks for A's placeholder under A's session id: the model's echo stays a placeholder.
    const second = await openai.chat.completions.create(
      { model: 'gpt-masked', messages: [{ role: 'user', content: 'Who is [EMAIL_1]?' }] },
      session,
    );
    assert.equal(second.choices[0]?.message.content, 'echo: Who is [EMAIL_1]?');
    assert.ok(!JSON.stringify(second).includes(PII.email));
  });

  it('a block action: 403 naming the type and count, never the value; nothing sent', async () => {
    openaiMock.take();
    const err = await openai.chat.completions
      .create({
        model: 'gpt-guarded',
        messages: [
          { role: 'user', content: `SSNs ${PII.blockedSsn1} and ${PII.blockedSsn2}, ${PII.email}` },
        ],
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(err instanceof OpenAI.PermissionDeniedError, `expected a 403, got ${String(err)}`);
    assert.equal(err.status, 403);
    assert.match(err.message, /US_SSN \(2\)/);
    assert.ok(!/EMAIL/.test(err.message), 'a masked type was reported as blocking');
    for (const v of [PII.blockedSsn1, PII.blockedSsn2, PII.email]) {
      assert.ok(!err.message.includes(v), 'the error message holds a blocked value');
      assert.ok(!JSON.stringify(err.error).includes(v), 'the error body holds a blocked value');
    }
    assert.deepEqual(openaiMock.take(), []);
  });

  it('shadow mode: the request goes upstream unchanged and succeeds', async () => {
    openaiMock.take();
    const content = `Mail ${PII.shadowEmail} and ${PII.ssn}`;
    const r = await openai.chat.completions.create({
      model: 'gpt-shadow',
      messages: [{ role: 'user', content }],
    });
    assert.equal(r.choices[0]?.message.content, `echo: ${content}`);
    const [seen] = openaiMock.take();
    assert.ok(seen);
    assert.equal(userText(seen), content);
    assert.doesNotMatch(seenText(seen), PLACEHOLDER);
    // Shadow mode still reports what it would have done.
    const line = await until(() =>
      g.accessLog.find((e) => e['route'] === 'e2e/shadowed' && e['request_model'] === 'gpt-shadow'),
    );
    assert.ok((line['verdicts'] as string[]).includes('would_mask'), 'no would-be verdict');
    assert.deepEqual(
      (line['findings'] as { direction: string; type: string; action: string }[])
        .filter((f) => f.direction === 'request')
        .map((f) => `${f.type}:${f.action}`),
      ['EMAIL:would_mask', 'US_SSN:would_redact'],
    );
  });

  it('masking turned on by rewriting the YAML applies under load without dropped requests', async () => {
    const content = `Reach me at ${PII.liveEmail}`;
    const expected = `echo: ${content}`;
    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const wrong: string[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await openai.chat.completions.create({
            model: 'gpt-live',
            messages: [{ role: 'user', content }],
          });
          // Unmasked before the change, masked and restored after: the caller sees the same.
          const text = r.choices[0]?.message.content ?? '';
          if (text !== expected) wrong.push(text);
          ok++;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    openaiMock.take();
    const workers = [worker(), worker(), worker()];
    // Traffic flows unmasked first, so the change happens under load rather than before it.
    await until(() => openaiMock.requests.some((c) => userText(c) === content) || undefined);
    const before = g.gateway.version();
    await g.write(manifests(openaiMock.port, anthropicMock.port, true));
    await until(() => g.gateway.version() !== before || undefined);
    const masked = (c: Captured): boolean => userText(c) === 'Reach me at [EMAIL_1]';
    const okAtChange = ok;
    const afterFirstMasked = await until(() => {
      const all = openaiMock.requests;
      const first = all.findIndex(masked);
      return first >= 0 && all.length - first > 9 ? all.slice(first) : undefined;
    });
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, []);
    assert.deepEqual(wrong, []);
    assert.ok(ok > okAtChange);
    // Once one request was masked, only requests already in flight (one per other worker) may
    // still go out on the old config: more would mean the extproc flapped between configs.
    const stragglers = afterFirstMasked.filter((c) => !masked(c)).length;
    assert.ok(stragglers <= workers.length - 1, `${stragglers} unmasked after the change`);
  });

  it('no log line of the whole run holds a sensitive value', () => {
    assert.ok(g.logLines.length > 0);
    // The run did log the masking it did (counts by type), so the check below is not vacuous.
    assert.ok(
      g.accessLog.some((e) => JSON.stringify(e['findings'] ?? []).includes('EMPLOYEE_ID')),
      'no access-log line reports the masking findings',
    );
    for (const line of g.logLines) {
      for (const [name, value] of Object.entries(PII)) {
        assert.ok(!line.includes(value), `a log line holds PII.${name}`);
      }
    }
  });
});
