/**
 * The Sluice API (group sluice.dev, version v1alpha1) as TypeScript types: the contract between
 * the CRD schemas (operator/api/schema.ts, which must parse to exactly these shapes), the sources
 * (cluster informers or YAML files) and the pure compilation. No Kubernetes client types here.
 */

import type { Provider } from '../../extproc/providers/provider.js';

export const GROUP = 'sluice.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Declared once, beside the translators that serve each (extproc/providers). */
export type { Provider };

/** A model name the route serves: exact names are listed in /v1/models, prefixes are not. */
export type ModelMatch = { exact: string; prefix?: never } | { prefix: string; exact?: never };

export interface SecretKeyRef {
  /** A Secret in the route's namespace. */
  name: string;
  /** The key in the Secret's data; default "apiKey". */
  key?: string;
}

export interface ServiceRef {
  /** A Service in the route's namespace (in-cluster model servers: vLLM, Ollama, TGI). */
  name: string;
  port: number;
}

export interface Endpoint {
  /** External: https://host[:port][/path-prefix]. Exactly one of url and service. */
  url?: string;
  service?: ServiceRef;
}

export interface Backend {
  /** Unique within the route; rules refer to it. DNS-label syntax. */
  name: string;
  provider: Provider;
  endpoint: Endpoint;
  credential?: { secretRef: SecretKeyRef };
  /** Replaces the model the client named before the request leaves. */
  modelOverride?: string;
  /** Relative share among backends of the same priority; default 1. */
  weight?: number;
  /** 0 is tried first; higher numbers are fallbacks; default 0. */
  priority?: number;
  azure?: {
    apiVersion: string;
    deployment?: string;
    /** Entra ID tokens instead of an api-key; ids default to AZURE_TENANT_ID / AZURE_CLIENT_ID. */
    entra?: { tenantId?: string; clientId?: string };
  };
  aws?: {
    region: string;
    anthropicInvoke?: boolean;
    guardrail?: {
      identifier: string;
      version: string;
      trace?: 'enabled' | 'disabled' | 'enabled_full';
      streamProcessingMode?: 'sync' | 'async';
    };
  };
  gcp?: { project: string; region: string; publisher?: 'google' | 'anthropic' };
  anthropic?: { version?: string; defaultMaxTokens?: number };
}

/** Durations are Kubernetes/Go style strings: "500ms", "30s", "2m". */
export type Duration = string;

export type RetryOn = 'rate-limited' | '5xx' | 'reset' | 'timeout' | 'connect-failure';

export interface RetryPolicy {
  /** Retries after the first try; 0 disables. Default 2. */
  attempts?: number;
  retryOn?: RetryOn[];
  perTryTimeout?: Duration;
}

export interface HeaderMatch {
  name: string;
  /** Exact value; exactly one of value and prefix. */
  value?: string;
  prefix?: string;
}

export interface RuleMatch {
  model?: ModelMatch;
  headers?: HeaderMatch[];
}

export interface BackendRef {
  name: string;
  /** Overrides the backend's weight in this rule. */
  weight?: number;
  priority?: number;
}

export interface Rule {
  /** Empty or absent: every model of the route. */
  matches?: RuleMatch[];
  /** Absent: every backend of the route with its own weight and priority. */
  backendRefs?: BackendRef[];
  timeout?: Duration;
  retry?: RetryPolicy;
}

export interface AIRouteSpec {
  models: ModelMatch[];
  backends: Backend[];
  /** Evaluated in order; absent: one rule for all models and backends. */
  rules?: Rule[];
  /** Defaults for every rule. Default timeout 300s. */
  timeout?: Duration;
  retry?: RetryPolicy;
  /** Keep each conversation on one endpoint of the backend (Envoy ring hash); absent: off. */
  sessionAffinity?: SessionAffinity;
}

/**
 * A conversation (the session header of an authenticated caller, else the caller) keeps reaching
 * the same endpoint of a backend while that endpoint is there: Envoy hashes a key the extproc
 * sets, over a ring of the backend's endpoints.
 */
