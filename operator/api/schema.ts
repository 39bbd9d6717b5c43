/**
 * The Sluice API as zod schemas: the single source of truth from which the CRDs are generated
 * (operator/crdgen) and against which documents are validated offline (operator/validate).
 *
 * Field-level rules (types, ranges, patterns, enums) are zod checks that also become OpenAPI
 * keywords. Cross-field rules are CEL expressions, declared once here in CEL_RULES and attached
 * to the schema node they apply to: the CRD carries them as x-kubernetes-validations and the
 * offline validator evaluates the very same strings with a CEL library. Parsing with these
 * schemas alone therefore does NOT check the cross-field rules; use operator/validate for that.
 */
import { z } from 'zod';
import { BUILTIN_TYPES } from '../../extproc/masking/detect/types.js';
import type { MaskAction as ContractMaskAction } from '../../extproc/config/contract.js';
import { PROVIDERS } from '../../extproc/providers/provider.js';
import type {
  AccessPolicy as ContractAccess,
  LimitsPolicy as ContractLimits,
  Pricing as ContractPricing,
} from '../../extproc/governance/schema.js';
import type { CachePolicy as ContractCache } from '../../extproc/cache/schema.js';
import type { SessionsPolicy as ContractSessions } from '../../extproc/sessions/schema.js';
import type { ContextPolicy as ContractContext } from '../../extproc/context/schema.js';
import { API_VERSION } from './types.js';
import type * as api from './types.js';

/** One x-kubernetes-validations entry, plus the id that names its test fixtures. */
export interface CelRule {
  id: string;
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden';
  /** Relative to the node the rule is attached to, e.g. ".credential". */
  fieldPath?: string;
}

/** Where CEL rules are attached; crdgen copies them into the CRD, validate evaluates them. */
export const celRegistry = z.registry<{ rules: readonly CelRule[] }>();

// Providers whose public endpoints always need an API key; bedrock and vertex may use workload
// identity, and openai-compatible servers are often unauthenticated in-cluster.
const KEYED_PROVIDERS = ['openai', 'azure-openai', 'anthropic', 'gemini'] as const;

function providerBlock(block: 'azure' | 'aws' | 'gcp', provider: api.Provider): CelRule {
  return {
    id: `backend-${block}-block`,
    rule: `has(self.${block}) == (self.provider == '${provider}')`,
    messageExpression:
      `self.provider == '${provider}' ? '${block} is required when provider is ${provider}'` +
      ` : '${block} is only allowed when provider is ${provider}, not ' + self.provider`,
    fieldPath: `.${block}`,
  };
}

/** Every cross-field rule of the API, by id. Fixtures: test/fixtures/crds/<id>.{valid,invalid}.yaml */
export const CEL_RULES = {
  modelMatchOneOf: {
    id: 'model-match-one-of',
    rule: 'has(self.exact) != has(self.prefix)',
    message: 'exactly one of exact and prefix must be set',
  },
  headerMatchOneOf: {
    id: 'header-match-one-of',
    rule: 'has(self.value) != has(self.prefix)',
    message: 'exactly one of value and prefix must be set',
  },
  endpointOneOf: {
    id: 'endpoint-one-of',
    rule: 'has(self.url) != has(self.service)',
    message: 'exactly one of url and service must be set',
  },
  backendCredential: {
    id: 'backend-credential',
    // Azure OpenAI with Entra ID may run on the pod's workload identity instead.
    rule: `!(self.provider in [${KEYED_PROVIDERS.map((p) => `'${p}'`).join(', ')}]) || !has(self.endpoint.url) || has(self.credential) || (has(self.azure) && has(self.azure.entra))`,
    messageExpression: `'credential is required for provider ' + self.provider + ' with a url endpoint'`,
    reason: 'FieldValueRequired',
    fieldPath: '.credential',
  },
  backendAzure: providerBlock('azure', 'azure-openai'),
  backendAws: providerBlock('aws', 'aws-bedrock'),
  backendGcp: providerBlock('gcp', 'gcp-vertex'),
  // Optional (unlike the cloud blocks): every field in it has a default.
  backendAnthropic: {
    id: 'backend-anthropic-block',
    rule: "!has(self.anthropic) || self.provider == 'anthropic'",
    messageExpression:
      "'anthropic is only allowed when provider is anthropic, not ' + self.provider",
    fieldPath: '.anthropic',
  },
  // These two name no culprit: the apiserver's cost estimator treats filter() inside a
  // messageExpression as unbounded and refuses the CRD, whatever maxItems says.
  backendNamesUnique: {
    id: 'backend-names-unique',
    rule: 'self.backends.all(b, self.backends.exists_one(c, c.name == b.name))',
    message: 'backend names must be unique',
    fieldPath: '.backends',
  },
  ruleBackendRefsExist: {
    id: 'rule-backend-refs-exist',
    rule: '!has(self.rules) || self.rules.all(r, !has(r.backendRefs) || r.backendRefs.all(ref, self.backends.exists(b, b.name == ref.name)))',
    message: 'every backendRefs name must be the name of a backend of this route',
    fieldPath: '.rules',
  },
  ruleBackendRefsUnique: {
    id: 'rule-backend-refs-unique',
    rule: '!has(self.backendRefs) || self.backendRefs.all(a, self.backendRefs.exists_one(b, b.name == a.name))',
    message: 'a backend may appear only once in backendRefs',
    fieldPath: '.backendRefs',
  },
  policyTarget: {
    id: 'policy-target',
    rule: 'has(self.targetRefs) || has(self.selector)',
    message: 'at least one of targetRefs and selector must be set',
  },
  jwtJwksOneOf: {
    id: 'jwt-jwks-one-of',
    rule: 'has(self.jwksUri) != has(self.jwks)',
    message: 'exactly one of jwksUri and jwks must be set',
  },
  policyTargetRefsUnique: {
    id: 'policy-target-refs-unique',
    rule: '!has(self.targetRefs) || self.targetRefs.all(a, self.targetRefs.exists_one(b, b.name == a.name))',
    message: 'an AIRoute may appear only once in targetRefs',
    fieldPath: '.targetRefs',
  },
} as const satisfies Record<string, CelRule>;

