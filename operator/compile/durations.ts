/**
 * Kubernetes/Go duration strings ("500ms", "1m30s") in, Envoy's proto3-JSON Duration out.
 * Milliseconds are the unit in between: Envoy timeouts finer than that buy nothing here.
 */
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds, rounded to the nearest; undefined when the string is not a Go duration. */
export function parseDuration(text: string): number | undefined {
  if (text === '') return undefined;
  PART.lastIndex = 0;
  let ms = 0;
  while (PART.lastIndex < text.length) {
    const m = PART.exec(text);
    if (!m) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** The canonical proto3 JSON form: whole seconds as "30s", otherwise three fractional digits. */
export function envoyDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const rest = ms % 1000;
  return rest === 0 ? `${seconds}s` : `${seconds}.${String(rest).padStart(3, '0')}s`;
}
