/**
 * Governance: consumer Secrets → the contract's `consumers`, and the consumers, access, limits and
 * pricing sections of AIPolicies → the contract's governance `policies` plus the JWT issuers Envoy
 * verifies. As for masking (policy.ts), what the apiserver cannot check is checked here with the
 * extproc's own schemas, so a section the extproc would refuse makes its policy InvalidPolicy
 * instead of making the extproc refuse the whole document.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { WIRE, type ExtprocConfigInput } from '../../extproc/config/contract.js';
import {
  AccessPolicy,
  IdentityPolicy,
  LimitsPolicy,
  Pricing,
} from '../../extproc/governance/schema.js';
import { CONSUMER_LABEL, groupConsumerKeys, type ConsumerProblem } from '../api/consumer-secret.js';
import type {
  AIPolicySpec,
  ConsumerKey,
  ConsumersSection,
  JwtSection,
  PolicySectionName,
} from '../api/types.js';
import { parseDuration } from './durations.js';
import { collectIssues, type CompileProblem } from './issues.js';
import type { IRJwtProvider, IRPolicySection } from './ir.js';

type ContractConsumer = NonNullable<ExtprocConfigInput['consumers']>[number];
export type ContractGovernance = NonNullable<ExtprocConfigInput['policies']>[number];
type ContractIdentity = z.input<typeof IdentityPolicy>;

export const GOVERNANCE_SECTIONS = ['consumers', 'access', 'limits', 'pricing'] as const;
export type GovernanceSectionName = (typeof GOVERNANCE_SECTIONS)[number];

/** The contract's bound on a name. */
const MAX_NAME = 253;
/** Envoy's own default for remote JWKS, written out so the IR says what Envoy will do. */
export const DEFAULT_JWKS_CACHE_SECONDS = 600;

/**
 * Consumer keys → the contract's consumers, sorted by name; the consumers the Secrets' own rules
 * leave out (groupConsumerKeys) are left out, with their problems. Keys expired at `now` are left
 * out (absent `now`: none is), so a rotated-out key stops working even while a newer key of the
 * same consumer lives on. The contract has one `expiresAt` per consumer, not per key; it is set
 * only when every key has an expiry, to the latest one: then the extproc itself refuses the
 * consumer once its last key has expired, even if no new configuration arrives. An
 * earlier-expiring key is dropped by the next translation after its expiry (the controller
 * schedules one). Problems are the same whatever `now` is, so a source can report them.
 */
export function compileConsumers(
  keys: readonly ConsumerKey[],
  now?: number,
): { consumers: ContractConsumer[]; problems: ConsumerProblem[] } {
  const { consumers: groups, problems } = groupConsumerKeys(keys);
  const consumers = groups.map(({ name, team, keys: group, own }) => {
    const live = own.filter(
      (k) => now === undefined || k.expiresAt === undefined || now < Date.parse(k.expiresAt),
    );
    const c: ContractConsumer = {
      name,
      keyHashes: [...new Set(live.map((k) => k.keyHash))].sort(cmp),
    };
    if (team !== '') c.team = team;
    if (group.every((k) => k.expiresAt !== undefined)) {
      c.expiresAt = new Date(Math.max(...group.map((k) => Date.parse(k.expiresAt!)))).toISOString();
    }
    return c;
  });
  return { consumers, problems };
}

/** The earliest key expiry after `now`, when the consumers must be compiled again. */
export function nextKeyExpiry(keys: readonly ConsumerKey[], now: number): number | undefined {
  let next: number | undefined;
  for (const k of keys) {
    if (k.expiresAt === undefined) continue;
    const t = Date.parse(k.expiresAt);
    if (t > now && (next === undefined || t < next)) next = t;
  }
  return next;
}

