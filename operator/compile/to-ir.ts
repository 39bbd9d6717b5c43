/**
 * Resources → IR, with one status result per AIRoute and AIPolicy.
 *
 * Decisions made here, so that both emitters inherit them:
 * - A route whose spec is invalid or whose Secret references do not resolve is not Accepted and
 *   contributes nothing; every other route is unaffected.
 * - Service endpoints are runtime state, not spec: a missing Service or one without ready
 *   endpoints leaves the route Accepted (EDS fills in when pods come up, and Envoy falls over to
 *   the next priority meanwhile) and is reported on a separate EndpointsReady condition.
 * - Two routes claiming the same exact model (or the same prefix): the oldest route keeps it
 *   (creationTimestamp, then namespace/name); the other loses that model and gets a Conflicted
 *   condition, and is not Accepted if it is left with no model at all.
 * - Policy sections: for each route and section, the attached policy with the highest priority
 *   wins, then the oldest, then the lowest namespace/name; losers get Conflicted.
 * - A policy that is invalid (Invalid: its spec fails the schema; InvalidPolicy: a section the
 *   extproc would refuse, e.g. a pattern RE2 cannot compile, a template using an undeclared
 *   variable, a JWKS or price it cannot read) is not attached, and every route it targets is
 *   refused: Accepted=False PolicyInvalid, kept in Envoy and the extproc with `refuse:
 *   policy_invalid`, so each request for its models gets 503 `policy_invalid` in the caller's
 *   format until the policy is fixed. Fail closed, never open: serving the route as if the
 *   policy did not exist would drop the key check, masking or budget it asked for. Refused
 *   rather than withheld, because a withheld route's models would fall to another route's
 *   prefix (and its policies), and callers would read a 404 as "no such model". The targets of a
 *   spec too broken to read (targetRefs or selector malformed, or neither set) are every route
 *   of the policy's namespace, the only routes a policy can target.
 * - A policy whose masking hash key Secret does not resolve is Accepted=False (SecretNotFound,
 *   SecretKeyNotFound) but keeps its place in precedence, and every route where it wins the
 *   masking section is refused like a route of an invalid policy: Accepted=False PolicyNotReady,
 *   kept in Envoy and the extproc with `refuse: policy_invalid`. Fail closed, deliberately:
 *   serving the route without masking would send the data the policy protects to the provider,
 *   letting a lower-priority policy's masking win instead would be masking nobody asked for, and
 *   withholding the route would hand its models to another route's prefix (and its policies).
 * - Consumers come from consumer Secrets (governance.ts). A policy whose consumers section maps a
 *   JWT claim or mesh identity to a consumer no Secret declares is InvalidPolicy but keeps its
 *   place in precedence, and routes where it wins the consumers section are refused
 *   (PolicyNotReady), for the same reasons: deleting a consumer's Secrets must not turn a route
 *   that required identity into one that requires none, nor into another route's.
 * - The governance sections a route's winners set compile into one governance policy named after
 *   those winners; routes with the same winners share it, and so share its budgets.
 */
import { fieldPath } from './issues.js';
import { AIPolicySpecSchema, AIRouteSpecSchema } from '../api/schema.js';
import type {
  AIPolicy,
  AIRoute,
  Backend,
  BackendRef,
  ConsumersSection,
  ModelMatch,
  PolicySectionName,
  Resources,
  RetryOn,
  RetryPolicy,
  SecretData,
  ServiceEndpoints,
} from '../api/types.js';
import { POLICY_SECTIONS } from '../api/types.js';
import { parseDuration } from './durations.js';
import { DEFAULT_SESSION_HEADER } from '../../extproc/context/session.js';
import {
  compileConsumers,
  governancePolicy,
  jwtProvider,
  unknownConsumers,
  type ContractGovernance,
} from './governance.js';
import { checkSections, resolveHashKey, routePolicy, type HashKey } from './policy.js';
import type {
  ConditionResult,
  ExternalTarget,
  IR,
  IRBackend,
  IRJwtProvider,
  IRPolicySection,
  IRRetry,
  IRRoute,
  IRRule,
  IRRuleBackend,
  IRRuleMatch,
  ServiceTarget,
  StatusResult,
} from './ir.js';
import { backendId, routeKey, ruleCluster } from './names.js';

export const DEFAULT_TIMEOUT_MS = 300_000;
export const DEFAULT_RETRY_ATTEMPTS = 2;
export const DEFAULT_RETRY_ON: readonly RetryOn[] = [
  'connect-failure',
  'reset',
  '5xx',
  'rate-limited',
];
export const DEFAULT_SECRET_KEY = 'apiKey';

const RETRY_ORDER: readonly RetryOn[] = [
  'rate-limited',
  '5xx',
  'reset',
  'timeout',
  'connect-failure',
];

