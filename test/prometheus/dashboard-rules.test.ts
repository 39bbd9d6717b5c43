// The Grafana dashboard and the alerting rules against a real Prometheus (Debian's package)
// scraping a running gateway: `sluice run` from AIRoute/AIPolicy YAML, Redis as its state store,
// mock providers behind it, called through both official SDKs with successes, streams, provider
// 429s and 500s, a bad key, a spent budget and a Redis stall. Then:
// - every panel query of charts/sluice/dashboards/sluice.json returns data, and every dashboard
//   variable has values;
// - the rules as the chart renders them pass `promtool check rules`, Prometheus loads and
//   evaluates them without error, and each rule's signal (its expression without the threshold)
//   returns data; the few this run cannot provoke (listed with the reason) select only metrics
//   Prometheus scraped. The budget, provider, Redis and journal alerts actually fire.
// So a renamed metric or label fails here, not on a dashboard at 3 a.m.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { parse, stringify } from 'yaml';
import { startAdmin, type RunningAdmin } from '../../extproc/shared/admin.js';
import { operatorMetrics } from '../../operator/controller/metrics.js';
import { main as keysMain } from '../../operator/keys/main.js';
import { startMockProvider, type MockProvider } from '../../operator/mock-provider/provider.js';
import { run, type RunningGateway } from '../../operator/standalone/run.js';
import { secretDoc, serviceDocs } from '../e2e/harness.js';
import { startRedis, type RedisHandle } from '../redis/server.js';
import {
  grafanaExpr,
  metricNames,
  PROMTOOL_BIN,
  splitThreshold,
  startPrometheus,
  until,
  type Prometheus,
} from './prometheus.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CHART = join(ROOT, 'charts/sluice');
const RULES_FILE = join(CHART, 'rules/sluice.rules.yaml');
const DASHBOARD = join(CHART, 'dashboards/sluice.json');
const HELM = process.env['SLUICE_HELM'] ?? join(homedir(), '.cache/sluice/kube/bin/helm');

/**
 * Rules whose signal this run does not provoke, and why; each still has to select only metrics
 * Prometheus scraped (samples, or HELP/TYPE for a labelled counter nobody incremented yet).
 */
const QUIET: Record<string, string> = {
  SluiceExtprocConfigRejected:
    'needs a config the extproc refuses; the operator compilation never sends one from valid YAML',
  SluiceDataPlaneNack:
    'needs a data plane that refuses its xDS config, which the YAML here never makes it do',
  SluiceUsageJournalDropping: 'needs the journal full, or a settlement the store refuses',
  SluiceVaultFailures: 'needs the masking vault to fail; no route here masks',
  SluicePolicyInvalid: 'needs an invalid AIPolicy; the policy-invalid e2e test makes one',
};

/** Alerts this run provokes: each must be pending or firing during the Redis stall. */
const FIRING = [
  'SluiceBudgetNearlySpent',
  'SluiceBudgetExhausted',
  'SluiceBudgetRefusing',
  'SluiceProviderErrorRate',
  'SluiceProviderRateLimited',
  'SluiceStateStoreUnavailable',
  'SluiceGovernanceFailingOpen',
  'SluiceUsageJournalBacklog',
  'SluiceUnsettledSpend',
];

/** Dashboard queries this run leaves empty, and why (their metrics must still be scraped). */
const QUIET_PANELS: Record<string, string> = {
  'sum by (reason) (increase(sluice_vault_failures_total[$__rate_interval]))':
    'present but 0 (no vault failures): increase() of zeros is data',
};

const UPSTREAM = 'sk-upstream-prom';
const PRICE = { inputPerMTok: 1000, outputPerMTok: 1000 }; // $0.001 a token
const USAGE = { input: 12, output: 9 }; // $0.021 per answered request
// The second request is admitted on the first one's $0.021 plus its estimate; once both settle
// ($0.042) the bucket is over its limit: the third is refused and the ratio reads 1.05.
const SPENDER_DAILY_USD = 0.04;

function route(name: string, model: string, provider: 'openai' | 'anthropic', svc: string) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIRoute',
    metadata: { name, namespace: 'e2e' },
    spec: {
      models: [{ exact: model }],
      backends: [
        {
          name: `${name}-${provider}`,
          provider,
          endpoint: { service: { name: svc, port: 80 } },
          credential: { secretRef: { name: 'upstream' } },
        },
      ],
    },
  };
}

