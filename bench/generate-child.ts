/**
 * Runs one snapshot generation in a process of its own, so that the generation-memory row
 * (generation-memory.ts) measures the resident set of generation alone: this process and the git and
 * zstd processes it starts. Usage: `node --import tsx bench/generate-child.ts <gitDir> <commit> <out>
 * <layerCacheDir>`; prints the result as one JSON line.
 */
import { generateSnapshot } from '../src/git/snapshot/archive.js';

const [gitDir, commit, out, layerCacheDir] = process.argv.slice(2);
if (layerCacheDir === undefined) {
  process.stderr.write('usage: generate-child.ts <gitDir> <commit> <out> <layerCacheDir>\n');
  process.exit(2);
}
const result = await generateSnapshot({ gitDir, commit, upstreamUrl: 'https://example.com/bench/big.git', defaultBranch: 'main' }, out, { layerCacheDir });
process.stdout.write(`${JSON.stringify({ sha256: result.sha256, size: result.size, frames: result.frames.length })}\n`);
