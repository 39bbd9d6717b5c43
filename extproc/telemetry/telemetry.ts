/**
 * Metrics named after the OpenTelemetry GenAI semantic conventions (as Prometheus names) and one
 * access-log line per request. Label values come from config or are folded into "other", so a
 * client cannot grow the series count by inventing model names.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { otelOperation, type Operation } from '../providers/endpoints.js';
import type { Provider } from '../config/contract.js';
import type { TokenUsage } from '../usage/extract.js';
import { ConversationMetrics, type ContextResult } from './conversation-metrics.js';
import { counterSeries, histogramSeries } from './series.js';
import { infoSourceWriter, type RecordSource } from './access-line.js';
import type { JsonBytes } from './json-bytes.js';
import type { RecordedContent } from './content.js';
import type { RequestTrace } from './trace-context.js';

export interface RequestRecord {
  requestId: string | undefined;
  api: string;
  operation: string | undefined;
  route: string | undefined;
  requestModel: string | undefined;
  responseModel: string | undefined;
  backend: string | undefined;
  provider: Provider | undefined;
  consumer?: string | undefined;
  team?: string | undefined;
  /** Spend of the request at the governance policy's prices; undefined: no governance policy. */
  costUsd?: number | undefined;
  /** The route's governance policy and its decisions (`reserved`, `would_rate_limit_exceeded`…). */
  governance?: { policy: string; verdicts: string[] } | undefined;
  attempts: number;
  status: number;
  errorCode: string | undefined;
  stream: boolean;
  usage: TokenUsage | undefined;
  durationMs: number;
  ttftMs: number | undefined;
  outcome: string;
  verdicts?: string[];
  /** The route's policy, when it has one. */
  policy?: string | undefined;
  /** Policy findings by direction, type and action: counts only, never values. */
  findings?: { direction: string; type: string; action: string; count: number }[];
  /**
   * The policy could not be applied: `open` (passed unprocessed), `closed` (refused) or
   * `degraded` (the shared vault failed in open mode; the request was masked on its own).
   */
  policyFailure?: 'open' | 'closed' | 'degraded' | undefined;
  /** Prompt guard rules that fired (action `would_*` in shadow mode): counts only, never text. */
  guard?: { rule: string; kind: string; action: string; count?: number }[];
  /** The request's trace, decided when it started (trace-context.ts); tracing off: absent. */
  trace?: RequestTrace | undefined;
  /**
   * Prompt and completion text, masked, for a policy that opted in (content.ts); never for
   * the access log, only for the span.
   */
  content?: RecordedContent | undefined;
  /** Each upstream attempt in order (Envoy retries and fallbacks included). */
  attemptList?: readonly {
    backend: string;
    provider: Provider;
    startedAtMs?: number;
    /** The attempt's span, as the provider was told in its traceparent. */
    spanId?: string;
  }[];
  /** The request's session: a keyed id (never the header's value) and its turn (context/session.ts). */
  session?: { id: string; turn: number } | undefined;
  /** The context window check (context/apply.ts), on routes whose policy has one. */
  context?:
    | {
        result: ContextResult;
        contextTokens: number;
        windowModel: string;
        inputTokens: number;
        outputTokens: number;
        trimmedMessages?: number | undefined;
        inputTokensBefore?: number | undefined;
      }
    | undefined;
  /** The response cache's decision on a route that has one (cache/cache.ts). */
  cache?:
    | {
        result: string;
        reason?: string;
        ageSeconds?: number;
        savedTokens?: number;
        savedUsd?: number;
      }
    | undefined;
}

const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304];
const DURATION_BUCKETS = [
  0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];
const PHASE_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/** OpenTelemetry `gen_ai.provider.name` values. */
export const OTEL_PROVIDER: Record<Provider, string> = {
  openai: 'openai',
  'azure-openai': 'azure.ai.openai',
  anthropic: 'anthropic',
  'openai-compatible': 'openai',
  'aws-bedrock': 'aws.bedrock',
  'gcp-vertex': 'gcp.vertex_ai',
  gemini: 'gcp.gemini',
};

