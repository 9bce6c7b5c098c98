/**
 * Deterministic pseudo-random content for the synthetic benchmark repository: source-like text that
 * compresses roughly like real code, and "binary-ish" blobs (incompressible or half-compressible).
 * The same seed always yields the same bytes, so the generated repository (and its commit ids) is a
 * pure function of its size parameter.
 */

/** mulberry32: tiny, fast, good enough to make data look irregular. Not for anything secret. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform uint32. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000;
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)];
  }
}

const WORDS = (
  'account active adapter address agent alpha amount apply array async attempt backend batch before ' +
  'block body bound branch buffer build bundle byte cache call cancel chunk client clone close commit ' +
  'config connect context count create cursor data decode default delay delta digest direct disk done ' +
  'encode entry error event expire fetch field file filter first flush format frame handle hash header ' +
  'index input item job key label length limit line list load lock manager merge message meta mirror ' +
  'mode module name next node object offset option order output pack page parse path peer pending ' +
  'pointer pool port prefix queue range reader record ref refresh remote repo request reset resolve ' +
  'result retry route schedule scope select server session signal size slice snapshot source start ' +
  'state status store stream string sync table target task timeout token total tree update upstream ' +
  'value version view wait window worker write writer'
).split(' ');
const TYPES = ['string', 'number', 'boolean', 'Buffer', 'Promise<void>', 'Record<string, number>', 'unknown'];
const OPS = ['===', '!==', '<', '>', '<=', '>='];

function identifier(rng: Rng): string {
  const parts = rng.int(1, 3);
  let id = rng.pick(WORDS);
  for (let i = 1; i < parts; i++) {
    const word = rng.pick(WORDS);
    id += word[0].toUpperCase() + word.slice(1);
  }
  return id;
}

function sentence(rng: Rng, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(rng.pick(WORDS));
  return out.join(' ');
}

/** One line of TypeScript-looking code at the given indentation. */
export function codeLine(rng: Rng, depth: number): string {
  const indent = '  '.repeat(depth);
  switch (rng.int(0, 9)) {
    case 0:
      return `${indent}// ${sentence(rng, rng.int(3, 12))}`;
    case 1:
      return `${indent}if (${identifier(rng)} ${rng.pick(OPS)} ${identifier(rng)}) {`;
    case 2:
      return `${indent}return ${identifier(rng)}.${identifier(rng)}(${identifier(rng)}, ${rng.int(0, 4096)});`;
    case 3:
      return `${indent}const ${identifier(rng)}: ${rng.pick(TYPES)} = await ${identifier(rng)}(${identifier(rng)});`;
    case 4:
      return `${indent}this.${identifier(rng)} = ${JSON.stringify(sentence(rng, rng.int(1, 5)))};`;
    case 5:
      return `${indent}for (const ${identifier(rng)} of ${identifier(rng)}.${identifier(rng)}()) {`;
    case 6:
      return `${indent}}`;
    case 7:
      return '';
    case 8:
      return `${indent}throw new ${rng.pick(['Error', 'TypeError', 'RangeError'])}(\`${sentence(rng, rng.int(2, 8))} \${${identifier(rng)}}\`);`;
    default:
      return `${indent}${identifier(rng)}.${identifier(rng)}(${identifier(rng)}, ${rng.int(0, 1 << 20)}, ${identifier(rng)});`;
  }
}

/** Source-like text of about `bytes` bytes. */
export function textContent(rng: Rng, bytes: number): Buffer {
  const lines: string[] = [`// ${sentence(rng, 6)}`, `import { ${identifier(rng)} } from './${identifier(rng)}.js';`, ''];
  let size = 0;
  let depth = 0;
  while (size < bytes) {
    const line = codeLine(rng, depth);
    if (line.endsWith('{')) depth = Math.min(depth + 1, 6);
    else if (line.trim() === '}') depth = Math.max(depth - 1, 0);
    lines.push(line);
    size += line.length + 1;
  }
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/**
 * Edits a text file the way a commit does: rewrites a `share` of its lines (inserting a pair now and
 * then) and appends up to `maxAppend` lines.
 */
export function editText(rng: Rng, content: Buffer, share = 0.05, maxAppend = 20): Buffer {
  const lines = content.toString('utf8').split('\n');
  const edits = Math.max(1, Math.floor(lines.length * share));
  for (let i = 0; i < edits; i++) {
    const at = rng.int(0, lines.length - 1);
    if (rng.float() < 0.7) lines[at] = codeLine(rng, rng.int(0, 3));
    else lines.splice(at, 0, codeLine(rng, rng.int(0, 3)), codeLine(rng, rng.int(0, 3)));
  }
  for (let i = rng.int(0, maxAppend); i > 0; i--) lines.push(codeLine(rng, 1));
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/**
 * Binary-ish bytes: `entropyBits` = 8 gives incompressible data (like media or archives), 4 gives
 * data zstd halves (like object files or uncompressed images).
 */
export function binaryContent(rng: Rng, bytes: number, entropyBits: 4 | 8): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  const mask = entropyBits === 8 ? 0xff : 0x0f;
  for (let i = 0; i < bytes; i += 4) {
    const word = rng.next();
    out[i] = word & mask;
    if (i + 1 < bytes) out[i + 1] = (word >>> 8) & mask;
    if (i + 2 < bytes) out[i + 2] = (word >>> 16) & mask;
    if (i + 3 < bytes) out[i + 3] = (word >>> 24) & mask;
  }
  return out;
}
