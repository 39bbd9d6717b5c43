/**
 * The intermediate representation between the API resources and the data-plane documents.
 *
 * Everything here is already validated, defaulted and resolved (Secrets read, EndpointSlices
 * joined, policies merged, model conflicts settled), so the two emitters (to-envoy.ts and
 * to-extproc.ts) make no decisions that could make Envoy and the extproc disagree.
 */
import type { ExtprocConfigInput } from '../../extproc/config/contract.js';
import type {
  Backend,
  Condition,
  ModelMatch,
  PolicySectionName,
  PolicySections,
  Provider,
  RetryOn,
} from '../api/types.js';

/** A condition as compilation decides it; the status writer adds lastTransitionTime. */
export type ConditionResult = Omit<Condition, 'lastTransitionTime'>;

export type RouteReason =
  | 'Accepted'
  | 'Invalid'
  | 'BackendNotFound'
  | 'SecretNotFound'
  | 'SecretKeyNotFound'
  | 'ModelConflict'
  | 'PolicyNotReady'
  | 'PolicyInvalid';

export type EndpointsReason =
  'EndpointsReady' | 'ServiceNotFound' | 'PortNotFound' | 'NoReadyEndpoints';

export type PolicyReason =
  | 'Accepted'
  | 'Invalid'
  | 'InvalidPolicy'
  | 'SecretNotFound'
  | 'SecretKeyNotFound'
  | 'TargetNotFound'
  | 'Overridden';

export interface StatusResult {
  kind: 'AIRoute' | 'AIPolicy';
  namespace: string;
  name: string;
  observedGeneration?: number;
  conditions: ConditionResult[];
}

export interface ExternalTarget {
  kind: 'external';
  /** As Envoy dials it and validates the certificate for (SNI and SAN). */
  host: string;
  port: number;
  /** The Host header the provider expects: the host, with the port when it is not 443. */
  authority: string;
  /** The URL's path below the host as written (the provider joins its API path to it), without a trailing slash; absent for "/". */
  pathPrefix?: string;
}

export interface ServiceTarget {
  kind: 'service';
  namespace: string;
  service: string;
  port: number;
  /** Ready addresses only, sorted by ip then port; may be empty. */
  addresses: { ip: string; port: number }[];
}

export interface CredentialRef {
  namespace: string;
  secret: string;
  key: string;
}

export interface IRBackend {
  /** `<namespace>/<route>/<backend>`: unique across routes, the extproc's backend name. */
  id: string;
  name: string;
  provider: Provider;
  target: ExternalTarget | ServiceTarget;
  credential?: { ref: CredentialRef; value: string };
  modelOverride?: string;
  // The provider blocks as the AIRoute writes them: the IR carries them unchanged.
  azure?: Backend['azure'];
  aws?: Backend['aws'];
  gcp?: Backend['gcp'];
  anthropic?: Backend['anthropic'];
}

export interface IRRuleBackend {
  /** IRBackend.id */
  backend: string;
  weight: number;
  priority: number;
}

export interface IRHeaderMatch {
  name: string;
  exact?: string;
  prefix?: string;
}

export interface IRRuleMatch {
  /** Absent: every model the route owns. */
  model?: ModelMatch;
  headers: IRHeaderMatch[];
}

export interface IRRetry {
  /** Retries after the first try; at least 1 (no retry is expressed by `retry` being absent). */
  attempts: number;
  on: RetryOn[];
  perTryTimeoutMs?: number;
}

export interface IRRule {
  index: number;
  /** The Envoy cluster that carries this rule's backends. */
  cluster: string;
  /** Empty: every model the route owns, whatever the headers. */
  matches: IRRuleMatch[];
  /** Sorted by priority, then backend id. Weight-0 backends stay listed for the extproc. */
  backends: IRRuleBackend[];
  timeoutMs: number;
  retry?: IRRetry;
}

export interface IRPolicySection {
  /** `<namespace>/<name>` of the winning AIPolicy. */
  policy: string;
  mode: 'enforce' | 'shadow';
  failureMode: 'closed' | 'open';
  value: NonNullable<PolicySections[PolicySectionName]>;
}

export interface IRRoute {
  /** `<namespace>/<name>` */
  key: string;
  namespace: string;
  name: string;
  /** creationTimestamp as Unix seconds (0 when unknown): /v1/models shows it as `created`. */
  created: number;
  /** The models the route owns after conflicts, in the route's order. */
  models: ModelMatch[];
  /** Sorted by id. */
  backends: IRBackend[];
  rules: IRRule[];
  /** Merged per section: the attached policy that wins each section. */
  policies: Partial<Record<PolicySectionName, IRPolicySection>>;
  /** The extproc's route policy built from the masking and promptGuard sections, keys resolved. */
  policy?: NonNullable<ExtprocConfigInput['routes'][number]['policy']>;
  /** Where `policy.masking.hashKey` came from, for redaction. */
  hashKeyRef?: CredentialRef;
  /**
   * The name of the compiled governance policy (IR.governance) this route runs under, absent
   * when no AIPolicy with a governance section (consumers, access, limits, pricing) applies.
   */
  governance?: string;
  /**
   * Set when an invalid AIPolicy targets the route: Envoy keeps routing its models here (so no
   * other route takes them) and the extproc refuses every request with 503 `policy_invalid`.
   * Such a route has no policy and no governance.
   */
  refused?: 'policy_invalid';
  /**
   * Session affinity (AIRoute spec.sessionAffinity): each rule's cluster balances with ring hash
   * over its endpoints and each route entry hashes WIRE.affinityHeader, which the extproc sets
   * from the caller and this session header.
   */
  sessionAffinity?: { header: string };
}

/**
 * One JWT issuer that Envoy's jwt_authn filter verifies. The verified payload reaches the extproc
 * in the header WIRE.jwtPayloadHeader, which Envoy strips from client requests first, so the
 * extproc can trust it. `name` is `<namespace>/<policy>` of the AIPolicy that declares it.
 */
export interface IRJwtProvider {
  name: string;
  issuer: string;
  /** Empty: any audience. */
  audiences: string[];
  jwks:
    | { kind: 'inline'; json: string }
    | {
        kind: 'remote';
        /** As written in the policy: https only. */
        uri: string;
        host: string;
        port: number;
        cacheDurationSeconds: number;
      };
}

/** Governance compiled for the extproc, with what Envoy needs to make identity unforgeable. */
export interface IRGovernance {
  /** The contract's `consumers`, sorted by name: only key digests, never keys. */
  consumers: NonNullable<ExtprocConfigInput['consumers']>;
  /** The contract's `policies`, sorted by name; routes name them in IRRoute.governance. */
  policies: NonNullable<ExtprocConfigInput['policies']>;
  /** Sorted by name; empty: no jwt_authn filter is emitted. */
  jwtProviders: IRJwtProvider[];
  /** Some policy identifies callers by mesh identity (the XFCC header). */
  meshIdentity: boolean;
}

export interface IR {
  /** Accepted routes, sorted by key. */
  routes: IRRoute[];
  /** One per AIRoute and AIPolicy of the input, sorted by kind, namespace, name. */
  statuses: StatusResult[];
  /** Absent or empty lists when no policy governs any route. */
  governance?: IRGovernance;
  /**
   * Accepted policies that change nothing served, because every AIRoute they target is
   * withdrawn, by `namespace/name`: why (status reports it on Programmed).
   */
  idlePolicies?: Map<string, string>;
  /** The AIRoutes each AIPolicy selects (names in its namespace), by `namespace/name`. */
  policyTargets?: Map<string, string[]>;
}