/** The consumers section as the contract's IdentityPolicy: same fields, the header is ours. */
export function toContractIdentity(section: ConsumersSection): ContractIdentity {
  const out: ContractIdentity = {};
  if (section.required !== undefined) out.required = section.required;
  if (section.keys) out.keys = section.keys.headers ? { headers: [...section.keys.headers] } : {};
  if (section.jwt) {
    const { issuer, consumerClaim, teamClaim, consumers } = section.jwt;
    out.jwt = {
      // Only Envoy's jwt_authn writes this header (it is removed from client requests first);
      // letting a policy choose another would let it trust one a client can set.
      header: WIRE.jwtPayloadHeader,
      // jwt_authn accepts every policy's issuer on every route; this pins the route to its own.
      issuers: [issuer],
      ...(consumerClaim !== undefined ? { consumerClaim } : {}),
      ...(teamClaim !== undefined ? { teamClaim } : {}),
      ...(consumers !== undefined ? { consumers: { ...consumers } } : {}),
    };
  }
  if (section.mesh) out.mesh = { consumers: { ...section.mesh.consumers } };
  return out;
}

/**
 * What is wrong with the governance sections as the extproc and Envoy would see them, as
 * `spec.<path>: <message>` lines; empty: nothing. Unknown consumers are not checked here: they
 * depend on Secrets, not on the policy (see unknownConsumers).
 */
export function checkGovernanceSections(spec: AIPolicySpec): CompileProblem[] {
  const problems: CompileProblem[] = [];
  if (spec.consumers) {
    collectIssues(
      IdentityPolicy.safeParse(toContractIdentity(spec.consumers)),
      'consumers',
      problems,
    );
    if (spec.consumers.jwt) {
      const jwks = resolveJwks(spec.consumers.jwt);
      if (!jwks.ok) {
        problems.push({ field: `spec.consumers.jwt.${jwks.field}`, message: jwks.message });
      }
    }
  }
  if (spec.access) collectIssues(AccessPolicy.safeParse(spec.access), 'access', problems);
  if (spec.limits) collectIssues(LimitsPolicy.safeParse(spec.limits), 'limits', problems);
  if (spec.pricing) collectIssues(Pricing.safeParse(spec.pricing), 'pricing', problems);
  return problems;
}

/**
 * The consumer names the section maps JWT claims or mesh identities to that no consumer Secret
 * declares, as a condition message; undefined: all known.
 */
export function unknownConsumers(
  section: ConsumersSection | undefined,
  known: ReadonlySet<string>,
): string | undefined {
  const parts: string[] = [];
  const check = (map: Record<string, string> | undefined, at: string) => {
    const missing = [...new Set(Object.values(map ?? {}))].filter((n) => !known.has(n)).sort(cmp);
    if (missing.length > 0) {
      parts.push(`${at}: no consumer ${missing.map((n) => `"${n}"`).join(', ')}`);
    }
  };
  check(section?.jwt?.consumers, 'spec.consumers.jwt.consumers');
  check(section?.mesh?.consumers, 'spec.consumers.mesh.consumers');
  if (parts.length === 0) return undefined;
  return (
    `${parts.join('; ')} (a consumer is declared by a Secret labelled ${CONSUMER_LABEL} in ` +
    `the operator's consumer namespaces)`
  );
}

type JwksResult =
  { ok: true; jwks: IRJwtProvider['jwks'] } | { ok: false; field: string; message: string };

