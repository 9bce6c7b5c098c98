/** `/api/v1/git/{host}/{repo}/snapshots`: list retained snapshots (GET), snapshot now (POST). */
import type { RepoHandler } from '../context.js';
import { sendJson, sendText } from '../reply.js';
import { immutableSnapshotPath } from '../../protocol/routes.js';
import type { SnapshotService } from '../../git/snapshot/service.js';
import type { SnapshotStore } from '../../git/snapshot/store.js';

export function createApiRoutes(deps: { service: SnapshotService; store: SnapshotStore }): RepoHandler {
  return async (ctx, target) => {
    if (ctx.req.method === 'GET') {
      const records = await deps.store.list(target.host, target.canonicalRepo);
      sendJson(ctx, 200, {
        snapshots: records.map((r) => ({
          commit: r.commit,
          digest: r.digest,
          size: r.size,
          created: r.created,
          current: r.current,
          url: immutableSnapshotPath(target.host, target.repo, r.commit),
        })),
      });
      return;
    }
    if (ctx.req.method === 'POST') {
      const record = await deps.service.snapshotNow(target.host, target.canonicalRepo, ctx.signal);
      sendJson(ctx, 200, {
        commit: record.commit,
        digest: record.digest,
        size: record.size,
        url: immutableSnapshotPath(target.host, target.repo, record.commit),
      });
      return;
    }
    sendText(ctx, 405, 'method not allowed', { allow: 'GET, POST' });
  };
}
