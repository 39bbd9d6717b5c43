// A broken policy must never open the gate (issue 11 item 1), through `sluice run` with live
// reload as an operator edits YAML: a route that requires a key and masks email is edited into
// (a) a file that no longer parses and (b) a policy that parses but cannot compile (a lookahead,
// which RE2 refuses). Neither may let a keyless request through or the raw email reach the
// provider, which records everything that left the gateway; fixing the file serves again.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { APIError } from 'openai';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { stringify } from 'yaml';
import {
  counterValue,
  extprocVersions,
  failure,
  sdkClients,
  secretDoc,
  serviceDocs,
  startYamlGateway,
  until,
  untilExtprocApplies,
  type YamlGateway,
} from './harness.js';

const UPSTREAM_KEY = 'sk-upstream-policy-invalid';
const CALLER_KEY = 'sk-sluice-policy-invalid-caller-0001';
const EMAIL = 'ada.policy-invalid@example.org';
const MODEL = 'gpt-guarded';

const ROUTE = {
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'AIRoute',
  metadata: { name: 'chat', namespace: 'e2e' },
  spec: {
    models: [{ exact: MODEL }],
    backends: [
      {
        name: 'openai',
        provider: 'openai',
        endpoint: { service: { name: 'mock-openai', port: 80 } },
        credential: { secretRef: { name: 'openai' } },
      },
    ],
  },
};

const CONSUMER = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: {
    name: 'caller-key',
    namespace: 'sluice-system',
    labels: { 'sluice.dev/consumer': 'caller' },
  },
  stringData: { key: CALLER_KEY },
};

/** The governing policy as YAML text, so a test can write any bytes in its place. */
function policyYaml(customPattern: string): string {
  return stringify({
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name: 'guard', namespace: 'e2e' },
    spec: {
      targetRefs: [{ name: 'chat' }],
      consumers: { required: true, keys: {} },
      masking: {
        detectors: ['EMAIL'],
        customPatterns: [{ type: 'TICKET', pattern: customPattern }],
      },
    },
  });
}
const GOOD = policyYaml('TCK-[0-9]{6}');
// RE2 has no lookaround: the extproc cannot compile this, though the apiserver would store it.
const UNCOMPILABLE = policyYaml('TCK-(?=[0-9]{6})[0-9]+');
// An editor mid-save, or a typo: the same policy, loosened, then a YAML syntax error. Read up to
// the error it would no longer require a key.
const UNPARSABLE = `${GOOD.replace('required: true', 'required: false')}  mode: [enforce\n`;

describe('e2e: a broken policy keeps its routes closed (sluice run, live reload)', () => {
  let mock: MockProvider;
  let g: YamlGateway;
  let policyFile: string;

  const chat = (apiKey?: string) =>
    sdkClients(g.gateway.url, apiKey ?? 'no-key-at-all').openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: `mail ${EMAIL} please` }],
    });
  const rawEmailLeft = () => mock.requests.some((r) => r.body.toString('utf8').includes(EMAIL));

  /** Governed as written: a keyless call is 401, a keyed one is served with the email masked. */
  async function assertGoverned(): Promise<void> {
    const err = await failure(chat());
    assert.ok(err instanceof APIError, String(err));
    assert.equal(err.status, 401);
    const before = mock.requests.length;
    const ok = await chat(CALLER_KEY);
    assert.equal(ok.choices[0]!.message.content?.includes(EMAIL), true, 'restored for the caller');
    assert.equal(mock.requests.length, before + 1);
    assert.equal(rawEmailLeft(), false, 'the provider never saw the raw email');
  }

  before(async () => {
    mock = await startMockProvider({ name: 'openai', auth: { bearer: UPSTREAM_KEY } });
    g = await startYamlGateway(
      [
        ROUTE,
        CONSUMER,
        secretDoc('openai', UPSTREAM_KEY),
        ...serviceDocs('mock-openai', mock.port),
      ],
      {
        setup: async (dir) => {
          policyFile = join(dir, 'policy.yaml');
          await writeFile(policyFile, GOOD, 'utf8');
        },
      },
    );
  });
  after(async () => {
    await g?.close();
    await mock?.close();
  });

  it('serves the route governed while the policy is good', async () => {
    await assertGoverned();
  });

  it('(a) keeps the last good state of a policy file that no longer parses', async () => {
    const version = extprocVersions(g).at(-1);
    const logged = g.logLines.length;
    await writeFile(policyFile, UNPARSABLE, 'utf8');
    // The reload happened and said so loudly (error level), naming the file.
    const line = await until(() =>
      g.logLines
        .slice(logged)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((e) => e['event'] === 'resource_problem' && e['source'] === policyFile),
    );
    assert.equal(line['level'], 50);
    assert.match(String(line['problem']), /last good state stays in force/);
    assert.equal(extprocVersions(g).at(-1), version, 'nothing new was served');
    await assertGoverned();
  });

  it('(b) refuses the routes of a policy that parses but cannot compile, in the caller format', async () => {
    const version = extprocVersions(g).at(-1);
    const before = mock.requests.length;
    await writeFile(policyFile, UNCOMPILABLE, 'utf8');
    await untilExtprocApplies(g, version);
    for (const key of [undefined, CALLER_KEY]) {
      const err = await failure(chat(key));
      assert.ok(err instanceof APIError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, 'policy_invalid');
      // Nothing of the policy (its name, field or pattern) reaches the caller.
      assert.doesNotMatch(err.message, /guard|TICKET|\(\?=|customPatterns/);
    }
    const anthropic = sdkClients(g.gateway.url, CALLER_KEY).anthropic;
    const err = await failure(
      anthropic.messages.create({
        model: MODEL,
        max_tokens: 16,
        messages: [{ role: 'user', content: `mail ${EMAIL}` }],
      }),
    );
    assert.equal((err as { status?: number }).status, 503);
    assert.match(JSON.stringify((err as { error?: unknown }).error), /"type":"error"/);
    assert.equal(mock.requests.length, before, 'nothing reached the provider');
    assert.equal(rawEmailLeft(), false);
    // Loud: the metric and an error line naming the policy and the compile error.
    assert.equal(
      await counterValue(g.registry, 'sluice_policy_invalid', { policy: 'e2e/guard' }),
      1,
    );
    const line = g.logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => e['event'] === 'policy_invalid');
    assert.equal(line?.['level'], 50);
    assert.match(String(line?.['problem']), /spec\.masking\.customPatterns: .*lookaround/);
    assert.ok(
      (await counterValue(g.registry, 'sluice_requests_total', { error_code: 'policy_invalid' })) >=
        3,
    );
  });

  it('serves the route again, governed, once the policy is fixed', async () => {
    const version = extprocVersions(g).at(-1);
    await writeFile(policyFile, GOOD, 'utf8');
    await untilExtprocApplies(g, version);
    await assertGoverned();
    assert.equal(
      await counterValue(g.registry, 'sluice_policy_invalid', { policy: 'e2e/guard' }),
      0,
    );
  });
});
