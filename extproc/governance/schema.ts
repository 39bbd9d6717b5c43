/**
 * Contract additions for governance: who calls (consumers, identity), what they may do (access),
 * how much (limits) and at what price (pricing). These are the compiled shapes the extproc runs
 * on; the operator fills them from AIPolicy sections and consumer Secrets. Kept here until they
 * are merged into config/contract.ts, which then re-exports or absorbs them unchanged.
 */
import { z } from 'zod';

const name = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/:-]*$/, 'letters, digits and . _ / : - only');

/** `*` matches any run of characters (including none); everything else is literal. */
const glob = z.string().min(1).max(256);

const headerName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, 'a lowercase HTTP header name')
  .refine((h) => !h.startsWith(':'), 'pseudo-headers are not allowed');

const sha256Hex = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256 digest of the virtual key');

/** A caller known to the gateway. Only digests of virtual keys ever reach the extproc. */
export const Consumer = z
  .object({
    name,
    team: name.optional(),
    keyHashes: z.array(sha256Hex).max(64).default([]),
    /** After this instant every key of the consumer is refused. RFC 3339. */
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  })
  .strict();
export type Consumer = z.infer<typeof Consumer>;
export type ConsumerInput = z.input<typeof Consumer>;

/**
 * How a route's callers are identified. Methods are tried in this order: virtual key, JWT, mesh.
 * A credential that is present but wrong is refused outright; it never falls through to the
 * next method, so a bad key cannot be "rescued" by a weaker identity.
 */
export const IdentityPolicy = z
  .object({
    /** true: requests without an identity are answered 401. */
    required: z.boolean().default(true),
    keys: z
      .object({
        /** `authorization` is read as `Bearer <key>`; any other header carries the key alone. */
        headers: z.array(headerName).min(1).max(4).default(['authorization', 'x-api-key']),
      })
      .strict()
      .optional(),
    jwt: z
      .object({
        /** The header Envoy's jwt_authn writes the verified payload to (`forward_payload_header`). */
        header: headerName.default('x-jwt-payload'),
        /**
         * Accepted `iss` values. Envoy verifies every configured issuer's tokens for every route
         * (it runs before the route is known), so without this a token of one policy's issuer
         * would be accepted on a route governed by another. Absent: any token Envoy verified.
         */
        issuers: z.array(z.string().min(1).max(1024)).min(1).max(16).optional(),
        /** Dot path into the claims; the value names the consumer. */
        consumerClaim: z.string().min(1).max(128).default('sub'),
        /** Dot path; a string, or an array whose first string is taken. */
        teamClaim: z.string().min(1).max(128).optional(),
        /**
         * Claim value → configured consumer name. When given, only listed values are accepted
         * and the team comes from the consumer; when absent, the claim value is the consumer.
         */
        consumers: z.record(z.string().min(1).max(512), name).optional(),
      })
      .strict()
      .optional(),
    mesh: z
      .object({
        /**
         * A header only the mesh can set (Envoy sanitises x-forwarded-client-cert). Its value is
         * a SPIFFE ID, or XFCC whose last element's `URI=` is taken.
         */
        header: headerName.default('x-forwarded-client-cert'),
        /** SPIFFE ID → configured consumer name. Unlisted identities are refused. */
        consumers: z.record(z.string().regex(/^spiffe:\/\/[^\s,;]+$/, 'a SPIFFE ID'), name),
      })
      .strict()
      .optional(),
  })
  .strict();
export type IdentityPolicy = z.infer<typeof IdentityPolicy>;

/**
 * One access rule. A rule concerns a caller when it lists the caller's consumer or team (globs),
 * or lists neither; it concerns a request when the model and the route match (absent: any).
 */
export const AccessRule = z
  .object({
    name,
    effect: z.enum(['allow', 'deny']),
    consumers: z.array(glob).max(256).optional(),
    teams: z.array(glob).max(256).optional(),
    models: z.array(glob).max(256).optional(),
    routes: z.array(glob).max(256).optional(),
  })
  .strict();
export type AccessRule = z.infer<typeof AccessRule>;

/**
 * Precedence: any matching deny rule refuses (the first one in order is named); otherwise any
 * matching allow rule admits; otherwise `default` decides.
 */
export const AccessPolicy = z
  .object({
    default: z.enum(['allow', 'deny']).default('allow'),
    rules: z.array(AccessRule).max(1024).default([]),
  })
  .strict();
export type AccessPolicy = z.infer<typeof AccessPolicy>;

export const LimitDimension = z.enum(['consumer', 'team', 'model', 'route']);
export type LimitDimension = z.infer<typeof LimitDimension>;

const positiveInt = z.number().int().min(1).max(1e12);
const usd = z.number().positive().max(1e9);

/**
 * One limit. `per` lists the dimensions that split it into separate buckets (empty: one bucket
 * for the whole policy). A caller lacking a dimension (no team, anonymous) shares the one bucket
 * of callers lacking it, so such callers are limited together rather than not at all.
 */