function resolveJwks(jwt: JwtSection): JwksResult {
  if ((jwt.jwks === undefined) === (jwt.jwksUri === undefined)) {
    return { ok: false, field: 'jwksUri', message: 'exactly one of jwksUri and jwks must be set' };
  }
  if (jwt.jwks !== undefined) {
    const problem = jwksProblem(jwt.jwks);
    return problem
      ? { ok: false, field: 'jwks', message: problem }
      : { ok: true, jwks: { kind: 'inline', json: jwt.jwks } };
  }
  let url: URL;
  try {
    url = new URL(jwt.jwksUri!);
  } catch {
    return { ok: false, field: 'jwksUri', message: 'not a URL' };
  }
  if (url.protocol !== 'https:' || url.username !== '' || url.password !== '' || url.hash !== '') {
    return {
      ok: false,
      field: 'jwksUri',
      message: 'must be https://host[:port][/path][?query] without credentials',
    };
  }
  let cacheDurationSeconds = DEFAULT_JWKS_CACHE_SECONDS;
  if (jwt.cacheDuration !== undefined) {
    const ms = parseDuration(jwt.cacheDuration);
    if (ms === undefined || ms < 1000) {
      return {
        ok: false,
        field: 'cacheDuration',
        message: `"${jwt.cacheDuration}" is not a duration of at least 1s`,
      };
    }
    cacheDurationSeconds = Math.round(ms / 1000);
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return {
    ok: true,
    jwks: {
      kind: 'remote',
      uri: jwt.jwksUri!,
      host,
      port: url.port === '' ? 443 : Number(url.port),
      cacheDurationSeconds,
    },
  };
}

// Envoy reads an inline JWKS when the configuration arrives; one it cannot read would be a NACK
// of the whole listener update, so the shape Envoy needs is checked here.
function jwksProblem(text: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return 'not JSON: a JWKS document is {"keys": [...]}';
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(keys) || keys.length === 0) {
    return 'a JWKS document needs a non-empty "keys" array';
  }
  const bad = keys.findIndex(
    (k) => typeof k !== 'object' || k === null || typeof (k as { kty?: unknown }).kty !== 'string',
  );
  return bad === -1 ? undefined : `keys[${bad}] is not a JSON Web Key (no "kty")`;
}

/** The JWT issuer of a policy's consumers section; the section must have passed the checks. */
export function jwtProvider(policyKey: string, jwt: JwtSection): IRJwtProvider {
  const jwks = resolveJwks(jwt);
  if (!jwks.ok) throw new Error(`${policyKey}: ${jwks.message}`);
  return {
    name: policyKey,
    issuer: jwt.issuer,
    audiences: [...(jwt.audiences ?? [])],
    jwks: jwks.jwks,
  };
}

/**
 * One route's governance policy from its merged sections; undefined when none is set. The name
 * is the distinct winning policies in section order. Routes with the same winners get the same
 * name and the same content, and so share budgets: the precedence order is the same on every
 * route, so the winners alone decide which of them wins each section.
 */
export function governancePolicy(
  sections: Partial<Record<PolicySectionName, IRPolicySection>>,
): ContractGovernance | undefined {
  const parts = GOVERNANCE_SECTIONS.map((s) => sections[s]).filter(
    (s): s is IRPolicySection => s !== undefined,
  );
  if (parts.length === 0) return undefined;
  const out: ContractGovernance = {
    name: combinedName(parts.map((s) => s.policy)),
    // Stricter wins, as for the route policy (policy.ts): a governance setting quietly weaker
    // than one of its policies asked for is the failure nobody notices.
    mode: parts.some((s) => s.mode === 'enforce') ? 'enforce' : 'shadow',
    failureMode: parts.some((s) => s.failureMode === 'closed') ? 'closed' : 'open',
  };
  if (sections.consumers) {
    out.identity = toContractIdentity(sections.consumers.value as ConsumersSection);
  }
  if (sections.access) out.access = sections.access.value as ContractGovernance['access'];
  if (sections.limits) out.limits = sections.limits.value as ContractGovernance['limits'];
  if (sections.pricing) out.pricing = sections.pricing.value as ContractGovernance['pricing'];
  return out;
}

/**
 * Distinct policy keys joined with ':', which the contract's name syntax allows and
 * `<namespace>/<name>` never contains. Past the contract's length bound, a digest of that text
 * stands in for it, so the document stays valid and the name stays stable.
 */
export function combinedName(policyKeys: readonly string[]): string {
  const joined = [...new Set(policyKeys)].join(':');
  if (joined.length <= MAX_NAME) return joined;
  return `combined:${createHash('sha256').update(joined).digest('hex').slice(0, 32)}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
