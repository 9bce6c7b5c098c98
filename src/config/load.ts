/**
 * Builds the validated CachewConfig from, in increasing precedence: the embedded defaults, a JSON file
 * (`--config FILE` or CACHEW_CONFIG), CACHEW_* environment variables, and command-line flags.
 * Every problem becomes a ConfigError with one line naming the setting; cachewd exits 2 on it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../util/errors.js';
import { DEFAULT_CONFIG, type CachewConfig, type UpstreamAuthMode } from './types.js';
import { parseBind, parseBoolean, parseDuration, parseNamed, parsePositiveInt, parseUpstream } from './parse.js';

type RawValue = string | number | boolean | string[];

interface Setting {
  /** Flag name without `--`; also the key in the JSON file. */
  flag: string;
  kind: 'string' | 'boolean' | 'list';
  help: string;
  apply(config: CachewConfig, value: RawValue, where: string, perUpstream: PerUpstream): void;
}

/** A NAME=VALUE setting as given, with where it came from for the error message. */
interface NamedValue {
  value: string;
  where: string;
}

/**
 * Per-upstream settings (`--upstream-auth`, `--upstream-token-file`, `--upstream-token-env`). They are
 * collected across file, env and flags (a later layer wins per name) and only then checked against
 * the upstream list, which any layer may have replaced.
 */
interface PerUpstream {
  auth: Map<string, NamedValue>;
  tokenFile: Map<string, NamedValue>;
  tokenEnv: Map<string, NamedValue>;
}

const AUTH_MODES: readonly UpstreamAuthMode[] = ['public', 'passthrough'];