export const Limit = z
  .object({
    name,
    per: z.array(LimitDimension).max(4).default([]),
    requestsPerMinute: positiveInt.optional(),
    tokensPerMinute: positiveInt.optional(),
    concurrent: positiveInt.optional(),
    spendPerDayUsd: usd.optional(),
    spendPerMonthUsd: usd.optional(),
  })
  .strict()
  .superRefine((l, ctx) => {
    if (new Set(l.per).size !== l.per.length) {
      ctx.addIssue({ code: 'custom', path: ['per'], message: 'dimensions must be unique' });
    }
    if (
      l.requestsPerMinute === undefined &&
      l.tokensPerMinute === undefined &&
      l.concurrent === undefined &&
      l.spendPerDayUsd === undefined &&
      l.spendPerMonthUsd === undefined
    ) {
      ctx.addIssue({ code: 'custom', message: 'a limit needs at least one amount' });
    }
  });
export type Limit = z.infer<typeof Limit>;

export const LimitsPolicy = z
  .object({
    rules: z.array(Limit).max(64).default([]),
    /** Output tokens assumed when a request sets no max_tokens, for the reservation estimate. */
    defaultMaxTokens: z.number().int().min(0).max(10_000_000).default(4096),
    /** A reservation not reconciled within this time (a crashed request) stops counting. */
    reservationTtlSeconds: z.number().int().min(10).max(86_400).default(900),
  })
  .strict()
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    for (const r of p.rules) {
      if (seen.has(r.name)) {
        ctx.addIssue({ code: 'custom', path: ['rules'], message: `duplicate limit "${r.name}"` });
      }
      seen.add(r.name);
    }
  });
export type LimitsPolicy = z.infer<typeof LimitsPolicy>;

const perMTok = z.number().min(0).max(1e6);

export const ModelPrice = z
  .object({
    inputPerMTok: perMTok,
    outputPerMTok: perMTok,
    /** Cache reads; default: the input price. */
    cachedInputPerMTok: perMTok.optional(),
    /** Cache writes (Anthropic bills them above input); default: the input price. */
    cacheWriteInputPerMTok: perMTok.optional(),
  })
  .strict();
export type ModelPrice = z.infer<typeof ModelPrice>;

/** USD per million tokens. Keys are model names or globs; an exact name beats any glob. */
export const Pricing = z
  .object({
    models: z.record(glob, ModelPrice).default({}),
  })
  .strict();
export type Pricing = z.infer<typeof Pricing>;

/**
 * One compiled governance policy (the effective sections of the AIPolicies that apply to a
 * route). `name` scopes its budgets: two routes sharing a policy share its buckets.
 */
export const GovernancePolicy = z
  .object({
    name,
    mode: z.enum(['enforce', 'shadow']).default('enforce'),
    failureMode: z.enum(['closed', 'open']).default('closed'),
    identity: IdentityPolicy.optional(),
    access: AccessPolicy.optional(),
    limits: LimitsPolicy.optional(),
    pricing: Pricing.optional(),
  })
  .strict();
export type GovernancePolicy = z.infer<typeof GovernancePolicy>;
export type GovernancePolicyInput = z.input<typeof GovernancePolicy>;

/**
 * The top-level additions to ExtprocConfig: `consumers` and `policies`, plus `policy` on Route
 * naming one of `policies` (see the reply that accompanies this module for the exact merge).
 */
export const GovernanceConfig = z
  .object({
    consumers: z.array(Consumer).default([]),
    policies: z.array(GovernancePolicy).default([]),
  })
  .strict()
  .superRefine((g, ctx) => {
    checkGovernance(g, ctx);
  });

/**
 * The cross-field checks of consumers and policies, exported so that ExtprocConfig's own
 * superRefine can run them once the fields are merged there. Returns the policy names.
 */
export function checkGovernance(
  g: { consumers: readonly Consumer[]; policies: readonly GovernancePolicy[] },
  ctx: z.RefinementCtx,
): Set<string> {
  const names = new Set<string>();
  const keys = new Set<string>();
  g.consumers.forEach((c, i) => {
    if (names.has(c.name)) {
      ctx.addIssue({ code: 'custom', path: ['consumers', i, 'name'], message: 'duplicate' });
    }
    names.add(c.name);
    for (const k of c.keyHashes) {
      // Never echo the digest: an issue message may end up in a log.
      if (keys.has(k)) {
        ctx.addIssue({
          code: 'custom',
          path: ['consumers', i, 'keyHashes'],
          message: 'a key hash belongs to two consumers',
        });
      }
      keys.add(k);
    }
  });
  const policyNames = new Set<string>();
  g.policies.forEach((p, i) => {
    if (policyNames.has(p.name)) {
      ctx.addIssue({ code: 'custom', path: ['policies', i, 'name'], message: 'duplicate' });
    }
    policyNames.add(p.name);
    const check = (map: Record<string, string> | undefined, path: (string | number)[]) => {
      for (const [k, v] of Object.entries(map ?? {})) {
        if (!names.has(v)) {
          ctx.addIssue({
            code: 'custom',
            path: [...path, k],
            message: `unknown consumer "${v}"`,
          });
        }
      }
    };
    check(p.identity?.jwt?.consumers, ['policies', i, 'identity', 'jwt', 'consumers']);
    check(p.identity?.mesh?.consumers, ['policies', i, 'identity', 'mesh', 'consumers']);
  });
  return policyNames;
}

export type GovernanceConfig = z.infer<typeof GovernanceConfig>;
export type GovernanceConfigInput = z.input<typeof GovernanceConfig>;
