/**
 * Globs for model, route, consumer and team names: `*` matches any run of characters, nothing
 * else is special. Matched without regular expressions, so a pattern from a policy can never
 * cost more than O(pattern × subject) on a name taken from a request body.
 */
export type Matcher = (subject: string) => boolean;

export function compileGlob(pattern: string): Matcher {
  if (!pattern.includes('*')) return (s) => s === pattern;
  if (pattern === '*') return () => true;
  const parts = pattern.split('*');
  const head = parts[0] ?? '';
  const tail = parts[parts.length - 1] ?? '';
  const middle = parts.slice(1, -1).filter((p) => p.length > 0);
  const minLength = head.length + tail.length + middle.reduce((n, p) => n + p.length, 0);
  return (s) => {
    if (s.length < minLength || !s.startsWith(head) || !s.endsWith(tail)) return false;
    // Leftmost placement of each middle part is optimal: any later match leaves less room.
    let at = head.length;
    const end = s.length - tail.length;
    for (const p of middle) {
      const i = s.indexOf(p, at);
      if (i < 0 || i + p.length > end) return false;
      at = i + p.length;
    }
    return true;
  };
}

/** Any of the patterns; an absent list matches everything. */
export function compileGlobs(patterns: readonly string[] | undefined): Matcher {
  if (patterns === undefined) return () => true;
  const ms = patterns.map(compileGlob);
  return (s) => ms.some((m) => m(s));
}