/** Providers with an Azure/AWS/GCP block that must be present exactly when the provider is. */
const PROVIDER_BLOCK = { azure: 'azure-openai', aws: 'aws-bedrock', gcp: 'gcp-vertex' } as const;
const KEYED_PROVIDERS = new Set(['openai', 'azure-openai', 'anthropic', 'gemini']);

/** Why a route is not Accepted; thrown out of the route's own translation only. */
class Rejection extends Error {
  constructor(
    readonly reason: 'Invalid' | 'BackendNotFound' | 'SecretNotFound' | 'SecretKeyNotFound',
    message: string,
  ) {
    super(message);
  }
}

interface RouteDraft {
  route: AIRoute;
  key: string;
  models: ModelMatch[];
  backends: IRBackend[];
  rules: IRRule[];
  endpointProblems: {
    reason: 'ServiceNotFound' | 'PortNotFound' | 'NoReadyEndpoints';
    message: string;
  }[];
}

/** A route's IR as its draft and merged policy sections make it; policy, governance added after. */
function irRoute(d: RouteDraft, policies: IRRoute['policies']): IRRoute {
  return {
    key: d.key,
    namespace: d.route.metadata.namespace,
    name: d.route.metadata.name,
    created: unixSeconds(d.route.metadata.creationTimestamp),
    models: d.models,
    backends: d.backends,
    rules: d.rules,
    policies,
  };
}

export interface ToIROptions {
  /**
   * Wall-clock milliseconds, to leave out consumer keys that have expired; absent: no key counts
   * as expired (the extproc still enforces each consumer's own expiry).
   */
  now?: number;
}

