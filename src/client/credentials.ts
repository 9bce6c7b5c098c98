/**
 * Credentials of the restore client, obtained the way git obtains them: an explicit token
 * (`--token` / `CACHEW_TOKEN`), or `git credential fill` for the repository's upstream URL, asked only
 * when the server answers 401 — just as `git clone` asks its credential helper only after a 401.
 * A cachew server in passthrough mode checks them against that upstream and sends them nowhere else.
 * They are held in memory only and never printed.
 */
import { spawn } from 'node:child_process';

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
export function gitCredentialFill(repoUrl: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL(repoUrl);
    } catch {
      resolve(undefined);
      return;
    }
    // The description git expects; a URL with credentials in it is never written out again.
    url.username = '';
    url.password = '';
    const child = spawn('git', ['credential', 'fill'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), FILL_TIMEOUT_MS);
    const out: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stdin.on('error', () => undefined);
    child.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        resolve(undefined);
        return;
      }
      const fields = new Map<string, string>();
      for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
      }
      const username = fields.get('username');
      const password = fields.get('password');
      resolve(username !== undefined && password ? `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}` : undefined);
    });
    child.stdin.end(`url=${url.href}\n\n`);
  });
}
