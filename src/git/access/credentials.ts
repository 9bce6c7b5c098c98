/**
 * A caller's credential as the access gate handles it: the `Authorization` header value itself (kept
 * only in memory for the length of one request, and only ever sent to that repository's upstream),
 * a sha256 of it that may key in-memory state, and a short fingerprint that may appear in logs.
 *
 * The fingerprint is an HMAC under a key drawn when the process starts, not a plain hash: a Basic
 * password is often guessable, and a plain hash in a log file would let anyone who reads the logs
 * confirm guesses offline. The price is that fingerprints are stable only for one process's lifetime.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';

/** What the gate knows about who is asking. */
export interface CallerCredential {
  /** The raw header to forward to the upstream's check; undefined for an anonymous caller. */
  readonly authorization: string | undefined;
  /** sha256 hex of the header, or `anonymous`: safe as a map key, never the credential in clear. */
  readonly hash: string;
  /** 12 hex characters for logs, or `anonymous`. */
  readonly fingerprint: string;
}

const FINGERPRINT_KEY = randomBytes(32);
const ANONYMOUS = 'anonymous';

/**
 * Reads the caller's `Authorization` header. Only `Basic` and `Bearer` count (what git and token
 * tools send); anything else, or an empty header, is treated as no credential at all, so a strange
 * scheme cannot be used to probe the upstream with arbitrary header values.
 */
export function callerCredential(header: string | string[] | undefined): CallerCredential {
  const value = typeof header === 'string' ? header.trim() : undefined;
  if (!value || !/^(basic|bearer) +\S+$/i.test(value)) return { authorization: undefined, hash: ANONYMOUS, fingerprint: ANONYMOUS };
  return {
    authorization: value,
    hash: createHash('sha256').update(value, 'utf8').digest('hex'),
    fingerprint: createHmac('sha256', FINGERPRINT_KEY).update(value, 'utf8').digest('hex').slice(0, 12),
  };
}

/** True for the credential of a caller that sent none. */
export function isAnonymous(credential: CallerCredential): boolean {
  return credential.authorization === undefined;
}