export function toIR(resources: Resources, options: ToIROptions = {}): IR {
  const secrets = new Map<string, SecretData>();
  for (const s of resources.secrets) {
    secrets.set(routeKey(s.metadata.namespace, s.metadata.name), s);
  }
  const endpoints = new Map<string, ServiceEndpoints>();
  for (const e of resources.endpoints) endpoints.set(serviceKey(e.namespace, e.service, e.port), e);

  const routes = uniqueByKey(resources.routes);
  const policies = uniqueByKey(resources.policies);
  const statuses: StatusResult[] = [];
  const routeConditions = new Map<string, ConditionResult[]>();

  const drafts: RouteDraft[] = [];
  for (const route of routes) {
    const key = routeKey(route.metadata.namespace, route.metadata.name);
    const gen = route.metadata.generation;
    try {
      drafts.push(draftRoute(route, secrets, endpoints));
    } catch (err) {
      if (!(err instanceof Rejection)) throw err;
      routeConditions.set(key, [condition('Accepted', 'False', err.reason, err.message, gen)]);
    }
  }

  // Oldest first, so a model stays with the route that had it before the newcomer.
  drafts.sort((a, b) => compareAge(a.route, b.route));
  const claims = new Map<string, string>();
  const accepted: RouteDraft[] = [];
  for (const d of drafts) {
    const gen = d.route.metadata.generation;
    const lost: string[] = [];
    const kept: ModelMatch[] = [];
    const seen = new Set<string>();
    for (const m of d.models) {
      const k = modelKey(m);
      if (seen.has(k)) continue;
      seen.add(k);
      const owner = claims.get(k);
      if (owner !== undefined) lost.push(`${describeModel(m)} is served by ${owner}`);
      else kept.push(m);
    }
    const rules = kept.length === 0 ? [] : narrowRules(d.rules, kept);
    const conditions: ConditionResult[] = [];
    if (rules.length === 0) {
      const msg = `every model of this route is served by an older route: ${lost.join('; ')}`;
      conditions.push(condition('Accepted', 'False', 'ModelConflict', msg, gen));
      routeConditions.set(d.key, conditions);
      continue;
    }
    for (const m of kept) claims.set(modelKey(m), d.key);
    conditions.push(
      condition(
        'Accepted',
        'True',
        'Accepted',
        'The route is valid and its references resolve.',
        gen,
      ),
    );
    if (lost.length > 0) {
      const msg = `models left to older routes: ${lost.join('; ')}`;
      conditions.push(condition('Conflicted', 'True', 'ModelConflict', msg, gen));
    }
    if (d.endpointProblems.length === 0) {
      const inCluster = d.backends.some((b) => b.target.kind === 'service');
      const msg = inCluster
        ? 'Every in-cluster backend has a ready endpoint.'
        : 'Every backend is external; Envoy resolves it by DNS.';
      conditions.push(condition('EndpointsReady', 'True', 'EndpointsReady', msg, gen));
    } else {
      const first = d.endpointProblems[0]!;
      const msg = d.endpointProblems.map((p) => p.message).join('; ');
      conditions.push(condition('EndpointsReady', 'False', first.reason, msg, gen));
    }
    routeConditions.set(d.key, conditions);
    accepted.push({ ...d, models: kept, rules });
  }

  const { consumers } = compileConsumers(resources.consumerKeys ?? [], options.now);
  const consumerNames = new Set(consumers.map((c) => c.name));
  const policyResult = attachPolicies(policies, routes, accepted, secrets, consumerNames);
  const served: { draft: RouteDraft; hashKey?: HashKey }[] = [];
  const refused: RouteDraft[] = [];
  for (const d of accepted) {
    const invalidPolicies = policyResult.refusedBy.get(d.key);
    if (invalidPolicies) {
      const msg =
        `${invalidPolicies.length === 1 ? 'policy' : 'policies'} ${invalidPolicies.join(', ')} ` +
        `${invalidPolicies.length === 1 ? 'is' : 'are'} invalid (see ${invalidPolicies.length === 1 ? 'its' : 'their'} status): ` +
        'requests for this route are refused (503 policy_invalid) until fixed';
      const kept = (routeConditions.get(d.key) ?? []).filter((c) => c.type !== 'Accepted');
      routeConditions.set(d.key, [
        condition('Accepted', 'False', 'PolicyInvalid', msg, d.route.metadata.generation),
        ...kept,
      ]);
      refused.push(d);
      continue;
    }
    const sections = policyResult.merged.get(d.key);
    const notReady: string[] = [];
    const masking = sections?.masking;
    const key = masking ? policyResult.hashKeys.get(masking.policy) : undefined;
    if (masking && key && !key.ok) {
      notReady.push(`masking policy ${masking.policy} is not ready: ${key.message}`);
    }
    const identity = sections?.consumers;
    const unknown = identity ? policyResult.unknownConsumers.get(identity.policy) : undefined;
    if (identity && unknown !== undefined) {
      notReady.push(`consumers policy ${identity.policy} is not ready: ${unknown}`);
    }
    if (notReady.length === 0) {
      served.push(key?.ok ? { draft: d, hashKey: key.key } : { draft: d });
      continue;
    }
    // Refused, not withheld: a withheld route's models would fall to another route's prefix.
    const gen = d.route.metadata.generation;
    const msg = `${notReady.join('; ')}: requests for this route are refused (503 policy_invalid) until it is ready`;
    const kept = (routeConditions.get(d.key) ?? []).filter((c) => c.type !== 'Accepted');
    routeConditions.set(d.key, [
      condition('Accepted', 'False', 'PolicyNotReady', msg, gen),
      ...kept,
    ]);
    refused.push(d);
  }
  for (const route of routes) {
    const key = routeKey(route.metadata.namespace, route.metadata.name);
    statuses.push(status('AIRoute', route, routeConditions.get(key) ?? []));
  }
  const servedKeys = new Set(served.map((s) => s.draft.key));
  const idlePolicies = new Map<string, string>();
  for (const policy of policies) {
    const key = routeKey(policy.metadata.namespace, policy.metadata.name);
    statuses.push(status('AIPolicy', policy, policyResult.conditions.get(key) ?? []));
    const targets = policyResult.targets.get(key);
    if (targets && !targets.some((t) => servedKeys.has(t))) {
      idlePolicies.set(
        key,
        `Every AIRoute it targets (${targets.join(', ')}) is withdrawn (see their Accepted ` +
          'condition): this policy governs no traffic until one of them is served again.',
      );
    }
  }

  const governance = new Map<string, ContractGovernance>();
  const jwtProviders = new Map<string, IRJwtProvider>();
  let meshIdentity = false;
  const irRoutes: IRRoute[] = served
    .map(({ draft: d, hashKey }) => {
      const sections = policyResult.merged.get(d.key) ?? {};
      const r = irRoute(d, sections);
      const affinity = d.route.spec.sessionAffinity;
      if (affinity) r.sessionAffinity = { header: affinity.header ?? DEFAULT_SESSION_HEADER };
      const policy = routePolicy(
        sections.masking,
        sections.promptGuard,
        hashKey,
        sections.cache,
        sections.context,
        sections.sessions,
      );
      if (policy) r.policy = policy;
      if (policy?.masking?.hashKey && hashKey) r.hashKeyRef = hashKey.ref;
      const gov = governancePolicy(sections);
      if (gov) {
        r.governance = gov.name;
        governance.set(gov.name, gov);
        const identity = sections.consumers;
        const section = identity?.value as ConsumersSection | undefined;
        if (identity && section?.jwt && !jwtProviders.has(identity.policy)) {
          jwtProviders.set(identity.policy, jwtProvider(identity.policy, section.jwt));
        }
        if (section?.mesh) meshIdentity = true;
      }
      return r;
    })
    .concat(refused.map((d): IRRoute => ({ ...irRoute(d, {}), refused: 'policy_invalid' })))
    .sort((a, b) => cmp(a.key, b.key));
  const ir: IR = { routes: irRoutes, statuses };
  if (idlePolicies.size > 0) ir.idlePolicies = idlePolicies;
  ir.policyTargets = policyResult.selected;
  if (consumers.length > 0 || governance.size > 0) {
    ir.governance = {
      consumers,
      policies: [...governance.values()].sort((a, b) => cmp(a.name, b.name)),
      jwtProviders: [...jwtProviders.values()].sort((a, b) => cmp(a.name, b.name)),
      meshIdentity,
    };
  }
  return ir;
}

