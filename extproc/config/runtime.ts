import { compilePolicy, type CompiledPolicy } from '../policy/policy.js';
import { compileAccess, type CompiledAccess } from '../governance/access.js';
import { budgetPolicyOf, type BudgetPolicy } from '../governance/budget.js';
import { ConsumerDirectory } from '../governance/identity.js';
import { compilePricing, type PriceTable } from '../governance/pricing.js';
import type { GovernancePolicy } from '../governance/schema.js';
import type { PromptGuardPolicy } from '../guard/schema.js';
import type { Backend, ExtprocConfig, Limits, Route } from './contract.js';

/** A route's governance policy, compiled once per config version. */
export interface CompiledGovernance {
  policy: GovernancePolicy;
  access: CompiledAccess | undefined;
  prices: PriceTable;
  /** undefined: the policy sets no limits, so nothing is reserved. */
  budget: BudgetPolicy | undefined;
}

/** A backend with its credential resolved to the secret value. */
export interface ResolvedBackend extends Omit<Backend, 'credential'> {
  credential: string | undefined;
}

export interface ModelEntry {
  id: string;
  created: number;
  ownedBy: string;
}

/**
 * The immutable, indexed form of one config version that every stream reads. Built once per
 * reload, so a request never sees half of one version and half of another.
 */
export class RuntimeConfig {
  readonly version: string;
  readonly limits: Limits;
  readonly routes: readonly Route[];
  private readonly exact = new Map<string, Route>();
  private readonly prefixes: { prefix: string; route: Route }[] = [];
  private readonly byCluster = new Map<string, ResolvedBackend>();
  private readonly byName = new Map<string, ResolvedBackend>();
  readonly models: readonly ModelEntry[];
  private readonly policies = new Map<string, CompiledPolicy>();
  private readonly governance = new Map<string, CompiledGovernance>();
  readonly consumers: ConsumerDirectory;
  private readonly consumerNames: string[];
  private readonly teamNames: string[];
  /** Some route masks: bodies are then held whole before they go on (see the router phase). */
  readonly masking: boolean;
  /** Some route guards prompts: like masking, that needs the whole body before it goes on. */
  readonly guard: boolean;
  private readonly guards = new Map<string, PromptGuardPolicy>();

  /**
   * What this was compiled from: the validated document and the resolved credentials, so a
   * cluster primary can hand the same config to its workers (workers/config-wire.ts).
   */
  readonly source: { config: ExtprocConfig; credentials: ReadonlyMap<string, string> };

  constructor(cfg: ExtprocConfig, credentials: ReadonlyMap<string, string>) {
    this.source = { config: cfg, credentials };
    this.version = cfg.version;
    this.limits = cfg.limits;
    this.routes = cfg.routes;
    const shared = new Set<string>();
    for (const b of cfg.backends) {
      const { credential: _source, ...rest } = b;
      const resolved: ResolvedBackend = { ...rest, credential: credentials.get(b.name) };
      if (this.byCluster.has(b.cluster)) shared.add(b.cluster);
      this.byCluster.set(b.cluster, resolved);
      this.byName.set(b.name, resolved);
    }
    // A cluster holding several backends names none of them: the endpoint metadata must.
    for (const c of shared) this.byCluster.delete(c);
    const models: ModelEntry[] = [];
    for (const route of cfg.routes) {
      for (const m of route.models) {
        if ('exact' in m) {
          // First route wins, as Envoy matches routes in order.
          if (!this.exact.has(m.exact)) {
            this.exact.set(m.exact, route);
            // A refused route's models are not offered: every call to them would fail.
            if (!route.refuse) {
              models.push({ id: m.exact, created: route.created, ownedBy: route.ownedBy });
            }
          }
        } else {
          this.prefixes.push({ prefix: m.prefix, route });
        }
      }
    }
    // Longest prefix first; equal lengths keep route order (sort is stable).
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    this.models = models;
    // Compiled once per version: detectors and keys are ready before the first request. Routes
    // whose merged policies are equal share one compiled policy: the operator writes the same
    // AIPolicy into every route it targets, and each compiled copy holds its own detectors and
    // word-list automata (hundreds of KiB with lists), which hundreds of routes would multiply.
    // The guard is compiled on first use per guard object (guard.ts), so those are shared too.
    const compiledPolicies = new Map<
      string,
      { policy: CompiledPolicy; guard?: PromptGuardPolicy }
    >();
    for (const route of cfg.routes) {
      if (!route.policy) continue;
      const key = JSON.stringify(route.policy);
      let shared = compiledPolicies.get(key);
      if (!shared) {
        shared = { policy: compilePolicy(route.policy), guard: route.policy.guard };
        compiledPolicies.set(key, shared);
      }
      this.policies.set(route.name, shared.policy);
      if (shared.guard) this.guards.set(route.name, shared.guard);
    }
    this.masking = [...this.policies.values()].some((p) => p.masking !== undefined);
    this.guard = this.guards.size > 0;
    this.consumers = new ConsumerDirectory(cfg.consumers);
    this.consumerNames = cfg.consumers.map((c) => c.name);
    this.teamNames = [...new Set(cfg.consumers.flatMap((c) => (c.team ? [c.team] : [])))];
    const compiled = new Map<string, CompiledGovernance>();
    for (const p of cfg.policies) {
      compiled.set(p.name, {
        policy: p,
        access: p.access ? compileAccess(p.access) : undefined,
        prices: compilePricing(p.pricing),
        budget: budgetPolicyOf(p),
      });
    }
    for (const route of cfg.routes) {
      const g = route.governance === undefined ? undefined : compiled.get(route.governance);
      if (g) this.governance.set(route.name, g);
    }
  }

  /** The route's governance policy (identity, access, limits, pricing), if it names one. */
  governanceFor(route: string): CompiledGovernance | undefined {
    return this.governance.get(route);
  }

  /** The route's effective policy, as the operator merged it. */
  policyFor(route: string): CompiledPolicy | undefined {
    return this.policies.get(route);
  }

  /** The route policy's prompt guard; its name, mode and failure mode are policyFor's. */
  guardFor(route: string): PromptGuardPolicy | undefined {
    return this.guards.get(route);
  }

  routeForModel(model: string): Route | undefined {
    const hit = this.exact.get(model);
    if (hit) return hit;
    for (const p of this.prefixes) if (model.startsWith(p.prefix)) return p.route;
    return undefined;
  }

  /** Only for clusters that hold exactly one backend. */
  backendForCluster(cluster: string): ResolvedBackend | undefined {
    return this.byCluster.get(cluster);
  }

  backend(name: string): ResolvedBackend | undefined {
    return this.byName.get(name);
  }

  /** Every backend name and route name, for bounding metric label values. */
  knownNames(): {
    routes: string[];
    backends: string[];
    models: string[];
    policies: string[];
    detectorTypes: string[];
    consumers: string[];
    teams: string[];
  } {
    const types = new Set<string>();
    for (const p of this.policies.values()) for (const t of p.masking?.types ?? []) types.add(t);
    return {
      routes: this.routes.map((r) => r.name),
      backends: [...this.byName.keys()],
      models: this.models.map((m) => m.id),
      policies: [
        ...new Set([
          ...[...this.policies.values()].map((p) => p.name),
          ...[...this.governance.values()].map((g) => g.policy.name),
        ]),
      ],
      detectorTypes: [...types],
      consumers: this.consumerNames,
      teams: this.teamNames,
    };
  }
}
