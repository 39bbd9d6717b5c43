/**
 * IR → the operator↔extproc contract document (extproc/config/contract.ts).
 *
 * Backend names are the IR ids (`<namespace>/<route>/<backend>`), unique across routes, and are
 * what the upstream phase finds in the chosen endpoint's metadata. `cluster` names the rule
 * cluster that first carries the backend; several backends share a rule cluster (see the design
 * note in to-envoy.ts), so it identifies a backend only when its rule has one backend.
 */
import type { ExtprocConfigInput } from '../../extproc/config/contract.js';
import { CONTRACT_API_VERSION } from '../../extproc/config/contract.js';
import type { IR, IRBackend } from './ir.js';
import { cmp } from './to-ir.js';

type ContractBackend = ExtprocConfigInput['backends'][number];
type ContractRoute = ExtprocConfigInput['routes'][number];

export interface ExtprocOptions {
  limits?: ExtprocConfigInput['limits'];
}

export function toExtproc(
  ir: IR,
  version: string,
  options: ExtprocOptions = {},
): ExtprocConfigInput {
  const backends: ContractBackend[] = [];
  const routes: ContractRoute[] = [];
  for (const route of ir.routes) {
    const firstCluster = new Map<string, string>();
    const listed = new Map<string, { name: string; weight: number; priority: number }>();
    for (const rule of route.rules) {
      for (const rb of rule.backends) {
        if (!firstCluster.has(rb.backend)) firstCluster.set(rb.backend, rule.cluster);
        // The first rule that names a backend decides how it is listed: rules are matched in
        // order, so that is the share most requests see.
        if (!listed.has(rb.backend)) {
          listed.set(rb.backend, { name: rb.backend, weight: rb.weight, priority: rb.priority });
        }
      }
    }
    for (const b of route.backends) {
      const cluster = firstCluster.get(b.id);
      if (cluster !== undefined) backends.push(contractBackend(b, cluster));
    }
    const entry: ContractRoute = {
      name: route.key,
      models: route.models.map((m) =>
        m.exact !== undefined ? { exact: m.exact } : { prefix: m.prefix },
      ),
      backends: [...listed.values()].sort((a, b) => a.priority - b.priority || cmp(a.name, b.name)),
    };
    if (route.created > 0) entry.created = route.created;
    if (route.refused) entry.refuse = route.refused;
    if (route.policy) entry.policy = route.policy;
    if (route.governance !== undefined) entry.governance = route.governance;
    if (route.sessionAffinity) entry.affinity = { sessionHeader: route.sessionAffinity.header };
    routes.push(entry);
  }
  backends.sort((a, b) => cmp(a.name, b.name));
  routes.sort((a, b) => cmp(a.name, b.name));
  const doc: ExtprocConfigInput = {
    apiVersion: CONTRACT_API_VERSION,
    kind: 'ExtprocConfig',
    version,
    backends,
    routes,
  };
  if (options.limits) doc.limits = { ...options.limits };
  // Left out when empty (the contract defaults both to []), so configurations without
  // governance read exactly as before it existed.
  if (ir.governance && ir.governance.consumers.length > 0) {
    doc.consumers = ir.governance.consumers;
  }
  if (ir.governance && ir.governance.policies.length > 0) doc.policies = ir.governance.policies;
  return doc;
}

function contractBackend(b: IRBackend, cluster: string): ContractBackend {
  const out: ContractBackend = { name: b.id, cluster, provider: b.provider };
  if (b.modelOverride !== undefined) out.modelOverride = b.modelOverride;
  if (b.target.kind === 'external' && b.target.pathPrefix !== undefined) {
    out.pathPrefix = b.target.pathPrefix;
  }
  if (b.credential) out.credential = { value: b.credential.value };
  if (b.azure) {
    out.azure =
      b.azure.deployment !== undefined
        ? { apiVersion: b.azure.apiVersion, deployment: b.azure.deployment }
        : { apiVersion: b.azure.apiVersion };
    if (b.azure.entra) out.azure.entra = { ...b.azure.entra };
  }
  // The region the extproc's SigV4 signature names (the endpoint URL says where requests go).
  if (b.aws) {
    out.aws = { region: b.aws.region };
    if (b.aws.anthropicInvoke !== undefined) out.aws.anthropicInvoke = b.aws.anthropicInvoke;
    if (b.aws.guardrail) out.aws.guardrail = { ...b.aws.guardrail };
  }
  if (b.gcp) {
    out.gcp = { project: b.gcp.project, region: b.gcp.region };
    if (b.gcp.publisher !== undefined) out.gcp.publisher = b.gcp.publisher;
  }
  if (b.anthropic) {
    out.anthropic = { version: b.anthropic.version ?? '2023-06-01' };
    if (b.anthropic.defaultMaxTokens !== undefined) {
      out.anthropic.defaultMaxTokens = b.anthropic.defaultMaxTokens;
    }
  }
  return out;
}