function draftRoute(
  route: AIRoute,
  secrets: ReadonlyMap<string, SecretData>,
  endpoints: ReadonlyMap<string, ServiceEndpoints>,
): RouteDraft {
  const ns = route.metadata.namespace;
  const name = route.metadata.name;
  const spec = route.spec;
  const parsed = AIRouteSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${fieldPath(['spec', ...i.path])}: ${i.message}`);
    throw new Rejection('Invalid', issues.join('; '));
  }

  const byName = new Map<string, Backend>();
  for (const b of spec.backends) {
    if (byName.has(b.name)) {
      throw new Rejection('Invalid', `spec.backends: backend name "${b.name}" is repeated`);
    }
    byName.set(b.name, b);
  }

  const endpointProblems: RouteDraft['endpointProblems'] = [];
  const backends: IRBackend[] = [];
  spec.backends.forEach((b, i) => {
    const at = `spec.backends[${i}]`;
    checkProviderBlocks(b, at);
    const target = resolveTarget(b, at, ns, endpoints, endpointProblems);
    const ir: IRBackend = {
      id: backendId(ns, name, b.name),
      name: b.name,
      provider: b.provider,
      target,
    };
    if (b.credential) ir.credential = resolveCredential(b, at, ns, secrets);
    else if (KEYED_PROVIDERS.has(b.provider) && target.kind === 'external' && !b.azure?.entra) {
      throw new Rejection(
        'Invalid',
        `${at}.credential: required for provider ${b.provider} with a url endpoint`,
      );
    }
    if (b.modelOverride !== undefined) ir.modelOverride = b.modelOverride;
    if (b.azure)
      ir.azure = { ...b.azure, ...(b.azure.entra ? { entra: { ...b.azure.entra } } : {}) };
    if (b.aws) ir.aws = { ...b.aws };
    if (b.gcp) ir.gcp = { ...b.gcp };
    if (b.anthropic) {
      if (b.provider !== 'anthropic') {
        throw new Rejection(
          'Invalid',
          `${at}.anthropic: only allowed when provider is anthropic, not ${b.provider}`,
        );
      }
      ir.anthropic = { ...b.anthropic };
    }
    backends.push(ir);
  });
  backends.sort((a, b) => cmp(a.id, b.id));

  const defaultTimeout =
    spec.timeout === undefined ? DEFAULT_TIMEOUT_MS : duration(spec.timeout, 'spec.timeout');
  const specs = spec.rules && spec.rules.length > 0 ? spec.rules : [{}];
  const rules: IRRule[] = specs.map((rule, index) => {
    const at = `spec.rules[${index}]`;
    const refs: BackendRef[] = rule.backendRefs ?? spec.backends.map((b) => ({ name: b.name }));
    const seen = new Set<string>();
    const ruleBackends: IRRuleBackend[] = refs.map((ref, j) => {
      const b = byName.get(ref.name);
      if (!b) {
        throw new Rejection(
          'BackendNotFound',
          `${at}.backendRefs[${j}]: no backend named "${ref.name}" in this route`,
        );
      }
      if (seen.has(ref.name)) {
        throw new Rejection(
          'Invalid',
          `${at}.backendRefs[${j}]: backend "${ref.name}" appears twice`,
        );
      }
      seen.add(ref.name);
      return {
        backend: backendId(ns, name, b.name),
        weight: ref.weight ?? b.weight ?? 1,
        priority: ref.priority ?? b.priority ?? 0,
      };
    });
    ruleBackends.sort((a, b) => a.priority - b.priority || cmp(a.backend, b.backend));
    if (!ruleBackends.some((rb) => rb.weight > 0)) {
      throw new Rejection(
        'Invalid',
        `${at}: every backend has weight 0, so nothing would serve it`,
      );
    }
    const matches: IRRuleMatch[] = (rule.matches ?? []).map((m, j) => {
      if (m.model && !spec.models.some((owned) => narrow(owned, m.model!) !== undefined)) {
        throw new Rejection(
          'Invalid',
          `${at}.matches[${j}].model: ${describeModel(m.model)} is not among the route's models`,
        );
      }
      const headers = (m.headers ?? []).map((h) => {
        if ((h.value === undefined) === (h.prefix === undefined)) {
          throw new Rejection(
            'Invalid',
            `${at}.matches[${j}].headers: exactly one of value and prefix must be set for "${h.name}"`,
          );
        }
        return h.value !== undefined
          ? { name: h.name.toLowerCase(), exact: h.value }
          : { name: h.name.toLowerCase(), prefix: h.prefix! };
      });
      return m.model ? { model: { ...m.model }, headers } : { headers };
    });
    const ir: IRRule = {
      index,
      cluster: ruleCluster(ns, name, index),
      matches,
      backends: ruleBackends,
      timeoutMs:
        rule.timeout === undefined ? defaultTimeout : duration(rule.timeout, `${at}.timeout`),
    };
    const retry = mergeRetry(rule.retry, spec.retry, at);
    if (retry) ir.retry = retry;
    return ir;
  });

  return {
    route,
    key: routeKey(ns, name),
    models: spec.models.map((m) => ({ ...m })),
    backends,
    rules,
    endpointProblems,
  };
}

