/** `/api/v1/git/{host}/{repo}/snapshots`: list retained snapshots (GET), snapshot now (POST). */
import type { RepoHandler } from '../context.js';
import { sendJson, sendText } from '../reply.js';
import { immutableSnapshotPath } from '../../protocol/routes.js';
import type { SnapshotService } from '../../git/snapshot/service.js';
import type { SnapshotReader } from '../../storage/reader.js';
import { NotFoundError } from '../../util/errors.js';

export interface ApiRouteDeps {
  service: SnapshotService;
  reader: SnapshotReader;
  /** True when this replica mirrors the repository (a repository with neither mirror nor snapshot is unknown). */
  isMirrored(host: string, repo: string): boolean;
}

export function createApiRoutes(deps: ApiRouteDeps): RepoHandler {
  return async (ctx, target) => {
    if (ctx.req.method === 'GET' || ctx.req.method === 'HEAD') {
      const records = await deps.reader.list(target.host, target.canonicalRepo);
      // Like every other route: a repository we know nothing about is a 404, not an empty list.
      if (records.length === 0 && !deps.isMirrored(target.host, target.canonicalRepo)) {
        throw new NotFoundError(`no snapshots or mirror for ${target.host}/${target.canonicalRepo}`);
      }
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
    sendText(ctx, 405, 'method not allowed', { allow: 'GET, HEAD, POST' });
  };
}
