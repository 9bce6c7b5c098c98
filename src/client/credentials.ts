/**
 * Credentials of the restore client, obtained the way git obtains them: an explicit token
 * (`--token` / `CACHEW_TOKEN`), or `git credential fill` for the repository's upstream URL, asked only
 * when the server answers 401 — just as `git clone` asks its credential helper only after a 401.
 * A cachew server in passthrough mode checks them against that upstream and sends them nowhere else.
 * They are held in memory only and never printed.
 */
import { runProcess } from '../util/process.js';

export { tokenAuthorization } from '../protocol/token-auth.js';

/** Which requests carry the credential, and how to get one on the first 401. */
export interface ServerCredentials {
  /** Only requests to this origin (the cachew server) carry it: never a redirect target such as S3. */
  origin: string;
  /** An Authorization value known up front (from a token), else undefined. */
  authorization?: string;
  /** Asked once, on the first 401, when no credential is known yet. */
  fill?: () => Promise<string | undefined>;
  /** The repository URL the credentials are for, named in the error message. */
  repoUrl: string;
}

const FILL_TIMEOUT_MS = 60_000;

/**
 * Runs `git credential fill` for `repoUrl` with the user's own git configuration and environment, so
 * their credential helpers (and, on a terminal, git's prompt) answer. Resolves undefined when git has
 * nothing (no helper, prompts disabled); never rejects.
 */
export async function gitCredentialFill(repoUrl: string): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(repoUrl);
  } catch {
    return undefined;
  }
  // The description git expects; a URL with credentials in it is never written out again.
  url.username = '';
  url.password = '';
  let output: string;
  try {
    output = await runProcess('git', ['credential', 'fill'], { env: process.env, input: `url=${url.href}\n\n`, timeoutMs: FILL_TIMEOUT_MS });
  } catch {
    return undefined;
  }
  const fields = new Map<string, string>();
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const username = fields.get('username');
  const password = fields.get('password');
  return username !== undefined && password ? `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}` : undefined;
}