function checkProviderBlocks(b: Backend, at: string): void {
  for (const [block, provider] of Object.entries(PROVIDER_BLOCK) as [
    keyof typeof PROVIDER_BLOCK,
    string,
  ][]) {
    const has = b[block] !== undefined;
    if (has && b.provider !== provider) {
      throw new Rejection('Invalid', `${at}.${block}: only allowed when provider is ${provider}`);
    }
    if (!has && b.provider === provider) {
      throw new Rejection('Invalid', `${at}.${block}: required when provider is ${provider}`);
    }
  }
}

function resolveTarget(
  b: Backend,
  at: string,
  ns: string,
  endpoints: ReadonlyMap<string, ServiceEndpoints>,
  problems: RouteDraft['endpointProblems'],
): ExternalTarget | ServiceTarget {
  const { url, service } = b.endpoint;
  if ((url === undefined) === (service === undefined)) {
    throw new Rejection('Invalid', `${at}.endpoint: exactly one of url and service must be set`);
  }
  if (service) {
    const found = endpoints.get(serviceKey(ns, service.name, service.port));
    const addresses = (found?.addresses ?? [])
      .filter((a) => a.ready)
      .map((a) => ({ ip: a.ip, port: a.port }))
      .sort((x, y) => cmp(x.ip, y.ip) || x.port - y.port);
    const deduped = addresses.filter(
      (a, i) => i === 0 || a.ip !== addresses[i - 1]!.ip || a.port !== addresses[i - 1]!.port,
    );
    if (!found) {
      problems.push({
        reason: 'ServiceNotFound',
        message: `backend "${b.name}": no endpoints known for Service ${ns}/${service.name} port ${service.port}`,
      });
    } else if (found.portNotFound) {
      const has = found.portNotFound.ports.join(', ') || 'none';
      problems.push({
        reason: 'PortNotFound',
        message: `backend "${b.name}": Service ${ns}/${service.name} has no port ${service.port} (its ports: ${has})`,
      });
    } else if (deduped.length === 0) {
      problems.push({
        reason: 'NoReadyEndpoints',
        message: `backend "${b.name}": Service ${ns}/${service.name} port ${service.port} has no ready endpoints`,
      });
    }
    return {
      kind: 'service',
      namespace: ns,
      service: service.name,
      port: service.port,
      addresses: deduped,
    };
  }
  let parsed: URL;
  try {
    parsed = new URL(url!);
  } catch {
    throw new Rejection('Invalid', `${at}.endpoint.url: not a URL`);
  }
  if (
    parsed.protocol !== 'https:' ||
    parsed.username !== '' ||
    parsed.password !== '' ||
    parsed.search !== '' ||
    parsed.hash !== ''
  ) {
    throw new Rejection(
      'Invalid',
      `${at}.endpoint.url: must be https://host[:port][/path] without credentials, query or fragment`,
    );
  }
  const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const port = parsed.port === '' ? 443 : Number(parsed.port);
  // Passed through as written: the backend's provider joins its API's path to it
  // (extproc/providers/paths.ts).
  const path = parsed.pathname.replace(/\/+$/, '');
  const target: ExternalTarget = {
    kind: 'external',
    host,
    port,
    authority: port === 443 ? parsed.hostname : `${parsed.hostname}:${port}`,
  };
  if (path !== '') target.pathPrefix = path;
  return target;
}

function resolveCredential(
  b: Backend,
  at: string,
  ns: string,
  secrets: ReadonlyMap<string, SecretData>,
): NonNullable<IRBackend['credential']> {
  const ref = b.credential!.secretRef;
  const key = ref.key ?? DEFAULT_SECRET_KEY;
  const secret = secrets.get(routeKey(ns, ref.name));
  if (!secret) {
    throw new Rejection('SecretNotFound', `${at}.credential: Secret ${ns}/${ref.name} not found`);
  }
  const value = secret.data[key];
  if (value === undefined) {
    throw new Rejection(
      'SecretKeyNotFound',
      `${at}.credential: Secret ${ns}/${ref.name} has no key "${key}"`,
    );
  }
  // Surrounding whitespace in a Secret is almost always a trailing newline from `echo`, and a
  // provider would reject the key with it.
  const trimmed = value.trim();
  if (trimmed === '') {
    throw new Rejection(
      'SecretKeyNotFound',
      `${at}.credential: key "${key}" of Secret ${ns}/${ref.name} is empty`,
    );
  }
  return { ref: { namespace: ns, secret: ref.name, key }, value: trimmed };
}