function policy(name: string, targets: string[], spec: Record<string, unknown>) {
  return {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'AIPolicy',
    metadata: { name, namespace: 'e2e' },
    spec: { targetRefs: targets.map((t) => ({ name: t })), ...spec },
  };
}

function manifests(ports: Record<'ok' | 'anthropic' | 'limited' | 'broken', number>): unknown[] {
  const governed = ['chat', 'claude', 'limited', 'broken'];
  return [
    route('chat', 'gpt-main', 'openai', 'mock-ok'),
    route('claude', 'claude-main', 'anthropic', 'mock-anthropic'),
    route('limited', 'gpt-limited', 'openai', 'mock-limited'),
    route('broken', 'gpt-broken', 'openai', 'mock-broken'),
    route('lenient', 'gpt-lenient', 'openai', 'mock-ok'),
    route('budget', 'gpt-budget', 'openai', 'mock-ok'),
    policy('gov', governed, {
      failureMode: 'closed',
      consumers: { required: true, keys: {} },
      pricing: { models: { 'gpt-*': PRICE, 'claude-*': PRICE } },
      limits: { rules: [{ name: 'monthly', per: ['team'], spendPerMonthUsd: 100 }] },
    }),
    policy('budget', ['budget'], {
      failureMode: 'closed',
      consumers: { required: true, keys: {} },
      pricing: { models: { 'gpt-*': PRICE } },
      limits: {
        defaultMaxTokens: 4,
        rules: [{ name: 'daily', per: ['consumer'], spendPerDayUsd: SPENDER_DAILY_USD }],
      },
    }),
    policy('open', ['lenient'], {
      failureMode: 'open',
      consumers: { required: true, keys: {} },
      pricing: { models: { 'gpt-*': PRICE } },
      limits: { rules: [{ name: 'monthly', per: ['team'], spendPerMonthUsd: 100 }] },
    }),
    secretDoc('upstream', UPSTREAM),
    ...serviceDocs('mock-ok', ports.ok),
    ...serviceDocs('mock-anthropic', ports.anthropic),
    ...serviceDocs('mock-limited', ports.limited),
    ...serviceDocs('mock-broken', ports.broken),
  ];
}

async function createKey(file: string, consumer: string, team: string): Promise<string> {
  let out = '';
  let err = '';
  const argv = ['create', '--consumer', consumer, '--team', team, '--file', file, '--json'];
  const code = await keysMain(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  assert.equal(code, 0, `sluice keys create: ${err}`);
  return (JSON.parse(out) as { key: string }).key;
}

/** The rules as the chart renders them (helm, when the kube tier cached it), else the file. */
function renderedRules(): { groups: { name: string; rules: Record<string, unknown>[] }[] } {
  const file = parse(readFileSync(RULES_FILE, 'utf8')) as ReturnType<typeof renderedRules>;
  if (!existsSync(HELM)) {
    console.error(
      `\n!!! prometheus tier: no helm at ${HELM} (run node test/kube/setup.mjs, or set ` +
        'SLUICE_HELM): the rule file is checked as is, not as the chart renders it.\n',
    );
    return file;
  }
  const out = execFileSync(
    HELM,
    [
      'template',
      'sluice',
      CHART,
      '--set',
      'metrics.prometheusRule.enabled=true',
      '--set',
      'metrics.prometheusRule.ruleLabels.team=platform',
      '--show-only',
      'templates/prometheusrule.yaml',
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, HELM_CACHE_HOME: tmpdir(), HELM_CONFIG_HOME: tmpdir() },
    },
  );
  const doc = parse(out) as { kind: string; spec: ReturnType<typeof renderedRules> };
  assert.equal(doc.kind, 'PrometheusRule');
  // The chart adds the extra labels and changes nothing else.
  const stripped = doc.spec.groups.map((g) => ({
    ...g,
    rules: g.rules.map((r) => {
      const labels = { ...(r['labels'] as Record<string, string>) };
      assert.equal(labels['team'], 'platform', `${String(r['alert'])} lacks ruleLabels`);
      delete labels['team'];
      return { ...r, labels };
    }),
  }));
  assert.deepEqual(stripped, file.groups);
  return doc.spec;
}

function dashboardQueries(): { panel: string; expr: string }[] {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { title: string; targets?: { expr?: string }[]; panels?: unknown[] }[];
  };
  const out: { panel: string; expr: string }[] = [];
  for (const p of d.panels) {
    for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title, expr: t.expr });
  }
  return out;
}