function withRules<T extends z.ZodType>(schema: T, ...rules: CelRule[]): T {
  celRegistry.add(schema, { rules });
  return schema;
}

/** OpenAPI keywords zod has no check for; crdgen adds them, the zod checks beside them agree. */
export interface OpenAPIExtras {
  format?: 'date-time';
  maxProperties?: number;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
}

export const openAPIRegistry = z.registry<OpenAPIExtras>();

function withOpenAPI<T extends z.ZodType>(schema: T, extras: OpenAPIExtras): T {
  openAPIRegistry.add(schema, extras);
  return schema;
}

// Reports the repeated item itself, where the apiserver reports a set's or map list's duplicate.
function noRepeats<T>(key: (item: T) => string, what: string) {
  return (list: T[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    list.forEach((item, i) => {
      const k = key(item);
      if (seen.has(k)) ctx.addIssue({ code: 'custom', path: [i], message: `${what} is repeated` });
      seen.add(k);
    });
  };
}

// Patterns are written in the subset shared by JavaScript and Go's RE2 (which the apiserver uses
// for OpenAPI `pattern`), so both sides accept exactly the same strings.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const GO_DURATION = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/;
// No userinfo (credentials belong in Secrets), no query or fragment (the gateway owns them).
const HTTPS_URL =
  /^https:\/\/([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(\/[^\s?#]*)?$/;
const HTTP_HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const dnsLabel = (what: string) =>
  z
    .string()
    .max(63)
    .regex(DNS_LABEL, `${what} must be a DNS label (lowercase letters, digits and '-')`);

const dnsSubdomain = (what: string) =>
  z
    .string()
    .max(253)
    .regex(
      DNS_SUBDOMAIN,
      `${what} must be a DNS subdomain (lowercase letters, digits, '-' and '.')`,
    );

const duration = z
  .string()
  .max(32)
  .regex(GO_DURATION, 'must be a duration such as "500ms", "30s" or "1m30s"')
  .describe('A Go duration: "500ms", "30s", "2m", "1h30m".');

const modelName = z.string().min(1).max(256);

const ModelMatchObject = withRules(
  z
    .strictObject({
      exact: modelName.optional().describe('An exact model name; listed by /v1/models.'),
      prefix: modelName.optional().describe('A model name prefix; not listed by /v1/models.'),
    })
    .describe('A model name the route serves. Exactly one of exact and prefix.'),
  CEL_RULES.modelMatchOneOf,
);
// The CEL rule guarantees exactly one of the two, which is what the union type says.
export const ModelMatchSchema = ModelMatchObject.transform((m) => m as api.ModelMatch);

export const SecretKeyRefSchema = z
  .strictObject({
    name: dnsSubdomain('secret name').describe("A Secret in the route's namespace."),
    key: z
      .string()
      .max(253)
      .regex(SECRET_KEY, "secret key must consist of letters, digits, '-', '_' or '.'")
      .optional()
      .describe('The key in the Secret\'s data; default "apiKey".'),
  })
  .describe("A Secret in the route's namespace and the key that holds the value.");

export const ServiceRefSchema = z.strictObject({
  name: z
    .string()
    .max(63)
    .regex(DNS_1035_LABEL, 'service name must be a DNS-1035 label')
    .describe("A Service in the route's namespace (vLLM, Ollama, TGI)."),
  port: z.int().min(1).max(65535).describe('The Service port.'),
});

export const EndpointSchema = withRules(
  z
    .strictObject({
      url: z
        .string()
        .max(2048)
        .regex(
          HTTPS_URL,
          'url must be https://host[:port][/path] without credentials, query or fragment',
        )
        .optional()
        .describe('An external endpoint: https://host[:port][/path-prefix].'),
      service: ServiceRefSchema.optional().describe('An in-cluster Service.'),
    })
    .describe('Where the backend is. Exactly one of url and service.'),
  CEL_RULES.endpointOneOf,
);

export const ProviderSchema = z.enum(PROVIDERS);

export const BackendSchema = withRules(
  z
    .strictObject({
      name: dnsLabel('backend name').describe('Unique within the route; rules refer to it.'),
      provider: ProviderSchema.describe('The API the backend speaks.'),
      endpoint: EndpointSchema,
      credential: z
        .strictObject({ secretRef: SecretKeyRefSchema })
        .optional()
        .describe('The API key, from a Secret in the same namespace.'),
      modelOverride: modelName
        .optional()
        .describe('Replaces the model the client named before the request leaves.'),
      weight: z
        .int()
        .min(0)
        .max(10000)
        .optional()
        .describe('Relative share among backends of the same priority; default 1.'),
      priority: z
        .int()
        .min(0)
        .max(7)
        .optional()
        .describe('0 is tried first; higher numbers are fallbacks; default 0.'),
      azure: z
        .strictObject({
          apiVersion: z
            .string()
            .min(1)
            .max(64)
            .regex(/^[A-Za-z0-9._-]+$/, 'apiVersion must be an Azure OpenAI api-version')
            .describe('The api-version query parameter, e.g. "2024-10-21".'),
          deployment: z
            .string()
            .min(1)
            .max(64)
            .regex(/^[A-Za-z0-9._-]+$/, 'deployment must be an Azure deployment name')
            .optional()
            .describe('The deployment to call; default: the model the client named.'),
          entra: z
            .strictObject({
              tenantId: z
                .string()
                .min(1)
                .max(253)
                .regex(/^[A-Za-z0-9][A-Za-z0-9.-]*$/, 'tenantId must be a tenant id or domain')
                .optional()
                .describe('The Entra tenant (id or domain); default: AZURE_TENANT_ID.'),
              clientId: z
                .string()
                .max(36)
                .regex(
                  /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/,
                  'clientId must be an application (client) id',
                )
                .optional()
                .describe('The application (client) id; default: AZURE_CLIENT_ID.'),
            })
            .optional()
            .describe(
              "Authenticate with Microsoft Entra ID tokens instead of an api-key: client credentials with the client secret in credential, or without credential the pod's workload identity (AZURE_FEDERATED_TOKEN_FILE).",
            ),
        })
        .optional()
        .describe('Required iff provider is azure-openai.'),
      aws: z
        .strictObject({
          region: z
            .string()
            .max(32)
            .regex(/^[a-z]{2}(-[a-z]+)+-[0-9]+$/, 'region must be an AWS region such as us-east-1')
            .describe('The AWS region of the Bedrock endpoint, e.g. us-east-1.'),
          anthropicInvoke: z
            .boolean()
            .optional()
            .describe(
              'Anthropic Messages callers reach Claude through InvokeModel (their body as written) instead of Converse.',
            ),
          guardrail: z
            .strictObject({
              identifier: z
                .string()
                .min(1)
                .max(2048)
                .regex(/^[A-Za-z0-9:/._-]+$/, 'identifier must be a guardrail id or ARN')
                .describe('The guardrail id or ARN.'),
              version: z
                .string()
                .min(1)
                .max(16)
                .regex(/^([1-9][0-9]{0,7}|DRAFT)$/, 'version must be a number or DRAFT')
                .describe('The guardrail version, or DRAFT.'),
              trace: z
                .enum(['enabled', 'disabled', 'enabled_full'])
                .optional()
                .describe('Whether Bedrock reports what the guardrail did.'),
              streamProcessingMode: z
                .enum(['sync', 'async'])
                .optional()
                .describe('How the guardrail reviews streamed answers.'),
            })
            .optional()
            .describe('A Bedrock guardrail applied to every Converse call of this backend.'),
        })
        .optional()
        .describe('Required iff provider is aws-bedrock.'),
      gcp: z
        .strictObject({
          project: z
            .string()
            .max(30)
            .regex(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/, 'project must be a Google Cloud project id')
            .describe('The Google Cloud project id.'),
          region: z
            .string()
            .max(32)
            .regex(
              /^(global|[a-z]+-[a-z]+[0-9]+)$/,
              'region must be a Google Cloud region such as us-central1, or global',
            )
            .describe('The Vertex AI region, e.g. us-central1, or global.'),
          publisher: z
            .enum(['google', 'anthropic'])
            .optional()
            .describe(
              'Whose model the backend serves: google (Gemini, embeddings; the default) or anthropic (Claude, through rawPredict with the Messages API).',
            ),
        })
        .optional()
        .describe('Required iff provider is gcp-vertex.'),
      anthropic: z
        .strictObject({
          version: z
            .string()
            .max(32)
            .regex(/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/, 'version must be an anthropic-version date')
            .optional()
            .describe(
              'The anthropic-version header sent when the caller sent none; default 2023-06-01.',
            ),
          defaultMaxTokens: z
            .int()
            .min(1)
            .max(1000000)
            .optional()
            .describe(
              'max_tokens for a request translated from another API that sets no output limit and that no budget caps (Anthropic requires one); default 4096.',
            ),
        })
        .optional()
        .describe('Only for provider anthropic: API version and output default.'),
    })
    .describe('A model provider or in-cluster server the route can send requests to.'),
  CEL_RULES.backendCredential,
  CEL_RULES.backendAzure,
  CEL_RULES.backendAws,
  CEL_RULES.backendGcp,
  CEL_RULES.backendAnthropic,
);

export const RetryOnSchema = z.enum(['rate-limited', '5xx', 'reset', 'timeout', 'connect-failure']);

export const RetryPolicySchema = z
  .strictObject({
    attempts: z
      .int()
      .min(0)
      .max(10)
      .optional()
      .describe('Retries after the first try; 0 disables. Default 2.'),
    retryOn: withOpenAPI(
      z
        .array(RetryOnSchema)
        .max(5)
        .superRefine(noRepeats((c) => c, 'a retry condition')),
      { 'x-kubernetes-list-type': 'set' },
    )
      .optional()
      .describe(
        'The conditions that are retried: rate-limited (429), 5xx, reset, timeout, connect-failure.',
      ),
    perTryTimeout: duration.optional().describe('Timeout of each attempt; default: none.'),
  })
  .describe('How failed attempts are retried, on the same or another backend.');

export const HeaderMatchSchema = withRules(
  z
    .strictObject({
      name: z
        .string()
        .min(1)
        .max(256)
        .regex(HTTP_HEADER_NAME, 'name must be an HTTP header name')
        .describe('The request header, case-insensitive.'),
      value: z.string().max(4096).optional().describe('Exact value.'),
      prefix: z.string().min(1).max(4096).optional().describe('Value prefix.'),
    })
    .describe('A request header to match. Exactly one of value and prefix.'),
  CEL_RULES.headerMatchOneOf,
);

export const RuleMatchSchema = z
  .strictObject({
    model: ModelMatchSchema.optional(),
    headers: z.array(HeaderMatchSchema).max(16).optional().describe('All must match.'),
  })
  .describe('One way a request matches the rule: its model and headers, all of them.');

export const BackendRefSchema = z
  .strictObject({
    name: dnsLabel('backend name').describe('A backend of this route, by name.'),
    weight: z.int().min(0).max(10000).optional().describe("Overrides the backend's weight."),
    priority: z.int().min(0).max(7).optional().describe("Overrides the backend's priority."),
  })
  .describe('A backend the rule sends to, with its weight and priority for this rule.');

export const RuleSchema = withRules(
  z
    .strictObject({
      matches: z
        .array(RuleMatchSchema)
        .max(16)
        .optional()
        .describe('Any may match; empty or absent: every model of the route.'),
      backendRefs: z
        .array(BackendRefSchema)
        .min(1)
        .max(32)
        .optional()
        .describe('Absent: every backend of the route with its own weight and priority.'),
      timeout: duration.optional().describe("Whole-request timeout; default the route's timeout."),
      retry: RetryPolicySchema.optional().describe("Default: the route's retry."),
    })
    .describe('Which requests (matches) go to which backends (backendRefs), and how.'),
  CEL_RULES.ruleBackendRefsUnique,
);

export const SessionAffinitySchema = z
  .strictObject({
    header: z
      .string()
      .max(128)
      .regex(/^[a-z0-9][a-z0-9-]{0,127}$/, 'must be a lower-case header name')
      .optional()
      .describe(
        'The request header naming the conversation; default x-sluice-session. Requests ' +
          'without it keep to one endpoint per consumer.',
      ),
  })
  .describe(
    "Keep each conversation of an authenticated caller on one endpoint of the backend (Envoy's " +
      'ring hash over its endpoints), e.g. for the prefix cache of vLLM or SGLang; when the ' +
      'endpoint goes, its conversations move to others.',
  );

export const AIRouteSpecSchema = withRules(
  z
    .strictObject({
      models: z
        .array(ModelMatchSchema)
        .min(1, 'at least one model is required')
        .max(128)
        .describe('The models this route serves.'),
      backends: z
        .array(BackendSchema)
        .min(1, 'at least one backend is required')
        .max(32)
        .describe('Where requests for these models can go: providers and in-cluster servers.'),
      rules: z
        .array(RuleSchema)
        .max(32)
        .optional()
        .describe('Evaluated in order; absent: one rule for all models and backends.'),
      timeout: duration.optional().describe('Default for every rule; default 300s.'),
      retry: RetryPolicySchema.optional().describe('Default for every rule.'),
      sessionAffinity: SessionAffinitySchema.optional(),
    })
    .describe(
      'The models the route serves and the backends that serve them. Status: Accepted (valid, ' +
        'references resolve), Programmed (every gateway applied it), EndpointsReady.',
    ),
  CEL_RULES.backendNamesUnique,
  CEL_RULES.ruleBackendRefsExist,
);

// Field names, enums and bounds follow the extproc contract (extproc/config/contract.ts and
// extproc/guard/schema.ts), so the section maps onto it directly. No defaults: the extproc applies
// its own, and a default written into the CRD would be a second copy that can drift. Checks that
// need RE2 or cross-field reasoning (pattern syntax, template variables) run in compilation with
// the extproc's own schemas, and a failure there makes the policy InvalidPolicy.
const DETECTOR_TYPE = /^[A-Z][A-Z0-9_]{0,31}$/;
const detectorType = z
  .string()
  .max(32)
  .regex(DETECTOR_TYPE, 'must be upper-case letters, digits and _, starting with a letter');
const maskAction = z.enum(['mask', 'redact', 'hash', 'partial', 'block', 'alert']);
const MAX_PROMPT_TEXT = 32 * 1024;
const GUARD_RULE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export const MaskingSectionSchema = z
  .strictObject({
    detectors: withOpenAPI(
      z
        .array(z.enum(BUILTIN_TYPES))
        .max(BUILTIN_TYPES.length)
        .superRefine(noRepeats((d) => d, 'a detector')),
      { 'x-kubernetes-list-type': 'set' },
    )
      .optional()
      .describe(
        'Built-in detectors to run; when omitted, the pattern types (EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS, SECRET). PERSON, STREET_ADDRESS and DATE_OF_BIRTH run only when listed.',
      ),
    customPatterns: z
      .array(
        z.strictObject({
          type: detectorType.describe('The detector type the pattern reports, e.g. EMPLOYEE_ID.'),
          pattern: z.string().min(1).max(4096).describe('An RE2 pattern.'),
        }),
      )
      .max(64)
      .optional()
      .describe('RE2 patterns (linear time); checked when the policy is compiled.'),
    wordLists: z
      .array(
        z.strictObject({
          type: detectorType.describe('The detector type a listed word is reported as.'),
          words: z
            .array(z.string().min(1).max(256))
            .min(1)
            .max(10_000)
            .describe('Words and phrases, matched whole.'),
          caseInsensitive: z.boolean().optional().describe('Default false.'),
        }),
      )
      .max(16)
      .optional()
      .describe('Lists of words (names, code names) detected as a type of their own.'),
    actions: z
      .record(z.string().max(32), maskAction)
      .optional()
      .describe('Action per detector type; types not listed take defaultAction.'),
    defaultAction: maskAction.optional().describe('Default mask.'),
    reversible: z.boolean().optional().describe('mask placeholders are restored in responses.'),
    sessionHeader: z
      .string()
      .max(128)
      .regex(/^[a-z0-9][a-z0-9-]{0,127}$/, 'must be a lower-case header name')
      .optional()
      .describe(
        'The request header naming a conversation, so a value keeps its placeholder across ' +
          'requests of an authenticated caller; default x-sluice-session.',
      ),
    systemNote: z
      .boolean()
      .optional()
      .describe('Add a system instruction asking the model to keep placeholders verbatim.'),
    scanResponses: z
      .boolean()
      .optional()
      .describe('Scan model output too (new findings are never restorable); default true.'),
    redaction: z
      .enum(['typed', 'generic'])
      .optional()
      .describe('redact writes [EMAIL] (typed, default) or [REDACTED] (generic).'),
    partialKeep: z
      .int()
      .min(0)
      .max(8)
      .optional()
      .describe('partial keeps this many trailing letters or digits; default 4.'),
    hashKeySecretRef: z
      .strictObject({
        name: dnsSubdomain('secret name').describe("A Secret in the policy's namespace."),
        key: z
          .string()
          .max(253)
          .regex(SECRET_KEY, "secret key must consist of letters, digits, '-', '_' or '.'")
          .describe("The key in the Secret's data."),
      })
      .optional()
      .describe(
        "The HMAC key of the hash action: a Secret in the policy's namespace, at least 16 bytes.",
      ),
    timeoutMs: z
      .int()
      .min(1)
      .max(10_000)
      .optional()
      .describe('How long the vault may take before failureMode decides; default 250.'),
    traceContent: z
      .boolean()
      .optional()
      .describe(
        'Record prompt and completion text in trace span events, after this masking; default ' +
          'false (nothing of either is recorded).',
      ),
  })
  .describe('Sensitive-data masking, run by the extproc on requests and responses.');

const guardPattern = z
  .strictObject({
    name: z
      .string()
      .max(63)
      .regex(
        GUARD_RULE_NAME,
        'must be lower-case letters, digits, _ . -, starting with one of the first two',
      )
      .describe('Named in block reasons, metrics and logs.'),
    pattern: z
      .string()
      .min(1)
      .max(4096)
      .describe('RE2 syntax; constructs that need backtracking are refused.'),
    caseInsensitive: z.boolean().optional().describe('Default false.'),
  })
  .describe('A named RE2 pattern.');

const promptText = z.string().min(1).max(MAX_PROMPT_TEXT);

export const PromptGuardSectionSchema = z
  .strictObject({
    allowPatterns: z
      .array(guardPattern)
      .max(64)
      .optional()
      .describe("When any are given, the client's text must match at least one."),
    denyPatterns: z
      .array(guardPattern)
      .max(64)
      .optional()
      .describe("A match anywhere in the client's text blocks the request."),
    maxPromptChars: z
      .int()
      .min(1)
      .max(100_000_000)
      .optional()
      .describe('Characters of every text in the request, before decorators.'),
    maxPromptTokens: z
      .int()
      .min(1)
      .max(100_000_000)
      .optional()
      .describe('Estimated prompt tokens, before decorators.'),
    injection: z
      .strictObject({
        enabled: z.boolean().optional().describe('Default true.'),
        threshold: z
          .number()
          .min(0.1)
          .max(20)
          .optional()
          .describe("A request is flagged when one text's score reaches this."),
        action: z.enum(['block', 'alert']).optional().describe('Default block.'),
      })
      .optional()
      .describe('Scored prompt-injection heuristics.'),
    invisibleCharacters: z
      .enum(['block', 'strip', 'alert', 'allow'])
      .optional()
      .describe(
        "Zero-width, bidi-override, tag and filler characters in the client's text; default strip.",
      ),
    decorators: z
      .strictObject({
        prepend: z
          .array(promptText)
          .max(16)
          .optional()
          .describe("System messages placed before the client's own system prompt."),
        append: z
          .array(promptText)
          .max(16)
          .optional()
          .describe("System messages placed after the client's messages or system prompt."),
      })
      .optional()
      .describe('System messages the gateway adds to every request.'),
    templates: z
      .record(
        z.string().max(63),
        z
          .strictObject({
            text: promptText.describe('The text, with {{variable}} placeholders.'),
            role: z
              .enum(['user', 'system'])
              .optional()
              .describe('user (default): added as the last user turn; system: as instructions.'),
            variables: z
              .record(
                z.string().max(64),
                z
                  .strictObject({
                    type: z.enum(['string', 'number', 'enum']).describe('The value type.'),
                    maxLength: z
                      .int()
                      .min(1)
                      .max(1_000_000)
                      .optional()
                      .describe('string: the most characters.'),
                    integer: z.boolean().optional().describe('number: whole numbers only.'),
                    minimum: z.number().optional().describe('number: the least value.'),
                    maximum: z.number().optional().describe('number: the greatest value.'),
                    enum: z
                      .array(z.string().min(1).max(1024))
                      .min(1)
                      .max(256)
                      .optional()
                      .describe('enum: the allowed values.'),
                    required: z.boolean().optional().describe('Default true.'),
                  })
                  .describe('A typed template variable.'),
              )
              .optional()
              .describe('The variables the text uses, by name.'),
          })
          .describe('A prompt template, selected per request with sluice_template.'),
      )
      .optional()
      .describe('Prompt templates; variable use is checked when the policy is compiled.'),
  })
  .describe('Prompt-injection heuristics, allow/deny patterns, size limits and templates.');

// Governance sections. Field names, enums and bounds follow extproc/governance/schema.ts, so each
// section maps onto its contract section directly; as for masking, no defaults here, and what
// OpenAPI cannot say (map key syntax, one amount per limit, inline JWKS content) is checked in
// compilation with the extproc's own schemas.
const GOVERNANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9._/:-]*$/;
const CONSUMER_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LOWER_HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
// As HTTPS_URL, plus a query: some identity providers serve their keys at a URL with one.
const JWKS_URL =
  /^https:\/\/([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(\/[^\s?#]*)?(\?[^\s#]*)?$/;

const governanceName = (what: string) =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(GOVERNANCE_NAME, `${what} must be letters, digits and . _ / : - only`);
// Consumers are named by the label value of their Secrets.
const consumerName = z
  .string()
  .max(63)
  .regex(CONSUMER_NAME, 'a consumer name is a non-empty label value');
const glob = z.string().min(1).max(256);
const globs = (what: string) =>
  z.array(glob).max(256).optional().describe(`${what}; * matches any run of characters.`);
const amount = z.int().min(1).max(1e12);
// The contract wants more than 0. OpenAPI's exclusiveMinimum has no structural form here, and the
// apiserver compares an integer against a fractional minimum after truncating it, so 0 passes
// any minimum below 1: zero is refused in compilation (InvalidPolicy) instead.
const usd = z.number().min(0).max(1e9).describe('USD, more than 0.');
const perMTok = z.number().min(0).max(1e6);

export const JwtSectionSchema = withRules(
  z
    .strictObject({
      issuer: z.string().min(1).max(2048).describe('The iss claim tokens must carry.'),
      audiences: withOpenAPI(
        z
          .array(z.string().min(1).max(512))
          .max(32)
          .superRefine(noRepeats((a) => a, 'an audience')),
        { 'x-kubernetes-list-type': 'set' },
      )
        .optional()
        .describe('Accepted aud values; absent: any audience.'),
      jwksUri: z
        .string()
        .max(2048)
        .regex(JWKS_URL, 'jwksUri must be https://host[:port][/path][?query] without credentials')
        .optional()
        .describe("Where the issuer's public keys are fetched from (https)."),
      jwks: z
        .string()
        .min(1)
        .max(65536)
        .optional()
        .describe('The public keys inline: a JWKS document as a JSON string.'),
      cacheDuration: duration.optional().describe('How long fetched keys are kept; default 10m.'),
      consumerClaim: z
        .string()
        .min(1)
        .max(128)
        .optional()
        .describe('Dot path of the claim naming the consumer; default sub.'),
      teamClaim: z
        .string()
        .min(1)
        .max(128)
        .optional()
        .describe('Dot path of the claim naming the team.'),
      consumers: z
        .record(z.string().min(1).max(512), consumerName)
        .optional()
        .describe('Claim value → consumer; when set, only listed values are accepted.'),
    })
    .describe('JWTs verified by Envoy against the issuer. Exactly one of jwksUri and jwks.'),
  CEL_RULES.jwtJwksOneOf,
);

export const ConsumersSectionSchema = z
  .strictObject({
    required: z.boolean().optional().describe('Refuse requests without an identity; default true.'),
    keys: z
      .strictObject({
        headers: withOpenAPI(
          z
            .array(
              z
                .string()
                .min(1)
                .max(128)
                .regex(LOWER_HEADER_NAME, 'must be a lower-case HTTP header name'),
            )
            .min(1)
            .max(4)
            .superRefine(noRepeats((h) => h, 'a header')),
          { 'x-kubernetes-list-type': 'set' },
        )
          .optional()
          .describe('Default authorization (as Bearer) and x-api-key.'),
      })
      .optional()
      .describe('Virtual keys, from consumer Secrets.'),
    jwt: JwtSectionSchema.optional(),
    mesh: z
      .strictObject({
        consumers: z
          .record(z.string().min(1).max(2048), consumerName)
          .describe('SPIFFE ID → consumer; other identities are refused.'),
      })
      .optional()
      .describe('Mesh identities, from the x-forwarded-client-cert header.'),
  })
  .describe(
    'Who calls: virtual keys, JWT claims, mesh identities. Consumers are declared by Secrets ' +
      "labelled sluice.dev/consumer in the operator's consumer namespaces.",
  );

export const AccessSectionSchema = z
  .strictObject({
    default: z.enum(['allow', 'deny']).optional().describe('When no rule matches; default allow.'),
    rules: z
      .array(
        z.strictObject({
          name: governanceName('name').describe('Named in refusals and logs.'),
          effect: z.enum(['allow', 'deny']).describe('What a matching rule does.'),
          consumers: globs('Consumer names'),
          teams: globs('Team names'),
          models: globs('Model names'),
          routes: globs('Route names (namespace/name)'),
        }),
      )
      .max(1024)
      .optional()
      .describe('Any matching deny refuses; otherwise any matching allow admits.'),
  })
  .describe('Which consumers and teams may call which models and routes.');

export const LimitsSectionSchema = z
  .strictObject({
    rules: z
      .array(
        z.strictObject({
          name: governanceName('name').describe('Named in 429 replies, headers and metrics.'),
          per: withOpenAPI(
            z
              .array(z.enum(['consumer', 'team', 'model', 'route']))
              .max(4)
              .superRefine(noRepeats((d) => d, 'a dimension')),
            { 'x-kubernetes-list-type': 'set' },
          )
            .optional()
            .describe('Separate buckets per value of these; absent: one bucket.'),
          requestsPerMinute: amount
            .optional()
            .describe('Requests per minute, every attempt counted.'),
          tokensPerMinute: amount.optional().describe('Input plus output tokens per minute.'),
          concurrent: amount.optional().describe('Requests in flight at once.'),
          spendPerDayUsd: usd.optional(),
          spendPerMonthUsd: usd.optional(),
        }),
      )
      .max(64)
      .optional()
      .describe('Each limit needs at least one amount.'),
    defaultMaxTokens: z
      .int()
      .min(0)
      .max(10_000_000)
      .optional()
      .describe('Output tokens assumed when a request sets no max_tokens; default 4096.'),
    reservationTtlSeconds: z
      .int()
      .min(10)
      .max(86_400)
      .optional()
      .describe('When an unreconciled reservation stops counting; default 900.'),
  })
  .describe('Request, token, concurrency and spend limits.');

export const PricingSectionSchema = z
  .strictObject({
    models: z
      .record(
        glob,
        z.strictObject({
          inputPerMTok: perMTok.describe('USD per million input tokens.'),
          outputPerMTok: perMTok.describe('USD per million output tokens.'),
          cachedInputPerMTok: perMTok.optional().describe('Default: the input price.'),
          cacheWriteInputPerMTok: perMTok.optional().describe('Default: the input price.'),
        }),
      )
      .optional()
      .describe('USD per million tokens by model name or glob; an exact name beats any glob.'),
  })
  .describe('Prices per model for spend accounting.');

// Field names and bounds are the contract's (extproc/cache/schema.ts); its defaults apply.
// Field names and bounds are the contract's (extproc/sessions/schema.ts); its defaults apply.
export const SessionsSectionSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .optional()
      .describe(
        'Keep Responses API state (store, previous_response_id, conversations) for backends that keep none; default true.',
      ),
    ttlSeconds: z
      .int()
      .min(1)
      .max(90 * 24 * 3600)
      .optional()
      .describe(
        'How long a stored response or conversation stays usable; default 2592000 (30 days).',
      ),
    maxStoredBytes: z
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .optional()
      .describe('The largest stored turn, its conversation included; default 1048576.'),
    anonymous: z
      .enum(['refuse', 'stateless'])
      .optional()
      .describe(
        'Callers without an identity: refuse (default) what would store state, or serve them as store: false.',
      ),
  })
  .describe(
    'Conversation state the gateway keeps for the Responses API, per authenticated caller.',
  );

export const CacheSectionSchema = z
  .strictObject({
    ttlSeconds: z
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .optional()
      .describe('How long an answer may be served again; default 300.'),
    scope: z
      .enum(['consumer', 'team', 'route'])
      .optional()
      .describe(
        'Who may be served a stored answer: the consumer that caused it (default), its team, or every caller of the route.',
      ),
    maxEntryBytes: z
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .optional()
      .describe('Larger answers are not stored; default 262144.'),
    cacheToolCalls: z
      .boolean()
      .optional()
      .describe('Store answers that call tools; default false.'),
    cacheNonDeterministic: z
      .boolean()
      .optional()
      .describe(
        'Cache requests that sample (temperature absent or above 0); default false: only temperature 0 and embeddings.',
      ),
    hitCostFraction: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe("The share of the original answer's cost a hit is charged; default 0."),
  })
  .describe('Response cache: complete answers served again without calling the provider.');

// Field names and bounds are the contract's (extproc/context/schema.ts); its defaults apply.
const windowTokens = z.int().min(1).max(100_000_000);
export const ContextSectionSchema = z
  .strictObject({
    contextOverflow: z
      .enum(['reject', 'trim-oldest', 'trim-middle'])
      .optional()
      .describe(
        "A request that does not fit its model's window: refused with 400 " +
          'context_length_exceeded (default), or trimmed, oldest turns first or those after ' +
          'the first; system and developer messages and the last turn are always kept.',
      ),
    models: withOpenAPI(
      z
        .record(
          z.string().min(1).max(256),
          z.strictObject({
            contextTokens: windowTokens.describe('The whole window: input plus output.'),
            maxOutputTokens: windowTokens.optional().describe('The most one answer generates.'),
            maxInputTokens: windowTokens
              .optional()
              .describe('The most input the model reads, when bounded apart from the window.'),
          }),
        )
        .refine((m) => Object.keys(m).length <= 256, 'must have at most 256 models'),
      { maxProperties: 256 },
    )
      .optional()
      .describe('Windows by model name or glob (*); they replace the built-in catalog for those.'),
    builtInCatalog: z
      .boolean()
      .optional()
      .describe('Use the built-in windows of well-known models; default true.'),
    reserveOutputTokens: z
      .int()
      .min(0)
      .max(1_000_000)
      .optional()
      .describe(
        'Room a trimmed request without its own output limit leaves for the answer; default 4096 (or the model maximum).',
      ),
  })
  .describe("Each model's context window, and what happens to requests that do not fit it.");

export const AIPolicySpecSchema = withRules(
  z
    .strictObject({
      targetRefs: z
        .array(
          z
            .strictObject({ name: dnsSubdomain('AIRoute name').describe("The AIRoute's name.") })
            .describe("An AIRoute in the policy's namespace."),
        )
        .min(1)
        .max(32)
        .optional()
        .describe('AIRoutes in the same namespace, by name.'),
      selector: z
        .strictObject({
          matchLabels: withOpenAPI(
            z
              .record(z.string(), z.string().max(63).regex(LABEL_VALUE, 'must be a label value'))
              .refine((m) => Object.keys(m).length <= 32, 'must have at most 32 labels'),
            { maxProperties: 32 },
          )
            .optional()
            .describe('Label key → value; an AIRoute must carry all of them.'),
        })
        .optional()
        .describe('AIRoutes in the same namespace, by label; {} selects all of them.'),
      priority: z.int().min(0).max(1000).optional().describe('Higher wins per section; default 0.'),
      mode: z
        .enum(['enforce', 'shadow'])
        .optional()
        .describe('shadow: evaluate and report, enforce nothing. Default enforce.'),
      failureMode: z
        .enum(['closed', 'open'])
        .optional()
        .describe('When the policy cannot be evaluated; default closed.'),
      consumers: ConsumersSectionSchema.optional(),
      access: AccessSectionSchema.optional(),
      limits: LimitsSectionSchema.optional(),
      pricing: PricingSectionSchema.optional(),
      masking: MaskingSectionSchema.optional(),
      promptGuard: PromptGuardSectionSchema.optional(),
      cache: CacheSectionSchema.optional(),
      context: ContextSectionSchema.optional(),
      sessions: SessionsSectionSchema.optional(),
    })
    .describe(
      'What governs the AIRoutes it targets in its namespace. Each section is taken per route ' +
        'from the attached policy with the highest priority that sets it.',
    ),
  CEL_RULES.policyTarget,
  CEL_RULES.policyTargetRefsUnique,
);

// RFC 3339 as the apiserver's date-time format reads it: a date, a time and an offset or Z.
const timestamp = withOpenAPI(
  z
    .string()
    .max(64)
    .regex(
      /^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$/,
      'must be an RFC 3339 date-time',
    ),
  { format: 'date-time' },
);

export const ConditionSchema = z
  .strictObject({
    type: z
      .string()
      .max(316)
      .regex(
        /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
      )
      .describe('Accepted, Programmed, EndpointsReady or Conflicted.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe('Why, in one CamelCase word (e.g. SecretNotFound, NACKed, Pending).'),
    message: z
      .string()
      .max(32768)
      .describe('Why, for people: what to fix, or what a data plane said.'),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The metadata.generation this condition was computed for.'),
    lastTransitionTime: timestamp.describe('When status last changed.'),
  })
  .describe("One aspect of the object's state.");

export const ResourceStatusSchema = z.strictObject({
  observedGeneration: z
    .int()
    .min(0)
    .optional()
    .describe('The metadata.generation the operator last acted on.'),
  conditions: withOpenAPI(
    z
      .array(ConditionSchema)
      .max(16)
      .superRefine(noRepeats((c) => c.type, 'a condition type')),
    { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
  )
    .optional()
    .describe('The latest observations, one per type.'),
});

const summary = (what: string) =>
  z.string().max(1024).optional().describe(`${what}, in one line for kubectl get.`);

export const AIRouteStatusSchema = ResourceStatusSchema.extend({
  models: summary('The models the route serves (a prefix ends in *)'),
  backends: summary('Its backends, each with its provider'),
});

export const AIPolicyStatusSchema = ResourceStatusSchema.extend({
  targets: summary('The AIRoutes it targets, by name or by selector'),
});

/** What a document's metadata must satisfy; a missing namespace means "default". */
export const ObjectMetaSchema = z.object({
  name: dnsSubdomain('metadata.name'),
  namespace: dnsLabel('metadata.namespace').default('default'),
  uid: z.string().optional(),
  generation: z.int().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const AIRouteSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('AIRoute'),
  metadata: ObjectMetaSchema,
  spec: AIRouteSpecSchema,
  status: AIRouteStatusSchema.optional(),
});

export const AIPolicySchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('AIPolicy'),
  metadata: ObjectMetaSchema,
  spec: AIPolicySpecSchema,
  status: AIPolicyStatusSchema.optional(),
});

// Compile-time proof that the schemas parse to exactly the types of the API contract.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const contract: {
  spec: Same<z.output<typeof AIRouteSpecSchema>, api.AIRouteSpec>;
  route: Same<z.output<typeof AIRouteSchema>, api.AIRoute>;
  policySpec: Same<z.output<typeof AIPolicySpecSchema>, api.AIPolicySpec>;
  policy: Same<z.output<typeof AIPolicySchema>, api.AIPolicy>;
  status: Same<z.output<typeof ResourceStatusSchema>, api.ResourceStatus>;
  meta: Same<z.output<typeof ObjectMetaSchema>, api.ObjectMeta>;
  sections: Same<keyof api.PolicySections, (typeof api.POLICY_SECTIONS)[number]>;
  maskAction: Same<api.MaskAction, ContractMaskAction>;
  // The governance sections are the contract's own input shapes, so compilation copies them.
  access: Same<api.AccessSection, z.input<typeof ContractAccess>>;
  limits: Same<api.LimitsSection, z.input<typeof ContractLimits>>;
  pricing: Same<api.PricingSection, z.input<typeof ContractPricing>>;
  cache: Same<api.CacheSection, z.input<typeof ContractCache>>;
  context: Same<api.ContextSection, z.input<typeof ContractContext>>;
  sessions: Same<api.SessionsSection, z.input<typeof ContractSessions>>;
} = {
  spec: true,
  route: true,
  policySpec: true,
  policy: true,
  status: true,
  meta: true,
  sections: true,
  maskAction: true,
  access: true,
  limits: true,
  pricing: true,
  cache: true,
  context: true,
  sessions: true,
};
void contract;
