// The quickstart as `npm start` runs it (examples/quickstart/quickstart.ts, in-process, on the
// same files), and the requests its printed text tells a newcomer to send: the curl commands are
// read from that text and sent as curl would send them, and the SDK snippet's settings are used
// with the official SDK. If the text and the gateway drift apart, this fails.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import {
  DEMO_KEY,
  MASKING_PROMPT,
  startQuickstart,
  type Quickstart,
} from '../../examples/quickstart/quickstart.js';
import { findEnvoy } from '../../operator/standalone/main.js';
import { freePort, until } from './harness.js';

interface Curl {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body: string | undefined;
  /** `for i in $(seq N); do curl …; done`: N; a lone curl: 1. */
  times: number;
}

/** Shell words of one command line: '…' quoted (no escapes inside, as printed) or bare. */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|([^\s']+)/g)].map((m) => m[1] ?? m[2]!);
}

/** Every curl command in the printed text, continuation lines joined. */
function curls(text: string): Curl[] {
  const lines = text.replace(/ \\\n\s*/g, ' ').split('\n');
  const out: Curl[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    const loop = /^for \w+ in \$\(seq (\d+)\); do (curl .*); done$/.exec(line);
    const command = loop ? loop[2]! : line.startsWith('curl ') ? line : undefined;
    if (command === undefined) continue;
    const w = words(command);
    const c: Curl = {
      url: '',
      method: 'GET',
      headers: {},
      body: undefined,
      times: loop ? Number(loop[1]) : 1,
    };
    for (let i = 1; i < w.length; i++) {
      const flag = w[i]!;
      if (flag === '-s') continue;
      if (flag === '-o' || flag === '-w') {
        i++;
      } else if (flag === '-H') {
        const h = w[++i]!;
        const colon = h.indexOf(':');
        c.headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
      } else if (flag === '-d') {
        c.body = w[++i]!;
        c.method = 'POST';
      } else if (/^https?:\/\//.test(flag)) {
        c.url = flag;
      } else {
        throw new Error(`the printed curl has an option this test does not know: ${flag}`);
      }
    }
    assert.ok(c.url, `no URL in: ${command}`);
    out.push(c);
  }
  return out;
}

async function send(c: Curl, drop: string[] = []): Promise<Response> {
  const headers = Object.fromEntries(Object.entries(c.headers).filter(([h]) => !drop.includes(h)));
  return fetch(c.url, {
    method: c.method,
    headers,
    ...(c.body !== undefined ? { body: c.body } : {}),
  });
}

interface Started {
  q: Quickstart;
  lines: Record<string, unknown>[];
}

async function start(extraEnv: Record<string, string>): Promise<Started> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  if (!('OPENAI_API_KEY' in extraEnv)) delete env['OPENAI_API_KEY'];
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      cb();
    },
  });
  const q = await startQuickstart({
    // Envoy needs a fixed port; the emulator binds an ephemeral one.
    port: findEnvoy(env) ? await freePort() : 0,
    admin: undefined,
    env,
    logger: pino({ level: 'info' }, sink),
    registry: new Registry(),
  });
  return { q, lines };
}

/** Warnings the run logged about the quickstart's own files: there must be none. */
function resourceWarnings(lines: Record<string, unknown>[]): unknown[] {
  return lines.filter((l) => l['event'] === 'not_accepted' || l['event'] === 'resource_problem');
}

