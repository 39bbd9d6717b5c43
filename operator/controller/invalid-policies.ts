/**
 * Makes invalid AIPolicies loud wherever compilation runs (the operator and `sluice run`): the
 * `sluice_policy_invalid` gauge (1 per invalid policy) and an error log line each time a policy
 * becomes invalid or its reason changes. Meanwhile their routes are refused (503 policy_invalid;
 * see to-ir.ts), so an operator who does not look at status still finds out from alerts and logs.
 */
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { InvalidPolicy } from '../compile/index.js';

export const POLICY_INVALID_METRIC = 'sluice_policy_invalid';

export function policyInvalidGauge(registry: Registry): Gauge<'policy'> {
  return new Gauge({
    name: POLICY_INVALID_METRIC,
    help: 'AIPolicies that are invalid (1 each, by namespace/name): until fixed, the routes they target refuse requests (503 policy_invalid).',
    labelNames: ['policy'],
    registers: [registry],
  });
}

export class InvalidPolicyReporter {
  private last = new Map<string, string>();

  constructor(
    private readonly gauge: Gauge<'policy'> | undefined,
    private readonly log: Logger,
  ) {}

  report(invalid: readonly InvalidPolicy[]): void {
    const now = new Map(invalid.map((p) => [p.policy, `${p.reason}: ${p.message}`]));
    this.gauge?.reset();
    for (const p of invalid) {
      this.gauge?.set({ policy: p.policy }, 1);
      if (this.last.get(p.policy) === now.get(p.policy)) continue;
      this.log.error(
        { event: 'policy_invalid', policy: p.policy, reason: p.reason, problem: p.message },
        'policy is invalid: the routes it targets are refused until it is fixed',
      );
    }
    for (const policy of this.last.keys()) {
      if (!now.has(policy)) {
        this.log.info({ event: 'policy_valid', policy }, 'policy is valid again (or gone)');
      }
    }
    this.last = now;
  }
}