/** Allows configured values, plus up to `spare` others first seen at run time; the rest is "other". */
export class BoundedLabel {
  private allowed = new Set<string>();
  private extra = new Set<string>();
  constructor(private readonly spare: number) {}
  setKnown(values: Iterable<string>): void {
    this.allowed = new Set(values);
  }
  value(v: string | undefined): string {
    if (v === undefined || v === '') return '';
    if (this.allowed.has(v) || this.extra.has(v)) return v;
    if (this.extra.size < this.spare && v.length <= 128) {
      this.extra.add(v);
      return v;
    }
    return 'other';
  }
}

const LABELS = [
  'gen_ai_operation_name',
  'gen_ai_provider_name',
  'gen_ai_request_model',
  'gen_ai_response_model',
  'sluice_route',
  'sluice_backend',
  'sluice_consumer',
] as const;

type Observe = (value: number) => void;

/** recordRequest's series of one set of LABELS values (Telemetry.bases). */
interface BaseSeries {
  labels: Readonly<Record<(typeof LABELS)[number], string>>;
  /** sluice_requests_total by status, error code and outcome. */
  requests: Map<string, Observe>;
  /** The request duration by error type. */
  duration: Map<string, Observe>;
  /** Token usage by token type and whether it was estimated. */
  tokens: Map<string, Observe>;
  /** sluice_spend_usd_total by team (the other labels are this base's). */
  spend: Map<string, Observe>;
}

/**
 * Series held under their label values, one Map per label (Telemetry.findingSeries): a lookup
 * builds no key string. It holds one entry per series prom-client keeps, so it is bounded as they
 * are.
 */
type SeriesTree = Map<string, SeriesTree | Observe>;

/** The subtree under `value`, made on first use. */
function subtree(t: SeriesTree, value: string): SeriesTree {
  let n = t.get(value) as SeriesTree | undefined;
  if (n === undefined) {
    n = new Map();
    t.set(value, n);
  }
  return n;
}

/** One filter's ext_proc stream metrics (Telemetry.streamMetrics). */
export interface StreamMetrics {
  phase: (phase: string, seconds: number) => void;
  opened: () => void;
  closed: () => void;
}

export class Telemetry {
  private readonly tokens: Histogram<string>;
  private readonly duration: Histogram<string>;
  private readonly ttft: Histogram<string>;
  private readonly tpot: Histogram<string>;
  private readonly requests: Counter<string>;
  private readonly phases: Histogram<string>;
  readonly configReloads: Counter<string>;
  private readonly configInfo: Gauge<string>;
  readonly activeStreams: Gauge<string>;
  /** Open streams by filter (streamMetrics), read into activeStreams when it is collected. */
  private readonly openStreams = new Map<string, { open: number; seen: boolean }>();
  private readonly models = new BoundedLabel(50);
  private readonly responseModels = new BoundedLabel(50);
  private readonly routes = new BoundedLabel(0);
  private readonly backends = new BoundedLabel(0);
  private readonly consumers = new BoundedLabel(0);
  private readonly teams = new BoundedLabel(0);
  private readonly spend: Counter<string>;
  private readonly failOpen: Counter<string>;
  private readonly findings: Counter<string>;
  private readonly policyFailures: Counter<string>;
  private readonly guardVerdicts: Counter<string>;
  private readonly policies = new BoundedLabel(0);
  private readonly detectorTypes = new BoundedLabel(0);
  private readonly conversations: ConversationMetrics;

  /** One access-log line per request, serialized once (access-line.ts). */
  private readonly writeAccessLine: (r: RequestRecord, msg: string) => void;

