// Reading decoded resources (proto3 JSON from protos.ts), shared by the compilers of model.ts and
// jwt-authn.ts. A ConfigError is a rule Envoy enforces at load time; its message becomes the NACK.
import type { Json } from './protos.js';

export class ConfigError extends Error {}

export const obj = (v: unknown): Json => (v ?? {}) as Json;
export const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export function durationMs(v: unknown, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  const d = v as { seconds?: string | number; nanos?: number };
  return Number(d.seconds ?? 0) * 1000 + Math.floor((d.nanos ?? 0) / 1e6);
}
