/**
 * The operator↔extproc contract: the compiled configuration an extproc runs on. One versioned,
 * zod-validated module with no Kubernetes types. The operator produces it (streamed, or written to
 * a file in standalone mode); the extproc refuses a document that does not parse here, whole.
 *
 * Compatibility: `apiVersion` names the contract version. A new optional field is a compatible
 * change; anything else is a new apiVersion, and an extproc refuses versions it does not know.
 */
import { z } from 'zod';
import {
  BUILTIN_TYPES,
  createDetectors,
  DEFAULT_TYPES,
  PatternError,
} from '../masking/detect/index.js';
import { PromptGuardPolicy } from '../guard/schema.js';
import { CachePolicy } from '../cache/schema.js';
import { SessionsPolicy } from '../sessions/schema.js';
import { ContextPolicy } from '../context/schema.js';
import { checkGovernance, Consumer, GovernancePolicy } from '../governance/schema.js';
import { Provider } from '../providers/provider.js';
import { REPLY_MARK } from '../wire/reply-mark.js';

export { Consumer, GovernancePolicy };

export const CONTRACT_API_VERSION = 'sluice.dev/extproc/v1';

/**
 * The names Envoy's configuration and the extproc meet on. The operator emits them, the extproc
 * reads them; a change here is a contract change.
 */
export const WIRE = {
  /** The header the router phase sets from the body's model; routes match on it. */
  modelHeader: 'x-sluice-model',
  /** The router phase's id for a request, read by the upstream phase of the same request. */
  requestIdHeader: 'x-sluice-request-id',
  /** gRPC initial metadata of the upstream filter's stream: `upstream`. */
  filterMetadata: 'x-sluice-filter',
  routerFilter: 'sluice.router',
  upstreamFilter: 'sluice.upstream',
  /** Endpoint metadata naming the backend an endpoint belongs to (one cluster may hold several). */
  backendMetadataNamespace: 'sluice',
  backendMetadataKey: 'backend',
  /** The CEL attributes the upstream filter requests. */
  backendAttribute: "xds.upstream_host_metadata.filter_metadata['sluice']['backend']",
  clusterAttribute: 'xds.cluster_name',
  /**
   * Dynamic metadata the extproc sends with every immediate response it writes (namespace, key,
   * value), accepted by both ext_proc filters (metadata_options.receiving_namespaces). Envoy's
   * ext_proc filter stores it in the stream's dynamic metadata before it sends the local reply
   * (Filter::onReceiveMessage), so the HCM's local_reply_config leaves such a reply as it is —
   * already in the caller's format — and shapes every other local reply of Envoy.
   */
  replyMetadataNamespace: REPLY_MARK.namespace,
  replyMetadataKey: REPLY_MARK.key,
  replyMetadataValue: REPLY_MARK.value,
  /**
   * Where Envoy's jwt_authn writes a verified JWT's payload (base64url JSON). Envoy removes it
   * from every client request before jwt_authn runs, so only a verified payload can arrive.
   */
  jwtPayloadHeader: 'x-sluice-jwt-payload',
  /**
   * The conversation key the router phase sets on routes with session affinity (a digest of
   * route, caller and session); the route's hash_policy hashes it onto a ring of the backend's
   * endpoints. Set or removed by the extproc on every request, never forwarded upstream.
   */
  affinityHeader: 'x-sluice-affinity',
  /**
   * Names one backend (its id) for a request that must reach exactly that backend: a stored
   * response its provider keeps (GET/DELETE `/v1/responses/{id}`) lives where it was created.
   * Routes match it before any model; the router phase sets it only for such a request and
   * removes a client's own from every other one; the upstream phase never forwards it.
   */
  backendHeader: 'x-sluice-backend',
} as const;

const name = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/:-]*$/, 'letters, digits and . _ / : - only');