describe('prometheus: the dashboard and alert rules on a real Prometheus scraping sluice run', () => {
  const mocks: MockProvider[] = [];
  let redis: RedisHandle;
  let gateway: RunningGateway;
  let operatorAdmin: RunningAdmin;
  let prom: Prometheus;
  let dir: string;
  let registry: Registry;
  let rulesFile: string;
  let at: number | undefined;
  let operator: ReturnType<typeof operatorMetrics>;
  const keys: Record<string, string> = {};

  before(async () => {
    const [ok, anthropic, limited, broken] = await Promise.all([
      startMockProvider({ name: 'ok', auth: { bearer: UPSTREAM }, defaults: { usage: USAGE } }),
      startMockProvider({
        name: 'anthropic',
        auth: { anthropicKey: UPSTREAM },
        defaults: { usage: USAGE },
      }),
      startMockProvider({ name: 'limited', defaults: { status: 429, retryAfter: '1' } }),
      startMockProvider({ name: 'broken', defaults: { status: 500 } }),
    ]);
    mocks.push(ok, anthropic, limited, broken);
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'sluice-prom-'));
    await writeFile(
      join(dir, 'manifests.yaml'),
      manifests({
        ok: ok.port,
        anthropic: anthropic.port,
        limited: limited.port,
        broken: broken.port,
      })
        .map((d) => stringify(d))
        .join('---\n'),
    );
    const keysFile = join(dir, 'keys.yaml');
    keys['app'] = await createKey(keysFile, 'app', 'apps');
    keys['spender'] = await createKey(keysFile, 'spender', 'finance');
    const vaultKeyFile = join(tmpdir(), `sluice-prom-vault-${process.pid}`);
    await writeFile(vaultKeyFile, 'a'.repeat(64), { mode: 0o600 });

    // As `sluice run` builds it (operator/standalone/main.ts): default metrics included.
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
    gateway = await run({
      files: [dir],
      host: '127.0.0.1',
      port: 0,
      admin: '127.0.0.1:0',
      compile: { messageTimeoutMs: 5000 },
      logger: pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() })),
      registry,
      env: {},
      redisUrl: redis.url,
      vaultKeyFile,
      emulator: { retryBackoffBaseMs: 0 },
    });
    await rm(vaultKeyFile, { force: true });
    // The operator's metrics as `sluice operator` registers them (the leadership gauge only
    // exists there), with the gauge as run() sets it without leader election; the kube tier runs
    // the operator itself. This target proves the names, not the operator's behaviour.
    const opRegistry = new Registry();
    collectDefaultMetrics({ register: opRegistry });
    const op = operatorMetrics(opRegistry);
    op.leader.set(1);
    operator = op;
    operatorAdmin = await startAdmin({
      listen: '127.0.0.1:0',
      registry: opRegistry,
      ready: () => ({ ready: true }),
    });

    const rendered = renderedRules();
    rulesFile = join(dir, 'sluice.rules.yaml');
    await writeFile(rulesFile, stringify({ groups: rendered.groups }));
    prom = await startPrometheus({
      targets: { gateway: gateway.adminAddress!, operator: operatorAdmin.address },
      ruleFiles: [rulesFile],
    });
  });

  after(async () => {
    await prom?.close();
    await operatorAdmin?.close();
    await gateway?.close();
    await redis?.stop();
    await Promise.all(mocks.map((m) => m.close()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** sluice_requests_total as the gateway counts it now. */
  async function served(): Promise<number> {
    const m = await registry.getSingleMetric('sluice_requests_total')!.get();
    return m.values.reduce((a, v) => a + v.value, 0);
  }

  /** Resolves once Prometheus has scraped the gateway's current request count. */
  async function scraped(): Promise<void> {
    const want = await served();
    await until(`Prometheus to scrape ${want} requests`, async () => {
      const r = await prom.query('sum(sluice_requests_total)');
      return r.length === 1 && Number(r[0]!.value[1]) === want ? true : undefined;
    });
  }

  async function traffic(): Promise<void> {
    const url = gateway.url;
    const opts = { maxRetries: 0, timeout: 15_000 };
    const openai = new OpenAI({ ...opts, apiKey: keys['app']!, baseURL: `${url}/v1` });
    const anthropic = new Anthropic({ ...opts, apiKey: keys['app']!, baseURL: url });
    const msg = [{ role: 'user' as const, content: 'how many tokens is this' }];
    await openai.chat.completions.create({ model: 'gpt-main', max_tokens: 4, messages: msg });
    const stream = await openai.chat.completions.create({
      model: 'gpt-main',
      max_tokens: 4,
      messages: msg,
      stream: true,
    });
    for await (const chunk of stream) void chunk;
    await anthropic.messages.create({ model: 'claude-main', max_tokens: 4, messages: msg });
    const astream = anthropic.messages.stream({
      model: 'claude-main',
      max_tokens: 4,
      messages: msg,
    });
    await astream.finalMessage();
    const limited = await openai.chat.completions
      .create({ model: 'gpt-limited', max_tokens: 4, messages: msg })
      .catch((e: unknown) => e);
    assert.ok(limited instanceof OpenAI.RateLimitError, String(limited));
    const broken = await openai.chat.completions
      .create({ model: 'gpt-broken', max_tokens: 4, messages: msg })
      .catch((e: unknown) => e);
    assert.ok(broken instanceof OpenAI.InternalServerError, String(broken));
    const stranger = new OpenAI({ ...opts, apiKey: 'sk-not-a-key', baseURL: `${url}/v1` });
    const denied = await stranger.chat.completions
      .create({ model: 'gpt-main', max_tokens: 4, messages: msg })
      .catch((e: unknown) => e);
    assert.ok(denied instanceof OpenAI.AuthenticationError, String(denied));
    // The spender's daily budget: admitted until spent, then 429 budget_exceeded.
    const spender = new OpenAI({ ...opts, apiKey: keys['spender']!, baseURL: `${url}/v1` });
    for (let i = 0; i < 3; i++) {
      const r = await spender.chat.completions
        .create({ model: 'gpt-budget', max_tokens: 4, messages: msg })
        .catch((e: unknown) => e);
      if (r instanceof OpenAI.RateLimitError) assert.match(r.message, /limit "daily" reached/);
    }
  }

  it('scrapes the traffic, a spent budget and a Redis stall', async () => {
    await traffic();
    await scraped();
    // Again once Prometheus holds the first counts, so rate() and increase() see them grow.
    await traffic();
    await scraped();

    // Redis stalls: the fail-closed policy refuses (503 state_unavailable), the fail-open one
    // serves and journals what it owes until Redis answers again.
    const url = gateway.url;
    const openai = new OpenAI({
      maxRetries: 0,
      timeout: 15_000,
      apiKey: keys['app']!,
      baseURL: `${url}/v1`,
    });
    const msg = [{ role: 'user' as const, content: 'during the stall' }];
    redis.pause();
    try {
      const refused = await openai.chat.completions
        .create({ model: 'gpt-main', max_tokens: 4, messages: msg })
        .catch((e: unknown) => e);
      assert.ok(refused instanceof OpenAI.APIError && refused.status === 503, String(refused));
      await openai.chat.completions.create({ model: 'gpt-lenient', max_tokens: 4, messages: msg });
      // The budget, provider and Redis alerts go pending (or fire, without `for`) while it lasts.
      let names = new Set<string>();
      await until('the alerts to be pending or firing', async () => {
        names = new Set((await prom.alerts()).map((a) => a.labels['alertname']!));
        // Two scrapes of the fail-open counter: the dashboard's increase() needs them.
        const twice = await prom.query(
          'count_over_time(sluice_governance_fail_open_total[1m]) >= 2',
        );
        return FIRING.every((w) => names.has(w)) && twice.length > 0 ? true : undefined;
      }).catch((err: Error) => {
        throw new Error(`${err.message}; active: ${[...names].sort().join(', ')}`);
      });
      for (const quiet of [...Object.keys(QUIET), 'SluiceOperatorNotLeading']) {
        assert.ok(!names.has(quiet), `${quiet} is on`);
      }
      const alerts = await prom.alerts();
      const budget = alerts.find((a) => a.labels['alertname'] === 'SluiceBudgetExhausted');
      assert.deepEqual(
        {
          policy: budget?.labels['sluice_policy'],
          limit: budget?.labels['limit'],
          team: budget?.labels['team'],
        },
        { policy: 'e2e/budget', limit: 'daily', team: existsSync(HELM) ? 'platform' : undefined },
      );
      // Every query below is evaluated at this instant: all traffic and the stall are in it.
      at = Date.now() / 1000;
    } finally {
      redis.resume();
    }
  });

  it('every dashboard panel query returns data, every variable has values', async () => {
    const queries = dashboardQueries();
    assert.ok(queries.length >= 15, `only ${queries.length} queries found`);
    const empty: string[] = [];
    for (const { panel, expr } of queries) {
      // 1m: wide enough for two 1 s scrapes either side of each traffic round.
      const r = await prom.query(grafanaExpr(expr, '1m'), at);
      const finite = r.some((s) => Number.isFinite(Number(s.value[1])));
      if (!finite && !(expr in QUIET_PANELS)) empty.push(`${panel}: ${expr}`);
      for (const name of metricNames(expr)) await assertScraped(name, `panel "${panel}"`);
    }
    assert.deepEqual(empty, [], 'panel queries without data');
    const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      templating: { list: { name: string; definition?: string }[] };
    };
    for (const v of d.templating.list) {
      if (!v.definition) continue;
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.definition);
      assert.ok(m, `variable ${v.name}: unsupported query ${v.definition}`);
      const values = (await prom.labelValues(m[2]!, m[1]!)).filter((x) => x !== '');
      assert.ok(values.length > 0, `variable ${v.name} has no values`);
    }
  });

  it('the chart renders rules promtool accepts; Prometheus evaluates them; each signal returns data', async () => {
    const check = spawnSync(PROMTOOL_BIN, ['check', 'rules', rulesFile], { encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
    const rendered = parse(readFileSync(rulesFile, 'utf8')) as ReturnType<typeof renderedRules>;
    const all = rendered.groups.flatMap((g) => g.rules);
    assert.ok(all.length >= 15);
    for (const name of Object.keys(QUIET)) {
      assert.ok(
        all.some((r) => r['alert'] === name),
        `QUIET names an unknown rule ${name}`,
      );
    }
    // Evaluated at least once by Prometheus itself, without error.
    const loaded = await until('every rule evaluated', async () => {
      const rules = await prom.rules();
      return rules.length === all.length && rules.every((r) => r.health !== 'unknown')
        ? rules
        : undefined;
    });
    for (const r of loaded) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError}`);

    const silent: string[] = [];
    for (const rule of all) {
      const name = String(rule['alert']);
      const { signal } = splitThreshold(String(rule['expr']));
      const data = (await prom.query(signal, at)).some((s) => Number.isFinite(Number(s.value[1])));
      for (const metric of metricNames(signal)) await assertScraped(metric, `rule ${name}`);
      if (QUIET[name] !== undefined) {
        // Its signal may be zeros (counters start at 0 per reason); the alert must not be on.
        const firing = await prom.query(String(rule['expr']), at);
        assert.deepEqual(firing, [], `${name} is listed as quiet but its expression is true`);
      } else if (!data) {
        silent.push(`${name}: ${signal}`);
      }
    }
    assert.deepEqual(silent, [], 'rule signals without data');
    // sluice run counts NACKs itself: its own target exposes the counter the NACK alert reads.
    const nackMeta = await fetch(
      `${prom.url}/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="gateway"}')}&metric=sluice_xds_nacks_total`,
    ).then((r) => r.json() as Promise<{ data: unknown[] }>);
    assert.equal(nackMeta.data.length, 1, 'sluice run does not expose sluice_xds_nacks_total');
  });

  // `or vector(0)` gives the not-leading rule's signal data whatever the gauge says, so its
  // signal returning data proves nothing: the gauge's value must reach the rule.
  it('reads the leader gauge by value: 1 keeps SluiceOperatorNotLeading off, 0 turns it on', async () => {
    const rule = renderedRules()
      .groups.flatMap((g) => g.rules)
      .find((r) => r['alert'] === 'SluiceOperatorNotLeading');
    assert.ok(rule, 'no SluiceOperatorNotLeading rule');
    const expr = String(rule['expr']);
    const leader = await prom.query('max(sluice_operator_status_leader)');
    assert.equal(leader.length, 1, 'the operator target exposes the leader gauge');
    assert.equal(Number(leader[0]!.value[1]), 1, 'the operator leads');
    assert.deepEqual(await prom.query(expr), [], 'the alert expression is false while leading');
    operator.leader.set(0);
    try {
      const on = await until('the alert expression to see the gauge at 0', async () => {
        const r = await prom.query(expr);
        return r.length === 1 ? r : undefined;
      });
      assert.equal(Number(on[0]!.value[1]), 0);
    } finally {
      operator.leader.set(1);
    }
  });

  /** A metric Prometheus scraped: series now, or HELP/TYPE for a family without samples yet. */
  async function assertScraped(name: string, where: string): Promise<void> {
    if ((await prom.series(name)).length > 0) return;
    const meta = await prom.metadata();
    const family = name.replace(/_(bucket|sum|count|total)$/, '');
    assert.ok(
      meta[name] !== undefined || meta[family] !== undefined,
      `${where} selects ${name}, which no target exposes`,
    );
  }
});
