// An attempt that went out and then timed out or was reset: Envoy answers the caller itself
// (504/503, shaped by local_reply_config) and the router filter never sees that reply — its stream
// just ends (Filter::onLocalReply, Envoy 1.34+). The request is charged its prompt estimate,
// marked estimated, and its reservation is settled: nothing stays reserved.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { utcDay } from '../../extproc/governance/budget.js';
import { ExtProcFilter } from '../../operator/envoy-sim/ext-proc/index.js';
import {
  accessLines,
  chatHeaders,
  continued,
  ROUTER,
  sendRequest,
  startHarness,
  waitFor,
  type Harness,
} from './harness.js';

const KEY = 'sk-sluice-ivan-0009';
const sha = (k: string) => createHash('sha256').update(k).digest('hex');

/** Input at $1 per million tokens, output at $1000: the prompt estimate is what is charged. */
const CONFIG = `
apiVersion: sluice.dev/extproc/v1
kind: ExtprocConfig
version: accounting-1
backends:
  - name: openai
    cluster: sluice/backend/openai
    provider: openai
    credential: { value: sk-backend-openai-0001 }
consumers:
  - { name: ivan, team: t, keyHashes: ['${sha(KEY)}'] }
policies:
  - name: gov
    identity: { keys: {} }
    limits:
      rules:
        - { name: daily-spend, per: [consumer], spendPerDayUsd: 0.5 }
    pricing:
      models:
        '*': { inputPerMTok: 1, outputPerMTok: 1000 }
routes:
  - name: gpt
    models: [{ prefix: 'gpt-' }]
    backends: [{ name: openai }]
    governance: gov
`;

let h: Harness;
before(async () => {
  h = await startHarness(CONFIG);
});
after(async () => {
  await h.stop();
});

const headers = () =>
  chatHeaders([], '/v1/chat/completions')
    .filter(([k]) => k !== 'authorization')
    .concat([['authorization', `Bearer ${KEY}`]]);
const chat = {
  model: 'gpt-4o-mini',
  max_tokens: 200,
  messages: [{ role: 'user', content: 'a prompt of some length to estimate '.repeat(20) }],
};

describe('conformance: an attempt that timed out or was reset (no response reached the router)', () => {
  it('is charged its prompt estimate, marked estimated; the reservation is settled', async () => {
    // The router phase admits and reserves; the upstream phase begins the attempt.
    const { router, upstream } = await sendRequest(h, headers(), chat, 'sluice/backend/openai');
    continued(upstream);
    // Envoy's 504 went to the caller; the router filter's stream just ends.
    router.close();
    await waitFor(() => accessLines(h).some((l) => l.consumer === 'ivan'));
    const line = accessLines(h).find((l) => l.consumer === 'ivan')!;
    assert.equal(line.outcome, 'aborted');
    assert.ok((line.verdicts as string[]).includes('reserved'));
    const tokens = line.tokens as { input: number; output: number; estimated: boolean };
    assert.equal(tokens.estimated, true);
    assert.ok(tokens.input > 50, 'the prompt estimate');
    assert.equal(tokens.output, 0);
    assert.ok((line.cost_usd as number) > 0);
    assert.ok((line.cost_usd as number) < 0.001, 'input only, never the output reserved');

    // Settled, not left reserved: the day's usage has it, and the whole budget is available
    // again but for that charge (a $0.20 reservation fits twice, not once).
    await h.ext.settled();
    const rows = await h.ext.stateStore.usage('day', utcDay(Date.now()));
    const u = rows.find((r) => r.dims.consumer === 'ivan')?.values;
    assert.equal(u?.requests, 1);
    assert.ok((u?.inputTokens ?? 0) > 50);
    for (let i = 0; i < 2; i++) {
      const f = new ExtProcFilter(h.client, ROUTER);
      const r = await f.runRequest(headers(), [Buffer.from(JSON.stringify(chat))]);
      assert.equal(r.kind, 'continue', `admission ${i + 1}`);
      f.close();
    }
  });
});