function named(target: Map<string, NamedValue>, where: string, value: RawValue, what: string, check?: (v: string) => string | undefined): void {
  for (const item of list(where, value)) {
    const parsed = parseNamed(where, item, what);
    const problem = check?.(parsed.value);
    if (problem) throw new ConfigError(`${where}: ${problem} for upstream ${parsed.name}`);
    target.set(parsed.name, { value: parsed.value, where });
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function str(where: string, value: RawValue): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  throw new ConfigError(`${where}: expected a string`);
}

function list(where: string, value: RawValue): string[] {
  if (Array.isArray(value)) return value.map((v) => str(where, v));
  // Env vars and single values: comma-separated.
  return str(where, value)
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

function s3(config: CachewConfig): NonNullable<CachewConfig['s3']> {
  config.s3 ??= { bucket: '', region: process.env.AWS_REGION ?? 'us-east-1', prefix: '' };
  return config.s3;
}

export const SETTINGS: Setting[] = [
  { flag: 'bind', kind: 'string', help: 'HOST:PORT to listen on (default 127.0.0.1:8080)',
    apply: (c, v, w) => { c.bind = parseBind(w, str(w, v)); } },
  { flag: 'state', kind: 'string', help: 'state directory (default ./state)',
    apply: (c, v, w) => { c.stateDir = str(w, v); } },
  { flag: 'log-level', kind: 'string', help: `one of ${LOG_LEVELS.join(', ')}`,
    apply: (c, v, w) => {
      const level = str(w, v) as CachewConfig['logLevel'];
      if (!LOG_LEVELS.includes(level)) throw new ConfigError(`${w}: must be one of ${LOG_LEVELS.join(', ')}`);
      c.logLevel = level;
    } },
  { flag: 'upstream', kind: 'list', help: 'NAME=BASEURL, repeatable; replaces the default upstreams',
    apply: (c, v, w) => {
      const upstreams = list(w, v).map((u) => parseUpstream(w, u));
      const names = new Set(upstreams.map((u) => u.name));
      if (names.size !== upstreams.length) throw new ConfigError(`${w}: an upstream name is given twice`);
      c.upstreams = upstreams;
    } },
  { flag: 'snapshot-interval', kind: 'string', help: 'how often snapshots are regenerated (default 1h; 0 = on demand)',
    apply: (c, v, w) => { c.snapshotIntervalMs = parseDuration(w, str(w, v)); } },
  { flag: 'ref-check-interval', kind: 'string', help: 'max age of served refs (default 10s)',
    apply: (c, v, w) => { c.refCheckIntervalMs = parseDuration(w, str(w, v)); } },
  { flag: 'snapshot-grace', kind: 'string', help: 'how long superseded snapshots stay (default 1h)',
    apply: (c, v, w) => { c.snapshotGraceMs = parseDuration(w, str(w, v)); } },
  { flag: 'bundle-ttl', kind: 'string', help: 'how long delta bundles are kept (default 24h)',
    apply: (c, v, w) => { c.bundleTtlMs = parseDuration(w, str(w, v)); } },
  { flag: 's3-bucket', kind: 'string', help: 'S3 bucket: makes S3 the shared authoritative tier',
    apply: (c, v, w) => { s3(c).bucket = str(w, v); } },
  { flag: 's3-endpoint', kind: 'string', help: 'S3 endpoint URL (path-style addressing)',
    apply: (c, v, w) => {
      const endpoint = str(w, v);
      try { new URL(endpoint); } catch { throw new ConfigError(`${w}: invalid URL "${endpoint}"`); }
      s3(c).endpoint = endpoint;
    } },
  { flag: 's3-region', kind: 'string', help: 'S3 region (default $AWS_REGION or us-east-1)',
    apply: (c, v, w) => { s3(c).region = str(w, v); } },
  { flag: 's3-prefix', kind: 'string', help: 'key prefix inside the bucket',
    apply: (c, v, w) => { s3(c).prefix = str(w, v).replace(/^\/+|\/+$/g, ''); } },
  { flag: 's3-redirect', kind: 'boolean', help: 'answer GETs of immutable snapshot URLs with 307 to a presigned S3 URL',
    apply: (c, v, w) => { c.s3Redirect = parseBoolean(w, typeof v === 'boolean' ? v : str(w, v)); } },
  { flag: 's3-redirect-ttl', kind: 'string', help: 'lifetime of those presigned URLs (default 5m; 1s..7d)',
    apply: (c, v, w) => {
      const ms = parseDuration(w, typeof v === 'number' ? v : str(w, v));
      // SigV4 presigned URLs live from one second up to seven days.
      if (ms < 1000 || ms > 7 * 86_400_000) throw new ConfigError(`${w}: must be between 1s and 7d`);
      c.s3RedirectTtlMs = ms;
    } },
  { flag: 'memory-limit-mb', kind: 'string', help: 'memory tier size (default 256)',
    apply: (c, v, w) => { c.memoryLimitMb = parsePositiveInt(w, str(w, v), { allowZero: true }); } },
  { flag: 'memory-max-object-mb', kind: 'string', help: 'largest object the memory tier holds (default 32)',
    apply: (c, v, w) => { c.memoryMaxObjectMb = parsePositiveInt(w, str(w, v)); } },
  { flag: 'disk-limit-mb', kind: 'string', help: 'disk tier size (default 10240)',
    apply: (c, v, w) => { c.diskLimitMb = parsePositiveInt(w, str(w, v)); } },
  { flag: 'read-only', kind: 'boolean', help: 'refuse pushes (403)',
    apply: (c, v, w) => { c.readOnly = parseBoolean(w, typeof v === 'boolean' ? v : str(w, v)); } },
  { flag: 'api-token', kind: 'string', help: 'bearer token for POST /api/v1 from non-loopback clients',
    apply: (c, v, w) => { c.apiToken = str(w, v) || undefined; } },
  { flag: 'upstream-auth', kind: 'list', help: 'NAME=public|passthrough, repeatable: who may read through that upstream (default public)',
    apply: (_c, v, w, p) => named(p.auth, w, v, 'public|passthrough', (mode) =>
      (AUTH_MODES as readonly string[]).includes(mode) ? undefined : `invalid mode "${mode}" (expected public or passthrough)`) },
  { flag: 'upstream-token-file', kind: 'list', help: "NAME=PATH, repeatable: file with the server's own token for that upstream (read at use)",
    apply: (_c, v, w, p) => named(p.tokenFile, w, v, 'PATH') },
  { flag: 'upstream-token-env', kind: 'list', help: "NAME=VAR, repeatable: env variable with the server's own token for that upstream",
    apply: (_c, v, w, p) => named(p.tokenEnv, w, v, 'VAR') },
  { flag: 'upstream-auth-ttl', kind: 'string', help: 'how long a passthrough check that allowed is reused (default 60s)',
    apply: (c, v, w) => { c.authAllowTtlMs = parseDuration(w, str(w, v)); } },
  { flag: 'upstream-auth-deny-ttl', kind: 'string', help: 'how long a passthrough check that denied is reused (default 10s)',
    apply: (c, v, w) => { c.authDenyTtlMs = parseDuration(w, str(w, v)); } },
  { flag: 'mirror-wait', kind: 'string', help: 'how long a request waits for a first clone before 503 (default 2m)',
    apply: (c, v, w) => { c.mirrorWaitMs = parseDuration(w, str(w, v)); } },
  { flag: 'shutdown-grace', kind: 'string', help: 'how long in-flight requests may finish on SIGTERM (default 30s)',
    apply: (c, v, w) => { c.shutdownGraceMs = parseDuration(w, str(w, v)); } },
  { flag: 's3-stale-reads', kind: 'string', help: 'while S3 is down, serve locally cached pointers up to this old (default 1h; 0 = never)',
    apply: (c, v, w) => { c.s3StaleReadsMs = parseDuration(w, str(w, v)); } },
  { flag: 'generation-lease', kind: 'string', help: 'generation lease TTL between replicas sharing S3 (default 1m)',
    apply: (c, v, w) => { c.generationLeaseMs = parseDuration(w, str(w, v)); } },
  { flag: 'header-timeout', kind: 'string', help: 'time a client has to send its request headers (default 20s)',
    apply: (c, v, w) => { c.http.headersTimeoutMs = positiveDuration(w, str(w, v)); } },
  { flag: 'request-timeout', kind: 'string', help: 'time a client has to send its whole request, body included (default 5m)',
    apply: (c, v, w) => { c.http.requestTimeoutMs = positiveDuration(w, str(w, v)); } },
  { flag: 'keep-alive-timeout', kind: 'string', help: 'how long an idle keep-alive connection is kept (default 5s)',
    apply: (c, v, w) => { c.http.keepAliveTimeoutMs = positiveDuration(w, str(w, v)); } },
  { flag: 'idle-timeout', kind: 'string', help: 'a response the client stops reading is cut after this (default 2m)',
    apply: (c, v, w) => { c.http.idleTimeoutMs = positiveDuration(w, str(w, v)); } },
  { flag: 'max-connections', kind: 'string', help: 'connections held at once; idle ones are evicted first (default 1024)',
    apply: (c, v, w) => { c.http.maxConnections = parsePositiveInt(w, str(w, v)); } },
  { flag: 'max-upload-pack-mb', kind: 'string', help: 'largest upload-pack request body in MiB (default 64)',
    apply: (c, v, w) => { c.http.maxUploadPackBytes = parsePositiveInt(w, str(w, v)) * MB; } },
  { flag: 'max-forward-mb', kind: 'string', help: 'largest body forwarded upstream (pushes) in MiB (default 2048)',
    apply: (c, v, w) => { c.http.maxForwardBytes = parsePositiveInt(w, str(w, v)) * MB; } },
  { flag: 'temp-max-age', kind: 'string', help: 'temp files and git leftovers older than this are swept (default 2h)',
    apply: (c, v, w) => { c.hygiene.tempMaxAgeMs = positiveDuration(w, str(w, v)); } },
  { flag: 'sweep-interval', kind: 'string', help: 'how often temp space is swept (default 10m; 0 = start-up only)',
    apply: (c, v, w) => { c.hygiene.sweepIntervalMs = parseDuration(w, str(w, v)); } },
  { flag: 'min-free-disk-mb', kind: 'string', help: 'readiness fails below this much free space in the state dir (default 256)',
    apply: (c, v, w) => { c.hygiene.minFreeDiskBytes = parsePositiveInt(w, str(w, v), { allowZero: true }) * MB; } },
];

const MB = 1024 * 1024;

function positiveDuration(where: string, value: string): number {
  const ms = parseDuration(where, value);
  if (ms <= 0) throw new ConfigError(`${where}: must be greater than 0`);
  return ms;
}

function envName(flag: string): string {
  return `CACHEW_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export interface LoadResult {
  config: CachewConfig;
  help: boolean;
}

/** Parses argv (without node and script), env and the optional config file. Throws ConfigError. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): LoadResult {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const s of SETTINGS) {
    options[s.flag] = { type: s.kind === 'boolean' ? 'boolean' : 'string', multiple: s.kind === 'list' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new ConfigError((err as Error).message.split('\n')[0]);
  }
  const values = parsed.values as Record<string, RawValue | undefined>;
  const config: CachewConfig = structuredClone(DEFAULT_CONFIG);
  if (values.help) return { config, help: true };

  const perUpstream: PerUpstream = { auth: new Map(), tokenFile: new Map(), tokenEnv: new Map() };
  const file = (values.config as string | undefined) ?? env.CACHEW_CONFIG;
  if (file) applyFile(config, file, perUpstream);
  for (const s of SETTINGS) {
    const value = env[envName(s.flag)];
    if (value !== undefined) s.apply(config, value, envName(s.flag), perUpstream);
  }
  for (const s of SETTINGS) {
    const value = values[s.flag];
    if (value !== undefined) s.apply(config, value, `--${s.flag}`, perUpstream);
  }
  applyPerUpstream(config, perUpstream);
  validate(config);
  return { config, help: false };
}

function applyFile(config: CachewConfig, file: string, perUpstream: PerUpstream): void {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message.split('\n')[0];
    throw new ConfigError(`--config ${file}: ${reason}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(`--config ${file}: expected a JSON object`);
  }
  for (const [key, value] of Object.entries(data)) {
    const setting = SETTINGS.find((s) => s.flag === key);
    if (!setting) throw new ConfigError(`--config ${file}: unknown setting "${key}"`);
    // NAME=VALUE lists (`upstream`, `upstream-auth`, ...) may also be objects {"NAME": "VALUE"} in the file.
    const raw: RawValue =
      setting.kind === 'list' && value && typeof value === 'object' && !Array.isArray(value)
        ? Object.entries(value as Record<string, unknown>).map(([n, u]) => `${n}=${String(u)}`)
        : (value as RawValue);
    setting.apply(config, raw, `${file}: ${key}`, perUpstream);
  }
}

/** Folds the per-upstream settings into the upstream list; a name that is not an upstream is an error. */
function applyPerUpstream(config: CachewConfig, perUpstream: PerUpstream): void {
  const byName = new Map(config.upstreams.map((u) => [u.name, u]));
  const known = [...byName.keys()].join(', ');
  const each = (entries: Map<string, NamedValue>, set: (u: CachewConfig['upstreams'][number], value: string) => void): void => {
    for (const [name, { value, where }] of entries) {
      const upstream = byName.get(name);
      if (!upstream) throw new ConfigError(`${where}: unknown upstream "${name}" (configured: ${known})`);
      set(upstream, value);
    }
  };
  each(perUpstream.auth, (u, v) => { u.auth = v as UpstreamAuthMode; });
  each(perUpstream.tokenFile, (u, v) => { u.tokenFile = v; });
  each(perUpstream.tokenEnv, (u, v) => { u.tokenEnv = v; });
}

function validate(config: CachewConfig): void {
  if (config.s3 && !config.s3.bucket) throw new ConfigError('--s3-bucket: required when other S3 settings are given');
  if (config.s3Redirect && !config.s3) throw new ConfigError('--s3-redirect: needs S3 (--s3-bucket) to redirect to');
  if (config.upstreams.length === 0) throw new ConfigError('--upstream: at least one upstream is required');
  if (config.refCheckIntervalMs <= 0) throw new ConfigError('--ref-check-interval: must be greater than 0');
  if (config.authDenyTtlMs > config.authAllowTtlMs) {
    throw new ConfigError('--upstream-auth-deny-ttl: must not be longer than --upstream-auth-ttl');
  }
}

export function usage(): string {
  const lines = ['Usage: cachewd [flags]', '', 'Flags (each also settable as CACHEW_<FLAG> or a key of the --config JSON file):'];
  // Long flags push their help one space to the right rather than run into it.
  const column = (text: string): string => (text.length >= 30 ? `${text} ` : text.padEnd(30));
  lines.push(column('  --config FILE') + 'JSON file with any of the settings below');
  for (const s of SETTINGS) {
    const arg = s.kind === 'boolean' ? '' : ' VALUE';
    lines.push(column(`  --${s.flag}${arg}`) + s.help);
  }
  return lines.join('\n');
}
