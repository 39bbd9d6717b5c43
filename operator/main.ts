/** `sluice operator`: parse and validate flags, then run(). Nothing else belongs here. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { z } from 'zod';
import { run } from './run.js';
import { CLIENT_CERT_TRUST } from './compile/to-envoy.js';
import { parseCollector, type EnvoyTracing } from './compile/envoy-tracing.js';
import { adminAddress, grpcAddress, parseFlags } from '../extproc/shared/flags.js';

const USAGE = `Usage: sluice operator --xds-listen ADDR [options]

The Sluice operator: watches AIRoutes, AIPolicies and what they reference, serves Envoy and the
extproc their configuration over ADS, and writes status back.

Options:
  --xds-listen ADDR        ADS server address: unix:/path or host:port (required)
  --kubeconfig FILE        cluster access (default: in-cluster, else $KUBECONFIG or ~/.kube/config)
  --namespace NS           watch only this namespace; repeat for several (default: all)
  --consumer-namespace NS  Secrets labelled sluice.dev/consumer declare consumers only in this
                           namespace; repeat for several (default: the operator's own namespace,
                           from $POD_NAMESPACE, else sluice-system)
  --client-cert-trust MODE where mesh identities come from, for AIPolicies that use them:
                           listener (default): only this Envoy's own mTLS, which Sluice does not
                           configure; sidecar: the x-forwarded-client-cert a mesh sidecar (e.g.
                           Istio) sets. sidecar requires STRICT mesh mTLS on the gateway pod, or
                           a client could send its own header
  --envoy-otlp-collector HOST:PORT
                           Envoy traces requests (OpenTelemetry tracer) and exports OTLP/gRPC
                           to this collector; one trace with the extproc's spans (default: off)
  --envoy-trace-percent P  share of requests without a sampling decision Envoy traces, 0-100
                           (default 100)
  --admin HOST:PORT        /metrics, /healthz, /readyz (default 0.0.0.0:9902; "off" disables)
  --leader-elect           write status only while holding the Lease sluice-operator-status;
                           every replica also reports its data planes in a Lease
                           sluice-operator-planes-<hash>, so status covers all of them
  --lease-namespace NS     where the Lease lives (default: this pod's namespace; outside a pod,
                           sluice-system)
  --identity ID            this replica's name in the Lease (default: $POD_NAME or the hostname)
  --no-status              never write status (serve xDS only)
  --log-level LEVEL        trace|debug|info|warn|error (default info)
  -h, --help               this text
`;

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const Flags = z.object({
  'xds-listen': grpcAddress('--xds-listen', '--xds-listen ADDR is required'),
  kubeconfig: z.string().min(1).optional(),
  namespace: z
    .array(z.string().max(63).regex(NAME, '--namespace must be a namespace name'))
    .default([]),
  'consumer-namespace': z
    .array(z.string().max(63).regex(NAME, '--consumer-namespace must be a namespace name'))
    .default([]),
  'client-cert-trust': z
    .enum(CLIENT_CERT_TRUST, { message: '--client-cert-trust must be listener or sidecar' })
    .default('listener'),
  'envoy-otlp-collector': z
    .string()
    .refine(
      (v) => {
        try {
          parseCollector(v);
          return true;
        } catch {
          return false;
        }
      },
      { message: '--envoy-otlp-collector must be host:port' },
    )
    .optional(),
  'envoy-trace-percent': z.coerce
    .number()
    .min(0, '--envoy-trace-percent must be 0 to 100')
    .max(100, '--envoy-trace-percent must be 0 to 100')
    .default(100),
  admin: adminAddress().default('0.0.0.0:9902'),
  'leader-elect': z.boolean().default(false),
  'lease-namespace': z
    .string()
    .max(63)
    .regex(NAME, '--lease-namespace must be a namespace name')
    .optional(),
  identity: z.string().min(1).max(128).optional(),
  'no-status': z.boolean().default(false),
  'log-level': z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
});

const SA_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The namespace the chart installs into by default: where an operator out of a cluster looks. */
export const DEFAULT_NAMESPACE = 'sluice-system';