function mergeRetry(
  rule: RetryPolicy | undefined,
  route: RetryPolicy | undefined,
  at: string,
): IRRetry | undefined {
  const attempts = rule?.attempts ?? route?.attempts ?? DEFAULT_RETRY_ATTEMPTS;
  if (attempts === 0) return undefined;
  const on = new Set(rule?.retryOn ?? route?.retryOn ?? DEFAULT_RETRY_ON);
  if (on.size === 0) return undefined;
  const retry: IRRetry = { attempts, on: RETRY_ORDER.filter((r) => on.has(r)) };
  const perTry = rule?.perTryTimeout ?? route?.perTryTimeout;
  if (perTry !== undefined) {
    retry.perTryTimeoutMs = duration(
      perTry,
      rule?.perTryTimeout !== undefined ? `${at}.retry.perTryTimeout` : 'spec.retry.perTryTimeout',
    );
  }
  return retry;
}

function duration(text: string, at: string): number {
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new Rejection('Invalid', `${at}: "${text}" is not a duration such as "30s"`);
  return ms;
}

/**
 * The part of the rule's model match that falls inside one of the route's kept models; rule
 * matches outside every kept model are dropped (their model went to an older route), and a rule
 * left with no match at all is dropped too.
 */
function narrowRules(rules: IRRule[], kept: ModelMatch[]): IRRule[] {
  const out: IRRule[] = [];
  for (const r of rules) {
    if (r.matches.length === 0) {
      out.push(r);
      continue;
    }
    const matches = r.matches.filter(
      (m) => !m.model || kept.some((k) => narrow(k, m.model!) !== undefined),
    );
    if (matches.length > 0) out.push({ ...r, matches });
  }
  return out;
}

/** The set of model names both matches accept, when it is expressible as one match. */
export function narrow(owned: ModelMatch, wanted: ModelMatch): ModelMatch | undefined {
  if (owned.exact !== undefined) {
    if (wanted.exact !== undefined)
      return wanted.exact === owned.exact ? { exact: owned.exact } : undefined;
    return owned.exact.startsWith(wanted.prefix) ? { exact: owned.exact } : undefined;
  }
  const p = owned.prefix;
  if (wanted.exact !== undefined)
    return wanted.exact.startsWith(p) ? { exact: wanted.exact } : undefined;
  const q = wanted.prefix;
  if (q.startsWith(p)) return { prefix: q };
  if (p.startsWith(q)) return { prefix: p };
  return undefined;
}

interface PolicyResult {
  merged: Map<string, Partial<Record<PolicySectionName, IRPolicySection>>>;
  conditions: Map<string, ConditionResult[]>;
  /** By policy key, for the attached policies that name a masking hash key Secret. */
  hashKeys: Map<string, ReturnType<typeof resolveHashKey>>;
  /** By policy key: why its consumers section names consumers that do not exist. */
  unknownConsumers: Map<string, string>;
  /** By route key: the invalid policies that target the route, which is then refused. */
  refusedBy: Map<string, string[]>;
  /** By policy key, for valid policies: the routes they target. */
  targets: Map<string, string[]>;
  /** By policy key, for every policy whose targets could be read: their route names. */
  selected: Map<string, string[]>;
}