  constructor(
    registry: Registry,
    accessLog: Logger,
    /** Also sees every request's record: where traces are made (tracing.ts). */
    private readonly onRequest?: (r: RequestRecord) => void,
  ) {
    this.writeAccessLine = infoSourceWriter(accessLog, ACCESS_RECORD);
    const registers = [registry];
    this.conversations = new ConversationMetrics(registers);
    this.tokens = new Histogram({
      name: 'gen_ai_client_token_usage',
      help: 'Tokens per request by gen_ai_token_type (input, output; cached_input and reasoning are subsets of them).',
      labelNames: [...LABELS, 'gen_ai_token_type', 'sluice_estimated'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.duration = new Histogram({
      name: 'gen_ai_server_request_duration_seconds',
      help: 'Time from the request reaching the gateway to the end of the response.',
      labelNames: [...LABELS, 'error_type'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.ttft = new Histogram({
      name: 'gen_ai_server_time_to_first_token_seconds',
      help: 'Time from the request reaching the gateway to the first response body bytes of a stream.',
      labelNames: LABELS,
      buckets: TTFT_BUCKETS,
      registers,
    });
    this.tpot = new Histogram({
      name: 'gen_ai_server_time_per_output_token_seconds',
      help: 'Time per output token after the first, for streamed responses.',
      labelNames: LABELS,
      buckets: TPOT_BUCKETS,
      registers,
    });
    this.requests = new Counter({
      name: 'sluice_requests_total',
      help: 'Requests by final HTTP status and Sluice error code.',
      labelNames: [...LABELS, 'status_code', 'error_code', 'outcome'],
      registers,
    });
    this.phases = new Histogram({
      name: 'sluice_extproc_processing_seconds',
      help: 'Time the extproc spent answering one ext_proc message, by filter and message kind.',
      labelNames: ['filter', 'phase'],
      buckets: PHASE_BUCKETS,
      registers,
    });
    this.configReloads = new Counter({
      name: 'sluice_config_reloads_total',
      help: 'Config loads by result (applied, rejected).',
      labelNames: ['result'],
      registers,
    });
    this.configInfo = new Gauge({
      name: 'sluice_config_info',
      help: 'The config version in force (value 1).',
      labelNames: ['version'],
      registers,
    });
    this.findings = new Counter({
      name: 'sluice_policy_findings_total',
      help: 'Sensitive values found by policy detectors, by type, action taken (would_* in shadow mode) and direction.',
      labelNames: ['sluice_route', 'sluice_policy', 'sluice_pii_type', 'action', 'direction'],
      registers,
    });
    this.policyFailures = new Counter({
      name: 'sluice_policy_failures_total',
      help: 'Requests whose policy could not be applied, by what the failure mode did (open: passed, closed: refused, degraded: masked without the shared vault).',
      labelNames: ['sluice_route', 'sluice_policy', 'failure_mode'],
      registers,
    });
    this.guardVerdicts = new Counter({
      name: 'sluice_guard_verdicts_total',
      help: 'Prompt guard rules that fired on requests, by rule and action (would_* in shadow mode); one per rule per request.',
      // Rule names are the operator's pattern names or the guard's own: none come from a client.
      labelNames: ['sluice_policy', 'rule', 'action'],
      registers,
    });
    this.spend = new Counter({
      name: 'sluice_spend_usd_total',
      help: 'Spend in USD at the governance policy prices, by route, request model, consumer and team.',
      labelNames: ['sluice_route', 'gen_ai_request_model', 'sluice_consumer', 'sluice_team'],
      registers,
    });
    this.failOpen = new Counter({
      name: 'sluice_governance_fail_open_total',
      help: 'Requests admitted without a limit check because the state store was unavailable and the policy fails open.',
      labelNames: ['sluice_policy'],
      registers,
    });
    this.activeStreams = new Gauge({
      name: 'sluice_extproc_active_streams',
      help: 'Open ext_proc streams by filter.',
      labelNames: ['filter'],
      registers,
      // Counted in plain numbers and read when the gauge is collected (a scrape): prom-client's
      // inc() and dec() hash the labels on every call, four calls per request (~2% of the plain
      // path's CPU, bench chat-2k with --cpu-prof). A filter shows once a stream of it opened.
      collect: () => {
        for (const [filter, s] of this.openStreams) {
          if (s.seen) this.activeStreams.set({ filter }, s.open);
        }
      },
    });
  }

  configApplied(
    version: string,
    known: {
      routes: string[];
      backends: string[];
      models: string[];
      policies?: string[];
      detectorTypes?: string[];
      consumers?: string[];
      teams?: string[];
    },
  ): void {
    if (known.consumers) this.consumers.setKnown(known.consumers);
    if (known.teams) this.teams.setKnown(known.teams);
    this.policies.setKnown(known.policies ?? []);
    this.detectorTypes.setKnown(known.detectorTypes ?? []);
    this.configInfo.reset();
    this.configInfo.set({ version }, 1);
    this.configReloads.inc({ result: 'applied' });
    this.routes.setKnown(known.routes);
    this.backends.setKnown(known.backends);
    this.models.setKnown(known.models);
  }

  configRejected(): void {
    this.configReloads.inc({ result: 'rejected' });
  }

  setConsumers(names: Iterable<string>): void {
    this.consumers.setKnown(names);
  }

  governanceFailOpen(policy: string): void {
    this.failOpen.inc({ sluice_policy: this.policies.value(policy) });
  }

  /**
   * What the ext_proc streams of one filter record: each message's processing time and the
   * streams open. Called once per filter; the metric children are looked up once, not per
   * message (a label object or key string per message showed in the bench's allocation profile).
   */
  streamMetrics(filter: string): StreamMetrics {
    let active = this.openStreams.get(filter);
    if (active === undefined) {
      active = { open: 0, seen: false };
      this.openStreams.set(filter, active);
    }
    const streams = active;
    const phases = new Map<string, Observe>();
    return {
      phase: (phase, seconds) => {
        let observe = phases.get(phase);
        if (!observe) {
          observe = histogramSeries(this.phases, { filter, phase });
          phases.set(phase, observe);
        }
        observe(seconds);
      },
      opened: () => {
        streams.open++;
        streams.seen = true;
      },
      closed: () => {
        streams.open--;
      },
    };
  }

  /**
   * The per-request series, by the values of LABELS (joined with U+0001) and then by the rest of
   * each metric's labels: made once per series (series.ts), and the label object once per set of
   * LABELS values. Bounded like the series themselves: every label value is an enum or goes
   * through a BoundedLabel. (No metric here is reset or has series removed.)
   */
  private readonly bases = new Map<string, BaseSeries>();
  /**
   * The series of the last request's LABELS values: consecutive requests nearly always share
   * them, and then their key string (a dozen concatenations, flattened to be hashed: ~0.5 KiB
   * per request) is not built.
   */
  private lastBase: BaseSeries | undefined;

  /**
   * sluice_policy_findings_total series by route, policy, type, action and direction: a request
   * with findings increments one per finding, and prom-client's inc() would hash a fresh label
   * object each time (~0.5 KiB each; 2.6 KiB per request of bench chat-2k-policy with its spend).
   */
  private readonly findingSeries: SeriesTree = new Map();

  private findingSeriesOf(
    route: string,
    policy: string,
    type: string,
    action: string,
    direction: string,
  ): Observe {
    const t = subtree(subtree(subtree(subtree(this.findingSeries, route), policy), type), action);
    let s = t.get(direction) as Observe | undefined;
    if (s === undefined) {
      s = counterSeries(this.findings, {
        sluice_route: route,
        sluice_policy: policy,
        sluice_pii_type: type,
        action,
        direction,
      });
      t.set(direction, s);
    }
    return s;
  }

  private tokenSeries(b: BaseSeries, type: 'input' | 'output', est: string): Observe {
    const key = type === 'input' ? (est === 'true' ? 'it' : 'if') : est === 'true' ? 'ot' : 'of';
    let s = b.tokens.get(key);
    if (s === undefined) {
      s = histogramSeries(this.tokens, {
        ...b.labels,
        gen_ai_token_type: type,
        sluice_estimated: est,
      });
      b.tokens.set(key, s);
    }
    return s;
  }

  /** The series of one set of LABELS values, made on first use. */
  private baseSeries(labels: Record<(typeof LABELS)[number], string>): BaseSeries {
    const l = labels;
    const key = `${l.gen_ai_operation_name}\u0001${l.gen_ai_provider_name}\u0001${l.gen_ai_request_model}\u0001${l.gen_ai_response_model}\u0001${l.sluice_route}\u0001${l.sluice_backend}\u0001${l.sluice_consumer}`;
    let b = this.bases.get(key);
    if (b === undefined) {
      b = {
        labels,
        requests: new Map(),
        duration: new Map(),
        tokens: new Map(),
        spend: new Map(),
      };
      this.bases.set(key, b);
    }
    return b;
  }

  recordRequest(r: RequestRecord): void {
    const operation = isOperation(r.operation) ? otelOperation(r.operation) : (r.operation ?? '');
    const provider = r.provider ? OTEL_PROVIDER[r.provider] : '';
    const requestModel = this.models.value(r.requestModel);
    const responseModel = this.responseModels.value(r.responseModel);
    const route = this.routes.value(r.route);
    const backend = this.backends.value(r.backend);
    const consumer = this.consumers.value(r.consumer);
    // Series by our own key strings, and the label objects made once per series: prom-client
    // would validate and hash (sorted keys) a fresh label object on every call.
    const last = this.lastBase?.labels;
    const b =
      last !== undefined &&
      last.gen_ai_operation_name === operation &&
      last.gen_ai_provider_name === provider &&
      last.gen_ai_request_model === requestModel &&
      last.gen_ai_response_model === responseModel &&
      last.sluice_route === route &&
      last.sluice_backend === backend &&
      last.sluice_consumer === consumer
        ? this.lastBase!
        : (this.lastBase = this.baseSeries({
            gen_ai_operation_name: operation,
            gen_ai_provider_name: provider,
            gen_ai_request_model: requestModel,
            gen_ai_response_model: responseModel,
            sluice_route: route,
            sluice_backend: backend,
            sluice_consumer: consumer,
          }));
    const labels = b.labels;
    const errorCode = r.errorCode ?? '';
    const status = r.status;
    const outcome = r.outcome;
    // (Looked up inline: a closure to make a missing series would be allocated on every call.)
    const requestsKey = `${status}\u0001${errorCode}\u0001${outcome}`;
    let requests = b.requests.get(requestsKey);
    if (requests === undefined) {
      requests = counterSeries(this.requests, {
        ...labels,
        status_code: String(status),
        error_code: errorCode,
        outcome,
      });
      b.requests.set(requestsKey, requests);
    }
    requests(1);
    if (r.findings || r.policyFailure) {
      const route = labels.sluice_route;
      const policy = this.policies.value(r.policy);
      const findings = r.findings;
      if (findings !== undefined) {
        for (let i = 0; i < findings.length; i++) {
          const f = findings[i]!;
          const type = this.detectorTypes.value(f.type);
          this.findingSeriesOf(route, policy, type, f.action, f.direction)(f.count);
        }
      }
      if (r.policyFailure) {
        this.policyFailures.inc({
          sluice_route: route,
          sluice_policy: policy,
          failure_mode: r.policyFailure,
        });
      }
    }
    for (const g of r.guard ?? []) {
      this.guardVerdicts.inc({
        sluice_policy: this.policies.value(r.policy),
        rule: g.rule,
        action: g.action,
      });
    }
    if (r.costUsd !== undefined && r.costUsd > 0) {
      const team = this.teams.value(r.team);
      let spend = b.spend.get(team);
      if (spend === undefined) {
        spend = counterSeries(this.spend, {
          sluice_route: labels.sluice_route,
          gen_ai_request_model: labels.gen_ai_request_model,
          sluice_consumer: labels.sluice_consumer,
          sluice_team: team,
        });
        b.spend.set(team, spend);
      }
      spend(r.costUsd);
    }
    const seconds = r.durationMs / 1000;
    const errorType = r.errorCode ?? (r.status >= 400 ? String(r.status) : '');
    let duration = b.duration.get(errorType);
    if (duration === undefined) {
      duration = histogramSeries(this.duration, { ...labels, error_type: errorType });
      b.duration.set(errorType, duration);
    }
    duration(seconds);
    const u = r.usage;
    if (u) {
      const est = String(u.estimated);
      this.tokenSeries(b, 'input', est)(u.inputTokens);
      this.tokenSeries(b, 'output', est)(u.outputTokens);
      if (u.cachedInputTokens > 0) {
        this.tokens.observe(
          { ...labels, gen_ai_token_type: 'cached_input', sluice_estimated: est },
          u.cachedInputTokens,
        );
      }
      if (u.reasoningTokens > 0) {
        this.tokens.observe(
          { ...labels, gen_ai_token_type: 'reasoning', sluice_estimated: est },
          u.reasoningTokens,
        );
      }
    }
    this.conversations.record(labels.sluice_route, r);
    if (r.stream && r.ttftMs !== undefined) {
      this.ttft.observe(labels, r.ttftMs / 1000);
      if (u && u.outputTokens > 1)
        this.tpot.observe(labels, (r.durationMs - r.ttftMs) / 1000 / (u.outputTokens - 1));
    }
    this.writeAccessLine(r, 'request');
    this.onRequest?.(r);
  }
}

/** The access log's record of a request (its fields capped: capLogFields). */
function accessRecord(r: RequestRecord): object {
  const u = r.usage;
  return capLogFields({
    event: 'request',
    request_id: r.requestId,
    api: r.api,
    operation: r.operation,
    route: r.route,
    request_model: r.requestModel,
    response_model: r.responseModel,
    backend: r.backend,
    provider: r.provider,
    consumer: r.consumer,
    team: r.team,
    cost_usd: r.costUsd,
    attempts: r.attempts,
    status: r.status,
    error_code: r.errorCode,
    stream: r.stream,
    outcome: r.outcome,
    tokens: u
      ? {
          input: u.inputTokens,
          output: u.outputTokens,
          cached_input: u.cachedInputTokens,
          reasoning: u.reasoningTokens,
          total: u.totalTokens,
          estimated: u.estimated,
        }
      : undefined,
    duration_ms: round(r.durationMs),
    ttft_ms: r.ttftMs === undefined ? undefined : round(r.ttftMs),
    verdicts: r.governance ? [...(r.verdicts ?? []), ...r.governance.verdicts] : (r.verdicts ?? []),
    governance_policy: r.governance?.policy,
    policy: r.policy,
    findings: r.findings,
    policy_failure: r.policyFailure,
    guard: r.guard,
    cache: r.cache,
    session: r.session,
    context: r.context && {
      result: r.context.result,
      context_tokens: r.context.contextTokens,
      window_model: r.context.windowModel,
      input_tokens: r.context.inputTokens,
      output_tokens: r.context.outputTokens,
      trimmed_messages: r.context.trimmedMessages,
      input_tokens_before: r.context.inputTokensBefore,
    },
  });
}

/**
 * accessRecord(r)'s members written one by one, in its order, without the object: false when
 * a field would be capped (then the record is made and capped) or cannot be written so.
 */
function accessMembers(b: JsonBytes, r: RequestRecord): boolean {
  if (
    long(r.requestId) ||
    long(r.api) ||
    long(r.operation) ||
    long(r.route) ||
    long(r.requestModel) ||
    long(r.responseModel) ||
    long(r.backend) ||
    long(r.provider) ||
    long(r.consumer) ||
    long(r.team) ||
    long(r.errorCode) ||
    long(r.outcome) ||
    long(r.governance?.policy) ||
    long(r.policy) ||
    long(r.policyFailure) ||
    long(r.context?.windowModel)
  )
    return false;
  const own = r.verdicts;
  const gov = r.governance?.verdicts;
  if ((own?.length ?? 0) + (gov?.length ?? 0) > MAX_LOG_LIST_ITEMS) return false;
  if (!fits(r.findings, 1) || !fits(r.guard, 1) || !fits(r.cache, 1) || !fits(r.session, 1))
    return false;
  const u = r.usage;
  b.startMembers();
  b.member('event', 'request');
  b.member('request_id', r.requestId);
  b.member('api', r.api);
  b.member('operation', r.operation);
  b.member('route', r.route);
  b.member('request_model', r.requestModel);
  b.member('response_model', r.responseModel);
  b.member('backend', r.backend);
  b.member('provider', r.provider);
  b.member('consumer', r.consumer);
  b.member('team', r.team);
  b.member('cost_usd', r.costUsd);
  b.member('attempts', r.attempts);
  b.member('status', r.status);
  b.member('error_code', r.errorCode);
  b.member('stream', r.stream);
  b.member('outcome', r.outcome);
  if (u) {
    b.open('tokens');
    b.member('input', u.inputTokens);
    b.member('output', u.outputTokens);
    b.member('cached_input', u.cachedInputTokens);
    b.member('reasoning', u.reasoningTokens);
    b.member('total', u.totalTokens);
    b.member('estimated', u.estimated);
    b.close();
  }
  b.member('duration_ms', round(r.durationMs));
  b.member('ttft_ms', r.ttftMs === undefined ? undefined : round(r.ttftMs));
  b.openList('verdicts');
  if (own) for (let i = 0; i < own.length; i++) if (long(own[i]) || !b.item(own[i])) return false;
  if (gov) for (let i = 0; i < gov.length; i++) if (long(gov[i]) || !b.item(gov[i])) return false;
  b.closeList();
  b.member('governance_policy', r.governance?.policy);
  b.member('policy', r.policy);
  if (!b.member('findings', r.findings)) return false;
  b.member('policy_failure', r.policyFailure);
  if (!b.member('guard', r.guard) || !b.member('cache', r.cache)) return false;
  if (!b.member('session', r.session)) return false;
  const c = r.context;
  if (c) {
    b.open('context');
    b.member('result', c.result);
    b.member('context_tokens', c.contextTokens);
    b.member('window_model', c.windowModel);
    b.member('input_tokens', c.inputTokens);
    b.member('output_tokens', c.outputTokens);
    b.member('trimmed_messages', c.trimmedMessages);
    b.member('input_tokens_before', c.inputTokensBefore);
    b.close();
  }
  return true;
}

/** A string capLogFields would cut. */
function long(v: string | undefined): boolean {
  return v !== undefined && v.length > MAX_LOG_FIELD_CHARS;
}

/** The access line's record source (access-line.ts). */
const ACCESS_RECORD: RecordSource<RequestRecord> = {
  members: accessMembers,
  record: accessRecord,
};

/**
 * The most characters an access-log field keeps. Several fields come from the caller (the model
 * named in the body, JWT claims) or the provider (the response model): without a bound, a 300 KB
 * model name writes a 300 KB log line.
 */
export const MAX_LOG_FIELD_CHARS = 256;
/** The most items a list in an access-log line keeps. */
export const MAX_LOG_LIST_ITEMS = 64;

/**
 * `value` with every string longer than MAX_LOG_FIELD_CHARS cut and marked `…[+N chars]`, and
 * every list longer than MAX_LOG_LIST_ITEMS cut and ended with a `…[+N items]` entry, at any
 * depth. Linear in the size of what is kept.
 */
export function capLogFields<T>(value: T): T {
  // Nearly every line needs no cut: it then goes to the logger as it is, without a copy.
  return fits(value, 0) ? value : (cap(value, 0) as T);
}

/** cap(v) would be an equal copy of `v` (plain objects and arrays only). */
function fits(v: unknown, depth: number): boolean {
  if (typeof v === 'string') return v.length <= MAX_LOG_FIELD_CHARS;
  if (typeof v !== 'object' || v === null) return true;
  if (depth > 8) return false;
  if (Array.isArray(v)) {
    if (v.length > MAX_LOG_LIST_ITEMS) return false;
    for (const x of v) if (!fits(x, depth + 1)) return false;
    return true;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return false;
  const o = v as Record<string, unknown>;
  for (const k in o) if (!fits(o[k], depth + 1)) return false;
  return true;
}

function cap(v: unknown, depth: number): unknown {
  if (typeof v === 'string') {
    if (v.length <= MAX_LOG_FIELD_CHARS) return v;
    let end = MAX_LOG_FIELD_CHARS;
    // Never half a surrogate pair: the line stays valid UTF-8.
    const last = v.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end--;
    return `${v.slice(0, end)}…[+${v.length - end} chars]`;
  }
  if (typeof v !== 'object' || v === null) return v;
  if (depth > 8) return '…[nested]';
  if (Array.isArray(v)) {
    const kept = v.slice(0, MAX_LOG_LIST_ITEMS).map((x) => cap(x, depth + 1));
    if (v.length > MAX_LOG_LIST_ITEMS) kept.push(`…[+${v.length - MAX_LOG_LIST_ITEMS} items]`);
    return kept;
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = cap(x, depth + 1);
  return out;
}

function isOperation(v: string | undefined): v is Operation {
  return (
    v === 'chat' ||
    v === 'completions' ||
    v === 'embeddings' ||
    v === 'responses' ||
    v === 'messages'
  );
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
