/**
 * Value parsers shared by flags, env vars and the JSON file: durations, sizes, booleans, host:port.
 * Each throws ConfigError with a one-line reason naming the setting.
 */
import { ConfigError } from '../util/errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `0`, `500ms`, `10s`, `5m`, `1h`, `1h30m`, or a bare number of seconds. */
export function parseDuration(setting: string, value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new ConfigError(`${setting}: must be a non-negative duration`);
    return value * 1000;
  }
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new ConfigError(`${setting}: invalid duration "${value}" (use e.g. 0, 500ms, 10s, 5m, 1h)`);
  }
  return parts.reduce((total, p) => total + Number(p[1]) * DURATION_UNITS[p[2]], 0);
}

export function parsePositiveInt(setting: string, value: string | number, { allowZero = false } = {}): number {
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < 0 || (!allowZero && n === 0)) {
    throw new ConfigError(`${setting}: must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${value}"`);
  }
  return n;
}

export function parseBoolean(setting: string, value: string | boolean): boolean {
  if (typeof value === 'boolean') return value;
  const text = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(text)) return false;
  throw new ConfigError(`${setting}: expected true or false, got "${value}"`);
}

/** `HOST:PORT` (IPv4, name, or `[v6]`); port 0 picks a free port. */
export function parseBind(setting: string, value: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  if (!match || Number(match[2]) > 65535) throw new ConfigError(`${setting}: expected HOST:PORT, got "${value}"`);
  return { host: match[1].replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}

/** `NAME=BASEURL`, e.g. `github.com=https://github.com`. */
export function parseUpstream(setting: string, value: string): { name: string; baseUrl: string } {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new ConfigError(`${setting}: expected NAME=BASEURL, got "${value}"`);
  const name = value.slice(0, eq).trim();
  const baseUrl = value.slice(eq + 1).trim().replace(/\/+$/, '');
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(name) || name.startsWith('.')) {
    throw new ConfigError(`${setting}: invalid upstream name "${name}"`);
  }
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new ConfigError(`${setting}: invalid upstream URL "${baseUrl}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${setting}: upstream URL must be http or https, got "${baseUrl}"`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`${setting}: upstream URL must not carry credentials, query or fragment`);
  }
  return { name, baseUrl };
}

/**
 * `NAME=VALUE` for per-upstream settings (`--upstream-auth github.com=passthrough`). The name is not
 * checked against the configured upstreams here: that happens once every layer is read.
 */
export function parseNamed(setting: string, value: string, what: string): { name: string; value: string } {
  const eq = value.indexOf('=');
  const name = eq > 0 ? value.slice(0, eq).trim() : '';
  const rest = eq > 0 ? value.slice(eq + 1).trim() : '';
  if (!name || !rest) throw new ConfigError(`${setting}: expected NAME=${what}, got "${value}"`);
  return { name, value: rest };
}
