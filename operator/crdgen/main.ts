/**
 * `npm run gen` (tsx operator/crdgen/main.ts): writes the generated CRDs into crds/.
 * `--check` writes nothing and exits 1 with a summary when a checked-in file differs, for CI.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrds } from './render.js';
import type { GeneratedFile } from './render.js';

const ROOT = new URL('../../', import.meta.url);

/** Human-readable differences between the generated files and the ones on disk. */
export async function drift(files: GeneratedFile[], root: URL = ROOT): Promise<string[]> {
  const problems: string[] = [];
  for (const file of files) {
    let current: string;
    try {
      current = await readFile(new URL(file.path, root), 'utf8');
    } catch {
      problems.push(`${file.path}: missing`);
      continue;
    }
    if (current === file.content) continue;
    const want = file.content.split('\n');
    const have = current.split('\n');
    let line = 0;
    while (line < want.length && want[line] === have[line]) line++;
    problems.push(
      `${file.path}: differs from line ${line + 1}` +
        `\n  - ${have[line] ?? '<end of file>'}\n  + ${want[line] ?? '<end of file>'}` +
        `\n  (${have.length} lines on disk, ${want.length} generated)`,
    );
  }
  return problems;
}

export async function main(
  argv: string[],
  root: URL = ROOT,
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: tsx operator/crdgen/main.ts [--check]\n`);
    return 2;
  }
  const files = await renderCrds(root);
  if (check) {
    const problems = await drift(files, root);
    if (problems.length === 0) return 0;
    process.stderr.write(
      `generated files are out of date; run \`npm run gen\`:\n${problems.join('\n')}\n`,
    );
    return 1;
  }
  for (const file of files) {
    const url = new URL(file.path, root);
    await mkdir(dirname(fileURLToPath(url)), { recursive: true });
    await writeFile(url, file.content);
    out(`wrote ${file.path}\n`);
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