export interface SessionAffinity {
  /** The request header naming the conversation; default x-sluice-session. */
  header?: string;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface ResourceStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

/** For `kubectl get`: what the route serves, in one line each (printer columns show one value). */
export interface AIRouteStatus extends ResourceStatus {
  models?: string;
  backends?: string;
}

export interface AIPolicyStatus extends ResourceStatus {
  /** The AIRoutes it targets, by name or selector, in one line. */
  targets?: string;
}

export interface AIRoute {
  apiVersion: typeof API_VERSION;
  kind: 'AIRoute';
  metadata: ObjectMeta;
  spec: AIRouteSpec;
  status?: AIRouteStatus;
}

export type PolicyMode = 'enforce' | 'shadow';
export type FailureMode = 'closed' | 'open';

/**
 * Policy sections, each typed after the extproc contract section it compiles to. Sections merge
 * across policies: for each section, the attached policy with the highest priority that sets it
 * wins (ties: oldest, then name), and the others get a Conflicted condition naming the section
 * and the winner.
 */
export interface PolicySections {
  consumers?: ConsumersSection;
  access?: AccessSection;
  limits?: LimitsSection;
  pricing?: PricingSection;
  masking?: MaskingSection;
  promptGuard?: PromptGuardSection;
  cache?: CacheSection;
  context?: ContextSection;
  sessions?: SessionsSection;
}

/** Mirrors the extproc contract's ContextPolicy (extproc/context/schema.ts) field for field. */
export interface ContextSection {
  contextOverflow?: 'reject' | 'trim-oldest' | 'trim-middle';
  models?: Record<
    string,
    { contextTokens: number; maxOutputTokens?: number; maxInputTokens?: number }
  >;
  builtInCatalog?: boolean;
  reserveOutputTokens?: number;
}

/** Mirrors the extproc contract's SessionsPolicy (extproc/sessions/schema.ts) field for field. */
export interface SessionsSection {
  enabled?: boolean;
  ttlSeconds?: number;
  maxStoredBytes?: number;
  anonymous?: 'refuse' | 'stateless';
}

/** Mirrors the extproc contract's CachePolicy (extproc/cache/schema.ts) field for field. */
export interface CacheSection {
  ttlSeconds?: number;
  scope?: 'consumer' | 'team' | 'route';
  maxEntryBytes?: number;
  cacheToolCalls?: boolean;
  cacheNonDeterministic?: boolean;
  hitCostFraction?: number;
}

/**
 * Who calls: mirrors the contract's IdentityPolicy (extproc/governance/schema.ts). Methods are
 * tried in the order keys, jwt, mesh. The consumers named here are declared by labelled Secrets
 * (operator/api/consumer-secret.ts), never in a policy.
 */
export interface ConsumersSection {
  /** Requests without an identity are refused; default true. */
  required?: boolean;
  /** Virtual keys; default headers authorization (Bearer) and x-api-key. */
  keys?: { headers?: string[] };
  jwt?: JwtSection;
  /** SPIFFE ID → consumer, read from the x-forwarded-client-cert header the mesh sets. */
  mesh?: { consumers: Record<string, string> };
}

/**
 * A JWT issuer that Envoy verifies (jwt_authn) before the extproc reads the claims. The header
 * the verified payload travels in is the operator's choice, not the user's.
 */
export interface JwtSection {
  issuer: string;
  /** Absent: any audience. */
  audiences?: string[];
  /** Exactly one of jwksUri (https) and jwks (a JWKS document as a JSON string). */
  jwksUri?: string;
  jwks?: string;
  /** How long a fetched JWKS is kept; default 10m. */
  cacheDuration?: Duration;
  consumerClaim?: string;
  teamClaim?: string;
  /** Claim value → consumer; when given, only listed values are accepted. */
  consumers?: Record<string, string>;
}

/** Mirrors the contract's AccessPolicy field for field. */
export interface AccessSection {
  default?: 'allow' | 'deny';
  rules?: AccessRuleSpec[];
}

export interface AccessRuleSpec {
  name: string;
  effect: 'allow' | 'deny';
  consumers?: string[];
  teams?: string[];
  models?: string[];
  /** Globs over route names, which are `<namespace>/<AIRoute name>`. */
  routes?: string[];
}

export type LimitDimension = 'consumer' | 'team' | 'model' | 'route';

/** Mirrors the contract's LimitsPolicy field for field. */
export interface LimitsSection {
  rules?: LimitSpec[];
  defaultMaxTokens?: number;
  reservationTtlSeconds?: number;
}

export interface LimitSpec {
  name: string;
  per?: LimitDimension[];
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  concurrent?: number;
  spendPerDayUsd?: number;
  spendPerMonthUsd?: number;
}

/** Mirrors the contract's Pricing: USD per million tokens, by model name or glob. */
export interface PricingSection {
  models?: Record<string, ModelPriceSpec>;
}

export interface ModelPriceSpec {
  inputPerMTok: number;
  outputPerMTok: number;
  cachedInputPerMTok?: number;
  cacheWriteInputPerMTok?: number;
}

/**
 * Mirrors the extproc contract's MaskingPolicy field for field (extproc/config/contract.ts), so
 * compilation maps it directly; the one difference is the hash key, which lives in a Secret.
 */
export interface MaskingSection {
  /** Pattern types when omitted; PERSON, STREET_ADDRESS and DATE_OF_BIRTH run only when listed. */
  detectors?: (
    | 'EMAIL'
    | 'PHONE'
    | 'CREDIT_CARD'
    | 'IBAN'
    | 'US_SSN'
    | 'IP_ADDRESS'
    | 'SECRET'
    | 'PERSON'
    | 'STREET_ADDRESS'
    | 'DATE_OF_BIRTH'
  )[];
  customPatterns?: { type: string; pattern: string }[];
  wordLists?: { type: string; words: string[]; caseInsensitive?: boolean }[];
  actions?: Record<string, MaskAction>;
  defaultAction?: MaskAction;
  reversible?: boolean;
  sessionHeader?: string;
  systemNote?: boolean;
  scanResponses?: boolean;
  redaction?: 'typed' | 'generic';
  partialKeep?: number;
  /** A Secret in the policy's namespace holding the HMAC key of the `hash` action. */
  hashKeySecretRef?: { name: string; key: string };
  timeoutMs?: number;
  /** Prompt and completion text in trace span events, after masking; default false. */
  traceContent?: boolean;
}

export type MaskAction = 'mask' | 'redact' | 'hash' | 'partial' | 'block' | 'alert';

export interface GuardPatternSpec {
  name: string;
  pattern: string;
  caseInsensitive?: boolean;
}

/** One shape for every variable type; which fields go with which type is checked in compilation. */
export interface TemplateVariableSpec {
  type: 'string' | 'number' | 'enum';
  maxLength?: number;
  integer?: boolean;
  minimum?: number;
  maximum?: number;
  enum?: string[];
  required?: boolean;
}

/** Mirrors the extproc contract's PromptGuardPolicy (extproc/guard/schema.ts) field for field. */
export interface PromptGuardSection {
  allowPatterns?: GuardPatternSpec[];
  denyPatterns?: GuardPatternSpec[];
  maxPromptChars?: number;
  maxPromptTokens?: number;
  injection?: { enabled?: boolean; threshold?: number; action?: 'block' | 'alert' };
  invisibleCharacters?: 'block' | 'strip' | 'alert' | 'allow';
  decorators?: { prepend?: string[]; append?: string[] };
  templates?: Record<
    string,
    {
      text: string;
      role?: 'user' | 'system';
      variables?: Record<string, TemplateVariableSpec>;
    }
  >;
}

export const POLICY_SECTIONS = [
  'consumers',
  'access',
  'limits',
  'pricing',
  'masking',
  'promptGuard',
  'cache',
  'context',
  'sessions',
] as const;
export type PolicySectionName = (typeof POLICY_SECTIONS)[number];

export interface AIPolicySpec extends PolicySections {
  /** AIRoutes in the same namespace, by name. At least one of targetRefs and selector. */
  targetRefs?: { name: string }[];
  /** AIRoutes in the same namespace, by label. */
  selector?: { matchLabels?: Record<string, string> };
  /** Higher wins per section; default 0. */
  priority?: number;
  /** shadow: evaluate and report, enforce nothing. Default enforce. */
  mode?: PolicyMode;
  /** What happens when a policy cannot be evaluated (detector error, store down). Default closed. */
  failureMode?: FailureMode;
}

export interface AIPolicy {
  apiVersion: typeof API_VERSION;
  kind: 'AIPolicy';
  metadata: ObjectMeta;
  spec: AIPolicySpec;
  status?: AIPolicyStatus;
}

/** Referenced objects the compilation needs, reduced to what it reads. */
export interface SecretData {
  metadata: ObjectMeta;
  /** Decoded values. */
  data: Record<string, string>;
}

export interface ServiceEndpoints {
  /** The Service's namespace/name and port. */
  namespace: string;
  service: string;
  port: number;
  /** Ready addresses from the Service's EndpointSlices (IP and target port). */
  addresses: { ip: string; port: number; ready: boolean; zone?: string }[];
  /** Set when the Service exists but has no such port: the ports it has. */
  portNotFound?: { ports: number[] };
}

/**
 * One virtual key of a consumer, read from a labelled Secret (operator/api/consumer-secret.ts).
 * Sources hash raw keys as they read them, so nothing past a source ever holds a key.
 */
export interface ConsumerKey {
  /** The Secret it came from, for messages. */
  namespace: string;
  secret: string;
  consumer: string;
  team?: string;
  keyId?: string;
  /** RFC 3339 in UTC (normalised); absent: the key does not expire. */
  expiresAt?: string;
  /** Lowercase hex sha256 of the key. */
  keyHash: string;
}

/**
 * Everything compilation reads: an immutable snapshot assembled by a source (informers or YAML
 * files). Compilation is a pure function of this bundle.
 */
export interface Resources {
  routes: readonly AIRoute[];
  policies: readonly AIPolicy[];
  secrets: readonly SecretData[];
  endpoints: readonly ServiceEndpoints[];
  /**
   * Keys from consumer Secrets, only from the namespaces the operator trusts to declare
   * consumers; absent: none.
   */
  consumerKeys?: readonly ConsumerKey[];
}
