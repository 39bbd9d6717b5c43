/**
 * A route's effective policy, compiled once per config version. It is more than masking (its mode
 * and failure mode govern the prompt guard too), so it lives apart from every concern it holds.
 * Requests only read it; what one request records under it is state.ts.
 */
import type { Policy } from '../config/contract.js';
import { compileMasking, type CompiledMasking } from '../masking/compiled.js';

export interface CompiledPolicy {
  readonly name: string;
  readonly mode: 'enforce' | 'shadow';
  readonly failureMode: 'closed' | 'open';
  readonly masking: CompiledMasking | undefined;
}

export function compilePolicy(p: Policy): CompiledPolicy {
  return {
    name: p.name,
    mode: p.mode,
    failureMode: p.failureMode,
    masking: p.masking ? compileMasking(p.masking) : undefined,
  };
}