describe('e2e: the quickstart (npm start) and the examples it prints', () => {
  let s: Started;
  let printed: Curl[];

  before(async () => {
    s = await start({});
    printed = curls(s.q.text);
  });
  after(async () => {
    await s?.q.close();
  });

  it('starts clean and prints a curl for masking, /v1/models and the budget, with the demo key', () => {
    assert.deepEqual(resourceWarnings(s.lines), []);
    assert.equal(s.q.openai, false);
    assert.doesNotMatch(s.q.text, /gpt-\*/);
    assert.equal(printed.length, 3);
    for (const c of printed) {
      assert.ok(c.url.startsWith(s.q.gateway.url), c.url);
      assert.equal(c.headers['authorization'], `Bearer ${DEMO_KEY}`);
    }
  });

  it('masking: the email comes back restored, the card redacted; the access log says why', async () => {
    const masking = printed[0]!;
    assert.equal(masking.times, 1);
    const r = await send(masking);
    assert.equal(r.status, 200);
    const body = (await r.json()) as { choices: { message: { content: string } }[] };
    // The mock echoes what reached it: the card never left the gateway, the email did only as
    // a placeholder, which the gateway put back.
    assert.equal(
      body.choices[0]?.message.content,
      `echo: ${MASKING_PROMPT.replace('4111 1111 1111 1111', '[CREDIT_CARD]')}`,
    );
    const line = await until(() =>
      s.lines.find((l) => l['log'] === 'access' && l['consumer'] === 'demo'),
    );
    assert.deepEqual(
      (line['findings'] as { type: string; action: string }[]).map((f) => `${f.type}:${f.action}`),
      ['EMAIL:mask', 'CREDIT_CARD:redact'],
    );
    assert.ok((line['cost_usd'] as number) > 0, 'the mock reported no usage, or it has no price');
  });

  it('the key is required: without it 401; with it /v1/models lists mock-model', async () => {
    const models = printed[1]!;
    assert.ok(models.url.endsWith('/v1/models'));
    const denied = await send(models, ['authorization']);
    assert.equal(denied.status, 401);
    const refusal = (await denied.json()) as { error: { message: string } };
    assert.match(refusal.error.message, /API key/);
    const listed = await send(models);
    assert.equal(listed.status, 200);
    const list = (await listed.json()) as { data: { id: string }[] };
    assert.deepEqual(
      list.data.map((m) => m.id),
      ['mock-model'],
    );
  });

  it('the SDK snippet streams through the same policy', async () => {
    const baseURL = /baseURL: '([^']+)'/.exec(s.q.text)?.[1];
    const apiKey = /apiKey: '([^']+)'/.exec(s.q.text)?.[1];
    const model = /model: '([^']+)', stream: true/.exec(s.q.text)?.[1];
    const content = /content: '([^']+)' }\],/.exec(s.q.text)?.[1];
    assert.ok(baseURL && apiKey && model && content, 'the SDK snippet changed shape');
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model,
      stream: true,
      messages: [{ role: 'user', content }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, `echo: ${content}`);
  });

  it('the budget loop: a few 200s, then 429 with retry-after until the day ends', async () => {
    const loop = printed[2]!;
    assert.ok(loop.times >= 5, 'the loop is too short to reach the budget');
    const statuses: number[] = [];
    for (let i = 0; i < loop.times; i++) {
      const r = await send(loop);
      statuses.push(r.status);
      await r.arrayBuffer();
    }
    const first429 = statuses.indexOf(429);
    assert.ok(first429 >= 1, `statuses ${statuses.join(' ')}`);
    assert.ok(
      statuses.slice(first429).every((st) => st === 429),
      `statuses ${statuses.join(' ')}`,
    );
    assert.ok(statuses.slice(0, first429).every((st) => st === 200));
    const r = await send(loop);
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'budget_exceeded');
    assert.match(body.error.message, /Daily spend limit "daily-spend" reached/);
  });

  it('no log line holds the demo key or the masked values', () => {
    for (const l of s.lines) {
      const text = JSON.stringify(l);
      for (const v of [DEMO_KEY, 'ada@example.com', '4111 1111 1111 1111']) {
        assert.ok(!text.includes(v), `a log line holds ${v === DEMO_KEY ? 'the key' : 'PII'}`);
      }
    }
  });
});

describe('e2e: the quickstart with OPENAI_API_KEY set', () => {
  let s: Started;

  before(async () => {
    s = await start({ OPENAI_API_KEY: 'sk-quickstart-test-not-a-real-key' });
  });
  after(async () => {
    await s?.q.close();
  });

  it('adds the OpenAI route under the same policy: no key, no request to OpenAI', async () => {
    assert.deepEqual(resourceWarnings(s.lines), []);
    assert.equal(s.q.openai, true);
    assert.match(s.q.text, /gpt-\* \(OpenAI/);
    // Refused by the policy's identity section before any routing: nothing goes out, so this
    // test needs no network.
    const r = await fetch(`${s.q.gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 401);
    const line = await until(() =>
      s.lines.find((l) => l['log'] === 'access' && l['request_model'] === 'gpt-4o-mini'),
    );
    assert.equal(line['route'], 'default/openai');
    assert.equal(line['error_code'], 'unauthenticated');
  });
});
