/** `/_liveness`, `/_readiness` and `/metrics`. */
import type { Handler } from '../context.js';
import { sendText } from '../reply.js';
import type { Metrics } from '../../util/metrics.js';

/** Alive as long as the event loop answers. */
export const liveness: Handler = async (ctx) => {
  sendText(ctx, 200, 'ok');
};

/** A readiness condition: resolves to a one-line problem, or undefined when fine. */
export type ReadinessCheck = () => Promise<string | undefined>;

/**
 * Ready once storage is open and until shutdown starts, so a load balancer drains us first, and
 * while every check passes (e.g. the state disk has room): a failed check answers 503 naming the
 * first problem, since a replica that cannot write serves nothing new.
 *
 * A degraded replica (S3 unreachable, see docs/architecture.md) is still ready: it serves git and every
 * snapshot its local tiers hold, and when S3 is down it is down for every replica, so taking them all
 * out of rotation would turn a partial outage into a full one. It answers 200 with the body
 * `ready (degraded: …)` and the `X-Cachew-Degraded` header, for dashboards and for load balancers
 * that can prefer healthy replicas.
 */
export function readiness(
  isReady: () => boolean,
  options: { checks?: readonly ReadinessCheck[]; degraded?: () => string | undefined } = {},
): Handler {
  return async (ctx) => {
    if (!isReady()) return sendText(ctx, 503, 'not ready', { 'retry-after': 1 });
    for (const check of options.checks ?? []) {
      const problem = await check();
      if (problem) return sendText(ctx, 503, `not ready: ${problem}`, { 'retry-after': 5, 'cache-control': 'no-store' });
    }
    const reason = options.degraded?.();
    if (reason === undefined) sendText(ctx, 200, 'ready', { 'cache-control': 'no-store' });
    else sendText(ctx, 200, `ready (degraded: ${reason})`, { 'cache-control': 'no-store', [DEGRADED_HEADER]: reason });
  };
}

/** Set on `/_readiness` while the replica runs in degraded mode; its value says why. */
export const DEGRADED_HEADER = 'x-cachew-degraded';

export function metricsHandler(metrics: Metrics): Handler {
  return async (ctx) => {
    const body = await metrics.registry.metrics();
    ctx.res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
    ctx.res.end(body);
  };
}
