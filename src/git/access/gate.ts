/**
 * The access gate: for an upstream in `passthrough` mode, no request reads anything of a repository
 * unless the caller's own credential could read it from the upstream. The router calls `authorize()`
 * once per request, before any handler runs, so every route (smart HTTP, snapshots, bundles, the API,
 * forwarded paths) is covered by the same check and no handler can forget it.
 *
 * Cost: at most one upstream check per (credential, repository) per allow TTL; concurrent requests
 * with the same credential share one check. Answers never depend on what our cache holds, so they
 * say nothing about whether a repository exists beyond what the upstream told this caller.
 */
import { SingleFlight } from '../../util/single-flight.js';
import { systemClock, type Clock } from '../../util/clock.js';
import { NotFoundError, UnauthorizedError } from '../../util/errors.js';
import type { Logger } from '../../util/logger.js';
import type { Metrics } from '../../util/metrics.js';
import type { UpstreamRegistry } from '../upstreams.js';
import { callerCredential, isAnonymous, type CallerCredential } from './credentials.js';
import { AccessDecisionCache, decisionKey, type AccessDecision } from './decision-cache.js';
import { probeUpstream, type UpstreamProbe } from './upstream-check.js';

export interface AccessGateOptions {
  upstreams: UpstreamRegistry;
  /** Names of the upstreams in `passthrough` mode; every other upstream is public (no check). */
  passthrough: ReadonlySet<string>;
  allowTtlMs: number;
  denyTtlMs: number;
  logger: Logger;
  metrics?: Metrics;
  /** The decision cache's clock (tests advance it instead of sleeping); default the system clock. */
  clock?: Pick<Clock, 'now'>;
  /** Injected upstream check (tests count or script it); default: a real HTTP request. */
  probe?: UpstreamProbe;
}

/** One request to authorize: the repository as routed, and the caller's Authorization header. */
export interface AccessRequest {
  host: string;
  /** As the client spelled it (the check asks the upstream for the same URL the mirror would). */
  repo: string;
  /** Without `.git`: the identity decisions are cached under. */
  canonicalRepo: string;
  authorization: string | string[] | undefined;
}

/** What a 401 asks for: Basic, so git consults its credential helper and retries. */
export const CHALLENGE = 'Basic realm="cachew", charset="UTF-8"';

export class AccessGate {
  readonly #opts: AccessGateOptions;
  readonly #cache: AccessDecisionCache;
  readonly #checks = new SingleFlight<AccessDecision>();
  readonly #probe: UpstreamProbe;
  readonly #log: Logger;

  constructor(options: AccessGateOptions) {
    this.#opts = options;
    const clock = options.clock ?? systemClock;
    this.#cache = new AccessDecisionCache({ allowTtlMs: options.allowTtlMs, denyTtlMs: options.denyTtlMs, now: () => clock.now() });
    this.#probe = options.probe ?? probeUpstream;
    this.#log = options.logger.child({ module: 'access' });
  }

  /** True when requests for `host` are checked (passthrough mode). */
  isGated(host: string): boolean {
    return this.#opts.passthrough.has(host);
  }

  /**
   * Resolves when the caller may read the repository; otherwise throws UnauthorizedError (401 with a
   * Basic challenge: no credential, or the upstream said 401) or NotFoundError (404: the credential
   * was accepted but may not see this repository). Upstream trouble is an UpstreamError (502).
   */
  async authorize(request: AccessRequest): Promise<void> {
    const { host, canonicalRepo } = request;
    if (!this.isGated(host)) return;
    const credential = callerCredential(request.authorization);
    const key = decisionKey(credential.hash, host, canonicalRepo);
    let decision = this.#cache.get(key);
    if (decision !== undefined) this.#opts.metrics?.authCacheHits.inc({ host, decision });
    else decision = await this.#checks.run(key, () => this.#check(request, credential, key));
    if (decision === 'allow') return;

    // Without a credential, any refusal asks for one: the repository may simply be private.
    const status = decision === 'unauthorized' || isAnonymous(credential) ? 401 : 404;
    this.#opts.metrics?.authDenials.inc({ host, status: String(status) });
    this.#log.info({ credential: credential.fingerprint, host, repo: canonicalRepo, decision, status }, 'access denied');
    if (status === 401) throw new UnauthorizedError(`authentication required for ${host}/${request.repo}`, CHALLENGE);
    throw new NotFoundError(`repository ${host}/${request.repo} not found`);
  }

  async #check(request: AccessRequest, credential: CallerCredential, key: string): Promise<AccessDecision> {
    const { host, canonicalRepo } = request;
    const upstream = this.#opts.upstreams.get(host);
    if (!upstream) throw new NotFoundError(`upstream host ${host} is not configured`);
    this.#opts.metrics?.upstreamRequests.inc({ kind: 'access-check' });
    let decision: AccessDecision;
    try {
      // Not tied to the request's signal: other requests may be waiting on the same check.
      decision = await this.#probe(upstream.repoUrl(request.repo), credential.authorization);
    } catch (err) {
      this.#opts.metrics?.authChecks.inc({ host, outcome: 'error' });
      this.#log.warn({ credential: credential.fingerprint, host, repo: canonicalRepo, err: (err as Error).message }, 'access check failed');
      throw err;
    }
    this.#opts.metrics?.authChecks.inc({ host, outcome: decision });
    this.#log.debug({ credential: credential.fingerprint, host, repo: canonicalRepo, decision }, 'access checked upstream');
    this.#cache.set(key, decision);
    return decision;
  }
}