function attachPolicies(
  policies: readonly AIPolicy[],
  routes: readonly AIRoute[],
  accepted: readonly RouteDraft[],
  secrets: ReadonlyMap<string, SecretData>,
  consumerNames: ReadonlySet<string>,
): PolicyResult {
  const hashKeys: PolicyResult['hashKeys'] = new Map();
  const missingConsumers: PolicyResult['unknownConsumers'] = new Map();
  const conditions = new Map<string, ConditionResult[]>();
  const refusedBy: PolicyResult['refusedBy'] = new Map();
  const targetsOf: PolicyResult['targets'] = new Map();
  const selected: PolicyResult['selected'] = new Map();
  const acceptedKeys = new Set(accepted.map((d) => d.key));
  const attached = new Map<string, AIPolicy[]>();
  const valid: AIPolicy[] = [];
  const byNamespace = new Map<string, AIRoute[]>();
  for (const r of routes) {
    const list = byNamespace.get(r.metadata.namespace) ?? [];
    list.push(r);
    byNamespace.set(r.metadata.namespace, list);
  }

  for (const p of policies) {
    const key = routeKey(p.metadata.namespace, p.metadata.name);
    const gen = p.metadata.generation;
    const parsed = AIPolicySpecSchema.safeParse(p.spec);
    let invalid: string | undefined;
    if (!parsed.success) {
      invalid = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${fieldPath(['spec', ...i.path])}: ${i.message}`)
        .join('; ');
    } else if (!p.spec.targetRefs && !p.spec.selector) {
      invalid = 'spec: at least one of targetRefs and selector must be set';
    }
    const ns = p.metadata.namespace;
    const targets = policyTargets(p.spec, byNamespace.get(ns) ?? []);
    const targetKeys = targets.map((r) => routeKey(ns, r.metadata.name)).sort(cmp);
    selected.set(
      key,
      targets.map((r) => r.metadata.name),
    );
    const reason = invalid !== undefined ? 'Invalid' : 'InvalidPolicy';
    invalid ??= checkSections(p.spec);
    if (invalid !== undefined) {
      const refusing = targetKeys.filter((t) => acceptedKeys.has(t));
      for (const t of refusing) {
        const list = refusedBy.get(t) ?? [];
        list.push(key);
        refusedBy.set(t, list);
      }
      const msg =
        refusing.length > 0
          ? `${invalid}. Requests to ${refusing.join(', ')} are refused (503 policy_invalid) until this policy is fixed.`
          : invalid;
      conditions.set(key, [condition('Accepted', 'False', reason, msg, gen)]);
      continue;
    }
    const names = new Set((p.spec.targetRefs ?? []).map((t) => t.name));
    const found = new Set(targets.map((r) => r.metadata.name));
    const missing = [...names].filter((n) => !found.has(n)).sort(cmp);
    if (targets.length === 0) {
      const msg =
        missing.length > 0
          ? `no AIRoute named ${missing.map((n) => `${ns}/${n}`).join(', ')}`
          : 'the selector matches no AIRoute';
      conditions.set(key, [condition('Accepted', 'False', 'TargetNotFound', msg, gen)]);
      continue;
    }
    valid.push(p);
    targetsOf.set(key, targetKeys);
    const ref = p.spec.masking?.hashKeySecretRef;
    const hashKey = ref ? resolveHashKey(ns, ref, secrets) : undefined;
    if (hashKey) hashKeys.set(key, hashKey);
    const notReady: { reason: string; message: string }[] = [];
    if (hashKey && !hashKey.ok) {
      notReady.push({
        reason: hashKey.reason,
        message: `${hashKey.message}; routes where this policy wins masking refuse requests (503 policy_invalid)`,
      });
    }
    const unknown = unknownConsumers(p.spec.consumers, consumerNames);
    if (unknown !== undefined) {
      missingConsumers.set(key, unknown);
      notReady.push({
        reason: 'InvalidPolicy',
        message: `${unknown}; routes where this policy wins consumers refuse requests (503 policy_invalid)`,
      });
    }
    if (notReady.length > 0) {
      const msg = notReady.map((n) => n.message).join('; ');
      conditions.set(key, [condition('Accepted', 'False', notReady[0]!.reason, msg, gen)]);
    } else {
      let msg = `Attached to ${targetKeys.join(', ')}.`;
      if (missing.length > 0) msg += ` Not found: ${missing.map((n) => `${ns}/${n}`).join(', ')}.`;
      conditions.set(key, [condition('Accepted', 'True', 'Accepted', msg, gen)]);
    }
    for (const t of targetKeys) {
      if (!acceptedKeys.has(t)) continue;
      const list = attached.get(t) ?? [];
      list.push(p);
      attached.set(t, list);
    }
  }

  const merged = new Map<string, Partial<Record<PolicySectionName, IRPolicySection>>>();
  const losses = new Map<string, string[]>();
  for (const [route, list] of attached) {
    const ranked = [...list].sort(comparePrecedence);
    const sections: Partial<Record<PolicySectionName, IRPolicySection>> = {};
    for (const section of POLICY_SECTIONS) {
      const setting = ranked.filter((p) => p.spec[section] !== undefined);
      const winner = setting[0];
      if (!winner) continue;
      const winnerKey = routeKey(winner.metadata.namespace, winner.metadata.name);
      sections[section] = {
        policy: winnerKey,
        mode: winner.spec.mode ?? 'enforce',
        failureMode: winner.spec.failureMode ?? 'closed',
        value: winner.spec[section]!,
      };
      for (const loser of setting.slice(1)) {
        const k = routeKey(loser.metadata.namespace, loser.metadata.name);
        const l = losses.get(k) ?? [];
        l.push(
          `section ${section} on ${route} is taken by ${winnerKey} (priority ${winner.spec.priority ?? 0})`,
        );
        losses.set(k, l);
      }
    }
    merged.set(route, sections);
  }
  for (const p of valid) {
    const key = routeKey(p.metadata.namespace, p.metadata.name);
    const l = losses.get(key);
    if (!l) continue;
    conditions
      .get(key)!
      .push(
        condition(
          'Conflicted',
          'True',
          'Overridden',
          l.sort(cmp).join('; '),
          p.metadata.generation,
        ),
      );
  }
  return {
    merged,
    conditions,
    hashKeys,
    unknownConsumers: missingConsumers,
    refusedBy,
    targets: targetsOf,
    selected,
  };
}

/**
 * The routes of `routes` (the policy's namespace) that a policy spec targets: by targetRefs name
 * or by selector labels. Read leniently, since invalid policies keep their targets too: when the
 * targeting fields cannot be read (malformed, or neither set) the targets are unknown, and every
 * route of the namespace is taken as a target.
 */
function policyTargets(spec: unknown, routes: readonly AIRoute[]): AIRoute[] {
  const s = (typeof spec === 'object' && spec !== null ? spec : {}) as Record<string, unknown>;
  const isMap = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  let names: Set<string> | undefined;
  if (s.targetRefs !== undefined) {
    if (!Array.isArray(s.targetRefs)) return [...routes];
    names = new Set();
    for (const t of s.targetRefs as unknown[]) {
      const name = isMap(t) ? t.name : undefined;
      if (typeof name !== 'string') return [...routes];
      names.add(name);
    }
  }
  let labels: [string, unknown][] | undefined;
  if (s.selector !== undefined) {
    if (!isMap(s.selector)) return [...routes];
    const m = s.selector.matchLabels ?? {};
    if (!isMap(m) || Object.values(m).some((v) => typeof v !== 'string')) return [...routes];
    labels = Object.entries(m);
  }
  if (names === undefined && labels === undefined) return [...routes];
  return routes.filter(
    (r) =>
      names?.has(r.metadata.name) === true ||
      (labels !== undefined && labels.every(([k, v]) => r.metadata.labels?.[k] === v)),
  );
}

function comparePrecedence(a: AIPolicy, b: AIPolicy): number {
  return (b.spec.priority ?? 0) - (a.spec.priority ?? 0) || compareAge(a, b);
}

/** Older first; a missing creationTimestamp counts as newest; then namespace/name. */
function compareAge(
  a: { metadata: { namespace: string; name: string; creationTimestamp?: string } },
  b: typeof a,
): number {
  const ta = a.metadata.creationTimestamp
    ? Date.parse(a.metadata.creationTimestamp)
    : Number.POSITIVE_INFINITY;
  const tb = b.metadata.creationTimestamp
    ? Date.parse(b.metadata.creationTimestamp)
    : Number.POSITIVE_INFINITY;
  const na = Number.isNaN(ta) ? Number.POSITIVE_INFINITY : ta;
  const nb = Number.isNaN(tb) ? Number.POSITIVE_INFINITY : tb;
  if (na !== nb) return na < nb ? -1 : 1;
  return cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name);
}

function uniqueByKey<T extends { metadata: { namespace: string; name: string } }>(
  items: readonly T[],
): T[] {
  const seen = new Map<string, T>();
  for (const item of items) {
    const k = routeKey(item.metadata.namespace, item.metadata.name);
    if (!seen.has(k)) seen.set(k, item);
  }
  return [...seen.entries()].sort((a, b) => cmp(a[0], b[0])).map(([, v]) => v);
}

function status(
  kind: StatusResult['kind'],
  obj: AIRoute | AIPolicy,
  conditions: ConditionResult[],
): StatusResult {
  const s: StatusResult = {
    kind,
    namespace: obj.metadata.namespace,
    name: obj.metadata.name,
    conditions,
  };
  if (obj.metadata.generation !== undefined) s.observedGeneration = obj.metadata.generation;
  return s;
}

function condition(
  type: string,
  status: ConditionResult['status'],
  reason: string,
  message: string,
  observedGeneration: number | undefined,
): ConditionResult {
  const c: ConditionResult = { type, status, reason, message };
  if (observedGeneration !== undefined) c.observedGeneration = observedGeneration;
  return c;
}

function unixSeconds(timestamp: string | undefined): number {
  const ms = timestamp === undefined ? NaN : Date.parse(timestamp);
  return Number.isNaN(ms) ? 0 : Math.max(0, Math.floor(ms / 1000));
}

function serviceKey(ns: string, service: string, port: number): string {
  return `${ns}/${service}:${port}`;
}

function modelKey(m: ModelMatch): string {
  return m.exact !== undefined ? `exact:${m.exact}` : `prefix:${m.prefix}`;
}

function describeModel(m: ModelMatch): string {
  return m.exact !== undefined ? `model "${m.exact}"` : `prefix "${m.prefix}"`;
}

/** Code-point order, the same in every locale. */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
