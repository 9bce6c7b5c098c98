/**
 * Keeps the dependency edges of ARCHITECTURE.md honest:
 * protocol ← util ← cache ← storage ← git ← http ← server; client → protocol, util; cli → client | server;
 * nobody but server/ and cli/ imports config/ (types.ts excepted for server only); http reaches
 * stored bytes through storage/ (snapshot storage) and git/, never cache/ directly. storage/ knows
 * no git: generation (git/snapshot/) hands it finished files.
 * And one vocabulary: only protocol/ spells out what an object id or a digest looks like, and only
 * protocol/ parses route paths (the segment rule, action names). And one process runner: only
 * util/process.ts starts programs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const SRC = resolve('src');
const ALLOWED: Record<string, string[]> = {
  protocol: ['protocol'],
  util: ['util', 'protocol'],
  cache: ['cache', 'util', 'protocol'],
  storage: ['storage', 'cache', 'util', 'protocol'],
  git: ['git', 'storage', 'cache', 'util', 'protocol'],
  http: ['http', 'git', 'storage', 'util', 'protocol'],
  server: ['server', 'http', 'git', 'storage', 'cache', 'util', 'protocol', 'config'],
  client: ['client', 'protocol', 'util'],
  cli: ['cli', 'client', 'server', 'config', 'util', 'protocol'],
  config: ['config', 'util', 'protocol'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.test.ts') && !path.includes(`${join('cache', 'testing')}`) ? [path] : [];
  });
}

test('module dependency direction', () => {
  const violations: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const area = relative(SRC, file).split('/')[0];
    const allowed = ALLOWED[area];
    assert.ok(allowed, `unknown area ${area} (${file})`);
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/from\s+'(\.[^']+)'/g)) {
      const target = relative(SRC, resolve(dirname(file), match[1]));
      const targetArea = target.split('/')[0];
      if (!allowed.includes(targetArea)) violations.push(`${relative(SRC, file)} → ${target}`);
    }
  }
  assert.deepEqual(violations, []);
});

/** Files with a hex character class that is not about ids or digests (a reason per file). */
const HEX_PATTERN_ELSEWHERE: Record<string, string> = {
  'git/pkt-line.ts': "a pkt-line's four-hex-digit length, not an id",
  'client/chunked.ts': "an HTTP chunk size (hexadecimal by RFC 9112), not an id",
};

test('only protocol/ holds object-id and digest patterns', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file);
    if (rel.startsWith('protocol/') || HEX_PATTERN_ELSEWHERE[rel]) continue;
    const text = readFileSync(file, 'utf8');
    // A hex character class (`[0-9a-f]`, `[a-f0-9]`, `[0-9a-fA-F]`, …) is how every hand-written id or
    // digest check starts.
    if (/\[(?:0-9|a-f|A-F){2,3}\]/.test(text)) offenders.push(rel);
  }
  assert.deepEqual(offenders, [], 'use src/protocol/object-id.ts');
});

/** Files with a segment-like pattern that is not about paths (a reason per file). */
const SEGMENT_PATTERN_ELSEWHERE: Record<string, string> = {
  'git/smart-http.ts': 'Git-Protocol header parameters (`version=2`), not a path',
};

test('only protocol/ holds route patterns', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file);
    if (rel.startsWith('protocol/') || SEGMENT_PATTERN_ELSEWHERE[rel]) continue;
    const text = readFileSync(file, 'utf8');
    // The path-segment class, or a regex over a route's action (`snapshot/….tar.zst`, `info/refs`).
    if (text.includes('[A-Za-z0-9._-]+') || /tar\\\.zst|info\\\/refs/.test(text)) offenders.push(rel);
  }
  assert.deepEqual(offenders, [], 'parse routes with src/protocol/routes.ts');
});

test('only util/process.ts starts programs', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file);
    if (rel === 'util/process.ts') continue;
    // Importing child_process at all is how a second runner (or a stray exec) begins.
    if (/from\s+'(node:)?child_process'/.test(readFileSync(file, 'utf8'))) offenders.push(rel);
  }
  assert.deepEqual(offenders, [], 'run programs with runProcess/spawnProcess from src/util/process.ts');
});