function serviceAccountNamespace(): string | undefined {
  try {
    return readFileSync(SA_NAMESPACE, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where the status Lease lives: --lease-namespace, else this pod's namespace ($POD_NAMESPACE or
 * the ServiceAccount's), else (out of a cluster) sluice-system, with `guessed` set so the caller
 * warns. Never `default`: a Lease there is usually forbidden, and the replica would never lead.
 */
export function leaseNamespace(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  saNamespace: () => string | undefined = serviceAccountNamespace,
): { namespace: string; guessed: boolean } {
  if (flag !== undefined) return { namespace: flag, guessed: false };
  const own = env.POD_NAMESPACE || saNamespace();
  return own ? { namespace: own, guessed: false } : { namespace: DEFAULT_NAMESPACE, guessed: true };
}

/**
 * The default consumer namespace. Never `default`: tenants can usually create Secrets there,
 * and any Secret here declares a consumer.
 */
function ownNamespace(): string {
  return process.env.POD_NAMESPACE || DEFAULT_NAMESPACE;
}

export async function main(argv: string[]): Promise<number> {
  const p = parseFlags(
    'sluice operator',
    argv,
    {
      'xds-listen': { type: 'string' },
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', multiple: true },
      'consumer-namespace': { type: 'string', multiple: true },
      'client-cert-trust': { type: 'string' },
      'envoy-otlp-collector': { type: 'string' },
      'envoy-trace-percent': { type: 'string' },
      admin: { type: 'string' },
      'leader-elect': { type: 'boolean' },
      'lease-namespace': { type: 'string' },
      identity: { type: 'string' },
      'no-status': { type: 'boolean' },
      'log-level': { type: 'string' },
    },
    Flags,
    USAGE,
  );
  if (!p.ok) return p.exitCode;
  const f = p.flags;
  const logger = pino({ level: f['log-level'], base: { component: 'operator' } });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const lease = leaseNamespace(f['lease-namespace'], process.env);
  if (f['leader-elect'] && lease.guessed) {
    logger.warn(
      { event: 'lease_namespace_defaulted', namespace: lease.namespace },
      'running outside a pod without --lease-namespace: the status Lease goes to sluice-system',
    );
  }
  let operator;
  try {
    const kubeConfig = new KubeConfig();
    if (f.kubeconfig !== undefined) kubeConfig.loadFromFile(f.kubeconfig);
    else kubeConfig.loadFromDefault();
    operator = await run({
      kubeConfig,
      namespaces: f.namespace,
      consumerNamespaces:
        f['consumer-namespace'].length > 0 ? f['consumer-namespace'] : [ownNamespace()],
      compile: {
        clientCertTrust: f['client-cert-trust'],
        ...(f['envoy-otlp-collector'] !== undefined && {
          tracing: envoyTracing(f['envoy-otlp-collector'], f['envoy-trace-percent']),
        }),
      },
      xdsListen: f['xds-listen'],
      admin: f.admin === 'off' ? undefined : f.admin,
      leaderElection: f['leader-elect']
        ? {
            namespace: lease.namespace,
            identity: f.identity ?? process.env.POD_NAME ?? hostname(),
          }
        : undefined,
      writeStatus: !f['no-status'],
      logger,
      registry,
      now: () => Date.now(),
    });
  } catch (err) {
    logger.fatal(
      { event: 'start_failed', reason: err instanceof Error ? err.message : 'unknown' },
      'operator failed to start',
    );
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      void operator.close().then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}

function envoyTracing(collector: string, percent: number): EnvoyTracing {
  const { host, port } = parseCollector(collector);
  return {
    collectorHost: host,
    collectorPort: port,
    samplingPercent: percent,
    serviceName: 'sluice-envoy',
  };
}