/** Where a secret value comes from. The operator always sends `value`; files may point elsewhere. */
export const SecretSource = z.union([
  z.object({ value: z.string().min(1) }).strict(),
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);
export type SecretSource = z.infer<typeof SecretSource>;

export { Provider };

export const Backend = z
  .object({
    name,
    /**
     * The Envoy cluster that reaches this backend. Several backends may share one (a rule's
     * cluster holds each backend as a locality); the upstream phase then identifies the backend
     * by the endpoint metadata attribute WIRE.backendAttribute, and by cluster only when unique.
     */
    cluster: name,
    provider: Provider,
    /** Replaces the model named by the client before the request leaves. */
    modelOverride: z.string().min(1).optional(),
    /**
     * The path of the backend's endpoint URL, unchanged (`/v1` in `https://api.openai.com/v1`);
     * the provider joins the API's own path to it (extproc/providers/paths.ts).
     */
    pathPrefix: z
      .string()
      .regex(/^\/[^?#]*$/, 'must start with / and carry no query')
      .optional(),
    credential: SecretSource.optional(),
    azure: z
      .object({
        deployment: z.string().min(1).optional(),
        apiVersion: z.string().min(1),
        /**
         * Microsoft Entra ID tokens (`Authorization: Bearer`) instead of an `api-key`: with a
         * credential, client credentials with that client secret; without one, the pod's workload
         * identity. Tenant and client id default to AZURE_TENANT_ID / AZURE_CLIENT_ID.
         */
        entra: z
          .object({
            tenantId: z.string().min(1).optional(),
            clientId: z.string().min(1).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /** aws-bedrock: the region the SigV4 signature names, and the guardrail every call applies. */
    aws: z
      .object({
        region: z.string().min(1),
        /**
         * Anthropic Messages callers reach Claude through InvokeModel (the Messages body as it
         * is) rather than Converse; OpenAI callers always use Converse.
         */
        anthropicInvoke: z.boolean().optional(),
        guardrail: z
          .object({
            identifier: z.string().min(1),
            version: z.string().min(1),
            trace: z.enum(['enabled', 'disabled', 'enabled_full']).optional(),
            streamProcessingMode: z.enum(['sync', 'async']).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /**
     * gcp-vertex: the project and location (region) in every Vertex AI path; the publisher of the
     * model (`anthropic`: Claude through rawPredict, Anthropic's Messages body; default google).
     */
    gcp: z
      .object({
        project: z.string().min(1),
        region: z.string().min(1),
        publisher: z.enum(['google', 'anthropic']).optional(),
      })
      .strict()
      .optional(),
    anthropic: z
      .object({
        version: z.string().min(1).default('2023-06-01'),
        /**
         * max_tokens for a request translated from another API that sets no output limit
         * (Anthropic requires one); 4096 when absent.
         */
        defaultMaxTokens: z.number().int().min(1).max(1_000_000).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.provider === 'azure-openai' && !b.azure) {
      ctx.addIssue({
        code: 'custom',
        path: ['azure'],
        message: 'azure-openai backends need azure.apiVersion',
      });
    }
  });
export type Backend = z.infer<typeof Backend>;

export const ModelMatch = z.union([
  z.object({ exact: z.string().min(1) }).strict(),
  z.object({ prefix: z.string().min(1) }).strict(),
]);
export type ModelMatch = z.infer<typeof ModelMatch>;

/**
 * A detector type as it appears in placeholders (`[EMAIL_1]`), findings and metric labels. Upper
 * case keeps placeholders unambiguous to restore; the length bound keeps the streaming hold-back
 * (the longest placeholder) small.
 */
export const DetectorTypeName = z
  .string()
  .regex(
    /^[A-Z][A-Z0-9_]{0,31}$/,
    'upper-case letters, digits and _, at most 32, starting with a letter',
  );

export const MaskAction = z.enum(['mask', 'redact', 'hash', 'partial', 'block', 'alert']);
export type MaskAction = z.infer<typeof MaskAction>;

export const MaskingPolicy = z
  .object({
    /** Built-in detectors to run; the pattern types (DEFAULT_TYPES) when omitted. */
    detectors: z.array(z.enum(BUILTIN_TYPES)).optional(),
    /** RE2 syntax only (linear time); a pattern that needs backtracking is refused here. */
    customPatterns: z
      .array(z.object({ type: DetectorTypeName, pattern: z.string().min(1).max(4096) }).strict())
      .max(64)
      .default([]),
    wordLists: z
      .array(
        z
          .object({
            type: DetectorTypeName,
            words: z.array(z.string().min(1).max(256)).min(1).max(10_000),
            caseInsensitive: z.boolean().default(false),
          })
          .strict(),
      )
      .max(16)
      .default([]),
    /** Per type; types not listed take defaultAction. */
    actions: z.record(DetectorTypeName, MaskAction).default({}),
    defaultAction: MaskAction.default('mask'),
    /** `mask` placeholders are restored in responses (a conversation vault keeps them stable). */
    reversible: z.boolean().default(true),
    /**
     * The request header naming the conversation. A conversation belongs to the caller governance
     * authenticated (key, verified JWT, mesh identity); without one, or without the header, the
     * vault lives for one request.
     */
    sessionHeader: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,127}$/, 'a lower-case header name')
      .default('x-sluice-session'),
    /** Adds a system instruction asking the model to keep placeholders verbatim. */
    systemNote: z.boolean().default(false),
    /** Model output is scanned too; new findings are replaced (never restorable) per action. */
    scanResponses: z.boolean().default(true),
    /** `redact` writes `[EMAIL]` (typed) or `[REDACTED]` (generic). */
    redaction: z.enum(['typed', 'generic']).default('typed'),
    /** `partial` keeps this many trailing letters/digits. */
    partialKeep: z.number().int().min(0).max(8).default(4),
    /** Key of the keyed hash (HMAC-SHA256); a per-process random key when absent (not stable across restarts). */
    hashKey: z
      .object({ value: z.string().min(16) })
      .strict()
      .optional(),
    /** Time the vault may take (it may be remote) before the failure mode decides. */
    timeoutMs: z.number().int().min(1).max(10_000).default(250),
    /**
     * Prompt and completion text go into trace span events (tracing on), masked by this policy:
     * off by default, since even masked text is the conversation (telemetry/content.ts).
     */
    traceContent: z.boolean().default(false),
  })
  .strict()
  .superRefine((m, ctx) => {
    // Compiling here refuses the whole config, rather than a request at run time.
    try {
      createDetectors({
        types: m.detectors ?? DEFAULT_TYPES,
        custom: m.customPatterns,
        words: m.wordLists,
      });
    } catch (err) {
      if (!(err instanceof PatternError)) throw err;
      ctx.addIssue({ code: 'custom', path: ['customPatterns'], message: err.message });
    }
    const known = new Set<string>([
      ...(m.detectors ?? DEFAULT_TYPES),
      ...m.customPatterns.map((c) => c.type),
      ...m.wordLists.map((w) => w.type),
    ]);
    for (const t of Object.keys(m.actions)) {
      if (!known.has(t)) {
        ctx.addIssue({
          code: 'custom',
          path: ['actions', t],
          message: `no detector of type ${t} is enabled`,
        });
      }
    }
  });
export type MaskingPolicy = z.infer<typeof MaskingPolicy>;

/** The effective policy of a route, merged by the operator from every AIPolicy that applies. */
export const Policy = z
  .object({
    name,
    /** `shadow` evaluates and reports (`would_*` verdicts) but never changes or refuses a request. */
    mode: z.enum(['enforce', 'shadow']).default('enforce'),
    /** What a detector or vault failure does: refuse the request, or let it pass unprocessed. */
    failureMode: z.enum(['closed', 'open']).default('closed'),
    masking: MaskingPolicy.optional(),
    /** Checked before masking, so masking sees (and protects) the rendered, decorated prompt. */
    guard: PromptGuardPolicy.optional(),
    /** Response cache (extproc/cache/): opt-in; served only when the policy enforces. */
    cache: CachePolicy.optional(),
    /** Stored Responses turns and conversations (extproc/sessions/); defaults apply when absent. */
    sessions: SessionsPolicy.optional(),
    /** Context windows (extproc/context/): refuse or trim what cannot fit; opt-in. */
    context: ContextPolicy.optional(),
  })
  .strict();
export type Policy = z.infer<typeof Policy>;

export const Route = z
  .object({
    name,
    models: z.array(ModelMatch).min(1),
    /** Backends in Envoy's order of preference; Envoy picks among them, the extproc only lists them. */
    backends: z
      .array(
        z
          .object({
            name,
            weight: z.number().int().min(0).max(10_000).default(1),
            priority: z.number().int().min(0).max(127).default(0),
          })
          .strict(),
      )
      .min(1),
    /** Unix seconds shown as `created` in /v1/models; fixed so the answer is stable. */
    created: z.number().int().min(0).default(0),
    ownedBy: z.string().min(1).default('sluice'),
    /** The masking policy. */
    policy: Policy.optional(),
    /**
     * Names one of the top-level `policies` (identity, access, limits, pricing). A separate field
     * rather than a section of `policy` because routes share governance policies by name (their
     * budgets are scoped by it), while the masking policy is merged per route.
     */
    governance: name.optional(),
    /**
     * Every request for the route is refused with this code (503) before anything else is done:
     * the operator sets it when a policy that governs the route is invalid, so the route is
     * neither served ungoverned nor given up to another route's prefix. It then carries no
     * `policy` or `governance`.
     */
    refuse: z.enum(['policy_invalid']).optional(),
    /**
     * Session affinity: the router phase sets WIRE.affinityHeader from the caller and this
     * session header, and Envoy hashes it (the operator emits the hash policy and ring hash).
     */
    affinity: z
      .object({
        sessionHeader: z
          .string()
          .regex(/^[a-z0-9][a-z0-9-]{0,127}$/, 'a lower-case header name')
          .default('x-sluice-session'),
      })
      .strict()
      .optional(),
  })
  .strict();
export type Route = z.infer<typeof Route>;

export const Limits = z
  .object({
    maxRequestBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    maxResponseBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(256 * 1024 * 1024)
      .default(8 * 1024 * 1024),
    maxSseEventBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
  })
  .strict();
export type Limits = z.infer<typeof Limits>;

export const ExtprocConfig = z
  .object({
    apiVersion: z.literal(CONTRACT_API_VERSION),
    kind: z.literal('ExtprocConfig'),
    /** The snapshot version the operator assigned; reported back in ACKs, metrics and logs. */
    version: z.string().min(1).max(128).default('0'),
    limits: Limits.default(Limits.parse({})),
    backends: z.array(Backend),
    routes: z.array(Route),
    /** Callers known to the gateway (virtual key digests, teams); optional: a compatible addition. */
    consumers: z.array(Consumer).default([]),
    /** Governance policies that routes name in `governance`. */
    policies: z.array(GovernancePolicy).default([]),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const policyNames = checkGovernance(cfg, ctx);
    cfg.routes.forEach((r, i) => {
      if (r.governance !== undefined && !policyNames.has(r.governance)) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'governance'],
          message: `unknown governance policy "${r.governance}"`,
        });
      }
    });
    unique(
      cfg.backends.map((b) => b.name),
      ['backends'],
      'backend name',
      ctx,
    );
    unique(
      cfg.routes.map((r) => r.name),
      ['routes'],
      'route name',
      ctx,
    );
    const known = new Set(cfg.backends.map((b) => b.name));
    cfg.routes.forEach((r, i) =>
      r.backends.forEach((b, j) => {
        if (!known.has(b.name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'backends', j, 'name'],
            message: `unknown backend "${b.name}"`,
          });
        }
      }),
    );
  });
export type ExtprocConfigInput = z.input<typeof ExtprocConfig>;
export type ExtprocConfig = z.infer<typeof ExtprocConfig>;

function unique(
  values: string[],
  path: (string | number)[],
  what: string,
  ctx: z.RefinementCtx,
): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) ctx.addIssue({ code: 'custom', path, message: `duplicate ${what} "${v}"` });
    seen.add(v);
  }
}

/** Human-readable, one issue per line, with the field path; never echoes values. */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
