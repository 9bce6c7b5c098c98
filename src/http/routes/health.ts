/** `/_liveness`, `/_readiness` and `/metrics`. */
import type { Handler } from '../context.js';
import { sendText } from '../reply.js';
import type { Metrics } from '../../util/metrics.js';

/** Alive as long as the event loop answers. */
export const liveness: Handler = async (ctx) => {
  sendText(ctx, 200, 'ok');
};

/**
 * Ready once storage is open and until shutdown starts, so a load balancer drains us first.
 *
 * A degraded replica (S3 unreachable, see docs/architecture.md) is still ready: it serves git and every
 * snapshot its local tiers hold, and when S3 is down it is down for every replica, so taking them all
 * out of rotation would turn a partial outage into a full one. It answers 200 with the body
 * `ready (degraded: …)` and the `X-Cachew-Degraded` header, for dashboards and for load balancers
 * that can prefer healthy replicas.
 */
export function readiness(isReady: () => boolean, degraded: () => string | undefined = () => undefined): Handler {
  return async (ctx) => {
    if (!isReady()) {
      sendText(ctx, 503, 'not ready', { 'retry-after': 1 });
      return;
    }
    const reason = degraded();
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
